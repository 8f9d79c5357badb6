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
"""``openstack device context create|list|show|set|delete``.

cliff commands over :class:`nova_acc_client.contexts.DeviceContextClient`
(``self.app.client_manager.device_context``, made by
:func:`nova_acc_client.osc.plugin.make_client`). A refusal of the API is
printed as the API's message and the command exits 1 (osc-lib's
``CommandError``); nothing is checked here that the API checks itself,
except the shape of the options.

Further commands are a module each with their lines in ``[entry_points]
openstack.device_context.v1`` of both setup.cfg files, using
:func:`client_of`, :func:`call` and :func:`formatted` (``openstack server
add|remove device context``: :mod:`.server_device_context`).
"""

from __future__ import annotations

import argparse
import logging
import typing as ty

from osc_lib.command import command
from osc_lib import exceptions
from osc_lib.cli import format_columns

from nova_acc_client import contexts
from nova_acc_client.osc import plugin

LOG = logging.getLogger(__name__)

REQUIRED = 'required'
FORBIDDEN = 'forbidden'
ACCEL_PREFIX = 'accel:'
#: The states ``list --state`` names in its help; the API checks the value.
STATES = ('unbound', 'bound', 'error', 'attaching', 'detaching')

#: ``show`` and ``create`` columns: every field of the resource.
FIELDS = ('id', 'name', 'description', 'project_id', 'user_id', 'spec',
          'config', 'state', 'server_id', 'host', 'devices', 'fault',
          'created_at', 'updated_at')
#: ``list`` columns (field, heading).
LIST_COLUMNS = (('id', 'ID'), ('name', 'Name'), ('state', 'State'),
                ('server_id', 'Server'), ('host', 'Host'), ('spec', 'Spec'))
LONG_COLUMNS = LIST_COLUMNS + (('project_id', 'Project'),
                               ('devices', 'Devices'))


def service_client(cmd: command.Command, api_name: str) -> ty.Any:
    """The client manager's client of ``api_name``.

    python-openstackclient adds one attribute per plugin module (its
    ``API_NAME``) to the ClientManager class when it starts.
    """
    return getattr(cmd.app.client_manager, api_name)


def client_of(cmd: command.Command) -> contexts.DeviceContextClient:
    return ty.cast(contexts.DeviceContextClient,
                   service_client(cmd, plugin.API_NAME))


def call(function: ty.Callable[..., ty.Any], *args: ty.Any,
         **kwargs: ty.Any) -> ty.Any:
    """``function(...)``; an API refusal becomes CommandError(message)."""
    try:
        return function(*args, **kwargs)
    except contexts.ContextAPIError as error:
        raise exceptions.CommandError(error.message) from None


def _devices(devices: list[dict[str, str]] | None) -> str:
    """``pool:address`` (or ``pool:mdev_uuid``) of each device."""
    return ', '.join('%s:%s' % (d.get('pool'), d.get('address')
                                or d.get('mdev_uuid'))
                     for d in devices or [])


def formatted(context: dict[str, ty.Any], fields: ty.Sequence[str]
              ) -> tuple[ty.Any, ...]:
    values = []
    for field in fields:
        value = context.get(field)
        if field == 'config':
            value = format_columns.DictColumn(value or {})
        elif field == 'devices':
            value = _devices(value)
        values.append(value)
    return tuple(values)


def _key_value(option: str, value: str) -> tuple[str, str]:
    key, sep, rest = value.partition('=')
    if not sep or not key:
        raise exceptions.CommandError(
            'invalid %s %r: expected KEY=VALUE' % (option, value))
    return key, rest


def spec_of(parsed_args: argparse.Namespace) -> str:
    """The spec the options give (the API validates its grammar)."""
    tokens = []
    for value in parsed_args.resources or []:
        resource_class, amount = _key_value('--resources', value)
        tokens.append('resources:%s=%s' % (resource_class, amount))
    for value in parsed_args.traits or []:
        name, sep, how = value.partition('=')
        how = how if sep else REQUIRED
        if how not in (REQUIRED, FORBIDDEN) or not name:
            raise exceptions.CommandError(
                'invalid --trait %r: expected NAME, NAME=required or '
                'NAME=forbidden' % value)
        tokens.append('trait:%s=%s' % (name, how))
    given = [bool(tokens), parsed_args.profile is not None,
             parsed_args.spec is not None]
    if given.count(True) != 1:
        raise exceptions.CommandError(
            'give one of: --resources (with --trait), --profile or --spec')
    if parsed_args.profile is not None:
        return 'profile:%s' % parsed_args.profile
    if parsed_args.spec is not None:
        return ty.cast(str, parsed_args.spec)
    return ','.join(tokens)


def config_of(values: list[str] | None) -> dict[str, str] | None:
    """``--config KEY=VALUE`` pairs; ``accel:`` may be left out of KEY."""
    if values is None:
        return None
    config = {}
    for value in values:
        key, item = _key_value('--config', value)
        if not key.startswith(ACCEL_PREFIX):
            key = ACCEL_PREFIX + key
        config[key] = item
    return config


def _add_name_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--name', metavar='<name>',
                        help='Name of the device context')
    parser.add_argument('--description', metavar='<description>',
                        help='Description of the device context')
    parser.add_argument(
        '--config', metavar='<key=value>', action='append',
        help='Config data (accel:KEY=VALUE; the accel: prefix may be left '
             'out) that the device is configured with; repeat for several '
             'keys. The operator says which keys a device allows.')


class CreateDeviceContext(command.ShowOne):
    """Create a device context."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--resources', metavar='<resource-class=amount>',
            action='append',
            help='Devices of a resource class, such as FPGA=1; repeatable')
        parser.add_argument(
            '--trait', metavar='<name[=required|forbidden]>',
            action='append', dest='traits',
            help='A trait the device must have (required, the default) or '
                 'must not have (forbidden); repeatable')
        parser.add_argument(
            '--profile', metavar='<name>',
            help='An operator-defined profile instead of --resources')
        parser.add_argument(
            '--spec', metavar='<spec>',
            help='A raw spec in nova-acc\'s grammar, such as '
                 '"resources:FPGA=1,trait:CUSTOM_GZIP=required"')
        _add_name_options(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> ty.Any:
        context = call(client_of(self).create, spec_of(parsed_args),
                       name=parsed_args.name,
                       description=parsed_args.description,
                       config=config_of(parsed_args.config))
        return FIELDS, formatted(context, FIELDS)


class ListDeviceContext(command.Lister):
    """List device contexts."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('--server', metavar='<server-id>',
                            help='Only contexts bound to this server (ID)')
        parser.add_argument('--state', metavar='<state>',
                            help='Only contexts in this state (%s)'
                            % ', '.join(STATES))
        parser.add_argument('--all-projects', action='store_true',
                            help='Contexts of all projects (admin only)')
        parser.add_argument('--limit', metavar='<limit>', type=int,
                            help='At most this many contexts')
        parser.add_argument('--marker', metavar='<id>',
                            help='Start after this context (the last ID '
                                 'of the previous page)')
        parser.add_argument('--long', action='store_true',
                            help='Also show project and devices')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> ty.Any:
        filters = {key: value for key, value in (
            ('server_id', parsed_args.server), ('state', parsed_args.state),
            ('limit', parsed_args.limit), ('marker', parsed_args.marker),
        ) if value is not None}
        if parsed_args.all_projects:
            filters['all_projects'] = 'True'
        columns = LONG_COLUMNS if parsed_args.long else LIST_COLUMNS
        fields = [field for field, _heading in columns]
        found = call(client_of(self).list, **filters)
        return ([heading for _field, heading in columns],
                [formatted(context, fields) for context in found])


class ShowDeviceContext(command.ShowOne):
    """Show a device context."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('context', metavar='<context-id>',
                            help='ID of the device context')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> ty.Any:
        context = call(client_of(self).get, parsed_args.context)
        return FIELDS, formatted(context, FIELDS)


class SetDeviceContext(command.Command):
    """Change a device context's name, description or config data."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('context', metavar='<context-id>',
                            help='ID of the device context')
        _add_name_options(parser)
        parser.add_argument(
            '--no-config', action='store_true',
            help='Remove all config data (with --config: replace it)')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        values: dict[str, ty.Any] = {}
        if parsed_args.name is not None:
            values['name'] = parsed_args.name
        if parsed_args.description is not None:
            values['description'] = parsed_args.description
        config = config_of(parsed_args.config)
        if parsed_args.no_config:
            values['config'] = config or {}
        elif config is not None:
            # --config alone adds keys to the context's or changes them.
            current = call(client_of(self).get, parsed_args.context)
            values['config'] = dict(current.get('config') or {}, **config)
        if not values:
            raise exceptions.CommandError(
                'nothing to set: give --name, --description, --config or '
                '--no-config')
        call(client_of(self).update, parsed_args.context, **values)


class DeleteDeviceContext(command.Command):
    """Delete device contexts (a bound one is refused: delete its server
    first)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('contexts', metavar='<context-id>', nargs='+',
                            help='ID of a device context; repeatable')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        failed = 0
        for context_id in parsed_args.contexts:
            try:
                client_of(self).delete(context_id)
            except contexts.ContextAPIError as error:
                failed += 1
                LOG.error('Failed to delete device context %s: %s',
                          context_id, error.message)
        if failed:
            raise exceptions.CommandError(
                '%d of %d device contexts failed to delete'
                % (failed, len(parsed_args.contexts)))
