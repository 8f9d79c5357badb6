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
"""nova_acc.compute.snapshot: one listing of the host per operation.

The listing itself (``inventory.discover``: through Nova's Host, parsed in
os_acc; the XML parsing is tests/unit/os_acc/test_nodedev.py) and the
snapshot that takes it once and carries it.
"""

import dataclasses
from unittest import mock

import fixtures
import libvirt
import os_acc
from os_acc import exception as acc_exc
from oslo_config import fixture as config_fixture
from oslotest import base

from nova_acc import conf
from nova_acc import exception
from nova_acc import pools
from nova_acc.compute import inventory
from nova_acc.compute import listing
from nova_acc.compute import snapshot
from tests.unit.os_acc import test_nodedev

FPGA = os_acc.Device(address='0000:3b:00.0', vendor_id='1172',
                     product_id='0001', resource_class='FPGA')
GPU = os_acc.Device(address='0000:81:00.0', vendor_id='10de',
                    product_id='0ffe', resource_class='VGPU',
                    mdev_types={'nvidia-11': 2}, mdev_type='nvidia-11')
VGPU_SPEC = {'vendor_id': '10de', 'mdev_type': 'nvidia-11'}


class FakeNodeDevice:

    def __init__(self, xml=None, error=None):
        self.xml = xml
        self.error = error

    def name(self):
        return 'pci_%d' % id(self)

    def XMLDesc(self, flags):
        if self.error is not None:
            raise self.error
        return self.xml


class DiscoverTest(base.BaseTestCase):
    """The nova-compute side: list through libvirt, parse in os_acc."""

    def setUp(self):
        super().setUp()
        # Whatever libvirt module another test left in Nova's host module.
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.libvirt', libvirt))
        self.host = mock.Mock(spec=['get_connection'])
        self.list_all = self.host.get_connection.return_value.listAllDevices
        self.list_all.return_value = [
            FakeNodeDevice(test_nodedev.GPU_XML),
            FakeNodeDevice(error=libvirt.libvirtError('gone')),
            FakeNodeDevice(test_nodedev.PF_XML),
            FakeNodeDevice(test_nodedev.NET_XML),
        ]
        # The names the host's first listing asks for before describing
        # every device (nova_acc/compute/listing.py).
        self.host.get_connection.return_value.listDevices.return_value = [
            dev.name() for dev in self.list_all.return_value]

    def discover(self, specs):
        return inventory.discover(self.host, specs,
                                  listing.NodeDeviceListing())

    def test_lists_pci_node_devices(self):
        with self.assertLogs('nova_acc.compute.listing', 'WARNING') as logs:
            found = self.discover([{'address': '*'}])
        self.list_all.assert_called_once_with(
            libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV)
        self.assertEqual(['0000:3b:00.0', '0000:af:00.0'],
                         [d.address for d in found])
        self.assertIn('gone', logs.output[0])

    def test_a_failed_listing_is_not_an_empty_host(self):
        # Nova's Host.list_all_devices would log it and return no device.
        self.list_all.side_effect = libvirt.libvirtError('timed out')
        e = self.assertRaises(exception.DeviceListingFailed,
                              self.discover, [{'address': '*'}])
        self.assertIn('timed out', str(e))

    def test_no_specs_no_libvirt_call(self):
        self.assertEqual([], self.discover([]))
        self.list_all.assert_not_called()

    def test_bad_spec(self):
        self.assertRaises(acc_exc.InvalidDeviceSpec, self.discover,
                          [{'vendor': '10de'}])
        self.list_all.assert_not_called()


class HostSnapshotTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.found = [FPGA, GPU]
        self.discover = self.useFixture(fixtures.MockPatchObject(
            inventory, 'discover',
            side_effect=lambda h, s, n: self.found)).mock
        self.list_mdevs = self.useFixture(fixtures.MockPatchObject(
            snapshot.mdev, 'list_mdevs', return_value={})).mock
        self.libvirt_host = mock.Mock()
        self.libvirt_host.get_hostname.return_value = 'node1'

    def host(self, specs=({'vendor_id': '1172'}, VGPU_SPEC)):
        return snapshot.Host(self.libvirt_host, list(specs))

    def test_nothing_is_listed_until_a_fact_is_asked_for(self):
        self.host().snapshot()
        self.discover.assert_not_called()

    def test_every_fact_comes_from_one_listing(self):
        host = self.host()
        snap = host.snapshot()
        self.assertEqual({FPGA.address: FPGA}, snap.managed)
        self.assertEqual([GPU], snap.mdev_parents)
        self.assertEqual(
            {pools.pool_uuid('node1', pools.PoolKey.of(FPGA)),
             pools.pool_uuid('node1', pools.PoolKey.of(GPU))},
            set(snap.pools))
        snap.take()
        # The host's listing, kept between snapshots, describes the devices.
        self.discover.assert_called_once_with(
            self.libvirt_host, [{'vendor_id': '1172'}, VGPU_SPEC],
            host.node_devices)

    def test_each_operation_gets_its_own_listing(self):
        host = self.host()
        host.snapshot().take()
        host.snapshot().take()
        self.assertEqual(2, self.discover.call_count)

    def test_host_mdevs_not_asked_without_mdev_types_or_records(self):
        snap = self.host(specs=[{'vendor_id': '1172'}]).snapshot()
        self.assertEqual([], snap.mdev_parents)
        self.assertEqual({}, snap.host_mdevs({}))
        self.list_mdevs.assert_not_called()

    def test_host_mdevs_listed_once(self):
        snap = self.host().snapshot()
        snap.host_mdevs()
        snap.host_mdevs()
        self.list_mdevs.assert_called_once_with(self.libvirt_host)

    def test_a_removed_mdev_refreshes_the_parents_capacity(self):
        snap = self.host().snapshot().take()
        snap.host_mdevs()
        self.found = [FPGA, dataclasses.replace(
            GPU, mdev_types={'nvidia-11': 3})]
        snap.refresh_mdevs()
        self.assertEqual({'nvidia-11': 3}, snap.mdev_parents[0].mdev_types)
        snap.host_mdevs()
        self.assertEqual(2, self.discover.call_count)
        self.assertEqual(2, self.list_mdevs.call_count)

    def test_refresh_lists_nothing_not_asked_for_yet(self):
        snap = self.host().snapshot()
        snap.refresh_mdevs()
        self.discover.assert_not_called()

    def test_refresh_without_mdev_types_lists_nothing_again(self):
        snap = self.host(specs=[{'vendor_id': '1172'}]).snapshot().take()
        snap.refresh_mdevs()
        self.discover.assert_called_once()


class CheckNoSharedDevicesTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))
        self.useFixture(fixtures.MockPatchObject(
            inventory, 'discover', return_value=[FPGA, GPU]))
        libvirt_host = mock.Mock()
        libvirt_host.get_hostname.return_value = 'node1'
        self.host = snapshot.Host(libvirt_host, [{'vendor_id': '1172'},
                                                 VGPU_SPEC])

    def test_a_device_nova_also_selects_stops_the_start(self):
        self.conf.config(group='pci', device_spec=[
            '{"vendor_id": "1172", "product_id": "0001"}'])
        e = self.assertRaises(exception.ConflictingDeviceSpec,
                              self.host.check_no_shared_devices)
        self.assertIn(FPGA.address, str(e))

    def test_an_mdev_parent_nova_also_selects_stops_the_start(self):
        self.conf.config(group='pci', device_spec=['{"vendor_id": "10de"}'])
        self.assertRaises(exception.ConflictingDeviceSpec,
                          self.host.check_no_shared_devices)

    def test_nova_vgpus_beside_ours_stop_the_start(self):
        self.conf.config(group='devices', enabled_mdev_types=['nvidia-11'])
        self.assertRaises(exception.ConflictingMdevConfig,
                          self.host.check_no_shared_devices)

    def test_other_devices_are_fine(self):
        self.conf.config(group='pci', device_spec=['{"vendor_id": "8086"}'])
        self.host.check_no_shared_devices()
