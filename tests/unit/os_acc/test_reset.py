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

import errno
import os
from unittest import mock

import fixtures
from oslotest import base

import os_acc
from os_acc import exception
from os_acc.internal import reset as reset_mod
from tests.unit.os_acc import fake_sysfs

WITH_RESET = '0000:3b:00.0'
WITHOUT_RESET = '0000:3b:00.1'
PF = '0000:5e:00.0'
VF = '0000:5e:00.2'
#: The fake sysfs' default vendor and device IDs.
INTEL_X710 = {'vendor_id': '8086', 'product_id': '1572'}


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

    def canary(self, name='reset'):
        """A file outside the sysfs root that no reset may touch."""
        outside = self.useFixture(fixtures.TempDir()).path
        target = os.path.join(outside, name)
        with open(target, 'w') as f:
            f.write('untouched')
        return outside, target

    def test_links_out_of_sysfs_root_are_not_followed(self):
        outside, target = self.canary()
        # A reset file that is a link is no sysfs attribute: refused.
        os.symlink(target, self.reset_file(WITHOUT_RESET))
        exc = self.assertRaises(exception.ResetNotSupported,
                                os_acc.reset_device, WITHOUT_RESET,
                                self.root)
        self.assertIn(WITHOUT_RESET, str(exc))
        # Nor is a device entry that leads out of the tree a device.
        address = '0000:3b:00.2'
        os.symlink(os.path.relpath(outside, self.sysfs.devices_dir),
                   os.path.join(self.sysfs.devices_dir, address))
        self.assertRaises(exception.DeviceNotFound, os_acc.reset_device,
                          address, self.root)
        os.unlink(os.path.join(self.sysfs.devices_dir, address))
        os.symlink(outside, os.path.join(self.sysfs.devices_dir, address))
        self.assertRaises(exception.DeviceNotFound, os_acc.reset_device,
                          address, self.root)
        self.assertEqual('untouched', self.read(target))

    def test_a_link_inside_the_device_path_is_not_followed(self):
        # devices/pci0000:3b is a link out of the tree to a copy of the
        # device, reset file and all: the device entry's own link is the
        # only one followed.
        outside, target = self.canary()
        os.rename(os.path.join(self.root, 'devices', 'pci0000:3b'),
                  os.path.join(outside, 'pci0000:3b'))
        os.symlink(os.path.join(outside, 'pci0000:3b'),
                   os.path.join(self.root, 'devices', 'pci0000:3b'))
        exc = self.assertRaises(exception.DeviceNotFound,
                                os_acc.reset_device, WITH_RESET, self.root)
        self.assertIn('without following links', str(exc))
        self.assertEqual('', self.read(os.path.join(
            outside, 'pci0000:3b', WITH_RESET, 'reset')))

    def test_an_entry_leading_to_another_device_is_refused(self):
        address = '0000:3b:00.3'
        os.symlink(os.readlink(os.path.join(self.sysfs.devices_dir,
                                            WITH_RESET)),
                   os.path.join(self.sysfs.devices_dir, address))
        self.assertRaises(exception.DeviceNotFound, os_acc.reset_device,
                          address, self.root)
        self.assertEqual('', self.read(self.reset_file(WITH_RESET)))

    def test_a_device_directory_in_bus_pci_devices_itself(self):
        # Test trees (Nova's functional harness) have no links at all.
        address = '0000:3b:00.4'
        path = os.path.join(self.sysfs.devices_dir, address)
        os.makedirs(path)
        open(os.path.join(path, 'reset'), 'w').close()
        self.assertTrue(os_acc.reset_device(address, self.root))
        self.assertEqual('1', self.read(os.path.join(path, 'reset')))

    def test_the_reset_goes_where_the_checks_looked(self):
        # The device's entry is swapped for a link to another directory
        # with a reset file right after it was resolved: the reset still
        # reaches the directory that was checked, never the new one.
        outside, target = self.canary()
        os.makedirs(os.path.join(outside, 'devices', 'x', WITH_RESET))
        os.rename(target, os.path.join(outside, 'devices', 'x', WITH_RESET,
                                       'reset'))
        target = os.path.join(outside, 'devices', 'x', WITH_RESET, 'reset')
        entry = os.path.join(self.sysfs.devices_dir, WITH_RESET)
        moved = os.path.join(self.root, 'devices', 'moved')
        real_check = reset_mod._check_managed

        def swap_then_check(dir_fd, address, specs):
            os.rename(self.sysfs.device_dir(WITH_RESET), moved)
            os.unlink(entry)
            os.symlink(os.path.join(outside, 'devices', 'x', WITH_RESET),
                       entry)
            return real_check(dir_fd, address, specs)

        self.useFixture(fixtures.MonkeyPatch(
            'os_acc.internal.reset._check_managed', swap_then_check))
        self.assertTrue(os_acc.reset_device(WITH_RESET, self.root,
                                            device_specs=[INTEL_X710]))
        self.assertEqual('1', self.read(os.path.join(moved, 'reset')))
        self.assertEqual('untouched', self.read(target))

    def test_kernel_failure_is_the_devices_verdict(self):
        real_write = os.write

        def write(fd, data):
            if data == b'1':
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_write(fd, data)

        with mock.patch('os.write', side_effect=write):
            exc = self.assertRaises(exception.ResetFailed,
                                    os_acc.reset_device, WITH_RESET,
                                    self.root)
        self.assertIn(WITH_RESET, str(exc))
        self.assertIn('Input/output error', str(exc))

    def test_no_privilege_is_not_a_verdict(self):
        with mock.patch('os.open', side_effect=PermissionError(
                errno.EACCES, 'Permission denied')):
            self.assertRaises(PermissionError, os_acc.reset_device,
                              WITH_RESET, self.root)


class TestResetManagedDevice(base.BaseTestCase):
    """``device_specs``: only what the operator's entries select is reset."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.sysfs = fake_sysfs.FakeSysfs(self.root)
        self.sysfs.add_device(WITH_RESET, reset=True)
        self.sysfs.add_device(PF, sriov_totalvfs='4', reset=True)
        self.sysfs.add_vf(PF, VF, 0, device='0x154c', reset=True)

    def resets(self, address):
        with open(os.path.join(self.sysfs.device_dir(address),
                               'reset')) as f:
            return f.read().count('1')

    def test_selected_device_is_reset(self):
        self.assertTrue(os_acc.reset_device(
            WITH_RESET, self.root, device_specs=[INTEL_X710]))
        self.assertEqual(1, self.resets(WITH_RESET))

    def test_device_no_entry_selects_is_refused(self):
        for specs in ([], [{'vendor_id': '10de'}],
                      [{'address': '0000:3b:00.1'}],
                      # An mdev entry does not make the whole device ours.
                      [dict(INTEL_X710, mdev_type='nvidia-35')]):
            with self.subTest(specs=specs):
                exc = self.assertRaises(exception.DeviceNotManaged,
                                        os_acc.reset_device, WITH_RESET,
                                        self.root, device_specs=specs)
                self.assertIn(WITH_RESET, str(exc))
                self.assertIn('8086:1572', str(exc))
        self.assertEqual(0, self.resets(WITH_RESET))

    def test_vf_matched_on_its_pf_as_sysfs_says(self):
        specs = [{'physfn': PF}]
        self.assertTrue(os_acc.reset_device(VF, self.root,
                                            device_specs=specs))
        self.assertRaises(exception.DeviceNotManaged, os_acc.reset_device,
                          PF, self.root, device_specs=specs)
        self.assertEqual((1, 0), (self.resets(VF), self.resets(PF)))

    def test_device_without_readable_ids_is_refused(self):
        os.unlink(os.path.join(self.sysfs.device_dir(WITH_RESET), 'vendor'))
        exc = self.assertRaises(exception.DeviceNotManaged,
                                os_acc.reset_device, WITH_RESET, self.root,
                                device_specs=[{'address': '*'}])
        self.assertIn('cannot be read', str(exc))
        self.assertEqual(0, self.resets(WITH_RESET))

    def test_ids_are_not_read_through_links(self):
        device_dir = self.sysfs.device_dir(WITH_RESET)
        outside = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(outside, 'vendor'), 'w') as f:
            f.write('0x8086\n')
        os.unlink(os.path.join(device_dir, 'vendor'))
        os.symlink(os.path.join(outside, 'vendor'),
                   os.path.join(device_dir, 'vendor'))
        self.assertRaises(exception.DeviceNotManaged, os_acc.reset_device,
                          WITH_RESET, self.root, device_specs=[INTEL_X710])

    def test_bad_spec_is_named(self):
        self.assertRaises(exception.InvalidDeviceSpec, os_acc.reset_device,
                          WITH_RESET, self.root,
                          device_specs=[{'vendor': '8086'}])
        self.assertEqual(0, self.resets(WITH_RESET))
