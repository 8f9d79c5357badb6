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
"""nova_acc.compute.inventory for mdevs: capacity and pool inventory."""

from oslotest import base

from nova_acc.compute import inventory
from nova_acc.compute import ledger
from tests.unit.nova_acc.compute.mdev_fakes import GPU1
from tests.unit.nova_acc.compute.mdev_fakes import GPU2
from tests.unit.nova_acc.compute.mdev_fakes import host_mdev
from tests.unit.nova_acc.compute.mdev_fakes import mdev_record
from tests.unit.nova_acc.compute.mdev_fakes import OTHER
from tests.unit.nova_acc.compute.mdev_fakes import parent


class MdevInventoryTest(base.BaseTestCase):

    def test_capacity_less_what_is_recorded_but_not_created(self):
        records = {'u1': mdev_record('u1', state=ledger.CLAIMED),
                   'u2': mdev_record('u2')}
        # u2 exists (counted by libvirt already), u1 not yet.
        capacity = inventory.mdev_capacity(
            [parent(GPU1, available=3)], records, {'u2': host_mdev('u2')})
        self.assertEqual({(GPU1, 'nvidia-11'): 2}, capacity)

    def test_no_capacity_for_another_type_or_whole_use(self):
        records = {'u1': mdev_record('u1')}
        nv12 = parent(GPU1, 'nvidia-12', available=1)
        self.assertEqual({(GPU1, 'nvidia-12'): 0}, inventory.mdev_capacity(
            [nv12], records, {'u1': host_mdev('u1')}))
        whole = ledger.DeviceRecord(address=GPU2)
        whole.claim(OTHER, 'whole', 'PGPU', (), None, 'g0')
        self.assertEqual({(GPU2, 'nvidia-11'): 0}, inventory.mdev_capacity(
            [parent(GPU2)], {GPU2: whole}, {}))
        # An mdev nova-acc does not know of counts too.
        self.assertEqual({(GPU1, 'nvidia-12'): 0}, inventory.mdev_capacity(
            [nv12], {}, {'x': host_mdev('x')}))

    def test_pool_inventory(self):
        records = {'u1': mdev_record('u1'), 'u2': mdev_record('u2'),
                   'lost': mdev_record('lost', gpu=GPU2),
                   'dirty': mdev_record('dirty', gpu=GPU2,
                                        state=ledger.DIRTY)}
        host = {'u1': host_mdev('u1'), 'u2': host_mdev('u2'),
                'dirty': host_mdev('dirty', gpu=GPU2)}
        # GPU1: 2 held + 1 left; GPU2 (lost one after a reboot): libvirt
        # counts 1 left, the dirty one holds the other.
        total, reserved = inventory.mdev_pool_inventory(
            [parent(GPU1, available=1), parent(GPU2, available=1)],
            records, host, held_without_allocation=0)
        self.assertEqual((4, 0), (total, reserved))

    def test_pool_inventory_reserves_gpus_serving_elsewhere(self):
        records = {'u1': mdev_record('u1', mdev_type='nvidia-12')}
        host = {'u1': host_mdev('u1', mdev_type='nvidia-12')}
        self.assertEqual((3, 3), inventory.mdev_pool_inventory(
            [parent(GPU1, available=3)], records, host, 0))
        self.assertEqual((3, 1), inventory.mdev_pool_inventory(
            [parent(GPU2, available=3)], records, host, 1))
