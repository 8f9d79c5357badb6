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
"""nova_acc.compute.listing: names on every listing, XML when it changed.

Against Nova's fake libvirt connection (a PCI device, a PF with two VFs
and an mdev-capable GPU), counting the calls that describe devices.
"""

from unittest import mock

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from oslotest import base

from nova_acc import exception
from nova_acc.compute import listing


class NodeDeviceListingTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.libvirt', fakelibvirt))
        self.pci_info = fakelibvirt.HostPCIDevicesInfo(
            num_pci=1, num_pfs=1, num_vfs=2, num_mdevcap=1)
        self.conn = fakelibvirt.Connection('qemu:///system',
                                           pci_info=self.pci_info)
        self.host = mock.Mock(spec=['get_connection'])
        self.host.get_connection.return_value = self.conn
        self.list_all = self.useFixture(fixtures.MockPatchObject(
            self.conn, 'listAllDevices',
            wraps=self.conn.listAllDevices)).mock
        self.lookup = self.useFixture(fixtures.MockPatchObject(
            self.conn, 'nodeDeviceLookupByName',
            wraps=self.conn.nodeDeviceLookupByName)).mock
        self.now = 1000.0
        self.listing = listing.NodeDeviceListing(clock=lambda: self.now)
        self.gpu = self.pci_info.get_all_mdev_capable_devices()[0]

    def described_now(self):
        """Each device's XML as libvirt describes it now, by name."""
        return sorted(dev.XMLDesc(0) for dev in self.pci_info.devices.values())

    def set_gpu_capacity(self, instances):
        dev = self.pci_info.devices[self.gpu]
        xml = dev.XMLDesc(0)
        changed = xml.replace(
            '<availableInstances>16</availableInstances>',
            '<availableInstances>%d</availableInstances>' % instances)
        self.assertNotEqual(xml, changed)
        dev.XMLDesc = lambda flags=0: changed

    def test_the_first_listing_describes_every_device(self):
        self.assertEqual(self.described_now(),
                         sorted(self.listing.xmls(self.host)))
        self.list_all.assert_called_once_with(
            fakelibvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV)

    def test_same_names_describe_again_only_the_mdev_capable_devices(self):
        first = self.listing.xmls(self.host)
        self.set_gpu_capacity(3)
        second = self.listing.xmls(self.host)
        self.list_all.assert_called_once()
        self.lookup.assert_called_once_with(self.gpu)
        # Its capacity as libvirt has it now, the rest as before.
        self.assertEqual(self.described_now(), sorted(second))
        self.assertEqual(len(first), len(second))
        self.assertIn('<availableInstances>3</availableInstances>',
                      ''.join(second))

    def test_a_device_added_or_removed_lists_every_device_again(self):
        self.listing.xmls(self.host)
        removed = max(n for n in self.pci_info.devices if n != self.gpu)
        del self.pci_info.devices[removed]
        self.assertEqual(self.described_now(),
                         sorted(self.listing.xmls(self.host)))
        self.assertEqual(2, self.list_all.call_count)

    def test_a_change_under_the_same_name_is_seen_after_a_while(self):
        self.listing.xmls(self.host)
        name = next(n for n in self.pci_info.devices if n != self.gpu)
        dev = self.pci_info.devices[name]
        swapped = dev.XMLDesc(0).replace("<product id='0x", "<product id='0xf")
        self.assertNotEqual(dev.XMLDesc(0), swapped)
        dev.XMLDesc = lambda flags=0: swapped
        self.now += listing.FULL_LISTING_AFTER - 1
        self.assertNotIn(swapped, self.listing.xmls(self.host))
        self.now += 1
        self.assertIn(swapped, self.listing.xmls(self.host))
        self.assertEqual(2, self.list_all.call_count)

    def test_a_device_that_cannot_be_described_again_lists_in_full(self):
        self.listing.xmls(self.host)
        self.lookup.side_effect = fakelibvirt.make_libvirtError(
            fakelibvirt.libvirtError, 'Node device not found',
            error_code=fakelibvirt.VIR_ERR_NO_NODE_DEVICE)
        self.assertEqual(self.described_now(),
                         sorted(self.listing.xmls(self.host)))
        self.assertEqual(2, self.list_all.call_count)

    def test_a_listing_that_fails_fails_whatever_was_kept(self):
        self.listing.xmls(self.host)
        timed_out = fakelibvirt.make_libvirtError(
            fakelibvirt.libvirtError, 'Timed out during operation',
            error_code=fakelibvirt.VIR_ERR_OPERATION_TIMEOUT)
        self.useFixture(fixtures.MockPatchObject(
            self.conn, 'listDevices', side_effect=timed_out))
        e = self.assertRaises(exception.DeviceListingFailed,
                              self.listing.xmls, self.host)
        self.assertIn('Timed out', str(e))

    def test_a_failed_full_listing_keeps_nothing_new(self):
        self.list_all.side_effect = fakelibvirt.make_libvirtError(
            fakelibvirt.libvirtError, 'Timed out during operation',
            error_code=fakelibvirt.VIR_ERR_OPERATION_TIMEOUT)
        self.assertRaises(exception.DeviceListingFailed,
                          self.listing.xmls, self.host)
        self.list_all.side_effect = None
        self.assertEqual(self.described_now(),
                         sorted(self.listing.xmls(self.host)))
        self.assertEqual(2, self.list_all.call_count)
