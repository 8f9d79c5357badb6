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
"""nova-acc-manage on real ledger files, a fake sysfs and a real nova.conf."""

import contextlib
import io
import json
import os
import stat
import traceback
import unittest

import fixtures
from oslotest import base

from nova_acc.cmd import manage
from nova_acc.compute import ledger
from nova_acc import request_groups
from tests.unit.os_acc import fake_sysfs

SERVER = '8c1e0b52-3f4a-4d47-9b1e-6a0c2f7d9e11'
GUEST = 'd2a4f7b9-6c1e-4e3a-8f5d-9b0c1a2e3f44'
RP = 'c5e1a6c2-70a4-4bb8-9a39-0e9a1f1b5d2e'

ATTACHED = '0000:81:00.0'
DIRTY = '0000:81:00.1'          # has a reset file
DIRTY_NO_RESET = '0000:82:00.0'  # offers no reset method
FOREIGN = '0000:3b:00.0'
UNMANAGED = '0000:c1:00.0'      # a GPU no device_spec entry selects
#: What [nova_acc] device_spec selects: the fake sysfs' default IDs.
DEVICE_SPEC = '{"vendor_id": "8086", "product_id": "1572"}'
NOBODY = 65534


def attached(address, configurator=None):
    rec = ledger.DeviceRecord(address=address)
    rec.claim(SERVER, RP, 'FPGA', ['CUSTOM_GZIP'], None)
    if configurator:
        rec.configuring(configurator)
    rec.attach()
    return rec


def dirty(address):
    rec = ledger.DeviceRecord(address=address)
    rec.dirty('reset failed: [Errno 5] Input/output error after %s left'
              % SERVER)
    return rec


def foreign(address):
    rec = ledger.DeviceRecord(address=address)
    rec.held_by_guest(GUEST, 'used by a guest Nova does not know')
    return rec


class ManageTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        # main() parses nova.conf into the global CONF: leave it unparsed
        # for the other tests of this process.
        self.addCleanup(manage.CONF.reset)
        self.root = self.useFixture(fixtures.TempDir()).path
        self.ledger_dir = os.path.join(self.root, 'ledger')
        self.sysfs_root = os.path.join(self.root, 'sys')
        self.sysfs = fake_sysfs.FakeSysfs(self.sysfs_root)
        for address in (ATTACHED, DIRTY, FOREIGN):
            self.sysfs.add_device(address, reset=True)
        self.sysfs.add_device(DIRTY_NO_RESET)
        self.sysfs.add_device(UNMANAGED, vendor='0x10de', device='0x1eb8',
                              reset=True)
        self.config_file = os.path.join(self.root, 'nova.conf')
        with open(self.config_file, 'w') as f:
            f.write('[nova_acc]\nledger_dir = %s\nsysfs_root = %s\n'
                    'device_spec = %s\n' % (
                        self.ledger_dir, self.sysfs_root, DEVICE_SPEC))

    def add_devices(self, node, *records):
        with ledger.DeviceLedger(node, self.ledger_dir).transaction() as recs:
            for rec in records:
                recs[rec.address] = rec

    def records(self, node):
        return ledger.DeviceLedger(node, self.ledger_dir)._read()

    def resets(self, address):
        with open(os.path.join(self.sysfs.device_dir(address),
                               'reset')) as f:
            return f.read().count('1')

    def run_manage(self, *args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = manage.main(['--config-file', self.config_file, *args])
        return rc, out.getvalue(), err.getvalue()

    def run_manage_in_child(self, *args):
        """``run_manage`` in a forked child, for runs that give up root.

        :returns: (exit code, stdout, stderr, the child's (real, effective,
            saved) uid once the command returned).
        """
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(read_end)
                rc, out, err = self.run_manage(*args)
            except BaseException:
                rc, out, err = -1, '', traceback.format_exc()
            try:
                with os.fdopen(write_end, 'w') as f:
                    json.dump([rc, out, err, os.getresuid()], f)
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as f:
            result = f.read()
        os.waitpid(pid, 0)
        rc, out, err, resuid = json.loads(result)
        return rc, out, err, tuple(resuid)

    def give_ledger_to_nobody(self):
        """The ledger directory and its files become nobody's, as they are
        nova-compute's user's on a real host."""
        # The test's temporary directories are root's alone (0700); the
        # ledger's owner must be able to reach them.
        path = self.root
        while not os.stat(path).st_mode & 0o001:
            os.chmod(path, 0o755)
            path = os.path.dirname(path)
        for path in [self.ledger_dir] + [
                os.path.join(self.ledger_dir, n)
                for n in os.listdir(self.ledger_dir)]:
            os.chown(path, NOBODY, NOBODY)

    def two_nodes(self):
        self.add_devices('compute-1', attached(ATTACHED), dirty(DIRTY),
                         dirty(DIRTY_NO_RESET))
        self.add_devices('compute-2', foreign(FOREIGN))


class DevicesListTest(ManageTestCase):

    def test_table_of_all_nodes(self):
        self.two_nodes()
        rc, out, err = self.run_manage('devices', 'list')
        self.assertEqual((0, ''), (rc, err))
        lines = out.splitlines()
        for column in manage.LIST_COLUMNS:
            self.assertIn(column, lines[1])
        cells = [[c.strip() for c in line.split('|')[1:-1]]
                 for line in lines[3:-1]]
        rows = {row[1]: row for row in cells}
        self.assertEqual([ATTACHED, DIRTY, DIRTY_NO_RESET, FOREIGN],
                         list(rows))
        self.assertEqual(['compute-1', ATTACHED, 'attached', SERVER, '-',
                          '-', RP, 'FPGA', '-'], rows[ATTACHED][:9])
        self.assertEqual(['compute-1', 'dirty', '-', '-'],
                         [rows[DIRTY][i] for i in (0, 2, 3, 4)])
        self.assertIn('Input/output error', rows[DIRTY][10])
        self.assertEqual(['compute-2', 'foreign', 'guest %s' % GUEST, '-'],
                         [rows[FOREIGN][i] for i in (0, 2, 3, 4)])
        self.assertEqual('used by a guest Nova does not know',
                         rows[FOREIGN][10])

    def test_table_names_the_configurator_of_a_configured_device(self):
        self.add_devices('compute-1', attached(ATTACHED, 'fpga_bitstream'))
        rc, out, err = self.run_manage('devices', 'list')
        self.assertEqual((0, ''), (rc, err))
        header, row = [[c.strip() for c in line.split('|')[1:-1]]
                       for line in (out.splitlines()[1],
                                    out.splitlines()[3])]
        self.assertEqual('fpga_bitstream',
                         dict(zip(header, row))['Configured by'])

    def test_json(self):
        self.two_nodes()
        rc, out, err = self.run_manage('devices', 'list', '--json')
        self.assertEqual((0, ''), (rc, err))
        listed = json.loads(out)
        self.assertEqual(
            [('compute-1', ATTACHED), ('compute-1', DIRTY),
             ('compute-1', DIRTY_NO_RESET), ('compute-2', FOREIGN)],
            [(d['node'], d['address']) for d in listed])
        expected = dict(attached(ATTACHED).to_dict(), node='compute-1',
                        device_context=None)
        self.assertEqual(set(expected), set(listed[0]))
        for key in ('state', 'instance_uuid', 'rp_uuid', 'resource_class',
                    'traits', 'guest', 'context_id', 'last_reset'):
            self.assertEqual(expected[key], listed[0][key], key)
        self.assertEqual(GUEST, listed[3]['guest'])

    def test_one_node(self):
        self.two_nodes()
        rc, out, err = self.run_manage('devices', 'list', '--node',
                                       'compute-2', '--json')
        self.assertEqual((0, ''), (rc, err))
        self.assertEqual([FOREIGN], [d['address'] for d in json.loads(out)])

    def test_unknown_node(self):
        self.two_nodes()
        rc, out, err = self.run_manage('devices', 'list', '--node', 'nope')
        self.assertEqual((1, ''), (rc, out))
        self.assertIn('no device ledger of node nope', err)
        self.assertIn('compute-1, compute-2', err)

    def test_no_ledger(self):
        rc, out, err = self.run_manage('devices', 'list')
        self.assertEqual((1, ''), (rc, out))
        self.assertIn('no device ledger in %s' % self.ledger_dir, err)
        self.assertIn('first resource update', err)
        self.assertNotIn('Traceback', err)

    def test_ignores_temporary_corrupt_and_lock_files(self):
        self.add_devices('compute-1', dirty(DIRTY))
        for name in ('.compute-2.abc.tmp', 'compute-3.json.corrupt-x',
                     '.hidden.json'):
            with open(os.path.join(self.ledger_dir, name), 'w') as f:
                f.write('{')
        rc, out, err = self.run_manage('devices', 'list', '--json')
        self.assertEqual((0, ''), (rc, err))
        self.assertEqual(['compute-1'], [d['node'] for d in json.loads(out)])

    def test_unreadable_ledger_named_others_listed(self):
        self.add_devices('compute-1', dirty(DIRTY))
        bad = os.path.join(self.ledger_dir, 'compute-2.json')
        with open(bad, 'w') as f:
            f.write('{"version": 1, "devices": {')
        rc, out, err = self.run_manage('devices', 'list', '--json')
        self.assertEqual(1, rc)
        self.assertIn('device ledger %s is corrupt' % bad, err)
        self.assertNotIn('Traceback', err)
        self.assertEqual([DIRTY], [d['address'] for d in json.loads(out)])


CONTEXT = '5b0f3c0e-8d7a-4c55-9f0e-2a6b1d3c4e5f'
ARQ = '0e4c2a1b-7f6d-4e3c-8b2a-1d0f9e8c7b6a'
BY_ID = '0000:83:00.0'
INLINE = '0000:83:00.1'
ARQ_DEVICE = '0000:83:00.2'
OLD_CLAIM = '0000:83:00.3'


def held_for(address, requester_id, context_id=None):
    rec = ledger.DeviceRecord(address=address)
    rec.claim(SERVER, RP, 'FPGA', [], context_id, requester_id)
    return rec


class DevicesListContextTest(ManageTestCase):
    """Which device context holds which device."""

    def setUp(self):
        super().setUp()
        self.add_devices(
            'compute-1',
            # The second group of a device context of nova-acc-api.
            held_for(BY_ID, request_groups.RequesterId(
                0, 1, CONTEXT).encode()),
            # The server's second device_context value: an inline spec.
            held_for(INLINE, request_groups.RequesterId(1, 0).encode()),
            # A Cyborg ARQ's device: its backend owns it.
            held_for(ARQ_DEVICE, request_groups.RequesterId(
                2, 0, ARQ).encode(), context_id=ARQ),
            # A claim recorded without a group (a ledger from before
            # requester IDs were kept).
            held_for(OLD_CLAIM, None),
            dirty(DIRTY))

    def test_table(self):
        rc, out, err = self.run_manage('devices', 'list')
        self.assertEqual((0, ''), (rc, err))
        lines = out.splitlines()
        self.assertEqual('Device context',
                         lines[1].split('|')[5].strip())
        cells = [[c.strip() for c in line.split('|')[1:-1]]
                 for line in lines[3:-1]]
        self.assertEqual(
            {BY_ID: (SERVER, CONTEXT), INLINE: (SERVER, 'spec #1'),
             ARQ_DEVICE: (SERVER, ARQ), OLD_CLAIM: (SERVER, '-'),
             DIRTY: ('-', '-')},
            {row[1]: (row[3], row[4]) for row in cells})

    def test_json(self):
        rc, out, err = self.run_manage('devices', 'list', '--json')
        self.assertEqual((0, ''), (rc, err))
        listed = {d['address']: d for d in json.loads(out)}
        self.assertEqual(
            {BY_ID: CONTEXT, INLINE: 'spec #1', ARQ_DEVICE: ARQ,
             OLD_CLAIM: None, DIRTY: None},
            {address: d['device_context'] for address, d in listed.items()})
        # The ledger's own fields are there as they were.
        self.assertEqual((None, ARQ), (listed[BY_ID]['context_id'],
                                       listed[ARQ_DEVICE]['context_id']))


class DevicesClearDirtyTest(ManageTestCase):

    def test_reset_and_free(self):
        self.add_devices('compute-1', attached(ATTACHED), dirty(DIRTY))
        rc, out, err = self.run_manage('devices', 'clear-dirty', DIRTY)
        self.assertEqual((0, ''), (rc, err))
        self.assertIn('device %s reset and freed' % DIRTY, out)
        self.assertIn('next resource update', out)
        self.assertEqual(1, self.resets(DIRTY))
        rec = self.records('compute-1')[DIRTY]
        self.assertEqual(ledger.FREE, rec.state)
        self.assertIsNotNone(rec.last_reset)
        # The other device is untouched.
        self.assertEqual(0, self.resets(ATTACHED))
        self.assertEqual(ledger.ATTACHED,
                         self.records('compute-1')[ATTACHED].state)

    def test_address_is_case_insensitive(self):
        address = '0000:af:00.0'
        self.sysfs.add_device(address, reset=True)
        self.add_devices('compute-1', dirty(address))
        rc, out, err = self.run_manage('devices', 'clear-dirty',
                                       address.upper())
        self.assertEqual((0, ''), (rc, err))
        self.assertEqual(1, self.resets(address))

    def test_no_reset_method_stays_dirty(self):
        self.add_devices('compute-1', dirty(DIRTY_NO_RESET))
        rc, out, err = self.run_manage('devices', 'clear-dirty',
                                       DIRTY_NO_RESET)
        self.assertEqual((1, ''), (rc, out))
        self.assertIn('device %s was not reset: the device offers no reset '
                      'method' % DIRTY_NO_RESET, err)
        self.assertIn('--force', err)
        self.assertNotIn('Traceback', err)
        rec = self.records('compute-1')[DIRTY_NO_RESET]
        self.assertEqual(ledger.DIRTY, rec.state)
        self.assertIn('no reset method', rec.reason)

    def test_force_frees_without_reset(self):
        self.add_devices('compute-1', dirty(DIRTY))
        rc, out, err = self.run_manage('devices', 'clear-dirty', DIRTY,
                                       '--force')
        self.assertEqual((0, ''), (rc, err))
        self.assertIn('device %s freed without a reset' % DIRTY, out)
        self.assertEqual(0, self.resets(DIRTY))
        rec = self.records('compute-1')[DIRTY]
        self.assertEqual(ledger.FREE, rec.state)
        self.assertIsNone(rec.last_reset)

    def test_not_dirty_refused(self):
        self.add_devices('compute-1', attached(ATTACHED))
        before = self.records('compute-1')
        for args in ((), ('--force',)):
            rc, out, err = self.run_manage('devices', 'clear-dirty',
                                           ATTACHED, *args)
            self.assertEqual((1, ''), (rc, out))
            self.assertIn('device %s is attached, not dirty' % ATTACHED, err)
        self.assertEqual(0, self.resets(ATTACHED))
        self.assertEqual(before, self.records('compute-1'))

    def test_unknown_device(self):
        self.add_devices('compute-1', dirty(DIRTY))
        rc, out, err = self.run_manage('devices', 'clear-dirty',
                                       '0000:99:00.0')
        self.assertEqual((1, ''), (rc, out))
        self.assertIn('no device 0000:99:00.0 in the ledger of node '
                      'compute-1', err)

    def test_several_nodes_need_node(self):
        self.two_nodes()
        rc, out, err = self.run_manage('devices', 'clear-dirty', DIRTY)
        self.assertEqual((1, ''), (rc, out))
        self.assertIn('compute-1, compute-2', err)
        self.assertIn('--node', err)
        self.assertEqual(0, self.resets(DIRTY))
        self.assertEqual(ledger.DIRTY, self.records('compute-1')[DIRTY].state)

        rc, out, err = self.run_manage('devices', 'clear-dirty', DIRTY,
                                       '--node', 'compute-1')
        self.assertEqual((0, ''), (rc, err))
        self.assertEqual(1, self.resets(DIRTY))

    def test_unknown_node_creates_no_ledger(self):
        self.add_devices('compute-1', dirty(DIRTY))
        rc, out, err = self.run_manage('devices', 'clear-dirty', DIRTY,
                                       '--node', 'compute-9')
        self.assertEqual(1, rc)
        self.assertIn('no device ledger of node compute-9', err)
        self.assertFalse(os.path.exists(
            os.path.join(self.ledger_dir, 'compute-9.json')))

    def test_no_ledger(self):
        rc, out, err = self.run_manage('devices', 'clear-dirty', DIRTY)
        self.assertEqual(1, rc)
        self.assertIn('no device ledger in %s' % self.ledger_dir, err)
        self.assertFalse(os.path.exists(self.ledger_dir))

    def test_bad_ledger_left_for_nova_compute(self):
        os.makedirs(self.ledger_dir)
        bad = os.path.join(self.ledger_dir, 'compute-1.json')
        with open(bad, 'w') as f:
            f.write('[]')
        rc, out, err = self.run_manage('devices', 'clear-dirty', DIRTY)
        self.assertEqual(1, rc)
        self.assertIn('device ledger %s is not a version 1 ledger' % bad, err)
        # Not moved aside: recovering it is nova-compute's decision.
        self.assertEqual(['compute-1.json'], [
            n for n in os.listdir(self.ledger_dir) if 'json' in n])
        with open(bad) as f:
            self.assertEqual('[]', f.read())

    def test_device_no_device_spec_selects_is_not_reset(self):
        self.add_devices('compute-1', dirty(UNMANAGED))
        rc, out, err = self.run_manage('devices', 'clear-dirty', UNMANAGED)
        self.assertEqual((1, ''), (rc, out))
        self.assertIn('not selected by a whole-device device_spec entry',
                      err)
        self.assertEqual(0, self.resets(UNMANAGED))
        self.assertEqual(ledger.DIRTY,
                         self.records('compute-1')[UNMANAGED].state)

    @unittest.skipUnless(os.geteuid() == 0, 'switches users: needs root')
    def test_root_works_on_the_ledger_as_its_owner(self):
        # nova-compute's user owns the ledger; the command gives up root
        # for it and resets the device through the privsep daemon.
        self.add_devices('compute-1', attached(ATTACHED), dirty(DIRTY))
        self.give_ledger_to_nobody()
        # A sysfs attribute only root can write, as on a real host.
        reset_file = os.path.join(self.sysfs.device_dir(DIRTY), 'reset')
        os.chmod(reset_file, stat.S_IWUSR)

        rc, out, err, resuid = self.run_manage_in_child(
            'devices', 'clear-dirty', DIRTY)

        self.assertEqual((0, ''), (rc, err))
        self.assertEqual((NOBODY, NOBODY, NOBODY), resuid)
        self.assertEqual(1, self.resets(DIRTY))
        for name in os.listdir(self.ledger_dir):
            st = os.stat(os.path.join(self.ledger_dir, name))
            self.assertEqual((NOBODY, NOBODY), (st.st_uid, st.st_gid), name)
        self.assertEqual(ledger.FREE, self.records('compute-1')[DIRTY].state)
        self.assertEqual(ledger.ATTACHED,
                         self.records('compute-1')[ATTACHED].state)

    @unittest.skipUnless(os.geteuid() == 0, 'switches users: needs root')
    def test_list_as_root_reads_as_the_owner(self):
        self.add_devices('compute-1', dirty(DIRTY))
        self.give_ledger_to_nobody()
        rc, out, err, resuid = self.run_manage_in_child('devices', 'list',
                                                        '--json')
        self.assertEqual((0, ''), (rc, err))
        self.assertEqual((NOBODY, NOBODY, NOBODY), resuid)
        self.assertEqual([DIRTY], [d['address'] for d in json.loads(out)])


class CommandLineTest(ManageTestCase):

    def test_usage_errors(self):
        for args in ((), ('devices',), ('devices', 'clear-dirty'),
                     ('devices', 'list', '--bogus')):
            rc, out, err = self.run_manage(*args)
            self.assertEqual(2, rc, args)
            self.assertIn('usage: nova-acc-manage', err)

    def test_missing_config_file(self):
        self.config_file = os.path.join(self.root, 'missing.conf')
        rc, out, err = self.run_manage('devices', 'list')
        self.assertEqual(2, rc)
        self.assertIn(self.config_file, err)
        self.assertNotIn('Traceback', err)

    def test_later_config_file_wins(self):
        self.add_devices('compute-1', dirty(DIRTY))
        other = os.path.join(self.root, 'other.conf')
        with open(other, 'w') as f:
            f.write('[nova_acc]\nledger_dir = %s\n'
                    % os.path.join(self.root, 'elsewhere'))
        rc, out, err = self.run_manage('--config-file', other,
                                       'devices', 'list')
        self.assertEqual(1, rc)
        self.assertIn('no device ledger in %s'
                      % os.path.join(self.root, 'elsewhere'), err)


MDEV = '4b20d080-1b54-4048-85b3-a6a62d165c01'


def dirty_mdev():
    rec = ledger.DeviceRecord(address=MDEV, parent=ATTACHED,
                              mdev_type='nvidia-35')
    rec.dirty('removal failed: device busy')
    return rec


class MdevCommandsTest(ManageTestCase):

    def test_list_names_the_gpu_and_type(self):
        self.add_devices('compute-1', dirty_mdev())
        rc, out, err = self.run_manage('devices', 'list')
        self.assertEqual(0, rc, err)
        self.assertIn('%s (mdev nvidia-35 on %s)' % (MDEV, ATTACHED), out)

    def test_clear_dirty_mdev_needs_force_and_forgets_it(self):
        self.add_devices('compute-1', dirty_mdev())
        rc, out, err = self.run_manage('devices', 'clear-dirty', MDEV)
        self.assertEqual(1, rc)
        self.assertIn('removed by nova-compute', err)
        self.assertIn('--force', err)
        self.assertIn(MDEV, self.records('compute-1'))
        rc, out, err = self.run_manage('devices', 'clear-dirty', MDEV,
                                       '--force')
        self.assertEqual(0, rc, err)
        self.assertNotIn(MDEV, self.records('compute-1'))
