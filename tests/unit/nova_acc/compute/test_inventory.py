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
"""Device pools in the provider tree, against Nova's real ProviderTree."""

from nova.compute import provider_tree as nova_provider_tree
from nova import exception as nova_exc
import os_acc
from oslo_config import fixture as config_fixture
from oslotest import base

from nova_acc import conf
from nova_acc.compute import inventory
from nova_acc.compute import ledger
from nova_acc import pools

NODE = 'compute1'
TRAIT = 'CUSTOM_NOVA_ACC'


def fpga(address, traits=(), numa_node=0, rc='FPGA'):
    return os_acc.Device(address=address, vendor_id='1172',
                         product_id='5050', resource_class=rc,
                         traits=set(traits), numa_node=numa_node)


def pf(address, total_vfs=4):
    return os_acc.Device(address=address, vendor_id='8086',
                         product_id='1572', resource_class='CUSTOM_PF',
                         sriov_totalvfs=total_vfs)


def vf(address, parent):
    return os_acc.Device(address=address, vendor_id='8086',
                         product_id='154c', resource_class='CUSTOM_VF',
                         physfn=parent)


def pool_of(dev):
    return pools.pool_uuid(NODE, pools.PoolKey.of(dev))


def held(address, pool, state=ledger.ATTACHED, server='server'):
    rec = ledger.DeviceRecord(address=address)
    rec.claim(server, pool, 'FPGA', (), None, 'nova_acc_0_0')
    rec.state = state
    return rec


class ProviderTreeUpdateTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))
        self.tree = nova_provider_tree.ProviderTree()
        self.tree.new_root(NODE, 'root-uuid', generation=0)
        self.allocated = set()

    def update(self, *devices, records=None, held_without_allocation=None,
               allocations=None):
        return inventory.update_provider_tree(
            self.tree, NODE, devices, TRAIT,
            has_allocations=self.allocated.__contains__, records=records,
            held_without_allocation=held_without_allocation,
            allocations=allocations)

    def children(self):
        return sorted(self.tree.data(u).name
                      for u in self.tree.get_provider_uuids(NODE)
                      if u != 'root-uuid')

    def inv(self, dev_or_uuid, rc='FPGA'):
        uuid = dev_or_uuid if isinstance(dev_or_uuid, str) else pool_of(
            dev_or_uuid)
        record = self.tree.data(uuid).inventory[rc]
        return record['total'], record['reserved']

    def test_interchangeable_devices_form_one_pool(self):
        gzip = [fpga('0000:81:0%d.0' % i, ['CUSTOM_GZIP']) for i in range(3)]
        plain = fpga('0000:81:05.0')
        self.update(*gzip, plain)

        self.assertEqual(2, len(self.children()))
        uuid = pool_of(gzip[0])
        data = self.tree.data(uuid)
        self.assertEqual('root-uuid', data.parent_uuid)
        self.assertTrue(data.name.startswith('compute1_FPGA_'))
        self.assertTrue(pools.is_pool_provider(NODE, data.name, uuid))
        self.assertEqual({'total': 3, 'reserved': 0, 'min_unit': 1,
                          'max_unit': 3, 'step_size': 1,
                          'allocation_ratio': 1.0}, data.inventory['FPGA'])
        self.assertEqual({'CUSTOM_GZIP', 'OWNER_NOVA', TRAIT}, data.traits)
        self.assertEqual((1, 0), self.inv(plain))
        self.assertEqual({'OWNER_NOVA', TRAIT},
                         self.tree.data(pool_of(plain)).traits)
        self.assertIn(TRAIT, self.tree.data(NODE).traits)

    def test_same_devices_again_change_nothing(self):
        devs = [fpga('0000:81:00.0'), fpga('0000:81:01.0')]
        self.update(*devs)
        uuid = pool_of(devs[0])
        before = self.tree.data(uuid)
        self.update(*devs)
        after = self.tree.data(uuid)
        self.assertEqual(before.inventory, after.inventory)
        self.assertEqual(before.traits, after.traits)
        # ProviderTree says "no change", so the report client writes nothing.
        self.assertFalse(self.tree.has_inventory_changed(
            uuid, inventory._inventory('FPGA', 2, 0)))

    def test_vanished_free_device_shrinks_its_pool(self):
        a, b = fpga('0000:81:00.0'), fpga('0000:81:01.0')
        self.update(a, b)
        self.update(b)
        self.assertEqual((1, 0), self.inv(b))
        self.update()
        self.assertEqual([], self.children())

    def test_empty_pool_with_allocations_is_kept_fully_reserved(self):
        a = fpga('0000:81:00.0')
        self.update(a)
        self.allocated.add(pool_of(a))
        with self.assertLogs('nova_acc.compute.inventory', 'WARNING') as logs:
            self.update()
        self.assertIn('keeping it fully reserved', logs.output[0])
        self.assertEqual((1, 1), self.inv(a))
        # Comes back: usable again.
        self.update(a)
        self.assertEqual((1, 0), self.inv(a))

    def test_vanished_held_device_stays_counted_for_its_allocation(self):
        a, b = fpga('0000:81:00.0'), fpga('0000:81:01.0')
        self.update(a, b)
        records = {a.address: held(a.address, pool_of(a))}
        self.update(b, records=records)
        # Its server's allocation stays valid: total 2, one of them free.
        self.assertEqual((2, 0), self.inv(a))
        # Released (reset failed on a gone device): it leaves the pool.
        records[a.address].dirty('gone')
        self.update(b, records=records)
        self.assertEqual((1, 0), self.inv(b))

    def test_providers_of_others_are_left_alone(self):
        # Nova's PCI-in-placement and vGPU children share the naming
        # scheme; only providers whose UUID nova-acc derived are ours.
        self.tree.new_child('compute1_0000:82:00.0', NODE, uuid='nova-pci')
        self.tree.new_child('compute1_pci_0000_83_00_0', NODE, uuid='vgpu')
        self.update()
        self.assertEqual(['compute1_0000:82:00.0',
                          'compute1_pci_0000_83_00_0'], self.children())

    def test_out_of_service_devices_are_reserved(self):
        devs = [fpga('0000:81:0%d.0' % i) for i in range(5)]
        pool = pool_of(devs[0])
        records = {}
        for dev, state in zip(devs, (ledger.DIRTY, ledger.ORPHANED,
                                     ledger.FOREIGN, ledger.ATTACHED)):
            records[dev.address] = held(dev.address, pool, state=state)
        self.update(*devs, records=records)
        # 5 devices: dirty, orphaned and foreign are reserved; the attached
        # one is its server's allocation; one is free.
        self.assertEqual((5, 3), self.inv(pool))
        records[devs[0].address].free(reset=True)
        self.update(*devs, records=records)
        self.assertEqual((5, 2), self.inv(pool))

    def test_devices_held_beyond_the_allocation_are_reserved(self):
        devs = [fpga('0000:81:0%d.0' % i) for i in range(3)]
        pool = pool_of(devs[0])
        self.update(*devs, held_without_allocation={pool: 2})
        self.assertEqual((3, 2), self.inv(pool))

    def test_held_device_whose_spec_changed_stays_in_its_pool(self):
        a = fpga('0000:81:00.0', ['CUSTOM_GZIP'])
        b = fpga('0000:81:01.0', ['CUSTOM_GZIP'])
        self.update(a, b)
        old_pool = pool_of(a)
        records = {a.address: held(a.address, old_pool)}
        a2 = fpga(a.address, rc='CUSTOM_ACCEL')
        b2 = fpga(b.address, rc='CUSTOM_ACCEL')
        self.update(a2, b2, records=records)
        # The held device keeps its allocation's pool, class and traits;
        # the free one moved.
        self.assertEqual((1, 0), self.inv(old_pool))
        self.assertIn('CUSTOM_GZIP', self.tree.data(old_pool).traits)
        self.assertEqual((1, 0), self.inv(b2, 'CUSTOM_ACCEL'))
        # Released and no allocation left: it moves too.
        records[a.address].free(reset=True)
        self.update(a2, b2, records=records)
        self.assertFalse(self.tree.exists(old_pool))
        self.assertEqual((2, 0), self.inv(b2, 'CUSTOM_ACCEL'))

    def test_vfs_of_each_pf_are_a_pool_of_their_own(self):
        pf1, pf2 = pf('0000:81:00.0'), pf('0000:82:00.0')
        vfs1 = [vf('0000:81:00.%d' % i, pf1.address) for i in (1, 2, 3)]
        vfs2 = [vf('0000:82:00.%d' % i, pf2.address) for i in (1, 2)]
        self.update(pf1, pf2, *vfs1, *vfs2)
        self.assertEqual((3, 0), self.inv(vfs1[0], 'CUSTOM_VF'))
        self.assertEqual((2, 0), self.inv(vfs2[0], 'CUSTOM_VF'))
        self.assertEqual((2, 0), self.inv(pf1, 'CUSTOM_PF'))
        self.assertTrue(self.tree.data(pool_of(vfs1[0])).name.startswith(
            'compute1_0000:81:00.0_CUSTOM_VF_'))

    def test_pf_and_its_vfs_block_each_other(self):
        pf1 = pf('0000:81:00.0')
        vfs = [vf('0000:81:00.%d' % i, pf1.address) for i in (1, 2, 3)]
        records = {vfs[0].address: held(vfs[0].address, pool_of(vfs[0]))}
        self.update(pf1, *vfs, records=records)
        self.assertEqual((1, 1), self.inv(pf1, 'CUSTOM_PF'))
        self.assertEqual((3, 0), self.inv(vfs[0], 'CUSTOM_VF'))

        records = {pf1.address: held(pf1.address, pool_of(pf1))}
        self.update(pf1, *vfs, records=records)
        self.assertEqual((1, 0), self.inv(pf1, 'CUSTOM_PF'))
        self.assertEqual((3, 3), self.inv(vfs[0], 'CUSTOM_VF'))

    def test_pools_split_by_numa_node_only_when_asked(self):
        devs = [fpga('0000:81:00.0', numa_node=0),
                fpga('0000:c1:00.0', numa_node=1)]
        self.update(*devs)
        self.assertEqual(1, len(self.children()))
        self.conf.config(pool_by_numa=True, group='nova_acc')
        self.update(*devs)
        self.assertEqual(2, len(self.children()))
        self.assertTrue(any('numa1' in n for n in self.children()))


class ReshapeTest(base.BaseTestCase):
    """Per-device providers of nova-acc before pools -> pools."""

    def setUp(self):
        super().setUp()
        self.useFixture(config_fixture.Config(conf.CONF))
        self.tree = nova_provider_tree.ProviderTree()
        self.tree.new_root(NODE, 'root-uuid', generation=0)
        self.devs = [fpga('0000:81:0%d.0' % i) for i in range(3)]
        self.legacy = {}
        for dev in self.devs:
            uuid = pools.legacy_provider_uuid(NODE, dev.address)
            self.tree.new_child(pools.legacy_provider_name(
                NODE, dev.address), NODE, uuid=uuid)
            self.tree.update_inventory(uuid, inventory._inventory(
                'FPGA', 1, 0))
            self.legacy[dev.address] = uuid
        self.allocated = set()

    def update(self, allocations=None):
        return inventory.update_provider_tree(
            self.tree, NODE, self.devs, TRAIT,
            has_allocations=self.allocated.__contains__,
            allocations=allocations)

    def test_unallocated_per_device_providers_are_replaced(self):
        self.assertEqual({}, self.update())
        pool = pool_of(self.devs[0])
        self.assertEqual([pool], [u for u in self.tree.get_provider_uuids(
            NODE) if u != 'root-uuid'])
        self.assertEqual(3, self.tree.data(pool).inventory['FPGA']['total'])

    def test_allocated_providers_need_a_reshape(self):
        a, b = self.devs[0].address, self.devs[1].address
        self.allocated |= {self.legacy[a], self.legacy[b]}
        self.assertRaises(nova_exc.ReshapeNeeded, self.update)

        allocations = {
            'server1': {'allocations': {
                'root-uuid': {'resources': {'VCPU': 1}},
                self.legacy[a]: {'resources': {'FPGA': 1}},
                self.legacy[b]: {'resources': {'FPGA': 1}}}},
            'server2': {'allocations': {
                'root-uuid': {'resources': {'VCPU': 1}}}},
        }
        moved = self.update(allocations=allocations)

        pool = pool_of(self.devs[0])
        self.assertEqual({self.legacy[a]: pool, self.legacy[b]: pool}, moved)
        self.assertEqual({'root-uuid': {'resources': {'VCPU': 1}},
                          pool: {'resources': {'FPGA': 2}}},
                         allocations['server1']['allocations'])
        self.assertEqual({'root-uuid': {'resources': {'VCPU': 1}}},
                         allocations['server2']['allocations'])
        self.assertEqual([pool], [u for u in self.tree.get_provider_uuids(
            NODE) if u != 'root-uuid'])
        self.assertEqual(3, self.tree.data(pool).inventory['FPGA']['total'])

    def test_no_reshape_after_startup(self):
        # Nova reshapes only at startup; later, the allocated per-device
        # provider stays fully reserved and its device out of the pool.
        a = self.devs[0].address
        self.allocated.add(self.legacy[a])
        records = {a: held(a, self.legacy[a])}
        with self.assertLogs('nova_acc.compute.reshape', 'WARNING'):
            self.assertEqual({}, inventory.update_provider_tree(
                self.tree, NODE, self.devs, TRAIT,
                has_allocations=self.allocated.__contains__,
                records=records, may_reshape=False))
        self.assertEqual(1, self.tree.data(self.legacy[a]).inventory[
            'FPGA']['reserved'])
        pool = pool_of(self.devs[0])
        self.assertEqual(2, self.tree.data(pool).inventory['FPGA']['total'])

    def test_allocated_provider_of_a_gone_device_is_kept_reserved(self):
        gone = self.devs.pop(0)
        self.allocated.add(self.legacy[gone.address])
        with self.assertLogs('nova_acc.compute.reshape', 'WARNING'):
            self.update()
        self.assertEqual(1, self.tree.data(self.legacy[gone.address])
                         .inventory['FPGA']['reserved'])


class BlockedTest(base.BaseTestCase):

    def test_free_devices_are_not_blocked_by_free_relatives(self):
        pf1 = pf('0000:81:00.0')
        vf1 = vf('0000:81:00.1', pf1.address)
        managed = {d.address: d for d in (pf1, vf1)}
        self.assertEqual(set(), inventory.blocked(managed, {}))
        dirty = ledger.DeviceRecord(address=vf1.address, state=ledger.DIRTY)
        self.assertEqual({pf1.address}, inventory.blocked(
            managed, {vf1.address: dirty}))
