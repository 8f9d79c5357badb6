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
"""nova_acc.compute.report: one resource update's pool report."""

import threading
from unittest import mock

import fixtures
from nova import exception as nova_exc
from oslotest import base

from nova_acc import exception
from nova_acc.compute import inventory
from nova_acc.compute import ledger
from nova_acc.compute import report
from nova_acc.compute import snapshot
from tests.unit.nova_acc.compute import rooms


def held(server, rp='pool', state=ledger.ATTACHED):
    rec = ledger.DeviceRecord(address=server + rp)
    rec.claim(server, rp, 'FPGA', (), None, 'g0')
    if state == ledger.ATTACHED:
        rec.attach()
    return rec


class HeldWithoutAllocationTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.client = mock.Mock()
        self.useFixture(fixtures.MockPatchObject(
            report.report, 'report_client_singleton',
            return_value=self.client))

    def test_devices_beyond_the_allocation_are_counted(self):
        self.client.get_allocations_for_resource_provider.return_value = \
            mock.Mock(allocations={'s1': {'resources': {'FPGA': 1}}})
        records = {r.address: r for r in (
            held('s1'), held('s1', rp='pool2'), held('s2'))}
        records['s1pool2'].rp_uuid = 'pool'
        self.assertEqual({'pool': 2}, report.held_without_allocation(records))
        self.client.get_allocations_for_resource_provider\
            .assert_called_once_with(mock.ANY, 'pool')

    def test_placement_down_reserves_nothing_more(self):
        self.client.get_allocations_for_resource_provider.side_effect = \
            nova_exc.NovaException('placement down')
        self.assertEqual({}, report.held_without_allocation(
            {'x': held('s1')}))


class _PoolReportTestBase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.fx = self.useFixture(rooms.HostFixture())
        self.reconciler = mock.Mock()
        self.reconciler.reconcile_for_report.return_value = {}
        self.reconciler.records_for_report.return_value = {}
        self.useFixture(fixtures.MockPatchObject(
            report.report, 'report_client_singleton'))
        self.update = self.useFixture(fixtures.MockPatchObject(
            inventory, 'update_provider_tree', return_value={})).mock
        self.report = report.PoolReport(self.fx.host, self.reconciler)


class PoolReportTest(_PoolReportTestBase):

    def test_one_listing_for_the_reconcile_and_the_tree(self):
        self.report.update('tree', rooms.NODE, may_reshape=False)
        self.fx.discover.assert_called_once()
        snap = self.reconciler.reconcile_for_report.call_args[0][0]
        args, kwargs = self.update.call_args
        self.assertEqual(['tree', rooms.NODE], list(args[:2]))
        self.assertEqual(list(snap.managed.values()), list(args[2]))
        self.assertFalse(kwargs['may_reshape'])

    def test_repoint_after_a_reshape(self):
        with self.fx.host.ledger.transaction() as records:
            rec = records[rooms.A] = ledger.DeviceRecord(address=rooms.A)
            rec.claim(rooms.SERVER, 'per-device-rp', 'FPGA', (), None, 'g0')
        self.report.repoint({'per-device-rp': 'pool-rp'})
        self.assertEqual('pool-rp',
                         self.fx.host.ledger.read()[rooms.A].rp_uuid)

    def test_repoint_without_ledger_writes_none(self):
        self.report.repoint({'per-device-rp': 'pool-rp'})
        self.assertFalse(self.fx.host.ledger.exists())


class PeriodicLookTest(_PoolReportTestBase):
    """The periodic update's listing and reconcile before Nova's lock."""

    def _now(self):
        # What the ledger holds when the tree update reads it again.
        now = {rooms.A: ledger.DeviceRecord(address=rooms.A)}
        self.reconciler.records_for_report.return_value = now
        return now

    def _update(self):
        self.report.update('tree', rooms.NODE, may_reshape=False)

    def _assert_looked_again(self):
        # Listed and reconciled by the update itself, as without a look.
        self.assertEqual(2, self.fx.discover.call_count)
        self.assertEqual(2, self.reconciler.reconcile_for_report.call_count)
        self.reconciler.records_for_report.assert_not_called()

    def test_the_update_after_a_look_lists_and_reconciles_nothing(self):
        now = self._now()
        self.report.look(rooms.NODE)
        self.fx.discover.assert_called_once()
        looked = self.reconciler.reconcile_for_report.call_args[0][0]
        self._update()
        # The same snapshot; the ledger read again as it is now, under
        # the resource tracker's lock, and reported.
        self.fx.discover.assert_called_once()
        self.reconciler.reconcile_for_report.assert_called_once()
        self.reconciler.records_for_report.assert_called_once_with(looked)
        kwargs = self.update.call_args[1]
        self.assertIs(now, kwargs['records'])
        self.assertEqual(list(looked.managed.values()),
                         list(self.update.call_args[0][2]))

    def test_a_look_is_used_once(self):
        self.report.look(rooms.NODE)
        self._update()
        self._update()
        # The second lists and reconciles for itself.
        self.assertEqual(2, self.fx.discover.call_count)
        self.assertEqual(2, self.reconciler.reconcile_for_report.call_count)
        self.reconciler.records_for_report.assert_called_once()

    def test_an_update_in_another_thread_does_not_use_the_look(self):
        # A build's claim or a delete updates meanwhile: it reconciles for
        # itself (a delete's update is where its devices are released).
        self.report.look(rooms.NODE)
        other = threading.Thread(target=self._update)
        other.start()
        other.join()
        self._assert_looked_again()
        # The periodic's own update still has its look.
        self._update()
        self.assertEqual(2, self.fx.discover.call_count)
        self.reconciler.records_for_report.assert_called_once()

    def test_a_look_taken_before_an_mdev_changed_is_not_used(self):
        self.report.look(rooms.NODE)
        # A build in another thread creates an mdev: its parent's capacity
        # in the look is no longer true.
        with mock.patch.object(snapshot.mdev, 'create'):
            self.fx.host.create_mdev('0000:81:00.0', 'nvidia-35', 'uuid')
        self._update()
        self._assert_looked_again()

    def test_a_look_of_another_node_is_not_used(self):
        self.report.look('other-node')
        self._update()
        self._assert_looked_again()

    def test_a_look_that_cannot_list_leaves_the_update_to_fail_closed(self):
        self.fx.discover.side_effect = exception.DeviceListingFailed('down')
        self.report.look(rooms.NODE)  # never raises
        self.reconciler.reconcile_for_report.assert_not_called()
        self._update()
        # The update listed again, failed the same way, and reported and
        # released nothing: the pools stay as last reported.
        self.assertEqual(2, self.fx.discover.call_count)
        self.reconciler.reconcile_for_report.assert_not_called()
        self.update.assert_not_called()
