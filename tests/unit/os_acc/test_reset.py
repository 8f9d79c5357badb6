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

import os

import fixtures
from oslotest import base

import os_acc
from os_acc import exception
from tests.unit.os_acc import fake_sysfs

WITH_RESET = '0000:3b:00.0'
WITHOUT_RESET = '0000:3b:00.1'


class TestResetDevice(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.sysfs = fake_sysfs.FakeSysfs(self.root)
        self.sysfs.add_device(WITH_RESET, reset=True)
        self.sysfs.add_device(WITHOUT_RESET)

    def reset_file(self, address):
        return os.path.join(self.sysfs.device_dir(address), 'reset')

    def read(self, path):
        with open(path) as f:
            return f.read()

    def test_reset(self):
        self.assertTrue(os_acc.reset_device(WITH_RESET, self.root))
        self.assertEqual('1', self.read(self.reset_file(WITH_RESET)))

    def test_address_is_normalized(self):
        self.assertTrue(os_acc.reset_device(WITH_RESET.upper(), self.root))
        self.assertEqual('1', self.read(self.reset_file(WITH_RESET)))

    def test_no_reset_method(self):
        self.assertFalse(os_acc.reset_device(WITHOUT_RESET, self.root))
        # Never create the file: only the kernel may.
        self.assertFalse(os.path.exists(self.reset_file(WITHOUT_RESET)))

    def test_missing_device(self):
        exc = self.assertRaises(exception.DeviceNotFound,
                                os_acc.reset_device, '0000:3b:00.2',
                                self.root)
        self.assertIn('0000:3b:00.2', str(exc))

    def test_bad_address(self):
        for address in ('3b:00.0', '0000:3b:00.8', '0000:3b:20.0',
                        '../../../etc/passwd', '0000:3b:00.0/..',
                        '0000:3b:00.0\n', '', None, 42):
            with self.subTest(address=address):
                exc = self.assertRaises(exception.InvalidDeviceAddress,
                                        os_acc.reset_device, address,
                                        self.root)
                self.assertIn(repr(address), str(exc))

    def test_links_out_of_sysfs_root_are_not_followed(self):
        outside = self.useFixture(fixtures.TempDir()).path
        target = os.path.join(outside, 'reset')
        with open(target, 'w') as f:
            f.write('untouched')
        # A reset file that leads out of the tree is no reset file.
        os.symlink(target, self.reset_file(WITHOUT_RESET))
        self.assertFalse(os_acc.reset_device(WITHOUT_RESET, self.root))
        # Nor is a device entry that leads out of the tree a device.
        address = '0000:3b:00.2'
        os.symlink(outside, os.path.join(self.sysfs.devices_dir, address))
        self.assertRaises(exception.DeviceNotFound, os_acc.reset_device,
                          address, self.root)
        self.assertEqual('untouched', self.read(target))
