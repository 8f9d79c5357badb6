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
"""nova_acc.compute.claims for mdevs: picking, packing, a GPU's blocking."""

import dataclasses

from oslotest import base

from nova_acc import exception
from nova_acc.compute import claims
from nova_acc.compute import ledger
from tests.unit.nova_acc.compute.mdev_fakes import GPU1
from tests.unit.nova_acc.compute.mdev_fakes import GPU2
from tests.unit.nova_acc.compute.mdev_fakes import host_mdev
from tests.unit.nova_acc.compute.mdev_fakes import mdev_record
from tests.unit.nova_acc.compute.mdev_fakes import parent
from tests.unit.nova_acc.compute.mdev_fakes import POOL
from tests.unit.nova_acc.compute.mdev_fakes import SERVER
from tests.unit.nova_acc.compute.mdev_fakes import uuids


class ClaimMdevTest(base.BaseTestCase):

    def request(self, count, candidates=(GPU1, GPU2), group='g0'):
        return claims.PoolRequest(requester_id=group, rp_uuid=POOL,
                                  count=count, candidates=candidates,
                                  resource_class='VGPU',
                                  mdev_type='nvidia-11')

    def test_new_mdevs_are_recorded_and_packed(self):
        records = {}
        claimed = claims.claim(
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
        first = claims.claim(records, SERVER, [], [self.request(2)],
                             mdev_capacity=capacity, new_uuid=uuids())
        again = claims.claim(records, SERVER, [], [self.request(2)],
                             mdev_capacity={}, new_uuid=uuids())
        self.assertEqual(sorted(r.address for r in first),
                         sorted(r.address for r in again))
        self.assertEqual(2, len(records))

    def test_not_enough_capacity_claims_nothing(self):
        records = {}
        exc = self.assertRaises(
            exception.DeviceNotFree, claims.claim, records, SERVER, [],
            [self.request(3)],
            mdev_capacity={(GPU1, 'nvidia-11'): 2}, new_uuid=uuids())
        self.assertIn('needs 3 mdev(s) of type nvidia-11', str(exc))
        self.assertIn('only 2 can be created', str(exc))
        self.assertEqual({}, records)

    def test_a_gpu_taken_whole_in_the_same_claim_gets_no_mdev(self):
        records = {}
        whole = claims.PoolRequest(requester_id='g1', rp_uuid='whole',
                                   count=1, candidates=(GPU1,))
        claimed = claims.claim(
            records, SERVER, [], [whole, self.request(1, group='g2')],
            mdev_capacity={(GPU1, 'nvidia-11'): 2,
                           (GPU2, 'nvidia-11'): 2},
            new_uuid=uuids())
        self.assertEqual([GPU1, GPU2],
                         [r.address if not r.is_mdev else r.parent
                          for r in claimed])

    def test_a_gpu_with_new_mdevs_is_not_taken_whole(self):
        whole = claims.PoolRequest(requester_id='g2', rp_uuid='whole',
                                   count=1, candidates=(GPU1,))
        self.assertRaises(
            exception.DeviceNotFree, claims.claim, {}, SERVER, [],
            [self.request(1, candidates=(GPU1,), group='g1'), whole],
            mdev_capacity={(GPU1, 'nvidia-11'): 2}, new_uuid=uuids())


class MdevBlockingTest(base.BaseTestCase):

    def test_a_gpu_with_mdevs_is_blocked_whole(self):
        whole = {GPU1: dataclasses.replace(parent(GPU1), mdev_type=None),
                 GPU2: dataclasses.replace(parent(GPU2), mdev_type=None)}
        with_mdevs = claims.parents_with_mdevs(
            {'u1': mdev_record('u1')}, {'x': host_mdev('x', gpu=GPU2)})
        self.assertEqual({GPU1, GPU2}, with_mdevs)
        self.assertEqual({GPU1, GPU2},
                         claims.blocked(whole, {}, with_mdevs))
