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
"""os_acc.guest_devices: the hostdevs the plugins write, read back."""

from xml.etree import ElementTree

import fixtures
from oslotest import base

import os_acc
from tests.unit.os_acc import test_plugins

PCI = ("<hostdev mode='subsystem' type='pci' managed='yes'><source>"
       "<address domain='0x%s' bus='0x%s' slot='0x%s' function='0x%s'/>"
       "</source></hostdev>")
MDEV = ("<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source>"
        "<address uuid='%s'/></source></hostdev>")
MDEV_UUID = 'c2177883-f1bb-47f0-914d-32a22e3a8804'


def domain(*devices):
    return ("<domain type='kvm'><name>g</name><devices>%s</devices>"
            "</domain>" % ''.join(devices))


class GuestDevicesTest(base.BaseTestCase):

    def test_pci_and_mdev_hostdevs(self):
        xml = domain(PCI % ('0000', '81', '00', '0'),
                     PCI % ('0000', '3B', '02', '1'),
                     MDEV % MDEV_UUID.upper())
        self.assertEqual({'0000:81:00.0', '0000:3b:02.1', MDEV_UUID},
                         os_acc.guest_devices(xml))

    def test_reads_back_what_the_plugins_write(self):
        self.useFixture(fixtures.MonkeyPatch('os_acc._EXT_MANAGER', None))
        os_acc.initialize(extension_manager=test_plugins.make_manager(
            'pci', 'mdev'))
        xml = test_plugins.domain_xml(
            os_acc.get_config(test_plugins.pci_acc()),
            os_acc.get_config(test_plugins.mdev_acc()))
        self.assertEqual({test_plugins.ADDRESS, test_plugins.MDEV_UUID},
                         os_acc.guest_devices(xml))

    def test_malformed_address_is_left_out_alone(self):
        xml = domain(PCI % ('0000', 'zz', '00', '0'),
                     "<hostdev mode='subsystem' type='pci'><source>"
                     "<address domain='0x0000' bus='0x82'/></source>"
                     "</hostdev>",
                     PCI % ('0000', '81', '00', '0'), MDEV % MDEV_UUID)
        with self.assertLogs('os_acc.internal.hostdev', 'WARNING') as logs:
            self.assertEqual({'0000:81:00.0', MDEV_UUID},
                             os_acc.guest_devices(xml))
        self.assertEqual(2, len(logs.records))
        self.assertIn("'bus': '0xzz'", logs.output[0])

    def test_other_devices_are_not_counted(self):
        # Only <hostdev type='pci'|'mdev'> children of <devices>: what the
        # plugins write. An SR-IOV port (<interface type='hostdev'>) is
        # Nova's, for Neutron; a USB hostdev has no PCI address.
        xml = domain(
            "<interface type='hostdev' managed='yes'><source>"
            "<address type='pci' domain='0x0000' bus='0x05' slot='0x00' "
            "function='0x1'/></source></interface>",
            "<hostdev mode='subsystem' type='usb'><source>"
            "<vendor id='0x1234'/><product id='0xbeef'/></source>"
            "</hostdev>",
            "<disk type='file'><address type='pci' domain='0x0000' "
            "bus='0x00' slot='0x04' function='0x0'/></disk>")
        self.assertEqual(set(), os_acc.guest_devices(xml))
        self.assertEqual(set(), os_acc.guest_devices(domain()))

    def test_xml_that_does_not_parse_raises(self):
        # The reconcile takes the guest as unreadable, not as empty.
        self.assertRaises(ElementTree.ParseError, os_acc.guest_devices,
                          '<domain><devices>')
        self.assertRaises(ElementTree.ParseError,
                          os_acc.guest_pci_addresses, '<domain><devices>')


class GuestPciAddressesTest(base.BaseTestCase):

    def test_one_per_hostdev_in_xml_order_without_mdevs(self):
        xml = domain(PCI % ('0000', '82', '00', '0'), MDEV % MDEV_UUID,
                     PCI % ('0000', '81', '00', '0'),
                     PCI % ('0000', 'zz', '00', '0'),
                     PCI % ('0000', '82', '00', '0'))
        with self.assertLogs('os_acc.internal.hostdev', 'WARNING'):
            self.assertEqual(
                ['0000:82:00.0', '0000:81:00.0', '0000:82:00.0'],
                os_acc.guest_pci_addresses(xml))
