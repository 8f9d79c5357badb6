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
"""What the live migration of vGPUs relies on in Nova 34's libvirt driver.

``nova_acc.seams.live_migration`` lets Nova's own source check find the
server's mdevs in its guest and refuse old versions, claims mdevs on the
destination in ``check_source_migrate_data_at_dest`` and lets Nova rewrite
the guest's XML from ``target_mdevs``: an upgrade that changes any of this
must fail here.
"""

import inspect

from lxml import etree
from nova import exception as nova_exc
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import migration as libvirt_migration
from oslotest import base

objects.register_all()

GUEST = """<domain type="kvm">
  <name>instance-00000001</name>
  <devices>
    <hostdev mode="subsystem" type="mdev" model="vfio-pci">
      <source><address uuid="%s"/></source>
    </hostdev>
  </devices>
</domain>"""
SRC = 'b38a3f43-4be2-4046-897f-b67c2f5e0140'
DST = 'c9ba4d1e-3a7a-4c51-9e5b-1a2b3c4d5e6f'


def params(func):
    return list(inspect.signature(func).parameters)


class VgpuLiveMigrationSeamsTest(base.BaseTestCase):

    def test_the_overridden_checks(self):
        driver = libvirt_driver.LibvirtDriver
        self.assertEqual(
            ['self', 'context', 'instance', 'dest_check_data',
             'block_device_info'],
            params(driver.check_can_live_migrate_source))
        self.assertEqual(
            ['self', 'ctxt', 'instance', 'migrate_data', 'migration',
             'limits', 'allocs'],
            params(driver.check_source_migrate_data_at_dest))

    def test_nova_checks_the_versions_of_the_mdevs_in_the_guest(self):
        source = inspect.getsource(
            libvirt_driver.LibvirtDriver.check_can_live_migrate_source)
        self.assertIn('self._get_all_assigned_mediated_devices(instance)',
                      source)
        self.assertIn('self._assert_source_can_live_migrate_mdevs(',
                      source)
        self.assertIn('dest_check_data.source_mdev_types = mdev_types',
                      source)
        self.assertEqual((8, 6, 0),
                         libvirt_driver.MIN_MDEV_LIVEMIG_LIBVIRT_VERSION)
        self.assertEqual((8, 1, 0),
                         libvirt_driver.MIN_MDEV_LIVEMIG_QEMU_VERSION)

    def test_nova_rewrites_the_mdevs_of_the_guest_from_target_mdevs(self):
        data = objects.LibvirtLiveMigrateData(target_mdevs={SRC: DST})
        doc = etree.fromstring(GUEST % SRC)
        rewritten = libvirt_migration._update_mdev_xml(doc, data.target_mdevs)
        self.assertEqual(
            [DST], rewritten.xpath(
                "./devices/hostdev[@type='mdev']/source/address/@uuid"))
        self.assertIn("if 'target_mdevs' in migrate_data:",
                      inspect.getsource(
                          libvirt_migration.get_updated_guest_xml))

    def test_the_rewrite_refuses_an_mdev_left_out_of_the_map(self):
        doc = etree.fromstring(GUEST % SRC)
        self.assertRaises(nova_exc.NovaException,
                          libvirt_migration._update_mdev_xml,
                          doc, {})
