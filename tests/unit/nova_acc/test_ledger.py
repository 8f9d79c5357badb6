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
"""The device ledger's storage and transitions, on a real directory."""

import builtins
import dataclasses
import errno
import json
import os
import stat
import threading
from unittest import mock

import fixtures
from oslo_concurrency import lockutils
from oslotest import base

from nova_acc import exception
from nova_acc.compute import claims
from nova_acc.compute import ledger

NODE = 'compute1'
A = '0000:81:00.0'
B = '0000:81:01.0'
ADDR_FMT = '0000:82:%02x.0'
SERVER = '11111111-1111-4111-8111-111111111111'
OTHER = '22222222-2222-4222-8222-222222222222'


class FailOpening(fixtures.Fixture):
    """Opening the file ``name`` (in any directory) fails with ``error``.

    Both ways a file is opened (``open`` and ``os.open``), as an I/O error
    of the disk, a full file table or a denied access would make them.
    """

    def __init__(self, name, error):
        super().__init__()
        self.name, self.error = name, error

    def _setUp(self):
        real_open, real_os_open = builtins.open, os.open

        def check(path):
            if isinstance(path, (str, bytes, os.PathLike)) and \
                    os.path.basename(os.fsdecode(path)) == self.name:
                raise OSError(self.error, os.strerror(self.error), path)

        def fake_open(file, *args, **kwargs):
            check(file)
            return real_open(file, *args, **kwargs)

        def fake_os_open(path, *args, **kwargs):
            check(path)
            return real_os_open(path, *args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch('builtins.open', fake_open))
        self.useFixture(fixtures.MonkeyPatch('os.open', fake_os_open))


def want(address, **kw):
    return dict({'address': address, 'rp_uuid': 'rp-' + address,
                 'resource_class': 'FPGA', 'traits': ['CUSTOM_GZIP']}, **kw)


class LedgerStorageTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.book = ledger.DeviceLedger(NODE, self.dir)

    def test_empty_ledger_reads_as_no_records(self):
        self.assertEqual({}, self.book.records())
        self.assertFalse(self.book.exists())

    def test_transaction_writes_a_versioned_readable_file(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A)])

        with open(self.book.path) as f:
            data = json.load(f)
        self.assertEqual(ledger.FORMAT_VERSION, data['version'])
        self.assertEqual(NODE, data['node'])
        self.assertEqual('claimed', data['devices'][A]['state'])
        self.assertEqual(SERVER, data['devices'][A]['instance_uuid'])
        self.assertEqual('FPGA', data['devices'][A]['resource_class'])
        # A second reader (another process) sees the same record.
        again = ledger.DeviceLedger(NODE, self.dir).records()
        self.assertEqual(ledger.CLAIMED, again[A].state)
        self.assertEqual('rp-' + A, again[A].rp_uuid)

    def test_file_holds_every_field_one_line_per_device(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A), want(B)])
            records[ADDR_FMT % 1] = ledger.DeviceRecord(
                address=ADDR_FMT % 1, traits=['Z', 'A"'], reason='\n"x"')
        expected = {a: {k: v for k, v in dataclasses.asdict(r).items()
                        if k != 'address'}
                    for a, r in self.book.read().items()}
        with open(self.book.path) as f:
            text = f.read()
        self.assertEqual({'version': ledger.FORMAT_VERSION, 'node': NODE,
                          'devices': expected}, json.loads(text))
        self.assertEqual(3, sum(1 for line in text.splitlines()
                                if line.startswith('  "0000:')))

    def test_nothing_written_when_nothing_changed(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A)])
        before = os.stat(self.book.path).st_mtime_ns
        with mock.patch.object(self.book, '_write') as write:
            with self.book.transaction() as records:
                claims.claim(records, SERVER, [want(A)])  # idempotent
        write.assert_not_called()
        self.assertEqual(before, os.stat(self.book.path).st_mtime_ns)

    def test_every_change_is_written(self):
        # A transaction compares each record with the fields it was made
        # from: a change of any field, of a traits list in place, a record
        # added, replaced or removed, is written.
        changes = [
            lambda records: setattr(records[A], 'rp_uuid', 'elsewhere'),
            lambda records: records[A].traits.append('CUSTOM_MORE'),
            lambda records: records[A].traits.sort(reverse=True),
            lambda records: records.__setitem__(
                A, ledger.DeviceRecord(**dict(vars(records[A]),
                                              reason='replaced'))),
            lambda records: records.__setitem__(
                B, ledger.DeviceRecord(address=B)),
            lambda records: records.pop(B),
        ]
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A, traits=['A', 'B'])])
        for change in changes:
            expected = self.book.read()
            change(expected)
            with self.book.transaction() as records:
                change(records)
            self.assertEqual(expected, ledger.DeviceLedger(
                NODE, self.dir).read())

    def test_read_again_after_another_process_wrote(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A)])
        self.assertEqual(ledger.CLAIMED, self.book.read()[A].state)
        # nova-acc-manage: another ledger object on the same file.
        with ledger.DeviceLedger(NODE, self.dir).transaction() as records:
            records[A].attach()
        self.assertEqual(ledger.ATTACHED, self.book.read()[A].state)
        self.assertEqual(ledger.ATTACHED, self.book.records()[A].state)

    def test_what_a_transaction_wrote_is_read_back_without_decoding(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A), want(B)])
        written = records
        # The caller changing its records afterwards changes nothing read.
        written[A].traits.append('CUSTOM_CHANGED')
        written[B].attach()
        with mock.patch.object(self.book, '_decode',
                               side_effect=AssertionError('decoded')):
            mine = self.book.read()
        theirs = ledger.DeviceLedger(NODE, self.dir).read()
        self.assertEqual(theirs, mine)
        self.assertEqual((ledger.CLAIMED, ['CUSTOM_GZIP']),
                         (mine[A].state, mine[A].traits))
        self.assertEqual(ledger.CLAIMED, mine[B].state)

    def test_records_read_are_copies(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A)])
        first = self.book.read()
        first[A].traits.append('CUSTOM_CHANGED')
        first[A].attach()
        again = self.book.read()
        self.assertEqual((ledger.CLAIMED, ['CUSTOM_GZIP']),
                         (again[A].state, again[A].traits))
        self.assertIsNot(first[A], again[A])

    def test_failed_transaction_writes_nothing(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A)])
        with self.book.transaction() as records:
            try:
                claims.claim(records, OTHER, [want(B), want(A)])
            except exception.DeviceNotFree:
                pass
        records = self.book.records()
        # All or nothing: B was not claimed for OTHER.
        self.assertNotIn(B, records)
        self.assertEqual(SERVER, records[A].instance_uuid)

    def test_write_is_atomic_rename_of_a_synced_temp_file(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A)])
        real_replace = os.replace
        seen = []

        def replace(src, dst, src_dir_fd=None, dst_dir_fd=None):
            # The new content is complete before it takes the name.
            fd = os.open(src, os.O_RDONLY, dir_fd=src_dir_fd)
            with open(fd) as f:
                seen.append(json.load(f)['devices'][B]['state'])
            real_replace(src, dst, src_dir_fd=src_dir_fd,
                         dst_dir_fd=dst_dir_fd)

        with mock.patch('os.replace', side_effect=replace):
            with self.book.transaction() as records:
                claims.claim(records, OTHER, [want(B)])
        self.assertEqual(['claimed'], seen)
        self.assertEqual([], [n for n in os.listdir(self.dir)
                              if n.endswith('.tmp')])

    def test_crash_during_write_keeps_the_old_ledger(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A)])
        with mock.patch('os.replace', side_effect=OSError('disk gone')):
            self.assertRaises(OSError, self._claim_b)
        records = self.book.records()
        self.assertEqual({A}, set(records))
        self.assertEqual([], [n for n in os.listdir(self.dir)
                              if n.endswith('.tmp')])

    def _claim_b(self):
        with self.book.transaction() as records:
            claims.claim(records, OTHER, [want(B)])

    def test_corrupt_ledger_is_kept_aside_and_flagged(self):
        with open(self.book.path, 'w') as f:
            f.write('{"version": 1, "devices": {"0000:81:00.0": ')
        with self.book.transaction() as records:
            self.assertEqual({}, records)
            self.assertIsNotNone(self.book.recovered_from)
            claims.claim(records, SERVER, [want(A)])
        self.assertTrue(os.path.exists(self.book.recovered_from))
        self.assertEqual(SERVER, self.book.records()[A].instance_uuid)

    def test_unknown_state_is_a_bad_ledger(self):
        with open(self.book.path, 'w') as f:
            json.dump({'version': 1, 'devices': {A: {'state': 'weird'}}}, f)
        self.assertEqual({}, self.book.records())
        with self.book.transaction():
            pass
        self.assertIsNotNone(self.book.recovered_from)

    def test_other_version_is_not_read(self):
        with open(self.book.path, 'w') as f:
            json.dump({'version': 99, 'devices': {}}, f)
        self.assertRaises(exception.LedgerCorrupt, self.book._read)

    def _claim_a(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A)])

    def _ledger_dir_listing(self):
        return sorted(n for n in os.listdir(self.dir)
                      if not n.startswith('nova-acc-ledger-'))

    def test_transient_read_error_keeps_the_ledger(self):
        self._claim_a()
        with open(self.book.path, 'rb') as f:
            before = f.read()
        listing = self._ledger_dir_listing()
        for error in (errno.EIO, errno.EMFILE, errno.ENFILE, errno.EACCES):
            with self.subTest(error=errno.errorcode[error]):
                with FailOpening(NODE + '.json', error):
                    exc = self.assertRaises(exception.LedgerUnreadable,
                                            self._claim_b)
                    self.assertIn(os.strerror(error), str(exc))
                    self.assertIn(self.book.path, str(exc))
                    # Nothing can be said of the devices: records() must
                    # not answer "none held".
                    self.assertRaises(exception.LedgerUnreadable,
                                      self.book.records)
                    self.assertRaises(exception.LedgerUnreadable,
                                      self.book.read)
                # Not taken for corruption: the file and its claims stay,
                # nothing was moved aside or rebuilt.
                self.assertIsNone(self.book.recovered_from)
                self.assertEqual(listing, self._ledger_dir_listing())
                with open(self.book.path, 'rb') as f:
                    self.assertEqual(before, f.read())
        # Once the fault is gone, the ledger is as it was.
        self._claim_b()
        self.assertEqual({A: SERVER, B: OTHER},
                         {a: r.instance_uuid
                          for a, r in self.book.records().items()})

    def test_corrupt_ledger_reads_as_empty_but_read_says_why(self):
        with open(self.book.path, 'w') as f:
            f.write('{"version": 1,')
        self.assertEqual({}, self.book.records())
        exc = self.assertRaises(exception.LedgerCorrupt, self.book.read)
        self.assertIn('is corrupt', str(exc))
        self.assertRaises(exception.LedgerCorrupt,
                          self._claim_without_recovery)
        self.assertTrue(os.path.exists(self.book.path))

    def _claim_without_recovery(self):
        with self.book.transaction(recover=False) as records:
            claims.claim(records, SERVER, [want(A)])

    def test_a_corrupt_ledger_that_cannot_be_moved_aside_is_kept(self):
        with open(self.book.path, 'w') as f:
            f.write('garbage')

        def replace(*args, **kwargs):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        with mock.patch('os.replace', side_effect=replace):
            exc = self.assertRaises(exception.LedgerUnreadable, self._claim_a)
        self.assertIn('cannot be moved aside', str(exc))
        self.assertIsNone(self.book.recovered_from)
        with open(self.book.path) as f:
            self.assertEqual('garbage', f.read())

    def test_a_link_where_the_ledger_is_is_not_followed(self):
        outside = self.useFixture(fixtures.TempDir()).path
        target = os.path.join(outside, 'target')
        with open(target, 'w') as f:
            json.dump({'version': 1, 'devices': {}}, f)
        os.chmod(target, 0o600)
        before = os.stat(target)
        os.symlink(target, self.book.path)

        exc = self.assertRaises(exception.LedgerUnreadable,
                                self.book.records)
        self.assertIn('symbolic link', str(exc))
        self.assertRaises(exception.LedgerUnreadable, self._claim_a)
        self.assertTrue(self.book.exists())
        after = os.stat(target)
        self.assertEqual((before.st_mode, before.st_uid, before.st_size),
                         (after.st_mode, after.st_uid, after.st_size))
        self.assertTrue(os.path.islink(self.book.path))

    def test_a_link_where_the_lock_file_is_is_not_followed(self):
        outside = self.useFixture(fixtures.TempDir()).path
        target = os.path.join(outside, 'created-through-the-link')
        os.symlink(target, os.path.join(self.dir, self.book.lock_name))

        exc = self.assertRaises(exception.LedgerUnreadable, self._claim_a)
        self.assertIn('lock file', str(exc))
        self.assertIn('symbolic link', str(exc))
        self.assertFalse(os.path.lexists(target))
        self.assertFalse(os.path.exists(self.book.path))

    def test_files_are_0640(self):
        self._claim_a()
        for name in (NODE + '.json', self.book.lock_name):
            self.assertEqual(0o640, stat.S_IMODE(os.stat(
                os.path.join(self.dir, name)).st_mode), name)

    def test_lock_excludes_another_process_with_oslo_concurrency_lock(self):
        # nova-compute and nova-acc-manage of earlier versions took
        # lockutils' external lock on the same file: any mix excludes.
        locked_r, locked_w = os.pipe()
        release_r, release_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(locked_r)
                os.close(release_w)
                with lockutils.lock('nova-acc-ledger-' + NODE,
                                    external=True, lock_path=self.dir):
                    os.write(locked_w, b'x')
                    os.read(release_r, 1)
            except BaseException as e:
                os.write(locked_w, repr(e).encode())
            finally:
                os._exit(0)
        os.close(locked_w)
        os.close(release_r)
        self.addCleanup(os.waitpid, pid, 0)
        self.addCleanup(os.close, release_w)
        self.assertEqual(b'x', os.read(locked_r, 200))
        os.close(locked_r)
        entered = threading.Event()

        def claim():
            with self.book.transaction():
                entered.set()

        thread = threading.Thread(target=claim)
        thread.start()
        self.assertFalse(entered.wait(0.5))
        os.write(release_w, b'x')
        self.assertTrue(entered.wait(10))
        thread.join(10)


class ConfiguredMarkTest(base.BaseTestCase):
    """DeviceRecord.configured_by: stored, and optional in old files."""

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.book = ledger.DeviceLedger(NODE, self.dir)

    def test_the_mark_is_written_and_read_back(self):
        with self.book.transaction() as records:
            claims.claim(records, SERVER, [want(A)])
            records[A].configuring('fpga_bitstream')
        with open(self.book.path) as f:
            self.assertEqual('fpga_bitstream',
                             json.load(f)['devices'][A]['configured_by'])
        again = ledger.DeviceLedger(NODE, self.dir).records()
        self.assertEqual('fpga_bitstream', again[A].configured_by)

    def test_a_ledger_written_before_the_mark_still_loads(self):
        # A record as ledgers held it before configured_by existed.
        old = {'version': ledger.FORMAT_VERSION, 'node': NODE, 'devices': {
            A: {'state': 'attached', 'instance_uuid': SERVER,
                'guest': None, 'rp_uuid': 'rp', 'requester_id': 'nova_acc_0_0',
                'migration_id': None, 'resource_class': 'FPGA',
                'traits': [], 'context_id': None, 'changed_at': None,
                'last_reset': None, 'reason': None, 'parent': None,
                'mdev_type': None}}}
        with open(self.book.path, 'w') as f:
            json.dump(old, f)
        rec = self.book.read()[A]
        self.assertEqual((ledger.ATTACHED, SERVER, None),
                         (rec.state, rec.instance_uuid, rec.configured_by))

    def test_free_and_dirty_clear_the_mark(self):
        for end in (lambda r: r.free(reset=True), lambda r: r.dirty('x')):
            rec = ledger.DeviceRecord(address=A)
            rec.claim(SERVER, 'rp', 'FPGA', [], None)
            rec.configuring('recorder')
            end(rec)
            self.assertIsNone(rec.configured_by)


class RecordCopyTest(base.BaseTestCase):

    def record(self):
        rec = ledger.DeviceRecord(address=A, parent=B, mdev_type='t-1')
        rec.claim(SERVER, 'rp', 'FPGA', ['T2', 'T1'], 'ctx', 'g0', 7)
        return rec

    def test_to_dict_is_every_field_as_asdict_gives_it(self):
        rec = self.record()
        self.assertEqual(dataclasses.asdict(rec), rec.to_dict())
        rec.to_dict()['traits'].append('CUSTOM_X')
        self.assertEqual(['T1', 'T2'], rec.traits)

    def test_copy_is_equal_and_changes_on_its_own(self):
        rec = self.record()
        copy = rec.copy()
        self.assertEqual(rec, copy)
        copy.traits.append('CUSTOM_X')
        copy.attach()
        self.assertEqual((ledger.CLAIMED, ['T1', 'T2']),
                         (rec.state, rec.traits))


class TransitionTest(base.BaseTestCase):

    def test_free_after_reset_records_the_reset_and_forgets_the_holder(self):
        rec = ledger.DeviceRecord(address=A)
        rec.claim(SERVER, 'rp', 'FPGA', ['T'], None)
        rec.attach()
        rec.free(reset=True)
        self.assertEqual(ledger.FREE, rec.state)
        self.assertIsNone(rec.instance_uuid)
        self.assertIsNone(rec.rp_uuid)
        self.assertIsNotNone(rec.last_reset)

    def test_dirty_keeps_no_holder_but_a_reason(self):
        rec = ledger.DeviceRecord(address=A)
        rec.claim(SERVER, 'rp', 'FPGA', [], None)
        rec.dirty('reset failed')
        self.assertEqual((ledger.DIRTY, None, 'reset failed'),
                         (rec.state, rec.holder, rec.reason))
