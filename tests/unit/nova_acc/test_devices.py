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
"""nova_acc.compute.inventory: [nova_acc] device_spec and libvirt's listing.

The node-device XML parsing is os_acc's: tests/unit/os_acc/test_nodedev.py.
"""

from unittest import mock

import fixtures
import libvirt
from oslo_config import fixture as config_fixture
from oslotest import base

from os_acc import exception as acc_exc

from nova_acc import conf
from nova_acc import exception
from nova_acc.compute import inventory as devices
from tests.unit.os_acc import test_nodedev


class FakeNodeDevice:

    def __init__(self, xml=None, error=None):
        self.xml = xml
        self.error = error

    def XMLDesc(self, flags):
        if self.error is not None:
            raise self.error
        return self.xml


class DiscoverTest(base.BaseTestCase):
    """The nova-compute side: list through Nova's Host, parse in os_acc."""

    def setUp(self):
        super().setUp()
        # Whatever libvirt module another test left in Nova's host module.
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.libvirt', libvirt))
        self.host = mock.Mock(spec=['list_all_devices'])
        self.host.list_all_devices.return_value = [
            FakeNodeDevice(test_nodedev.GPU_XML),
            FakeNodeDevice(error=libvirt.libvirtError('gone')),
            FakeNodeDevice(test_nodedev.PF_XML),
            FakeNodeDevice(test_nodedev.NET_XML),
        ]

    def test_lists_pci_node_devices(self):
        with self.assertLogs('nova_acc.compute.inventory', 'WARNING') as logs:
            found = devices.discover(self.host, [{'address': '*'}])
        self.host.list_all_devices.assert_called_once_with(
            libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV)
        self.assertEqual(['0000:3b:00.0', '0000:af:00.0'],
                         [d.address for d in found])
        self.assertIn('gone', logs.output[0])

    def test_no_specs_no_libvirt_call(self):
        self.assertEqual([], devices.discover(self.host, []))
        self.host.list_all_devices.assert_not_called()

    def test_bad_spec(self):
        self.assertRaises(acc_exc.InvalidDeviceSpec, devices.discover,
                          self.host, [{'vendor': '10de'}])
        self.host.list_all_devices.assert_not_called()


class DeviceSpecConfigTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))

    def test_json_lines(self):
        self.conf.config(group='nova_acc', device_spec=[
            '{"vendor_id": "1172", "resource_class": "FPGA"}'])
        self.assertEqual([{'vendor_id': '1172', 'resource_class': 'FPGA'}],
                         conf.device_specs())

    def test_bad_json_names_the_line(self):
        self.conf.config(group='nova_acc', device_spec=['{vendor_id: 1}'])
        e = self.assertRaises(exception.InvalidDeviceSpecConfig,
                              conf.device_specs)
        self.assertIn("[nova_acc] device_spec '{vendor_id: 1}' is not valid "
                      "JSON", str(e))

    def test_not_an_object(self):
        self.conf.config(group='nova_acc', device_spec=['["a"]'])
        self.assertRaises(exception.InvalidDeviceSpecConfig,
                          conf.device_specs)
