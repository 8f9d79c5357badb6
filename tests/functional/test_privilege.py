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
"""Root and nova-compute's user on one host, as two real uids.

Nothing here is mocked: the tests run as root and fork children that give
up root for ``nobody`` (uid 65534), who plays nova-compute's user (or
whoever took it over). They check that root's writes of the device ledger
in that user's directory act on no other file, and that the real privsep
daemon, started by root from its own configuration and called by
``nobody``, resets the devices nova-acc manages there and nothing else.
Skipped when not run as root.
"""

import json
import os
import stat
import sys
import time
import traceback

import fixtures
from oslo_privsep import priv_context
from oslotest import base

from nova_acc import conf as nova_acc_conf
from nova_acc import exception
from nova_acc.compute import ledger
from nova_acc.compute import privsep
from tests.unit.os_acc import fake_sysfs

NOBODY = 65534
NODE = 'compute1'
SERVER = '11111111-1111-4111-8111-111111111111'
OTHER = '22222222-2222-4222-8222-222222222222'
A = '0000:81:00.0'
B = '0000:81:01.0'
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def become_nobody():
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def in_child(func, *args, as_nobody=True):
    """Run ``func(*args)`` in a forked child; return what it returned.

    The child's stdout and stderr go nowhere (the parent's stdout is the
    test runner's stream). An exception in the child fails the caller with
    the child's traceback.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            if as_nobody:
                become_nobody()
            result = {'value': func(*args)}
        except BaseException:
            result = {'error': traceback.format_exc()}
        try:
            with os.fdopen(write_end, 'w') as f:
                json.dump(result, f)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        data = f.read()
    os.waitpid(pid, 0)
    result = json.loads(data) if data else {'error': 'the child died'}
    if 'error' in result:
        raise AssertionError('in the child: %s' % result['error'])
    return result['value']


def want(address):
    return {'address': address, 'rp_uuid': 'rp-' + address,
            'resource_class': 'FPGA', 'traits': []}


def claim_in(directory, instance, address):
    with ledger.DeviceLedger(NODE, directory).transaction() as records:
        ledger.claim(records, instance, [want(address)])


def holders(directory):
    return {a: r.instance_uuid
            for a, r in ledger.DeviceLedger(NODE, directory).read().items()}


class TwoUidsTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest('switches between root and nobody: needs root')
        self.base = self.useFixture(fixtures.TempDir()).path
        # The temporary directories are root's alone (0700): nobody must
        # be able to reach its own directory in them.
        path = self.base
        while not os.stat(path).st_mode & 0o001:
            os.chmod(path, 0o755)
            path = os.path.dirname(path)
        # A directory of root's, and in it a file only root may read.
        self.root_dir = os.path.join(self.base, 'etc')
        os.mkdir(self.root_dir, 0o755)
        self.canary = os.path.join(self.root_dir, 'shadow')
        with open(self.canary, 'w') as f:
            f.write('root:secret\n')
        os.chmod(self.canary, 0o600)

    def canary_state(self):
        st = os.lstat(self.canary)
        with open(self.canary) as f:
            return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), f.read()

    def nobodys_dir(self, name):
        path = os.path.join(self.base, name)
        os.mkdir(path, 0o750)
        os.chown(path, NOBODY, NOBODY)
        return path


class RootWritesNobodysLedgerTest(TwoUidsTestCase):
    """nova-acc-manage (root) changing the ledger nova-compute's user owns.
    """

    def setUp(self):
        super().setUp()
        self.ledger_dir = self.nobodys_dir('ledger')
        # nova-compute's user made the ledger.
        in_child(claim_in, self.ledger_dir, SERVER, A)
        self.unchanged = self.canary_state()

    def test_a_link_as_the_lock_file_makes_root_create_nothing(self):
        created = os.path.join(self.root_dir, 'created-by-root')

        def plant():
            lock = os.path.join(self.ledger_dir, 'nova-acc-ledger-' + NODE)
            os.unlink(lock)
            os.symlink(created, lock)

        in_child(plant)

        try:
            claim_in(self.ledger_dir, OTHER, B)
        except exception.LedgerError as e:
            refused = str(e)
        else:
            refused = None
        self.assertFalse(os.path.lexists(created))
        self.assertIn('symbolic link', refused or 'root followed the link')
        self.assertEqual({A: SERVER}, holders(self.ledger_dir))

    def test_swapped_temporary_files_give_root_nothing(self):
        # A file, not a pipe: under eventlet (Nova's tests patch it in) a
        # non-blocking read of a pipe waits.
        stop = os.path.join(self.base, 'stop')
        swaps_read, swaps_write = os.pipe()
        attacker = os.fork()
        if attacker == 0:  # pragma: no cover - the child
            try:
                os.close(swaps_read)
                become_nobody()
                swaps = 0
                link = os.path.join(self.ledger_dir, 'swap')
                while not os.path.exists(stop):
                    for name in os.listdir(self.ledger_dir):
                        path = os.path.join(self.ledger_dir, name)
                        if not (name.startswith('.%s.' % NODE) and
                                name.endswith('.tmp')) or \
                                os.path.islink(path):
                            continue
                        try:
                            os.symlink(self.canary, link)
                            os.rename(link, path)
                            swaps += 1
                        except OSError:
                            pass
                os.write(swaps_write, str(swaps).encode())
            except BaseException:
                os.write(swaps_write, traceback.format_exc().encode())
            finally:
                os._exit(0)
        os.close(swaps_write)
        # Root's fsync of the new file is slowed down, so that the
        # attacker, polling the directory, gets in between for sure.
        real_fsync = os.fsync

        def slow_fsync(fd):
            time.sleep(0.05)
            return real_fsync(fd)

        try:
            with fixtures.MonkeyPatch('os.fsync', slow_fsync):
                for i in range(8):
                    try:
                        claim_in(self.ledger_dir, OTHER, '0000:82:%02x.0' % i)
                    except (exception.LedgerError, OSError):
                        pass  # the attacker may spoil a write, not more
        finally:
            open(stop, 'w').close()
            with os.fdopen(swaps_read) as f:
                swaps = f.read()
            os.waitpid(attacker, 0)

        self.assertTrue(swaps.isdigit(), 'the attacker failed: %s' % swaps)
        self.assertGreater(int(swaps), 0, 'the attacker never got in: this '
                           'test tests nothing')
        self.assertEqual(self.unchanged, self.canary_state())
        # Root's writes still work and the ledger stays nobody's, 0640.
        claim_in(self.ledger_dir, OTHER, B)
        st = os.lstat(os.path.join(self.ledger_dir, NODE + '.json'))
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual((NOBODY, NOBODY, 0o640),
                         (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
        seen_by_nobody = in_child(holders, self.ledger_dir)
        self.assertEqual(SERVER, seen_by_nobody[A])
        self.assertEqual(OTHER, seen_by_nobody[B])
        self.assertEqual(self.unchanged, self.canary_state())


MANAGED = '0000:81:00.0'
UNMANAGED = '0000:81:00.1'
FPGA_SPEC = {'vendor_id': '1172', 'product_id': '5050'}


class PrivsepDaemonTest(TwoUidsTestCase):
    """The real daemon: started by root (as rootwrap does) with root's own
    nova.conf, called from ``nobody``."""

    def setUp(self):
        super().setUp()
        # The host's sysfs: attributes only root may write, as on a host.
        self.sysfs_root = os.path.join(self.base, 'sys')
        sysfs = fake_sysfs.FakeSysfs(self.sysfs_root)
        sysfs.add_device(MANAGED, vendor='0x1172', device='0x5050',
                         reset=True)
        sysfs.add_device(UNMANAGED, reset=True)  # 8086:1572, not ours
        self.reset_files = {a: os.path.join(sysfs.device_dir(a), 'reset')
                            for a in (MANAGED, UNMANAGED)}
        for path in self.reset_files.values():
            os.chmod(path, stat.S_IWUSR)
        # root's nova.conf, which the daemon reads.
        self.config_file = os.path.join(self.root_dir, 'nova.conf')
        with open(self.config_file, 'w') as f:
            f.write('[nova_acc]\nsysfs_root = %s\ndevice_spec = %s\n'
                    % (self.sysfs_root, json.dumps(FPGA_SPEC)))
        # What the caller controls: a directory next to root's files, in
        # which it builds a sysfs of its own whose device leads to root's
        # directory with a file named "reset" (the canary).
        os.rename(self.canary, os.path.join(self.root_dir, 'reset'))
        self.canary = os.path.join(self.root_dir, 'reset')
        self.unchanged = self.canary_state()
        self.attack = self.nobodys_dir('bus')

    def resets(self, address):
        with open(self.reset_files[address]) as f:
            return f.read().count('1')

    def run_client(self):
        """Start the daemon as root, then call it as nobody."""
        os.environ['PYTHONPATH'] = REPO  # the daemon imports this tree
        conf = nova_acc_conf.CONF
        conf.set_override(
            'helper_command', '%s %s --config-file %s' % (
                sys.executable,
                os.path.join(os.path.dirname(sys.executable),
                             'privsep-helper'),
                self.config_file),
            group='nova_acc_sys_admin')
        # The caller's own configuration says something else entirely:
        # the daemon must not care.
        conf.set_override('sysfs_root', self.base, group='nova_acc')
        conf.set_override('device_spec', ['{"address": "*"}'],
                          group='nova_acc')
        privsep.sys_admin_pctxt.start(method=priv_context.Method.ROOTWRAP)
        become_nobody()
        results = {'uid': os.getresuid()}
        try:
            with open(self.reset_files[MANAGED], 'a') as f:
                f.write('1')
            results['direct'] = 'written'
        except PermissionError as e:
            results['direct'] = str(e)
        # The caller's sysfs: <base>/bus/pci/devices/<MANAGED> -> root's.
        os.makedirs(os.path.join(self.attack, 'pci', 'devices'))
        os.symlink('../../../etc', os.path.join(self.attack, 'pci',
                                                'devices', MANAGED))
        calls = {
            'their_root': lambda: privsep.reset_device(MANAGED, self.base),
            'managed': lambda: privsep.reset_device(MANAGED),
            'unmanaged': lambda: privsep.reset_device(UNMANAGED),
            'their_path': lambda: privsep.reset_device('../../etc/reset'),
            # The release's resetter takes a root too: not passed on.
            'for_release': lambda: privsep.reset_for_release(MANAGED,
                                                             self.base),
        }
        for name, call in calls.items():
            try:
                results[name] = call()
            except Exception as e:
                results[name] = '%s: %s' % (type(e).__name__, e)
        privsep.sys_admin_pctxt.stop()
        return results

    def test_resets_what_its_own_configuration_manages_and_nothing_else(
            self):
        results = in_child(self.run_client, as_nobody=False)

        self.assertEqual(self.unchanged, self.canary_state())
        self.assertEqual([NOBODY] * 3, results['uid'])
        # The privilege matters: the caller cannot reset by itself.
        self.assertIn('Permission denied', results['direct'])
        self.assertIs(True, results['managed'])
        self.assertIs(True, results['for_release'])
        self.assertEqual(2, self.resets(MANAGED))
        self.assertIn('DeviceNotManaged', results['unmanaged'])
        self.assertIn(UNMANAGED, results['unmanaged'])
        self.assertEqual(0, self.resets(UNMANAGED))
        self.assertIn('TypeError', results['their_root'])
        self.assertIn('InvalidDeviceAddress', results['their_path'])
        self.assertEqual(self.unchanged, self.canary_state())
