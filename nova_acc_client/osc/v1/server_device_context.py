#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.
"""``openstack server add|remove device context SERVER CONTEXT`` and
``openstack server device context list SERVER``.

Attach a device context of nova-acc-api to a running or stopped server,
or detach it (``PUT``/``DELETE /v1/device-contexts/{id}/attachment``,
issue 23). The API answers at once (202) with the context ``attaching``
or ``detaching``; the server's compute does the rest. Without ``--wait``
the command shows that state; with it, it polls the context until the
compute is done and fails (exit 1, the context's fault) if it gave up.

A context given at boot as an inline spec or ``profile:NAME`` has no ID:
``list`` shows the server's contexts by index and ``remove --boot-index
N`` detaches one (``/v1/servers/{id}/boot-contexts``, issue 23 item 5;
:mod:`.boot_contexts`).
"""

from __future__ import annotations

import argparse
import time
import typing as ty

from osc_lib.command import command
from osc_lib import exceptions
from oslo_utils import uuidutils

from nova_acc_client import contexts
from nova_acc_client.osc.v1 import boot_contexts
from nova_acc_client.osc.v1 import device_context as common

ATTACHING = 'attaching'
DETACHING = 'detaching'
#: How long ``--wait`` waits, and how often it looks.
WAIT_SECONDS = 300
POLL_SECONDS = 2.0


def server_id_of(cmd: command.Command, name_or_id: str) -> str:
    """The server's ID; a name is looked up with the compute API."""
    if uuidutils.is_uuid_like(name_or_id):
        return name_or_id
    from openstack import exceptions as sdk_exceptions
    try:
        server = common.service_client(cmd, 'compute').find_server(
            name_or_id, ignore_missing=False)
    except sdk_exceptions.SDKException as error:
        raise exceptions.CommandError('server %s: %s'
                                      % (name_or_id, error)) from None
    return str(server.id)


def _parser(parser: argparse.ArgumentParser, verb: str,
            or_else: str | None = None) -> argparse.ArgumentParser:
    """SERVER CONTEXT [--wait]; CONTEXT optional if ``or_else`` (the
    option that replaces it) is given."""
    parser.add_argument('server', metavar='<server>',
                        help='Server (name or ID)')
    parser.add_argument(
        'context', metavar='<context-id>', nargs='?' if or_else else None,
        help='ID of the device context to %s%s' % (
            verb, ' (or give %s)' % or_else if or_else else ''))
    parser.add_argument('--wait', action='store_true',
                        help='Wait until the server\'s compute has done it '
                             '(at most %d s)' % WAIT_SECONDS)
    return parser


class _Attachment(command.ShowOne):

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, context: contexts.Context, transitional: str,
             done: str, failure: str) -> contexts.Context:
        """The context once it has left ``transitional`` for ``done``.

        :raises CommandError: ``failure``, with the context's fault, when
            the compute left it in another state; or it did not finish.
        """
        deadline = time.monotonic() + WAIT_SECONDS
        while context['state'] == transitional:
            if time.monotonic() > deadline:
                raise exceptions.CommandError(
                    'device context %s is still %s after %d s'
                    % (context['id'], transitional, WAIT_SECONDS))
            self.sleep(POLL_SECONDS)
            context = common.call(common.client_of(self).get, context['id'])
        if context['state'] != done:
            raise exceptions.CommandError('%s: %s' % (
                failure, context.get('fault') or context['state']))
        return context

    def shown(self, context: contexts.Context) -> ty.Any:
        return common.FIELDS, common.formatted(context, common.FIELDS)


class AddServerDeviceContext(_Attachment):
    """Attach a device context to a running or stopped server."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        return _parser(super().get_parser(prog_name), 'attach')

    def take_action(self, parsed_args: argparse.Namespace) -> ty.Any:
        server_id = server_id_of(self, parsed_args.server)
        context = common.call(common.client_of(self).attach,
                              parsed_args.context, server_id)
        if parsed_args.wait:
            context = self.wait(
                context, ATTACHING, 'bound',
                'device context %s was not attached to server %s'
                % (context['id'], server_id))
        return self.shown(context)


def _boot_index(value: str) -> int:
    """``--boot-index``: a context index (the API allows up to 9999)."""
    if not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(
            'expected the index of a device context (0, 1, ...), got %r'
            % value)
    return int(value)


class RemoveServerDeviceContext(_Attachment):
    """Detach a device context from its server: by its ID, or, given at
    boot without an ID, by its index (--boot-index)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = _parser(super().get_parser(prog_name), 'detach',
                         or_else='--boot-index')
        parser.add_argument(
            '--boot-index', metavar='<index>', type=_boot_index,
            help='Index of a device context given at boot as a spec or a '
                 'profile (no ID), as "openstack server device context '
                 'list" shows it')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> ty.Any:
        if (parsed_args.context is None) == (parsed_args.boot_index is None):
            raise exceptions.CommandError(
                'give either <context-id> or --boot-index <index>')
        server_id = server_id_of(self, parsed_args.server)
        if parsed_args.boot_index is not None:
            return boot_contexts.detach(
                self, server_id, parsed_args.boot_index, parsed_args.wait,
                WAIT_SECONDS, POLL_SECONDS, self.sleep)
        client = common.client_of(self)
        context = common.call(client.get, parsed_args.context)
        # The API detaches a context from whichever server holds it: make
        # sure that is the one the user named.
        if context.get('server_id') != server_id:
            raise exceptions.CommandError(
                'device context %s is not attached to server %s'
                % (context['id'], server_id))
        context = common.call(client.detach, context['id'])
        if parsed_args.wait:
            context = self.wait(
                context, DETACHING, 'unbound',
                'device context %s was not detached from server %s'
                % (context['id'], server_id))
        return self.shown(context)


class ListServerDeviceContext(command.Lister):
    """List a server's device contexts by index: those given at boot
    (with or without an ID) and those attached since."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='Server (name or ID)')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> ty.Any:
        server_id = server_id_of(self, parsed_args.server)
        return boot_contexts.rows(boot_contexts.listed(self, server_id))
