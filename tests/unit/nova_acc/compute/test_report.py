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

from unittest import mock

import fixtures
from nova import exception as nova_exc
from oslotest import base

from nova_acc.compute import inventory
from nova_acc.compute import ledger
from nova_acc.compute import report
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


class PoolReportTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.fx = self.useFixture(rooms.HostFixture())
        self.reconciler = mock.Mock()
        self.reconciler.reconcile_for_report.return_value = {}
        self.useFixture(fixtures.MockPatchObject(
            report.report, 'report_client_singleton'))
        self.update = self.useFixture(fixtures.MockPatchObject(
            inventory, 'update_provider_tree', return_value={})).mock
        self.report = report.PoolReport(self.fx.host, self.reconciler)

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
