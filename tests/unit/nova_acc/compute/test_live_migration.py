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
"""The destination's pre-check and the source's rollback of a live move."""

import dataclasses
import types
from unittest import mock

from nova import exception as nova_exc
import os_acc
from oslotest import base

from nova_acc import exception
from nova_acc.compute import ledger
from nova_acc.compute import live_migration
from tests.unit.nova_acc.compute import rooms

TRAIT = 'CUSTOM_ACC_LIVE_MIGRATION_REPLUG'
NO_HOSTDEV = "<domain><devices></devices></domain>"


class LiveMigrationsTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        os_acc.initialize()
        self.fx = self.useFixture(rooms.HostFixture())
        self.moves = live_migration.LiveMigrations(
            self.fx.host, mock.Mock(), mock.Mock())
        self.server = rooms.server([rooms.pool_binding(self.fx.pool)])

    def test_destination_pools_without_the_trait_refuse(self):
        e = self.assertRaises(
            nova_exc.MigrationPreCheckError, self.moves.check_destination,
            self.server, {self.fx.pool: {'resources': {'FPGA': 1}}})
        self.assertIn('pool %s on node %s are not marked "live_migration": '
                      '"replug"' % (self.fx.pool, rooms.NODE), str(e))

    def test_destination_pools_with_the_trait_pass(self):
        self.fx.devices[:] = [dataclasses.replace(d, traits={TRAIT})
                              for d in self.fx.devices]
        [pool] = self.fx.host.snapshot().pools
        self.assertNotEqual(self.fx.pool, pool)
        # The node's provider (not a pool) does not count.
        self.moves.check_destination(
            self.server, {pool: {'resources': {'FPGA': 1}},
                          'node-rp': {'resources': {'VCPU': 1}}})

    def test_servers_without_device_contexts_are_not_checked(self):
        self.moves.check_destination(
            rooms.server(), {self.fx.pool: {'resources': {'FPGA': 1}}})

    def test_rollback_at_source_attaches_back_what_the_guest_lacks(self):
        self.fx.record(rooms.A, state=ledger.ATTACHED)
        self.fx.record(rooms.B, server=rooms.OTHER, state=ledger.ATTACHED)
        guest = mock.Mock()
        guest.get_xml_desc.return_value = NO_HOSTDEV

        self.moves.reattach_at_source(guest, self.server)

        [call] = guest.attach_device.call_args_list
        # Only the server's device, live.
        self.assertEqual({rooms.A}, os_acc.guest_devices(
            '<domain><devices>%s</devices></domain>'
            % call.args[0].to_xml()))
        self.assertEqual({'live': True}, call.kwargs)


class MdevMapTest(base.BaseTestCase):
    """Source -> destination mdevs, 1:1 by type (``target_mdevs``)."""

    def test_each_source_mdev_gets_one_of_its_type(self):
        self.assertEqual(
            {'s1': 'd2', 's2': 'd1', 's3': 'd3'},
            live_migration.mdev_map(
                {'s1': 'nvidia-11', 's2': 'nvidia-12', 's3': 'nvidia-11'},
                {'d1': 'nvidia-12', 'd2': 'nvidia-11', 'd3': 'nvidia-11'}))

    def test_identical_uuids_map_to_themselves(self):
        self.assertEqual({'u1': 'u1'}, live_migration.mdev_map(
            {'u1': 'nvidia-11'}, {'u1': 'nvidia-11'}))

    def test_a_type_missing_here_is_refused_naming_it(self):
        e = self.assertRaises(
            exception.DeviceNotUsable, live_migration.mdev_map,
            {'s1': 'nvidia-11', 's2': 'nvidia-12'},
            {'d1': 'nvidia-11', 'd2': 'nvidia-11'})
        self.assertIn('no mdev of type nvidia-12 was claimed for the '
                      'migration of mdev s2', str(e))

    def test_more_mdevs_here_than_on_the_source_is_refused(self):
        e = self.assertRaises(
            exception.DeviceNotUsable, live_migration.mdev_map,
            {'s1': 'nvidia-11'}, {'d1': 'nvidia-11', 'd2': 'nvidia-11'})
        self.assertIn('mdevs d2 were claimed', str(e))


class PostCopyTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.moves = live_migration.LiveMigrations(
            mock.Mock(nodename='n1'), mock.Mock(), mock.Mock())
        self.server = mock.sentinel.server

    def test_refused_for_vgpus_that_migrate(self):
        with mock.patch.object(self.moves, 'migrates_with_guest',
                               return_value=True):
            e = self.assertRaises(nova_exc.MigrationPreCheckError,
                                  self.moves.check_source, self.server,
                                  post_copy=True)
            self.moves.check_source(self.server, post_copy=False)
        self.assertIn('live_migration_permit_post_copy must be false on '
                      'node n1', str(e))

    def test_allowed_for_devices_unplugged_for_the_move(self):
        with mock.patch.object(self.moves, 'migrates_with_guest',
                               return_value=False):
            self.moves.check_source(self.server, post_copy=True)


class CreateMdevsTest(base.BaseTestCase):
    """pre_live_migration: only the mdevs still held for the move."""

    def setUp(self):
        super().setUp()
        self.host = mock.Mock(nodename='n1')
        self.moves = live_migration.LiveMigrations(
            self.host, mock.Mock(), mock.Mock())
        self.server = mock.Mock(uuid='server-1')

    def record(self, migration_id=7):
        # (Mock takes "parent" for its own.)
        return types.SimpleNamespace(
            instance_uuid='server-1', is_mdev=True,
            migration_id=migration_id, state=ledger.CLAIMED,
            parent='0000:81:00.0', mdev_type='nvidia-11')

    def test_creates_those_the_map_names(self):
        self.host.ledger.records.return_value = {'d1': self.record()}
        self.host.snapshot.return_value.host_mdevs.return_value = {}
        self.moves.create_mdevs(self.server, 7, {'s1': 'd1'})
        self.host.create_mdev.assert_called_once_with(
            '0000:81:00.0', 'nvidia-11', 'd1')

    def test_an_mdev_released_since_the_pre_check_fails_the_move(self):
        # Claimed for another move (or released): not this one's.
        self.host.ledger.records.return_value = {'d1': self.record(8)}
        e = self.assertRaises(exception.DeviceNotUsable,
                              self.moves.create_mdevs, self.server, 7,
                              {'s1': 'd1'})
        self.assertIn('devices d1 claimed for the live migration are not '
                      'held for it on node n1', str(e))
        self.host.create_mdev.assert_not_called()

    def test_no_map_fails_the_move(self):
        self.host.ledger.records.return_value = {'d1': self.record()}
        self.assertRaises(exception.DeviceNotUsable,
                          self.moves.create_mdevs, self.server, 7, {})
        self.host.create_mdev.assert_not_called()
