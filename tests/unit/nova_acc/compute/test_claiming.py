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
"""nova_acc.compute.claiming: claims in the ledger, from one snapshot."""

from unittest import mock

from oslotest import base

from nova_acc import exception
from nova_acc.compute import claiming
from nova_acc.compute import ledger
from tests.unit.nova_acc.compute import rooms


class ClaimsTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.fx = self.useFixture(rooms.HostFixture())
        self.reconcile = mock.Mock()
        self.claims = claiming.Claims(self.fx.host, self.reconcile)

    def test_a_pool_binding_asks_for_the_pools_devices(self):
        snap = self.fx.host.snapshot()
        other_node = rooms.pool_binding('rp-x', group='g1')
        other_node = other_node.__class__(**dict(
            vars(other_node), nodename='node2'))
        wanted, requests = self.claims.claim_request(
            rooms.server([rooms.pool_binding(self.fx.pool, 2),
                          other_node]), snap)
        self.assertEqual([], wanted)
        [req] = requests
        self.assertEqual((self.fx.pool, 2, (rooms.A, rooms.B), 'FPGA'),
                         (req.rp_uuid, req.count, req.candidates,
                          req.resource_class))

    def test_claim_picks_from_the_snapshot_after_a_reconcile(self):
        snap = self.fx.host.snapshot()
        self.claims.claim(rooms.server([rooms.pool_binding(self.fx.pool)]),
                          snap)
        self.reconcile.assert_called_once_with(snap)
        rec = self.fx.host.ledger.read()[rooms.A]
        self.assertEqual((ledger.CLAIMED, rooms.SERVER, 'g0'),
                         (rec.state, rec.instance_uuid, rec.requester_id))
        self.fx.discover.assert_called_once()

    def test_a_pool_without_enough_free_devices_claims_nothing(self):
        self.fx.record(rooms.A, server=rooms.OTHER)
        e = self.assertRaises(
            exception.DeviceNotUsable, self.claims.claim,
            rooms.server([rooms.pool_binding(self.fx.pool, 2)]),
            self.fx.host.snapshot())
        self.assertIn('on node node1', str(e))
        self.assertEqual({rooms.A}, set(self.fx.host.ledger.read()))

    def test_nothing_bound_here_claims_nothing(self):
        self.claims.claim(rooms.server(), self.fx.host.snapshot())
        self.reconcile.assert_not_called()
        self.assertFalse(self.fx.host.ledger.exists())

    def test_an_unreadable_ledger_reschedules(self):
        def unreadable():
            with self.claims.reschedule_if_ledger_unusable():
                raise exception.LedgerUnreadable('EIO')
        e = self.assertRaises(exception.DeviceNotUsable, unreadable)
        self.assertIn('could not be read', str(e))
        self.assertIn('node node1', str(e))

    def test_an_unwritable_ledger_reschedules(self):
        def full():
            with self.claims.reschedule_if_ledger_unusable():
                raise OSError(28, 'No space left on device')
        e = self.assertRaises(exception.DeviceNotUsable, full)
        self.assertIn('could not be written', str(e))
        self.assertIn('No space left on device', str(e))

    def test_mark_attached(self):
        self.fx.record(rooms.A)
        self.claims.mark_attached(rooms.server())
        self.assertEqual(ledger.ATTACHED,
                         self.fx.host.ledger.read()[rooms.A].state)

    def test_mark_attached_without_devices_writes_no_ledger(self):
        self.claims.mark_attached(rooms.server())
        self.assertFalse(self.fx.host.ledger.exists())
