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
"""libvirt node-device XML -> os_acc.Device."""

from oslo_config import fixture as config_fixture
from oslotest import base

from nova_acc import conf
from nova_acc.virt import devices

# Shapes as libvirt 9/10 prints them for an SR-IOV PF, one of its VFs and
# an mdev-capable GPU (trimmed to the elements nova-acc reads).
PF_XML = """<device><name>pci_0000_3b_00_0</name>
<driver><name>ice</name></driver>
<capability type='pci'><class>0x020000</class>
<domain>0</domain><bus>59</bus><slot>0</slot><function>0</function>
<product id='0x1592'>E810-C</product><vendor id='0x8086'>Intel</vendor>
<capability type='virt_functions' maxCount='128'>
<address domain='0x0000' bus='0x3b' slot='0x01' function='0x0'/>
<address domain='0x0000' bus='0x3b' slot='0x01' function='0x1'/>
</capability>
<iommuGroup number='27'><address domain='0x0000' bus='0x3b' slot='0x00'
 function='0x0'/></iommuGroup><numa node='1'/></capability></device>"""

VF_XML = """<device><name>pci_0000_3b_01_1</name>
<driver><name>vfio-pci</name></driver>
<capability type='pci'><domain>0</domain><bus>59</bus><slot>1</slot>
<function>1</function>
<product id='0x1889'>VF</product><vendor id='0x8086'>Intel</vendor>
<capability type='phys_function'>
<address domain='0x0000' bus='0x3b' slot='0x00' function='0x0'/>
</capability><numa node='-1'/></capability></device>"""

GPU_XML = """<device><name>pci_0000_af_00_0</name>
<capability type='pci'><domain>0</domain><bus>175</bus><slot>0</slot>
<function>0</function><product id='0x1eb8'>T4</product>
<vendor id='0x10de'>NVIDIA</vendor>
<capability type='mdev_types'>
<type id='nvidia-222'><name>GRID T4-1B</name><deviceAPI>vfio-pci</deviceAPI>
<availableInstances>16</availableInstances></type>
<type id='nvidia-223'><availableInstances>8</availableInstances></type>
</capability></capability></device>"""


class NodeDeviceXMLTest(base.BaseTestCase):

    def test_pf(self):
        dev = devices.device_from_nodedev_xml(PF_XML)
        self.assertEqual('0000:3b:00.0', dev.address)
        self.assertEqual(('8086', '1592'), (dev.vendor_id, dev.product_id))
        self.assertEqual('ice', dev.driver)
        self.assertEqual(1, dev.numa_node)
        self.assertEqual(27, dev.iommu_group)
        self.assertEqual((128, 2), (dev.sriov_totalvfs, dev.sriov_numvfs))
        self.assertIsNone(dev.physfn)

    def test_vf(self):
        dev = devices.device_from_nodedev_xml(VF_XML)
        self.assertEqual('0000:3b:01.1', dev.address)
        self.assertEqual('0000:3b:00.0', dev.physfn)
        self.assertIsNone(dev.numa_node)
        self.assertTrue(dev.is_vf)

    def test_mdev_types(self):
        dev = devices.device_from_nodedev_xml(GPU_XML)
        self.assertEqual({'nvidia-222': 16, 'nvidia-223': 8}, dev.mdev_types)
        self.assertEqual('0000:af:00.0', dev.address)

    def test_not_pci(self):
        self.assertIsNone(devices.device_from_nodedev_xml(
            "<device><name>net_eth0</name><capability type='net'/>"
            "</device>"))


class DeviceSpecConfigTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))

    def test_json_lines(self):
        self.conf.config(group='nova_acc', device_spec=[
            '{"vendor_id": "1172", "resource_class": "FPGA"}'])
        self.assertEqual([{'vendor_id': '1172', 'resource_class': 'FPGA'}],
                         devices.configured_device_specs())

    def test_bad_json_names_the_line(self):
        self.conf.config(group='nova_acc', device_spec=['{vendor_id: 1}'])
        e = self.assertRaises(devices.InvalidDeviceSpecConfig,
                              devices.configured_device_specs)
        self.assertIn("[nova_acc] device_spec '{vendor_id: 1}' is not valid "
                      "JSON", str(e))

    def test_not_an_object(self):
        self.conf.config(group='nova_acc', device_spec=['["a"]'])
        self.assertRaises(devices.InvalidDeviceSpecConfig,
                          devices.configured_device_specs)
