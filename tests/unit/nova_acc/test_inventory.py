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
"""The provider-tree updater against Nova's real ProviderTree."""

from nova.compute import provider_tree as nova_provider_tree
import os_acc
from oslotest import base

from nova_acc import inventory
from nova_acc import ledger

NODE = 'compute1'
TRAIT = 'CUSTOM_NOVA_ACC'


def fpga(address, traits=()):
    return os_acc.Device(address=address, vendor_id='1172',
                         product_id='5050', resource_class='FPGA',
                         traits=set(traits))


class ProviderTreeUpdateTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.tree = nova_provider_tree.ProviderTree()
        self.tree.new_root(NODE, 'root-uuid', generation=0)
        self.allocated = set()

    def update(self, *devices, records=None, unallocated=frozenset()):
        inventory.update_provider_tree(
            self.tree, NODE, devices, TRAIT,
            has_allocations=self.allocated.__contains__, records=records,
            unallocated=unallocated)

    def children(self):
        return sorted(self.tree.data(u).name
                      for u in self.tree.get_provider_uuids(NODE)
                      if u != 'root-uuid')

    def test_devices_become_children(self):
        self.update(fpga('0000:81:00.0', ['CUSTOM_GZIP']),
                    fpga('0000:81:01.0'))
        self.assertEqual(['compute1_0000:81:00.0', 'compute1_0000:81:01.0'],
                         self.children())
        uuid = inventory.provider_uuid(NODE, '0000:81:00.0')
        data = self.tree.data(uuid)
        self.assertEqual('root-uuid', data.parent_uuid)
        self.assertEqual(1, data.inventory['FPGA']['total'])
        self.assertEqual(0, data.inventory['FPGA']['reserved'])
        self.assertEqual({'CUSTOM_GZIP', 'OWNER_NOVA', TRAIT}, data.traits)
        self.assertIn(TRAIT, self.tree.data(NODE).traits)

    def test_same_devices_again_change_nothing(self):
        self.update(fpga('0000:81:00.0'))
        uuid = inventory.provider_uuid(NODE, '0000:81:00.0')
        before = self.tree.data(uuid)
        self.update(fpga('0000:81:00.0'))
        after = self.tree.data(uuid)
        self.assertEqual(before.inventory, after.inventory)
        self.assertEqual(before.traits, after.traits)
        # ProviderTree says "no change", so the report client writes nothing.
        self.assertFalse(self.tree.has_inventory_changed(
            uuid, inventory._inventory('FPGA')))

    def test_vanished_free_device_is_removed(self):
        self.update(fpga('0000:81:00.0'), fpga('0000:81:01.0'))
        self.update(fpga('0000:81:01.0'))
        self.assertEqual(['compute1_0000:81:01.0'], self.children())

    def test_vanished_allocated_device_is_kept_fully_reserved(self):
        self.update(fpga('0000:81:00.0'))
        uuid = inventory.provider_uuid(NODE, '0000:81:00.0')
        self.allocated.add(uuid)
        with self.assertLogs('nova_acc.inventory', 'WARNING') as logs:
            self.update()
        self.assertIn('keeping it fully reserved', logs.output[0])
        self.assertEqual(1, self.tree.data(uuid).inventory['FPGA'][
            'reserved'])
        # Comes back: usable again.
        self.update(fpga('0000:81:00.0'))
        self.assertEqual(0, self.tree.data(uuid).inventory['FPGA'][
            'reserved'])

    def test_providers_of_others_are_left_alone(self):
        # Nova's PCI-in-placement and vGPU children share the naming
        # scheme; only providers whose UUID nova-acc derived are ours.
        self.tree.new_child('compute1_0000:82:00.0', NODE, uuid='nova-pci')
        self.tree.new_child('compute1_pci_0000_83_00_0', NODE, uuid='vgpu')
        self.update()
        self.assertEqual(['compute1_0000:82:00.0',
                          'compute1_pci_0000_83_00_0'], self.children())

    def reserved(self, address, rc='FPGA'):
        uuid = inventory.provider_uuid(NODE, address)
        return self.tree.data(uuid).inventory[rc]['reserved']

    def test_out_of_service_devices_are_reserved(self):
        a, b, c, d = ('0000:81:0%d.0' % i for i in range(4))
        records = {}
        for address, state in ((a, ledger.DIRTY), (b, ledger.ORPHANED),
                               (c, ledger.FOREIGN), (d, ledger.ATTACHED)):
            records[address] = ledger.DeviceRecord(address=address,
                                                   state=state)
        self.update(*(fpga(x) for x in (a, b, c, d)), records=records)
        self.assertEqual([1, 1, 1, 0], [self.reserved(x)
                                        for x in (a, b, c, d)])
        # Cleared: offered again.
        records[a].free(reset=True)
        self.update(*(fpga(x) for x in (a, b, c, d)), records=records)
        self.assertEqual(0, self.reserved(a))

    def test_held_device_placement_does_not_know_of_is_reserved(self):
        a = '0000:81:00.0'
        self.update(fpga(a), unallocated={a})
        self.assertEqual(1, self.reserved(a))

    def test_changed_class_of_a_held_device_waits_until_it_is_free(self):
        a = '0000:81:00.0'
        self.update(fpga(a, ['CUSTOM_GZIP']))
        records = {a: ledger.DeviceRecord(address=a)}
        records[a].claim('server', 'rp', 'FPGA', ['CUSTOM_GZIP'], None)
        changed = os_acc.Device(address=a, vendor_id='1172',
                                product_id='5050',
                                resource_class='CUSTOM_ACCEL',
                                traits={'CUSTOM_ZIP'})
        with self.assertLogs('nova_acc.inventory', 'WARNING') as logs:
            self.update(changed, records=records)
        self.assertIn('while a server holds it', logs.output[0])
        uuid = inventory.provider_uuid(NODE, a)
        self.assertEqual(['FPGA'], list(self.tree.data(uuid).inventory))
        self.assertEqual(1, self.reserved(a))
        self.assertIn('CUSTOM_GZIP', self.tree.data(uuid).traits)
        # Released and no allocation left: it moves to the new class.
        records[a].free(reset=True)
        self.update(changed, records=records)
        self.assertEqual(['CUSTOM_ACCEL'],
                         list(self.tree.data(uuid).inventory))
        self.assertEqual(0, self.reserved(a, 'CUSTOM_ACCEL'))
        self.assertEqual({'CUSTOM_ZIP', 'OWNER_NOVA', TRAIT},
                         self.tree.data(uuid).traits)

    def test_changed_class_of_an_allocated_device_waits_too(self):
        a = '0000:81:00.0'
        self.update(fpga(a))
        self.allocated.add(inventory.provider_uuid(NODE, a))
        changed = os_acc.Device(address=a, vendor_id='1172',
                                product_id='5050',
                                resource_class='CUSTOM_ACCEL')
        self.update(changed)
        self.assertEqual(1, self.reserved(a))

    def test_vanished_held_device_is_kept_even_without_allocations(self):
        a = '0000:81:00.0'
        self.update(fpga(a))
        records = {a: ledger.DeviceRecord(address=a)}
        records[a].claim('server', 'rp', 'FPGA', [], None)
        self.update(records=records)
        self.assertEqual(1, self.reserved(a))
