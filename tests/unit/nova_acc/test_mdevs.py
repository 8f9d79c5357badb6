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
"""Mediated devices in the ledger, the inventory and the release."""

import dataclasses
import itertools

import os_acc
from oslotest import base

from nova_acc import exception
from nova_acc.compute import inventory
from nova_acc.compute import ledger
from nova_acc.compute import release

GPU1 = '0000:81:00.0'
GPU2 = '0000:81:01.0'
SERVER = '11111111-1111-4111-8111-111111111111'
OTHER = '22222222-2222-4222-8222-222222222222'
POOL = 'pool-uuid'


def parent(address, mdev_type='nvidia-11', available=2, **types):
    return os_acc.Device(address=address, vendor_id='10de',
                         product_id='0ffe', resource_class='VGPU',
                         mdev_types=dict({mdev_type: available}, **types),
                         mdev_type=mdev_type)


def mdev_record(uuid, gpu=GPU1, mdev_type='nvidia-11', state=ledger.ATTACHED,
                server=SERVER):
    rec = ledger.DeviceRecord(address=uuid, parent=gpu, mdev_type=mdev_type)
    rec.claim(server, POOL, 'VGPU', (), None, 'g0')
    if state == ledger.ATTACHED:
        rec.attach()
    elif state == ledger.DIRTY:
        rec.dirty('busy')
    return rec


def host_mdev(uuid, gpu=GPU1, mdev_type='nvidia-11'):
    return os_acc.MediatedDevice(uuid, gpu, mdev_type)


def uuids():
    counter = itertools.count(1)
    return lambda: '00000000-0000-4000-8000-%012d' % next(counter)


class LedgerClaimMdevTest(base.BaseTestCase):

    def request(self, count, candidates=(GPU1, GPU2), group='g0'):
        return ledger.PoolRequest(requester_id=group, rp_uuid=POOL,
                                  count=count, candidates=candidates,
                                  resource_class='VGPU',
                                  mdev_type='nvidia-11')

    def test_new_mdevs_are_recorded_and_packed(self):
        records = {}
        claimed = ledger.claim(
            records, SERVER, [], [self.request(3)],
            mdev_capacity={(GPU1, 'nvidia-11'): 2,
                           (GPU2, 'nvidia-11'): 2},
            new_uuid=uuids())
        self.assertEqual([GPU1, GPU1, GPU2], [r.parent for r in claimed])
        for rec in claimed:
            self.assertEqual((ledger.CLAIMED, SERVER, 'nvidia-11', POOL,
                              'g0'),
                             (rec.state, rec.instance_uuid, rec.mdev_type,
                              rec.rp_uuid, rec.requester_id))
            self.assertIs(records[rec.address], rec)

    def test_claim_again_creates_nothing_new(self):
        records = {}
        capacity = {(GPU1, 'nvidia-11'): 2}
        first = ledger.claim(records, SERVER, [], [self.request(2)],
                             mdev_capacity=capacity, new_uuid=uuids())
        again = ledger.claim(records, SERVER, [], [self.request(2)],
                             mdev_capacity={}, new_uuid=uuids())
        self.assertEqual(sorted(r.address for r in first),
                         sorted(r.address for r in again))
        self.assertEqual(2, len(records))

    def test_not_enough_capacity_claims_nothing(self):
        records = {}
        exc = self.assertRaises(
            exception.DeviceNotFree, ledger.claim, records, SERVER, [],
            [self.request(3)],
            mdev_capacity={(GPU1, 'nvidia-11'): 2}, new_uuid=uuids())
        self.assertIn('needs 3 mdev(s) of type nvidia-11', str(exc))
        self.assertIn('only 2 can be created', str(exc))
        self.assertEqual({}, records)

    def test_a_gpu_taken_whole_in_the_same_claim_gets_no_mdev(self):
        records = {}
        whole = ledger.PoolRequest(requester_id='g1', rp_uuid='whole',
                                   count=1, candidates=(GPU1,))
        claimed = ledger.claim(
            records, SERVER, [], [whole, self.request(1, group='g2')],
            mdev_capacity={(GPU1, 'nvidia-11'): 2,
                           (GPU2, 'nvidia-11'): 2},
            new_uuid=uuids())
        self.assertEqual([GPU1, GPU2],
                         [r.address if not r.is_mdev else r.parent
                          for r in claimed])

    def test_a_gpu_with_new_mdevs_is_not_taken_whole(self):
        whole = ledger.PoolRequest(requester_id='g2', rp_uuid='whole',
                                   count=1, candidates=(GPU1,))
        self.assertRaises(
            exception.DeviceNotFree, ledger.claim, {}, SERVER, [],
            [self.request(1, candidates=(GPU1,), group='g1'), whole],
            mdev_capacity={(GPU1, 'nvidia-11'): 2}, new_uuid=uuids())


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

    def test_a_gpu_with_mdevs_is_blocked_whole(self):
        whole = {GPU1: dataclasses.replace(parent(GPU1), mdev_type=None),
                 GPU2: dataclasses.replace(parent(GPU2), mdev_type=None)}
        with_mdevs = inventory.parents_with_mdevs(
            {'u1': mdev_record('u1')}, {'x': host_mdev('x', gpu=GPU2)})
        self.assertEqual({GPU1, GPU2}, with_mdevs)
        self.assertEqual({GPU1, GPU2},
                         inventory.blocked(whole, {}, with_mdevs))


class ReleaseMdevTest(base.BaseTestCase):

    def test_removed_and_forgotten(self):
        removed = []
        records = {'u1': mdev_record('u1')}
        release.release(records, records['u1'], 'deleted',
                        reset_on_release=True, sysfs_root='/nonexistent',
                        remove_mdev=removed.append)
        self.assertEqual(['u1'], removed)
        self.assertEqual({}, records)

    def test_failed_removal_is_dirty_then_retried(self):
        records = {'u1': mdev_record('u1')}

        def busy(uuid):
            raise exception.MdevError('device busy')
        release.release(records, records['u1'], 'deleted',
                        reset_on_release=True, sysfs_root='/nonexistent',
                        remove_mdev=busy)
        rec = records['u1']
        self.assertEqual((ledger.DIRTY, None), (rec.state, rec.instance_uuid))
        self.assertIn('device busy', rec.reason)
        self.assertIn('could not be removed',
                      ledger.describe_unavailable(rec))
        release.release(records, rec, 'retry', reset_on_release=True,
                        sysfs_root='/nonexistent', remove_mdev=lambda u: 0)
        self.assertEqual({}, records)

    def test_clear_dirty_needs_force_for_an_mdev(self):
        rec = mdev_record('u1', state=ledger.DIRTY)
        freed, why = release.clear_dirty(rec, '/nonexistent')
        self.assertFalse(freed)
        self.assertIn('--force', why)
        self.assertTrue(release.clear_dirty(rec, '/nonexistent',
                                            force=True)[0])

    def test_backend_mdev_is_unbound_then_removed(self):
        calls = []
        rec = mdev_record('u1')
        rec.context_id = 'arq-1'
        records = {'u1': rec}
        release.release(records, rec, 'deleted', reset_on_release=True,
                        sysfs_root='/nonexistent',
                        unbind=lambda s, ids: calls.append(('unbind', ids)),
                        remove_mdev=lambda u: calls.append(('remove', u)))
        self.assertEqual([('unbind', ['arq-1']), ('remove', 'u1')], calls)
        self.assertEqual({}, records)
