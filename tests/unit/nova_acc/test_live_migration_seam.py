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
"""The source's rollback of a live migration, when the guest is gone."""

from unittest import mock

import fixtures
from nova import exception as nova_exc
from oslotest import base

from nova_acc.compute import live_migration as compute_live
from nova_acc.seams import live_migration
from tests.unit.nova_acc.compute import rooms


class _Base:
    def rollback_live_migration_at_source(self, context, instance,
                                          migrate_data):
        self.nova_rolled_back = True


class _Driver(live_migration.LiveMigrationMixin, _Base):
    def __init__(self, guest_error=None):
        self._host = mock.Mock()
        self._host.get_guest.side_effect = guest_error
        self.acc = mock.Mock()


class RollbackAtSourceTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.reattach = self.useFixture(fixtures.MockPatchObject(
            compute_live.LiveMigrations, 'reattach_at_source')).mock
        self.server = rooms.server([rooms.pool_binding('pool')])

    def test_a_deleted_guest_lets_nova_roll_back_on(self):
        # Deleted during the migration: Nova's rollback must go on to the
        # destination's, not fail on the source's missing guest.
        driver = _Driver(nova_exc.InstanceNotFound(instance_id='x'))
        driver.rollback_live_migration_at_source(None, self.server, None)
        self.assertTrue(driver.nova_rolled_back)
        self.reattach.assert_not_called()

    def test_the_guest_gets_its_devices_back(self):
        driver = _Driver()
        driver.rollback_live_migration_at_source(None, self.server, None)
        self.reattach.assert_called_once_with(
            driver._host.get_guest.return_value, self.server)
