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
"""The ``live_migration`` key of a device_spec entry."""

import os_acc
from os_acc import exception
from os_acc.internal import device_spec
from oslotest import base

DEVICE = os_acc.Device(address='0000:81:00.0', vendor_id='1bd4',
                       product_id='0003')


class LiveMigrationKeyTest(base.BaseTestCase):

    def traits_of(self, spec):
        [dev] = os_acc.select_devices([DEVICE], [spec])
        return dev.traits

    def test_replug_gives_the_devices_the_trait(self):
        spec = {'vendor_id': '1bd4', 'live_migration': 'replug'}
        self.assertEqual('replug',
                         device_spec.DeviceSpec(spec).live_migration)
        self.assertIn('CUSTOM_ACC_LIVE_MIGRATION_REPLUG',
                      self.traits_of(spec))

    def test_without_the_key_no_trait(self):
        spec = {'vendor_id': '1bd4'}
        self.assertIsNone(device_spec.DeviceSpec(spec).live_migration)
        self.assertNotIn('CUSTOM_ACC_LIVE_MIGRATION_REPLUG',
                         self.traits_of(spec))

    def test_other_values_are_refused_naming_the_key(self):
        for value in ('MIGRATE', 'REPLUG', True, 1, None, ['replug']):
            e = self.assertRaises(
                exception.InvalidDeviceSpec, device_spec.DeviceSpec,
                {'vendor_id': '1bd4', 'live_migration': value})
            self.assertIn("'live_migration'", str(e))

    def test_mdev_entries_cannot_replug(self):
        e = self.assertRaises(
            exception.InvalidDeviceSpec, device_spec.DeviceSpec,
            {'vendor_id': '10de', 'mdev_type': 'nvidia-11',
             'live_migration': 'replug'})
        self.assertIn('whole PCI devices', str(e))

    def test_mdev_entries_migrate_with_the_trait(self):
        spec = {'vendor_id': '10de', 'mdev_type': 'nvidia-11',
                'live_migration': 'migrate'}
        entry = device_spec.DeviceSpec(spec)
        self.assertEqual('migrate', entry.live_migration)
        self.assertIn('CUSTOM_ACC_LIVE_MIGRATION_MIGRATE',
                      entry.device_traits)
        self.assertNotIn('CUSTOM_ACC_LIVE_MIGRATION_REPLUG',
                         entry.device_traits)

    def test_whole_devices_migrate_with_the_trait(self):
        # Devices on VFIO variant drivers: their pools get the trait.
        spec = {'vendor_id': '1bd4', 'live_migration': 'migrate'}
        self.assertEqual('migrate',
                         device_spec.DeviceSpec(spec).live_migration)
        traits = self.traits_of(spec)
        self.assertIn('CUSTOM_ACC_LIVE_MIGRATION_MIGRATE', traits)
        self.assertNotIn('CUSTOM_ACC_LIVE_MIGRATION_REPLUG', traits)
