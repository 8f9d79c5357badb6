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

PF = '0000:3b:00.0'
VF1 = '0000:3b:02.0'
VF2 = '0000:3b:02.1'
GPU = '0000:af:00.0'
ODD = '0000:d8:00.0'
NO_IDS = '0000:d8:00.1'

ALL = {'address': '*'}


class FakeHostTestCase(base.BaseTestCase):
    """A host with an SR-IOV NIC (PF and 2 VFs), a vGPU and odd devices."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        sysfs = fake_sysfs.FakeSysfs(self.root)
        sysfs.add_device(PF, vendor='0x8086', device='0x1572',
                         numa_node='1', iommu_group=30, driver='i40e',
                         sriov_totalvfs='8', sriov_numvfs='2', reset=True)
        for index, vf in enumerate((VF1, VF2)):
            sysfs.add_vf(PF, vf, index, vendor='0x8086', device='0x154c',
                         numa_node='1', iommu_group=31 + index,
                         driver='vfio-pci', sriov_totalvfs=None)
        sysfs.add_device(GPU, vendor='0x10de', device='0x1EB8',
                         pci_class='0x030200', numa_node='-1',
                         iommu_group=40, driver='nvidia',
                         mdev_types={'nvidia-222': '4', 'nvidia-223': '0'})
        # Everything but the IDs is broken in some way.
        sysfs.add_device(ODD, vendor='0x15B3', device='0x1017',
                         pci_class='garbage', numa_node=None,
                         sriov_totalvfs='-3', sriov_numvfs=b'\xff\xfe\n',
                         mdev_types={'good': '2', 'bad': 'many',
                                     'negative': '-1'})
        os.mkdir(os.path.join(sysfs.device_dir(ODD), 'numa_node'))
        sysfs.write(ODD, 'iommu_group', '12\n')  # a file, not a link
        sysfs.link(ODD, 'driver', '../../../bus/pci/drivers/\udcff')
        sysfs.link(ODD, 'physfn', '../not-an-address')
        sysfs.add_device(NO_IDS, vendor=None, device='0x1017')
        os.mkdir(os.path.join(sysfs.devices_dir, 'not-a-device'))
        sysfs.add_device('0000:D8:00.2')  # upper case: not a kernel name


class TestDiscover(FakeHostTestCase):

    def test_all_fields(self):
        devices = os_acc.discover([ALL], sysfs_root=self.root)

        def dev(address, vendor, product, **kwargs):
            kwargs.setdefault('class_code', '020000')
            return os_acc.Device(
                address=address, vendor_id=vendor, product_id=product,
                resource_class=('CUSTOM_PCI_%s_%s' % (vendor,
                                                      product)).upper(),
                **kwargs)

        expected = [
            dev(PF, '8086', '1572', numa_node=1, iommu_group=30,
                driver='i40e', sriov_totalvfs=8, sriov_numvfs=2),
            dev(VF1, '8086', '154c', numa_node=1, iommu_group=31,
                driver='vfio-pci', physfn=PF),
            dev(VF2, '8086', '154c', numa_node=1, iommu_group=32,
                driver='vfio-pci', physfn=PF),
            dev(GPU, '10de', '1eb8', class_code='030200', iommu_group=40,
                driver='nvidia',
                mdev_types={'nvidia-222': 4, 'nvidia-223': 0}),
            dev(ODD, '15b3', '1017', class_code=None,
                mdev_types={'good': 2}),
        ]
        self.assertEqual(expected, devices)
        self.assertTrue(devices[0].is_pf)
        self.assertFalse(devices[0].is_vf)
        self.assertTrue(devices[1].is_vf)
        self.assertFalse(devices[1].is_pf)

    def test_missing_root(self):
        self.assertEqual(
            [], os_acc.discover([ALL], sysfs_root=self.root + '/nowhere'))

    def test_specs_select_and_tag(self):
        specs = [
            # The VFs of the NIC, whatever their IDs.
            {'physfn': '3b:00.*', 'resource_class': 'CUSTOM_NIC_VF',
             'traits': 'CUSTOM_A, HW_NIC_SRIOV'},
            # Everything else from Intel: here only the PF itself.
            {'vendor_id': '0x8086', 'traits': []},
            {'vendor_id': '10DE', 'product_id': '1eb8',
             'resource_class': 'VGPU', 'traits': ['CUSTOM_GPU']},
        ]
        devices = os_acc.discover(specs, sysfs_root=self.root)
        self.assertEqual(
            [(PF, 'CUSTOM_PCI_8086_1572', set()),
             (VF1, 'CUSTOM_NIC_VF', {'CUSTOM_A', 'HW_NIC_SRIOV'}),
             (VF2, 'CUSTOM_NIC_VF', {'CUSTOM_A', 'HW_NIC_SRIOV'}),
             (GPU, 'VGPU', {'CUSTOM_GPU'})],
            [(d.address, d.resource_class, d.traits) for d in devices])

    def test_invalid_spec_fails_before_scanning(self):
        self.assertRaises(exception.InvalidDeviceSpec, os_acc.discover,
                          [{'vendor': '8086'}], sysfs_root='/nonexistent')


class TestSelectDevices(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.devices = [
            os_acc.Device(address=VF2, vendor_id='8086', product_id='154c',
                          physfn=PF),
            os_acc.Device(address=PF, vendor_id='8086', product_id='1572'),
            os_acc.Device(address='0001:00:01.7', vendor_id='10ee',
                          product_id='5000'),
        ]

    def addresses(self, specs):
        return [d.address for d in os_acc.select_devices(self.devices, specs)]

    def test_match_keys(self):
        cases = [
            ([{'vendor_id': '8086'}], [PF, VF2]),
            ([{'vendor_id': '0X8086', 'product_id': '0x154C'}], [VF2]),
            ([{'vendor_id': '*', 'product_id': '5000'}], ['0001:00:01.7']),
            ([{'product_id': '*'}], [PF, VF2, '0001:00:01.7']),
            ([{'vendor_id': '10ee', 'address': '0001:*'}], ['0001:00:01.7']),
            ([{'address': '0000:3b:0[0-1].?'}], [PF]),
            ([{'address': '3B:02.1'}], [VF2]),   # Nova's short form
            ([{'address': '00:01.7'}], []),   # ... means domain 0
            ([{'address': '*:01.7'}], ['0001:00:01.7']),
            ([{'physfn': PF}], [VF2]),
            ([{'physfn': '*', 'vendor_id': '10ee'}], []),
            ([{'vendor_id': '8086', 'product_id': '1572'},
              {'address': '0001:00:01.7'}], [PF, '0001:00:01.7']),
            ([], []),
        ]
        for specs, expected in cases:
            with self.subTest(specs=specs):
                self.assertEqual(expected, self.addresses(specs))

    def test_first_match_wins_and_originals_untouched(self):
        specs = [{'address': '*', 'resource_class': 'CUSTOM_FIRST'},
                 {'address': '*', 'resource_class': 'CUSTOM_SECOND'}]
        selected = os_acc.select_devices(self.devices, specs)
        self.assertEqual({'CUSTOM_FIRST'},
                         {d.resource_class for d in selected})
        self.assertEqual([None] * 3,
                         [d.resource_class for d in self.devices])
        self.assertEqual(
            'CUSTOM_PCI_10EE_5000',
            os_acc.select_devices(self.devices,
                                  [{'vendor_id': '10ee'}])[0].resource_class)

    def test_invalid_specs(self):
        cases = [
            ([{'vendor': '8086'}], "'vendor'"),
            ([{'address': '*', 1: 'x'}], '1'),
            ([{}], 'at least one of'),
            ([{'resource_class': 'CUSTOM_X'}], 'at least one of'),
            ([{'vendor_id': '18086'}], "'vendor_id'"),
            ([{'vendor_id': 'intel'}], "'vendor_id'"),
            ([{'vendor_id': 0x8086}], "'vendor_id'"),
            ([{'product_id': '0x'}], "'product_id'"),
            ([{'address': '0000:3b:00.0/..'}], "'address'"),
            ([{'address': '0000:0000:3b:00.0'}], "'address'"),
            ([{'address': {'domain': '0000'}}], "'address'"),
            ([{'physfn': '; rm'}], "'physfn'"),
            ([{'address': '*', 'resource_class': 'fpga'}],
             "'resource_class'"),
            ([{'address': '*', 'resource_class': 'VCPU'}],
             "'VCPU' is not a device class"),
            ([{'address': '*', 'resource_class': 'MEMORY_MB'}],
             "'MEMORY_MB' is not a device class"),
            ([{'address': '*', 'traits': 'CUSTOM_A,,CUSTOM_B'}], "'traits'"),
            ([{'address': '*', 'traits': ['custom_a']}], "'traits'"),
            ([{'address': '*', 'traits': {'CUSTOM_A': 1}}], "'traits'"),
            (['address=*'], "'address=*'"),
            ({'address': '*'}, 'list'),
        ]
        for specs, needle in cases:
            with self.subTest(specs=specs):
                exc = self.assertRaises(exception.InvalidDeviceSpec,
                                        os_acc.select_devices,
                                        self.devices, specs)
                self.assertIn(needle, str(exc))


class TestRealSysfs(base.BaseTestCase):
    """discover() against this machine's /sys, read here independently."""

    ROOT = '/sys/bus/pci/devices'

    @staticmethod
    def _read(path):
        with open(path) as f:
            return f.read().strip()

    @staticmethod
    def _link_name(path):
        if not os.path.islink(path):
            return None
        return os.path.basename(os.readlink(path))

    def test_matches_sysfs(self):
        if not os.path.isdir(self.ROOT):
            self.skipTest('%s does not exist on this machine' % self.ROOT)
        devices = os_acc.discover([ALL])
        addresses = sorted(os.listdir(self.ROOT))
        self.assertEqual(addresses, [d.address for d in devices])
        for device in devices:
            path = os.path.join(self.ROOT, device.address)
            with self.subTest(address=device.address):
                self.assertEqual(self._read(path + '/vendor')[2:].lower(),
                                 device.vendor_id)
                self.assertEqual(self._read(path + '/device')[2:].lower(),
                                 device.product_id)
                self.assertEqual(self._read(path + '/class')[2:].lower(),
                                 device.class_code)
                numa = int(self._read(path + '/numa_node'))
                self.assertEqual(None if numa == -1 else numa,
                                 device.numa_node)
                self.assertEqual(self._link_name(path + '/driver'),
                                 device.driver)
                group = self._link_name(path + '/iommu_group')
                self.assertEqual(None if group is None else int(group),
                                 device.iommu_group)
                self.assertEqual(self._link_name(path + '/physfn'),
                                 device.physfn)
                self.assertEqual(
                    'CUSTOM_PCI_%s_%s' % (device.vendor_id.upper(),
                                          device.product_id.upper()),
                    device.resource_class)
