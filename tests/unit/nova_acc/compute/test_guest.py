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
"""nova_acc.compute.guest: what a guest gets, checked and claimed once."""

import dataclasses
from unittest import mock

import fixtures
import os_acc
from oslotest import base

from nova_acc import binding
from nova_acc import exception
from nova_acc.compute import claiming
from nova_acc.compute import guest
from nova_acc.compute import ledger
from tests.unit.nova_acc.compute import rooms


class PrepareTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        # A fresh plugin manager, loaded as nova-compute loads it.
        self.useFixture(fixtures.MonkeyPatch('os_acc._EXT_MANAGER', None))
        os_acc.initialize()
        self.fx = self.useFixture(rooms.HostFixture())
        self.claims = claiming.Claims(self.fx.host, mock.Mock())
        self.claim = mock.patch.object(
            self.claims, 'claim', wraps=self.claims.claim).start()
        self.addCleanup(mock.patch.stopall)
        self.guests = guest.GuestDevices(self.fx.host, self.claims)

    def test_no_bindings_nothing_listed(self):
        self.assertEqual([], self.guests.prepare(
            rooms.server(), self.fx.host.snapshot()))
        self.fx.discover.assert_not_called()

    def test_a_pool_binding_is_claimed_once_then_read(self):
        instance = rooms.server([rooms.pool_binding(self.fx.pool)])
        accs = self.guests.prepare(instance, self.fx.host.snapshot())
        self.assertEqual([os_acc.Accelerator(interface_type='pci',
                                             address=rooms.A)], accs)
        self.assertEqual(rooms.SERVER,
                         self.fx.host.ledger.read()[rooms.A].instance_uuid)
        again = self.guests.prepare(instance, self.fx.host.snapshot())
        self.assertEqual(accs, again)
        self.claim.assert_called_once()

    def test_one_listing_for_the_check_and_the_claim(self):
        self.guests.prepare(rooms.server([rooms.pool_binding(self.fx.pool)]),
                            self.fx.host.snapshot())
        self.fx.discover.assert_called_once()

    def test_a_recorded_binding_error_fails(self):
        instance = rooms.server()
        binding.replace(instance, [], error='no pool on node1')
        e = self.assertRaises(exception.DeviceNotUsable, self.guests.prepare,
                              instance, self.fx.host.snapshot())
        self.assertIn('no pool on node1', str(e))

    def test_a_binding_to_another_node_fails(self):
        b = dataclasses.replace(rooms.pool_binding(self.fx.pool),
                                nodename='node2')
        e = self.assertRaises(exception.DeviceNotUsable, self.guests.prepare,
                              rooms.server([b]), self.fx.host.snapshot())
        self.assertIn('bound to node node2, not node1', str(e))

    def test_a_context_without_attach_handle_fails(self):
        b = binding.Binding('g0', 'rp', None, rooms.NODE, context_id='arq')
        e = self.assertRaises(exception.DeviceNotUsable, self.guests.prepare,
                              rooms.server([b]), self.fx.host.snapshot())
        self.assertIn('device context arq has no attach handle yet', str(e))

    def test_a_device_gone_from_the_host_fails(self):
        self.fx.record(rooms.A, state=ledger.ATTACHED)
        self.fx.devices = [rooms.fpga(rooms.B)]
        instance = rooms.server([rooms.pool_binding(self.fx.pool)])
        e = self.assertRaises(exception.DeviceNotUsable, self.guests.prepare,
                              instance, self.fx.host.snapshot())
        self.assertIn('device %s of group g0 is not present on node node1'
                      % rooms.A, str(e))

    def test_a_device_another_server_holds_is_never_given(self):
        self.fx.record(rooms.A, server=rooms.OTHER)
        self.fx.record(rooms.B, server=rooms.OTHER)
        self.assertRaises(
            exception.DeviceNotUsable, self.guests.prepare,
            rooms.server([rooms.pool_binding(self.fx.pool)]),
            self.fx.host.snapshot())
