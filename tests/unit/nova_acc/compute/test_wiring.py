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
"""nova_acc.compute.wiring: the rooms share one host; injections wired."""

from unittest import mock

import fixtures
import os_acc
from oslotest import base

from nova_acc.compute import ledger
from nova_acc.compute import release
from nova_acc.compute import wiring


class BuildTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.rooms = wiring.build(mock.Mock(), [])

    def test_one_host_for_every_room(self):
        host = self.rooms.host
        for room in (self.rooms.attach_handles, self.rooms.reconciler,
                     self.rooms.claims, self.rooms.guests, self.rooms.moves,
                     self.rooms.report):
            self.assertIs(host, room._host, room)

    def test_the_reconciler_reads_guests_with_os_acc(self):
        self.assertIs(os_acc.guest_devices,
                      self.rooms.reconciler._guest_devices)
        self.assertIs(self.rooms.attach_handles.teardown_contexts,
                      self.rooms.reconciler._teardown_contexts)

    def test_claims_reconcile_with_the_reconciler(self):
        self.assertEqual(self.rooms.reconciler.reconcile,
                         self.rooms.claims._reconcile)

    def test_the_release_unbinds_and_removes_through_the_rooms(self):
        calls = self.useFixture(fixtures.MockPatchObject(
            release, 'release')).mock
        rec = ledger.DeviceRecord(address='a')
        self.rooms.reconciler._release({}, rec, 'why')
        kwargs = calls.call_args[1]
        self.assertEqual(self.rooms.attach_handles.unbind_released,
                         kwargs['unbind'])
        self.assertEqual(self.rooms.host.remove_mdev, kwargs['remove_mdev'])
