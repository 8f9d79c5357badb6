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
"""Release: reset or dirty, on a fake sysfs tree."""

import os

import fixtures
from os_acc import exception as acc_exc
from oslo_privsep import comm as privsep_comm
from oslo_privsep import daemon as privsep_daemon
from oslotest import base

from nova_acc.compute import ledger
from nova_acc.compute import release
from nova_acc.tests.fixtures import configurators

A = '0000:81:00.0'
SERVER = '11111111-1111-4111-8111-111111111111'


class ReleaseTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.sysfs = self.useFixture(fixtures.TempDir()).path
        self.dev_dir = os.path.join(self.sysfs, 'bus', 'pci', 'devices', A)
        os.makedirs(self.dev_dir)

    def with_reset_file(self):
        open(os.path.join(self.dev_dir, 'reset'), 'w').close()

    def resets(self):
        with open(os.path.join(self.dev_dir, 'reset')) as f:
            return f.read().count('1')

    def held(self, context_id=None):
        rec = ledger.DeviceRecord(address=A)
        rec.claim(SERVER, 'rp', 'FPGA', [], context_id)
        rec.attach()
        return {A: rec}, rec

    def release(self, records, rec, **kw):
        kw.setdefault('reset_on_release', True)
        release.release(records, rec, 'test', sysfs_root=self.sysfs, **kw)

    def test_reset_then_free(self):
        self.with_reset_file()
        records, rec = self.held()
        self.release(records, rec)
        self.assertEqual(ledger.FREE, rec.state)
        self.assertEqual(1, self.resets())
        self.assertIsNotNone(rec.last_reset)

    def test_each_release_is_one_reset(self):
        self.with_reset_file()
        for n in (1, 2, 3):
            records, rec = self.held()
            self.release(records, rec)
            self.assertEqual(n, self.resets())

    def test_no_reset_method_is_dirty(self):
        records, rec = self.held()
        self.release(records, rec)
        self.assertEqual(ledger.DIRTY, rec.state)
        self.assertIn('no reset method', rec.reason)
        self.assertIn(SERVER, rec.reason)

    def test_failing_reset_is_dirty(self):
        os.rmdir(self.dev_dir)  # the device is gone from sysfs
        records, rec = self.held()
        self.release(records, rec)
        self.assertEqual(ledger.DIRTY, rec.state)
        self.assertIn('reset failed', rec.reason)

    def releasing(self):
        records, rec = self.held()
        rec.releasing('server gone')
        return records, rec

    def test_kernel_failing_the_reset_is_dirty(self):
        # The device's verdict: out of service until an operator clears it.
        def failing(address, sysfs_root):
            raise acc_exc.ResetFailed('EIO writing reset of %s' % address)
        records, rec = self.releasing()
        self.release(records, rec, resetter=failing)
        self.assertEqual(ledger.DIRTY, rec.state)
        self.assertIn('EIO', rec.reason)

    def test_privsep_failures_leave_the_device_releasing(self):
        # Nothing is known of the device: neither freed nor dirty, and
        # tried again at the next reconcile.
        for error in (privsep_daemon.FailedToDropPrivileges('no sudo'),
                      privsep_comm.PrivsepTimeout('timed out'),
                      OSError('Premature eof waiting for privileged '
                              'process'),
                      privsep_daemon.ProtocolError('bad reply')):
            def failing(address, sysfs_root, error=error):
                raise error
            records, rec = self.releasing()
            self.release(records, rec, resetter=failing)
            self.assertEqual(ledger.RELEASING, rec.state, error)
            self.assertEqual(SERVER, rec.instance_uuid)
            self.assertIn('reset not attempted yet: %s'
                          % type(error).__name__, rec.reason)
            self.assertIsNone(rec.last_reset)

    def test_clear_dirty_when_the_reset_cannot_be_attempted(self):
        records, rec = self.held()
        rec.dirty('reset failed: EIO')

        def failing(address, sysfs_root):
            raise PermissionError(13, 'Permission denied')
        freed, why = release.clear_dirty(rec, self.sysfs, resetter=failing)
        self.assertFalse(freed)
        self.assertIn('could not be attempted', why)
        self.assertEqual((ledger.DIRTY, 'reset failed: EIO'),
                         (rec.state, rec.reason))

    def test_reset_disabled_frees_without_reset(self):
        self.with_reset_file()
        records, rec = self.held()
        self.release(records, rec, reset_on_release=False)
        self.assertEqual(ledger.FREE, rec.state)
        self.assertEqual(0, self.resets())
        self.assertIn('reset_on_release', rec.reason)

    def test_backend_device_is_unbound_and_forgotten_not_reset(self):
        self.with_reset_file()
        records, rec = self.held(context_id='arq-1')
        calls = []
        self.release(records, rec,
                     unbind=lambda server, ids: calls.append((server, ids)))
        self.assertEqual([(SERVER, ['arq-1'])], calls)
        self.assertEqual({}, records)
        self.assertEqual(0, self.resets())

    def test_failed_unbind_keeps_the_record_for_a_retry(self):
        records, rec = self.held(context_id='arq-1')

        def unbind(server, ids):
            raise RuntimeError('cyborg down')

        self.release(records, rec, unbind=unbind)
        self.assertEqual(ledger.ATTACHED, records[A].state)

    def test_clear_dirty_resets_and_frees(self):
        self.with_reset_file()
        rec = ledger.DeviceRecord(address=A)
        rec.dirty('reset failed')
        self.assertEqual((True, ''), release.clear_dirty(rec, self.sysfs))
        self.assertEqual((ledger.FREE, 1), (rec.state, self.resets()))

    def test_clear_dirty_without_reset_method_stays_dirty(self):
        rec = ledger.DeviceRecord(address=A)
        rec.dirty('reset failed')
        freed, why = release.clear_dirty(rec, self.sysfs)
        self.assertFalse(freed)
        self.assertIn('no reset method', why)
        self.assertEqual(ledger.DIRTY, rec.state)

    def test_clear_dirty_forced(self):
        rec = ledger.DeviceRecord(address=A)
        rec.dirty('reset failed')
        self.assertEqual((True, ''),
                         release.clear_dirty(rec, self.sysfs, force=True))
        self.assertEqual(ledger.FREE, rec.state)

    def test_clear_dirty_refuses_other_states(self):
        _, rec = self.held()
        freed, why = release.clear_dirty(rec, self.sysfs)
        self.assertFalse(freed)
        self.assertIn('attached, not dirty', why)


class UnconfigureOnReleaseTest(base.BaseTestCase):
    """A device marked configured is unconfigured before its reset."""

    held = ReleaseTest.held
    release = ReleaseTest.release

    def setUp(self):
        super().setUp()
        # A device without a reset method: the default resetter fails.
        self.sysfs = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(self.sysfs, 'bus', 'pci', 'devices', A))
        self.recorder = self.useFixture(
            configurators.RecordingConfigurator('recorder')).plugin

    def configured(self):
        records, rec = self.held()
        rec.configuring('recorder')
        return records, rec

    def resetter_recording(self):
        def resetter(address, sysfs_root):
            self.recorder.calls.append(('reset', address))
            return True
        return resetter

    def test_unconfigure_then_reset_then_the_mark_is_gone(self):
        records, rec = self.configured()
        self.release(records, rec, resetter=self.resetter_recording())
        self.assertEqual([('unconfigure', A), ('reset', A)],
                         self.recorder.calls)
        self.assertEqual((ledger.FREE, None), (rec.state, rec.configured_by))

    def test_a_failed_unconfigure_does_not_stop_the_reset(self):
        self.recorder.fail_unconfigure = True
        records, rec = self.configured()
        self.release(records, rec, resetter=self.resetter_recording())
        self.assertEqual([('unconfigure', A), ('reset', A)],
                         self.recorder.calls)
        self.assertEqual((ledger.FREE, None), (rec.state, rec.configured_by))

    def test_an_unknown_configurator_does_not_stop_the_reset(self):
        records, rec = self.held()
        rec.configuring('no-such-configurator')
        self.release(records, rec, resetter=self.resetter_recording())
        self.assertEqual([('reset', A)], self.recorder.calls)
        self.assertEqual(ledger.FREE, rec.state)

    def test_a_device_not_marked_is_not_unconfigured(self):
        records, rec = self.held()
        self.release(records, rec, resetter=self.resetter_recording())
        self.assertEqual([('reset', A)], self.recorder.calls)

    def test_reset_not_attempted_keeps_the_mark_for_the_retry(self):
        records, rec = self.configured()
        rec.releasing('server gone')

        def down(address, sysfs_root):
            raise OSError('privsep daemon down')
        self.release(records, rec, resetter=down)
        self.assertEqual((ledger.RELEASING, 'recorder'),
                         (rec.state, rec.configured_by))
        self.release(records, rec, resetter=self.resetter_recording())
        self.assertEqual([('unconfigure', A), ('unconfigure', A),
                          ('reset', A)], self.recorder.calls)
        self.assertEqual((ledger.FREE, None), (rec.state, rec.configured_by))

    def test_a_failed_reset_is_dirty_without_the_mark(self):
        records, rec = self.configured()
        self.release(records, rec)  # no reset method in the fake sysfs
        self.assertEqual([('unconfigure', A)], self.recorder.calls)
        self.assertEqual((ledger.DIRTY, None), (rec.state, rec.configured_by))
