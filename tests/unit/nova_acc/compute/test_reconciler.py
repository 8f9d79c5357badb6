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
"""nova_acc.compute.reconciler: the reconcile run, its release injected.

The rules themselves: tests/unit/nova_acc/compute/test_reconcile.py.
"""

from unittest import mock

import fixtures
from oslotest import base

from nova_acc import exception
from nova_acc.compute import attach_handles
from nova_acc.compute import ledger
from nova_acc.compute import reconcile
from nova_acc.compute import reconciler
from tests.unit.nova_acc.compute import rooms


class ReconcilerTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.fx = self.useFixture(rooms.HostFixture())
        self.released = []
        self.guest_devices = mock.Mock()
        self.contexts = attach_handles.TeardownContexts()
        self.reconciler = reconciler.Reconciler(
            self.fx.host, release=self.release,
            guest_devices=self.guest_devices,
            teardown_contexts=self.contexts)
        # Nova's side of the facts: no server holds anything here.
        self.gather = self.useFixture(fixtures.MockPatchObject(
            reconcile, 'gather_facts', side_effect=self.facts)).mock

    def facts(self, libvirt_host, nodename, managed, records, guest_devices):
        return reconcile.HostFacts(managed=managed, guests={}, bound={},
                                   nodename=nodename)

    def release(self, records, rec, why):
        self.released.append((rec.address, rec.state, why))
        rec.free(reset=True)

    def test_the_injected_release_runs_after_releasing_is_recorded(self):
        self.fx.record(rooms.A, state=ledger.ATTACHED)
        result = self.reconciler.reconcile(self.fx.host.snapshot())
        [(address, state, why)] = self.released
        self.assertEqual((rooms.A, ledger.RELEASING), (address, state))
        self.assertIn('server %s no longer holds it' % rooms.SERVER, why)
        self.assertEqual(ledger.FREE, result[rooms.A].state)
        self.assertEqual({self.fx.pool}, self.reconciler.take_freed_pools())
        self.assertEqual(set(), self.reconciler.take_freed_pools())

    def test_a_removed_mdev_refreshes_the_snapshot(self):
        with self.fx.host.ledger.transaction() as records:
            rec = records['mdev-1'] = ledger.DeviceRecord(
                address='mdev-1', parent=rooms.A, mdev_type='nvidia-11')
            rec.claim(rooms.SERVER, self.fx.pool, 'VGPU', (), None, 'g0')
        snap = self.fx.host.snapshot()
        refresh = self.useFixture(fixtures.MockPatchObject(
            snap, 'refresh_mdevs')).mock
        self.reconciler._release = lambda records, rec, why: records.pop(
            rec.address)
        self.reconciler.reconcile(snap)
        refresh.assert_called_once_with()

    def test_a_freed_device_leaves_the_snapshot_as_it_is(self):
        self.fx.record(rooms.A, state=ledger.ATTACHED)
        snap = self.fx.host.snapshot()
        refresh = self.useFixture(fixtures.MockPatchObject(
            snap, 'refresh_mdevs')).mock
        self.reconciler.reconcile(snap)
        refresh.assert_not_called()

    def test_the_records_it_returns_are_the_callers_own(self):
        # reconcile returns the transaction's records without copying them:
        # changing them must change neither the ledger nor the next result.
        with self.fx.host.ledger.transaction() as records:
            for address in (rooms.A, rooms.B):
                records[address] = ledger.DeviceRecord(address=address)
        first = self.reconciler.reconcile(self.fx.host.snapshot())
        self.assertEqual(ledger.FREE, first[rooms.A].state)
        first[rooms.A].state = ledger.DIRTY
        first[rooms.A].traits.append('CUSTOM_CHANGED')
        del first[rooms.B]
        self.assertEqual(ledger.FREE,
                         self.fx.host.ledger.read()[rooms.A].state)
        again = self.reconciler.reconcile(self.fx.host.snapshot())
        self.assertEqual(ledger.FREE, again[rooms.A].state)
        self.assertNotIn('CUSTOM_CHANGED', again[rooms.A].traits)
        self.assertIn(rooms.B, again)

    def test_the_guest_reader_is_the_injected_one(self):
        self.reconciler.reconcile(self.fx.host.snapshot())
        self.assertIs(self.guest_devices, self.gather.call_args[0][4])

    def test_teardown_contexts_of_servers_holding_nothing_are_forgotten(self):
        self.contexts.remember(rooms.OTHER, 'ctx')
        self.reconciler.reconcile(self.fx.host.snapshot())
        self.assertNotIn(rooms.OTHER, self.contexts)

    def assert_every_device_reserved(self, records, why):
        """Records that keep both devices out of service, saying ``why``."""
        self.assertEqual({rooms.A, rooms.B}, set(records))
        for rec in records.values():
            self.assertEqual(ledger.DIRTY, rec.state)
            self.assertIn(why, rec.reason)

    def test_report_with_an_unreadable_ledger_reserves_everything(self):
        self.useFixture(fixtures.MockPatchObject(
            ledger.DeviceLedger, 'transaction',
            side_effect=exception.LedgerUnreadable('EIO on the ledger')))
        with self.assertLogs('nova_acc.compute.reconciler', 'ERROR'):
            records = self.reconciler.reconcile_for_report(
                self.fx.host.snapshot())
        self.assert_every_device_reserved(records,
                                          'state unknown: EIO on the ledger')
        self.assertEqual([], self.released)

    def test_records_for_report_are_the_ledgers_without_a_reconcile(self):
        self.fx.record(rooms.A)
        records = self.reconciler.records_for_report(self.fx.host.snapshot())
        self.assertEqual(self.fx.host.ledger.read(), records)
        self.gather.assert_not_called()
        self.assertEqual([], self.released)

    def test_records_for_report_fail_closed(self):
        # The same rule as reconcile_for_report: a ledger that cannot be
        # read, or was corrupt and is not rebuilt yet, reserves everything.
        self.fx.record(rooms.A)
        for why, setup in (
                ('EIO now', lambda: self.useFixture(
                    fixtures.MockPatchObject(
                        ledger.DeviceLedger, 'read',
                        side_effect=exception.LedgerUnreadable('EIO now')))),
                ('moved to /x.corrupt', lambda: setattr(
                    self.fx.host.ledger, 'recovered_from', '/x.corrupt'))):
            setup()
            with self.assertLogs('nova_acc.compute.reconciler', 'ERROR'):
                records = self.reconciler.records_for_report(
                    self.fx.host.snapshot())
            self.assert_every_device_reserved(records, why)

    def test_report_on_a_host_without_devices_or_ledger_is_empty(self):
        self.fx.devices = []
        self.assertEqual({}, self.reconciler.reconcile_for_report(
            self.fx.host.snapshot()))
        self.gather.assert_not_called()

    def test_after_teardown_with_an_unreadable_ledger_raises_nothing(self):
        self.useFixture(fixtures.MockPatchObject(
            ledger.DeviceLedger, 'records',
            side_effect=exception.LedgerUnreadable('EIO')))
        with self.assertLogs('nova_acc.compute.reconciler', 'ERROR'):
            self.reconciler.after_teardown(None, mock.Mock(uuid=rooms.SERVER))
        self.assertEqual([], self.released)

    def test_after_teardown_keeps_the_users_context_for_its_unbind(self):
        with self.fx.host.ledger.transaction() as records:
            rec = records['arq-dev'] = ledger.DeviceRecord(address='arq-dev')
            rec.claim(rooms.SERVER, 'rp', None, (), 'arq', 'g0')
        seen = []
        self.reconciler._release = lambda records, rec, why: seen.append(
            self.contexts.take(rec.instance_uuid))
        self.reconciler.after_teardown('user-ctx',
                                       mock.Mock(uuid=rooms.SERVER))
        self.assertEqual(['user-ctx'], seen)
