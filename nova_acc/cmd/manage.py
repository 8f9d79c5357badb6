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
"""nova-acc-manage: the operator's view of a compute host's device ledger.

The device ledger (``nova_acc.compute.ledger``) is kept on the compute host's
own disk so that it needs no service to be up; this command reads and changes
it in place, on the host, like ``nova-manage`` does for the databases:

``nova-acc-manage devices list``
    Every device of every compute node in ``[nova_acc] ledger_dir``: its
    state, who holds it and for which device context, when it was last
    reset and why it is where it is.
``nova-acc-manage devices clear-dirty ADDRESS``
    Put a dirty device (released, but its reset failed or it has none)
    back in service: reset it again and free it, or with ``--force`` free
    it without a reset once the operator has cleaned it by other means.
    nova-compute holds the same lock while it changes the ledger, so this
    is safe while it runs; it offers the device to placement again at its
    next resource update.

It reads nova.conf like the other Nova commands (``--config-file``,
``--config-dir``, default files of the ``nova`` project). Exit codes: 0
done, 1 failed (the message says why), 2 bad arguments.

It is run as root, and the ledger directory belongs to nova-compute's
user: once it has read nova.conf, the command becomes the owner of the
ledger directory (its uid, gid and groups) for everything else, so that no
file that user can put in the directory makes root act on another file.
Only a device reset needs root: ``clear-dirty`` forks nova-acc's privsep
daemon first (root with CAP_DAC_OVERRIDE alone), which resets the device
after the same checks it makes for nova-compute (``nova_acc.compute.privsep``).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from collections.abc import Sequence

from oslo_config import cfg
from oslo_privsep import priv_context
import prettytable

import nova.conf

import nova_acc.conf  # noqa: F401 - registers [nova_acc]
from nova_acc import exception
from nova_acc import request_groups
from nova_acc.compute import ledger
from nova_acc.compute import privsep
from nova_acc.compute import release

CONF = nova.conf.CONF

PROG = 'nova-acc-manage'

CommandFailed = exception.CommandFailed
LIST_COLUMNS = ('Node', 'Device', 'State', 'Holder', 'Device context',
                'Configured by', 'Provider', 'Resource class', 'Last reset',
                'Changed at', 'Reason')


# ---- privileges ------------------------------------------------------------


def reset_in_this_process(address: str, sysfs_root: str) -> bool:
    """A ``release.Resetter`` that resets here, with the daemon's checks.

    ``sysfs_root`` is not used: ``[nova_acc] sysfs_root`` is.
    """
    return privsep.reset_managed_device(address)


def become_ledger_owner(directory: str, resets: bool) -> release.Resetter:
    """As root, run the rest of the command as the ledger directory's owner.

    Everything the command then does in the directory, it does as that
    user (its uid, the directory's gid, the user's groups): a link or file
    the user put there can only lead to what the user may touch anyway.
    Nothing changes when this process is not root, when there is no
    directory, or when root owns it.

    :param resets: the command resets devices: the privsep daemon is
        forked before root is given up and resets them.
    :returns: how the command resets a device from now on.
    :raises CommandFailed: the directory cannot be looked at, or root could
        not be given up.
    """
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return reset_in_this_process
    except OSError as e:
        raise CommandFailed('cannot read the device ledger directory %s: %s'
                            % (directory, e.strerror or e))
    uid, gid = st.st_uid, st.st_gid
    if os.geteuid() != 0 or uid == 0:
        return reset_in_this_process
    resetter: release.Resetter = reset_in_this_process
    if resets:
        try:
            privsep.sys_admin_pctxt.start(method=priv_context.Method.FORK)
        except Exception as e:  # oslo.privsep's and the OS's errors
            raise CommandFailed('cannot start the privsep daemon that resets '
                                'devices: %s' % e)
        resetter = privsep.reset_for_release
    try:
        groups = os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except KeyError:  # a uid without a name: its group alone
        groups = [gid]
    try:
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise CommandFailed('cannot become the owner (uid %d, gid %d) of the '
                            'device ledger directory %s: %s'
                            % (uid, gid, directory, e))
    if os.getresuid() != (uid, uid, uid) or \
            os.getresgid() != (gid, gid, gid):
        raise CommandFailed('could not give up root for the owner (uid %d, '
                            'gid %d) of the device ledger directory %s'
                            % (uid, gid, directory))
    return resetter


# ---- ledgers ---------------------------------------------------------------


def ledger_nodes(directory: str) -> list[str]:
    """The names of the nodes that have a ledger in ``directory``."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise CommandFailed('cannot read the device ledger directory %s: %s'
                            % (directory, e.strerror or e))
    # Skip the ledger's temporary files (".<node>.*.tmp"), the corrupt
    # ledgers it moved aside ("<node>.json.corrupt-<time>") and its locks.
    return sorted(name[:-len('.json')] for name in names
                  if name.endswith('.json') and not name.startswith('.')
                  and '.corrupt-' not in name)


def _no_ledger(directory: str) -> CommandFailed:
    return CommandFailed(
        'no device ledger in %s. nova-compute writes one, <node>.json, at '
        'its first resource update with nova-acc\'s compute driver; check '
        'that [nova_acc] ledger_dir (or state_path) here is the one '
        'nova-compute uses.' % directory)


def select_nodes(directory: str, node: str | None) -> list[str]:
    """The node ``node`` names, or all nodes; at least one or an error."""
    nodes = ledger_nodes(directory)
    if not nodes:
        raise _no_ledger(directory)
    if node is None:
        return nodes
    if node not in nodes:
        raise CommandFailed(
            'no device ledger of node %s in %s (nodes with a ledger: %s)'
            % (node, directory, ', '.join(nodes)))
    return [node]


def read_ledger(book: ledger.DeviceLedger) -> dict[str, ledger.DeviceRecord]:
    """The records of ``book``, or a CommandFailed naming the bad file."""
    try:
        # records() logs a bad file and returns nothing, which is right for
        # nova-compute; the operator must see the error instead.
        return book.read()
    except exception.LedgerError as e:
        raise CommandFailed(str(e))


# ---- devices list ----------------------------------------------------------


def _holder(rec: ledger.DeviceRecord) -> str | None:
    if rec.instance_uuid:
        return rec.instance_uuid
    if rec.guest:
        return 'guest %s' % rec.guest
    return None


def holder_context(rec: ledger.DeviceRecord) -> str | None:
    """The device context the holder has the device for.

    The ledger records the request group a held device serves
    (``requester_id``); a group of a device context with an ID (of
    nova-acc-api, or a Cyborg ARQ) carries that ID, which is what an
    operator looks up with ``openstack device context show``. A context
    given inline or as ``profile:NAME`` has no ID: ``spec #N`` is the
    server's N-th ``device_context`` value (from 0). A backend-owned device
    (``context_id``, Cyborg) names its context directly.
    """
    if rec.context_id:
        return rec.context_id
    decoded = request_groups.RequesterId.decode(rec.requester_id)
    if decoded is None:
        # Not one of nova-acc's groups: its name as the claim recorded it
        # (None when nobody holds the device, or a guest Nova does not know).
        return rec.requester_id
    if decoded.context_id:
        return decoded.context_id
    return 'spec #%d' % decoded.context_index


def devices_list(directory: str, node: str | None, as_json: bool) -> int:
    rows = []
    failed = False
    for name in select_nodes(directory, node):
        try:
            records = read_ledger(ledger.DeviceLedger(name, directory))
        except CommandFailed as e:
            # Show the other nodes' devices all the same.
            print('error: %s' % e, file=sys.stderr)
            failed = True
            continue
        rows.extend((name, rec) for _, rec in sorted(records.items()))
    if failed and not rows:
        return 1
    if as_json:
        print(json.dumps([dict(node=name, device_context=holder_context(rec),
                               **rec.to_dict())
                          for name, rec in rows], indent=2))
    else:
        table = prettytable.PrettyTable(LIST_COLUMNS)
        table.align = 'l'
        for name, rec in rows:
            device = rec.address if not rec.is_mdev else (
                '%s (mdev %s on %s)' % (rec.address, rec.mdev_type,
                                        rec.parent))
            table.add_row([value or '-' for value in (
                name, device, rec.state, _holder(rec), holder_context(rec),
                rec.configured_by, rec.rp_uuid,
                rec.resource_class, rec.last_reset, rec.changed_at,
                rec.reason)])
        print(table)
    return 1 if failed else 0


# ---- devices clear-dirty ---------------------------------------------------


def devices_clear_dirty(directory: str, node: str | None, address: str,
                        force: bool,
                        resetter: release.Resetter = reset_in_this_process
                        ) -> int:
    nodes = select_nodes(directory, node)
    if len(nodes) > 1:
        raise CommandFailed(
            'there are device ledgers of several nodes in %s: %s; say which '
            'one with --node' % (directory, ', '.join(nodes)))
    book = ledger.DeviceLedger(nodes[0], directory)
    # A missing or bad ledger is an error here: only nova-compute may
    # create one or rebuild it (which resets every device).
    if not book.exists():
        raise CommandFailed('node %s has no device ledger in %s' % (
            book.nodename, directory))
    address = address.lower()
    try:
        with book.transaction(recover=False) as records:
            rec = records.get(address)
            if rec is None:
                raise CommandFailed('no device %s in the ledger of node %s '
                                    '(%s)' % (address, book.nodename,
                                              book.path))
            was_dirty = rec.state == ledger.DIRTY
            # The reset needs root: see become_ledger_owner.
            freed, why = release.clear_dirty(rec, CONF.nova_acc.sysfs_root,
                                             force=force, resetter=resetter)
            if freed and rec.is_mdev:
                del records[address]  # mdevs exist only while held
    except exception.LedgerError as e:
        raise CommandFailed(str(e))
    if not freed:
        if not was_dirty or rec.is_mdev:
            raise CommandFailed(why)
        raise CommandFailed(
            'device %s was not reset: %s. It stays dirty and out of service. '
            'Only if it was cleaned by other means (a power cycle, a '
            'reflash), free it without a reset with --force.'
            % (address, why))
    print('device %s %s; nova-compute offers it to placement at its next '
          'resource update' % (address, 'freed without a reset' if force
                               else 'reset and freed'))
    return 0


# ---- command line ----------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Show and clear the device ledger of nova-acc on this '
                    'compute host.')
    parser.add_argument(
        '--config-file', action='append', default=[], metavar='PATH',
        help='Path to a config file to use. Multiple config files can be '
             'specified, with values in later files taking precedence. '
             'Defaults to the nova project\'s files (/etc/nova/nova.conf, '
             '...) that exist.')
    parser.add_argument(
        '--config-dir', action='append', default=[], metavar='DIR',
        help='Path to a config directory to pull *.conf files from, read '
             'after the config files.')
    categories = parser.add_subparsers(dest='category', metavar='CATEGORY',
                                       required=True)
    devices = categories.add_parser(
        'devices', help='the devices in the ledger of compute nodes')
    actions = devices.add_subparsers(dest='action', metavar='ACTION',
                                     required=True)

    show = actions.add_parser(
        'list', help='list the devices and their state, holder, last reset')
    show.add_argument('--node', help='only this compute node (default: all '
                                     'nodes with a ledger in ledger_dir)')
    show.add_argument('--json', action='store_true',
                      help='print the records as a JSON list')
    show.set_defaults(resets=False, run=lambda args, directory, _: (
        devices_list(directory, args.node, args.json)))

    clear = actions.add_parser(
        'clear-dirty',
        help='reset a dirty device again and put it back in service')
    clear.add_argument('address', metavar='ADDRESS',
                       help='PCI address of the device (0000:81:00.0)')
    clear.add_argument('--node', help='compute node of the device (needed '
                                      'when ledger_dir holds several)')
    clear.add_argument('--force', action='store_true',
                       help='free the device without a reset: only when it '
                            'was cleaned by other means (power cycle, '
                            'reflash)')
    clear.set_defaults(
        resets=True, run=lambda args, directory, resetter: (
            devices_clear_dirty(directory, args.node, args.address,
                                args.force, resetter)))
    return parser


def parse_config(config_files: Sequence[str],
                 config_dirs: Sequence[str]) -> None:
    """Load nova.conf into ``nova.conf.CONF`` as the Nova commands do."""
    oslo_args = []
    for path in config_files:
        oslo_args += ['--config-file', path]
    for path in config_dirs:
        oslo_args += ['--config-dir', path]
    # default_config_files=None: the nova project's files that exist;
    # --config-file replaces them.
    CONF(oslo_args, project='nova', prog=PROG, default_config_files=None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # argparse: --help, or a usage error
        return e.code if isinstance(e.code, int) else 2
    try:
        parse_config(args.config_file, args.config_dir)
    except (cfg.ConfigFilesNotFoundError, cfg.ConfigDirNotFoundError) as e:
        print('%s: error: %s' % (PROG, e), file=sys.stderr)
        return 2
    except cfg.Error as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    try:
        directory = ledger.default_dir()
        resetter = become_ledger_owner(
            directory, resets=args.resets and not getattr(args, 'force',
                                                          False))
        return args.run(args, directory, resetter)
    except (CommandFailed, exception.LedgerError, cfg.Error) as e:
        print('error: %s' % e, file=sys.stderr)
    except OSError as e:
        print('error: %s' % e, file=sys.stderr)
    finally:
        privsep.sys_admin_pctxt.stop()
    return 1


if __name__ == '__main__':
    sys.exit(main())
