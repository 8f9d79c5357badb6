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
"""``openstack server create --device-context <id-or-spec>``.

A cliff command hook. cliff loads the hooks of a command from the entry
point namespace ``<command manager namespace>.<command name with spaces
replaced by underscores>`` (``cliff.command.Command._load_hooks``);
python-openstackclient's command manager namespace is ``openstack.cli``
(its commands are *registered* in groups such as ``openstack.compute.v2``,
but hooks are looked up under the manager's namespace), so the hook is::

    [entry_points]
    openstack.cli.server_create =
        nova_acc_device_context =
            nova_acc_client.osc.server_create:ServerCreateDeviceContextHook

``before()`` runs after argument parsing and before ``take_action()``,
which sends the compute requests; it checks the values and adds them to
``parsed_args.hints`` (``--hint``'s dict of lists), from which
``take_action()`` builds ``scheduler_hints``, sent as
``os:scheduler_hints``. ``--hint device_context=...`` values are kept,
come first and are checked too.
"""

from __future__ import annotations

import argparse

from cliff import hooks
from osc_lib import exceptions

from nova_acc_client import device_context
from nova_acc_client import hint

OPTION = '--device-context'
DEST = 'nova_acc_device_contexts'


class ServerCreateDeviceContextHook(hooks.CommandHook):
    """Adds ``--device-context`` to ``openstack server create``."""

    def get_parser(self, parser: argparse.ArgumentParser
                   ) -> argparse.ArgumentParser:
        if any(OPTION in action.option_strings
               for action in parser._actions):
            # nova-acc and nova-acc-client both installed: each registers
            # this hook, and one option is enough (see before()).
            return parser
        parser.add_argument(
            OPTION,
            metavar='<id-or-spec>',
            action='append',
            dest=DEST,
            default=None,
            help=('Device context for the server, sent as the '
                  "'%s' scheduler hint (nova-acc): the UUID of a device "
                  'context object (such as a Cyborg accelerator request), '
                  'profile:NAME (a profile the operator defines) or an '
                  'inline spec such as %r. Repeat to request several '
                  'contexts.' % (hint.HINT,
                                 hint.EXAMPLE)))
        return parser

    def get_epilog(self) -> None:
        return None

    def before(self, parsed_args: argparse.Namespace) -> argparse.Namespace:
        # --hint gives {key: [value, ...]} (KeyValueAppendAction); accept
        # {key: value} too, as older releases gave.
        old = {key: list(vals) if isinstance(vals, (list, tuple)) else [vals]
               for key, vals in (getattr(parsed_args, 'hints', None)
                                 or {}).items()}
        given = [('--hint %s' % hint.HINT, v)
                 for v in old.get(hint.HINT, [])]
        given += [(OPTION, v) for v in getattr(parsed_args, DEST, None) or []]
        if not given:
            return parsed_args
        try:
            values = device_context.check_all(given)
        except device_context.InvalidDeviceContextValue as e:
            raise exceptions.CommandError(str(e)) from None
        # A new dict (``old``): --hint's default ({}) is shared by every
        # parse.
        old[hint.HINT] = values
        parsed_args.hints = old
        # Consumed: a second registration of this hook (both distributions
        # installed) then finds the values in the hints only, once.
        setattr(parsed_args, DEST, None)
        return parsed_args

    def after(self, parsed_args: argparse.Namespace,
              return_code: int) -> int:
        return return_code
