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
"""``nova boot --device-context-id <uuid>`` (and ``--device-context``).

A novaclient extension, registered with::

    [entry_points]
    novaclient.extension =
        nova_acc = nova_acc_client.novaclient_ext

How novaclient uses extensions (``novaclient.shell``, ``.client``,
``.extension``): ``client.discover_extensions()`` loads every module of the
``novaclient.extension`` entry points; the shell then turns each ``do_*``
function of a module into a subcommand, and runs the module's
``__pre_parse_args__()`` before it builds the parser and
``__post_parse_args__(args)`` after parsing, before calling the command.

An extension cannot replace ``boot`` with its own ``do_boot``: the shell
adds one argparse subparser per ``do_*`` function, and argparse (Python
3.11+) refuses a second subparser of the same name ("conflicting
subparser: boot"). So this module has no ``do_*`` functions, only the two
documented hooks:

* ``__pre_parse_args__`` binds the options to ``novaclient.v2.shell.do_boot``
  with ``novaclient.utils.add_arg``, the helper the ``@utils.arg``
  decorator uses (it ignores a second identical binding), so they appear in
  ``nova help boot`` and are parsed like boot's own;
* ``__post_parse_args__`` checks the values and appends them to the parsed
  ``--hint`` pairs (``args.scheduler_hints``), which ``do_boot`` sends as
  ``os:scheduler_hints``; a bad value raises ``CommandError``, printed by
  nova as ``ERROR (CommandError): ...`` with exit status 1, and ``do_boot``
  never runs. (novaclient's shell itself asks the compute endpoint for its
  version document before parsing any subcommand; no other request is
  made.)
"""

from __future__ import annotations

import argparse
import typing as ty

from novaclient import exceptions
from novaclient import utils

from nova_acc_client import device_context
from nova_acc_client import hint

ID_OPTION = '--device-context-id'
SPEC_OPTION = '--device-context'
ID_DEST = 'nova_acc_device_context_ids'
SPEC_DEST = 'nova_acc_device_contexts'
# What _find_actions passes to add_argument; kept identical between calls so
# add_arg's duplicate check holds.
_ARGUMENTS = (
    ((ID_OPTION,), {
        'metavar': '<uuid>',
        'action': 'append',
        'dest': ID_DEST,
        'default': None,
        'help': ('UUID of a device context object (such as a Cyborg '
                 "accelerator request) for the server, sent as the '%s' "
                 'scheduler hint (nova-acc). May be repeated.'
                 % hint.HINT),
    }),
    ((SPEC_OPTION,), {
        'metavar': '<id-or-spec>',
        'action': 'append',
        'dest': SPEC_DEST,
        'default': None,
        'help': ("Device context for the server, sent as the '%s' scheduler "
                 'hint (nova-acc): a device context UUID, profile:NAME or an '
                 'inline spec such as %r. May be repeated.'
                 % (hint.HINT, hint.EXAMPLE)),
    }),
)


def _do_boot() -> ty.Any:
    from novaclient.v2 import shell as v2_shell
    return v2_shell.do_boot


def __pre_parse_args__() -> None:
    do_boot = _do_boot()
    # add_arg inserts at the front; reversed keeps this order in the help.
    for args, kwargs in reversed(_ARGUMENTS):
        utils.add_arg(do_boot, *args, **kwargs)


def __post_parse_args__(args: argparse.Namespace) -> None:
    ids = getattr(args, ID_DEST, None) or []
    specs = getattr(args, SPEC_DEST, None) or []
    pairs = getattr(args, 'scheduler_hints', None)
    if pairs is None:
        return  # not ``nova boot``
    given = [('--hint %s' % hint.HINT, value)
             for key, value in pairs if key == hint.HINT]
    if not (ids or specs or given):
        return
    given += [(ID_OPTION, v) for v in ids] + [(SPEC_OPTION, v) for v in specs]
    try:
        values = device_context.check_all(given)
    except device_context.InvalidDeviceContextValue as e:
        raise exceptions.CommandError(str(e)) from None
    # A new list: --hint's default ([]) is shared by every parse. The
    # device_context pairs go last, in the order checked.
    args.scheduler_hints = (
        [(k, v) for k, v in pairs if k != hint.HINT] +
        [(hint.HINT, v) for v in values])
    # Consumed: with nova-acc and nova-acc-client both installed novaclient
    # calls this twice, and the second call finds the values once, in the
    # hints.
    setattr(args, ID_DEST, None)
    setattr(args, SPEC_DEST, None)
