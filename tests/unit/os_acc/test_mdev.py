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
"""os_acc and mediated devices: device specs with mdev_type, mdev XML."""

from oslotest import base

import os_acc
from os_acc import exception

UUID = '4b20d080-1b54-4048-85b3-a6a62d165c01'


def gpu(address='0000:81:00.0', **types):
    return os_acc.Device(address=address, vendor_id='10de',
                         product_id='1eb8', mdev_types=types or {
                             'nvidia-35': 4, 'nvidia-36': 2})


def mdev_xml(name=None, uuid=UUID, parent='pci_0000_81_00_0',
             mdev_type='nvidia-35'):
    uuid_element = '<uuid>%s</uuid>' % uuid if uuid else ''
    return ("<device><name>%s</name><parent>%s</parent>"
            "<capability type='mdev'><type id='%s'/>%s"
            "<iommuGroup number='12'/></capability></device>" % (
                name or 'mdev_%s_0000_81_00_0' % UUID.replace('-', '_'),
                parent, mdev_type, uuid_element))


class DeviceSpecMdevTypeTest(base.BaseTestCase):

    def test_mdev_entry_selects_the_parent_for_its_type(self):
        [dev] = os_acc.select_devices([gpu()], [
            {'vendor_id': '10de', 'mdev_type': 'nvidia-35',
             'traits': 'CUSTOM_A40_2Q'}])
        self.assertEqual(('nvidia-35', 'VGPU', {'CUSTOM_A40_2Q'}),
                         (dev.mdev_type, dev.resource_class, dev.traits))

    def test_whole_and_mdev_entries_are_matched_separately(self):
        specs = [{'vendor_id': '10de', 'resource_class': 'PGPU'},
                 {'vendor_id': '10de', 'mdev_type': 'nvidia-36'},
                 {'vendor_id': '10de', 'mdev_type': 'nvidia-35'},
                 # a second entry of a type already matched: ignored
                 {'address': '*', 'mdev_type': 'nvidia-35',
                  'resource_class': 'CUSTOM_OTHER'}]
        devs = os_acc.select_devices([gpu()], specs)
        self.assertEqual([(None, 'PGPU'), ('nvidia-35', 'VGPU'),
                          ('nvidia-36', 'VGPU')],
                         [(d.mdev_type, d.resource_class) for d in devs])

    def test_type_the_parent_cannot_create_selects_nothing(self):
        self.assertEqual([], os_acc.select_devices([gpu()], [
            {'vendor_id': '10de', 'mdev_type': 'nvidia-99'}]))
        # and a device without mdev types is never an mdev parent
        plain = os_acc.Device(address='0000:82:00.0', vendor_id='10de',
                              product_id='1eb8')
        self.assertEqual([], os_acc.select_devices([plain], [
            {'vendor_id': '10de', 'mdev_type': 'nvidia-35'}]))

    def test_invalid_mdev_type_names_the_key(self):
        for value in ('', 'nvidia 35', "nvidia-35'/><evil", '../x', 35,
                      None, 'x' * 65, '-leading'):
            with self.subTest(value=value):
                exc = self.assertRaises(
                    exception.InvalidDeviceSpec, os_acc.select_devices,
                    [gpu()], [{'vendor_id': '10de', 'mdev_type': value}])
                self.assertIn("'mdev_type'", str(exc))

    def test_valid_type_names(self):
        for name in ('nvidia-35', 'i915-GVTg_V5_4', 'mlx5_core-local',
                     'nvidia-558'):
            self.assertTrue(os_acc.is_valid_mdev_type(name), name)


class MdevNodeDeviceTest(base.BaseTestCase):

    def test_mdev_with_uuid_element(self):
        self.assertEqual(
            {UUID: os_acc.MediatedDevice(UUID, '0000:81:00.0',
                                         'nvidia-35')},
            os_acc.mdevs_from_nodedevs([mdev_xml()]))

    def test_uuid_from_the_name_of_older_libvirt(self):
        for name in ('mdev_%s' % UUID.replace('-', '_'),
                     'mdev_%s_0000_81_00_0' % UUID.replace('-', '_')):
            with self.subTest(name=name):
                self.assertEqual([UUID], list(os_acc.mdevs_from_nodedevs(
                    [mdev_xml(name=name, uuid=None)])))

    def test_not_an_mdev_and_bad_ones_are_skipped(self):
        pci = ("<device><name>pci_0000_81_00_0</name>"
               "<capability type='pci'/></device>")
        found = os_acc.mdevs_from_nodedevs([
            pci, '<device', mdev_xml(name='mdev_nope', uuid=None),
            mdev_xml(uuid='not-a-uuid'), mdev_xml()])
        self.assertEqual([UUID], list(found))

    def test_parent_that_is_not_a_pci_function(self):
        [mdev] = os_acc.mdevs_from_nodedevs(
            [mdev_xml(parent='css_0_0_0')]).values()
        self.assertIsNone(mdev.parent)


class NodedevNameTest(base.BaseTestCase):

    def test_round_trip(self):
        address = os_acc.PciAddress.parse('0000:3b:02.1')
        self.assertEqual('pci_0000_3b_02_1', address.nodedev_name())
        self.assertEqual(address, os_acc.PciAddress.from_nodedev_name(
            'pci_0000_3b_02_1'))

    def test_bad_names(self):
        for name in ('pci_0000_3b_02', 'usb_0000_3b_02_1', None,
                     'pci_0000_3b_20_1', 'pci_0000_3b_02_1_x'):
            self.assertRaises(exception.InvalidDeviceAddress,
                              os_acc.PciAddress.from_nodedev_name, name)
