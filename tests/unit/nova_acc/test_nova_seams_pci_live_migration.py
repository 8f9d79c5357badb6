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
"""What the live migration of whole PCI devices relies on in Nova 34.

``nova_acc.seams.live_migration`` adds the destination's entries to
``pci_dev_map_src_dst`` in ``check_source_migrate_data_at_dest`` (Nova's
destination fills the field before that call and reads it nowhere else),
and the source gives ``_live_migration_operation`` a guest whose
``get_xml_desc(dump_migratable=True)`` is the rewritten XML (Nova builds
the XML it sends from that call). An upgrade that changes any of this must
fail here.
"""

import inspect

from nova.compute import manager
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import migration as libvirt_migration
from oslotest import base


class PciLiveMigrationSeamsTest(base.BaseTestCase):

    def test_the_destination_fills_the_map_before_the_drivers_last_check(
            self):
        source = inspect.getsource(
            manager.ComputeManager.check_can_live_migrate_destination)
        fill = source.index('migrate_data.pci_dev_map_src_dst = ')
        driver_check = source.index(
            'self.driver.check_source_migrate_data_at_dest(')
        self.assertLess(fill, driver_check)
        # Nowhere else does the manager write or read the field.
        code = [line for line in inspect.getsource(manager).splitlines()
                if not line.strip().startswith('#')]
        self.assertEqual(1, sum('pci_dev_map_src_dst' in line and
                                'migrate_data' in line for line in code))

    def test_nova_builds_the_sent_xml_from_the_migratable_description(self):
        self.assertIn(
            'guest.get_xml_desc(dump_migratable=True)',
            inspect.getsource(libvirt_migration.get_updated_guest_xml))
        self.assertIn(
            'libvirt_migrate.get_updated_guest_xml(',
            inspect.getsource(
                libvirt_driver.LibvirtDriver._live_migration_operation))

    def test_novas_minimums_for_vfio_variant_drivers(self):
        self.assertEqual(
            (10, 0, 0), libvirt_driver.MIN_VFIO_PCI_VARIANT_LIBVIRT_VERSION)
        self.assertEqual(
            (8, 2, 2), libvirt_driver.MIN_VFIO_PCI_VARIANT_QEMU_VERSION)
