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
"""Claims: the picking on the ledger's records (moved from test_ledger)."""

from oslotest import base

from nova_acc import exception
from nova_acc.compute import claims
from nova_acc.compute import ledger

A = '0000:81:00.0'
B = '0000:81:01.0'
ADDR_FMT = '0000:82:%02x.0'
SERVER = '11111111-1111-4111-8111-111111111111'
OTHER = '22222222-2222-4222-8222-222222222222'


def want(address, **kw):
    return dict({'address': address, 'rp_uuid': 'rp-' + address,
                 'resource_class': 'FPGA', 'traits': ['CUSTOM_GZIP']}, **kw)


class ClaimTest(base.BaseTestCase):

    def test_claims_free_and_unknown_devices(self):
        records = {A: ledger.DeviceRecord(address=A)}
        claimed = claims.claim(records, SERVER, [want(A), want(B)])
        self.assertEqual([A, B], [r.address for r in claimed])
        self.assertTrue(all(r.state == ledger.CLAIMED and
                            r.instance_uuid == SERVER for r in claimed))

    def test_claim_of_the_own_device_is_idempotent(self):
        records = {}
        claims.claim(records, SERVER, [want(A)])
        records[A].attach()
        claims.claim(records, SERVER, [want(A)])
        self.assertEqual(ledger.ATTACHED, records[A].state)

    def test_each_unavailable_state_refuses_and_says_why(self):
        cases = {
            ledger.CLAIMED: 'claimed by server ' + OTHER,
            ledger.ATTACHED: 'attached by server ' + OTHER,
            ledger.ORPHANED: 'still held by the guest of server ' + OTHER,
            ledger.DIRTY: 'dirty (reset failed: EIO)',
            ledger.FOREIGN: 'used by guest dom-1',
        }
        for state, text in cases.items():
            rec = ledger.DeviceRecord(
                address=A, state=state,
                instance_uuid=OTHER if state in ledger.HELD else None,
                guest='dom-1' if state == ledger.FOREIGN else None,
                reason='reset failed: EIO' if state == ledger.DIRTY
                else None)
            records = {A: rec}
            e = self.assertRaises(exception.DeviceNotFree, claims.claim,
                                  records, SERVER, [want(A)])
            self.assertIn(text, str(e))
            self.assertEqual(state, records[A].state)

    def test_dirty_device_of_the_same_server_is_not_handed_back(self):
        records = {A: ledger.DeviceRecord(address=A, state=ledger.DIRTY,
                                          reason='no reset method')}
        self.assertRaises(exception.DeviceNotFree, claims.claim, records,
                          SERVER, [want(A)])


class PoolClaimTest(base.BaseTestCase):
    """The host picks the devices of a pool."""

    POOL = [ADDR_FMT % i for i in range(4)]

    def request(self, count, group='nova_acc_0_0'):
        return claims.PoolRequest(group, 'pool', count, tuple(self.POOL),
                                  'FPGA', ('CUSTOM_GZIP',))

    def test_picks_free_devices_and_records_pool_and_group(self):
        records = {self.POOL[0]: ledger.DeviceRecord(
            address=self.POOL[0], state=ledger.DIRTY)}
        claimed = claims.claim(records, 'a', [], [self.request(2)])
        self.assertEqual(self.POOL[1:3], [r.address for r in claimed])
        for rec in claimed:
            self.assertEqual((ledger.CLAIMED, 'a', 'pool', 'nova_acc_0_0',
                              'FPGA', ['CUSTOM_GZIP']),
                             (rec.state, rec.instance_uuid, rec.rp_uuid,
                              rec.requester_id, rec.resource_class,
                              rec.traits))

    def test_never_picks_a_device_twice(self):
        records = {}
        first = claims.claim(records, 'a', [], [self.request(1, 'g1'),
                                                self.request(2, 'g2')])
        second = claims.claim(records, 'b', [], [self.request(1)])
        addresses = [r.address for r in first + second]
        self.assertEqual(sorted(set(addresses)), sorted(addresses))
        self.assertEqual(4, len(addresses))
        e = self.assertRaises(exception.DeviceNotFree, claims.claim,
                              records, 'c', [], [self.request(1)])
        self.assertIn('needs 1 device(s) of pool pool, only 0 free', str(e))

    def test_a_short_pool_says_why_its_devices_are_not_free(self):
        records = {a: ledger.DeviceRecord(address=a) for a in self.POOL}
        records[self.POOL[0]].dirty('reset failed')
        for a in self.POOL[1:]:
            records[a].claim('other', 'pool', 'FPGA', (), None)
        e = self.assertRaises(exception.DeviceNotFree, claims.claim,
                              records, 'a', [], [self.request(1)])
        self.assertIn('device %s is dirty (reset failed)' % self.POOL[0],
                      str(e))
        self.assertIn('claimed by server other', str(e))

    def test_a_retried_claim_picks_nothing_new(self):
        records = {}
        first = [r.address for r in claims.claim(records, 'a', [],
                                                 [self.request(2)])]
        again = [r.address for r in claims.claim(records, 'a', [],
                                                 [self.request(2)])]
        self.assertEqual(first, again)
        self.assertEqual(2, sum(1 for r in records.values()
                                if r.state == ledger.CLAIMED))

    def test_not_enough_free_claims_nothing(self):
        records = {a: ledger.DeviceRecord(address=a) for a in self.POOL}
        records[self.POOL[0]].claim('x', 'pool', 'FPGA', (), None)
        self.assertRaises(exception.DeviceNotFree, claims.claim, records,
                          'a', [{'address': '0000:99:00.0'}],
                          [self.request(4)])
        self.assertEqual(1, sum(1 for r in records.values()
                                if r.state != ledger.FREE))
        self.assertNotIn('0000:99:00.0', records)

    def test_blocked_devices_are_not_picked(self):
        records = {}
        claimed = claims.claim(records, 'a', [], [self.request(2)],
                               blocked={self.POOL[0], self.POOL[2]})
        self.assertEqual([self.POOL[1], self.POOL[3]],
                         [r.address for r in claimed])
        e = self.assertRaises(exception.DeviceNotFree, claims.claim, {},
                              'a', [{'address': self.POOL[0]}],
                              blocked={self.POOL[0]})
        self.assertIn('its PF or one of its VFs is in use', str(e))

    def test_a_pf_and_its_vf_never_go_together(self):
        pf, vfs = '0000:83:00.0', ['0000:83:00.1', '0000:83:00.2']
        relatives = {pf: set(vfs), vfs[0]: {pf}, vfs[1]: {pf}}
        pf_pool = claims.PoolRequest('g1', 'pf-pool', 1, (pf,))
        vf_pool = claims.PoolRequest('g2', 'vf-pool', 1, tuple(vfs))
        e = self.assertRaises(exception.DeviceNotFree, claims.claim, {},
                              'a', [], [pf_pool, vf_pool],
                              relatives=relatives)
        self.assertIn('needs 1 device(s) of pool vf-pool, only 0', str(e))
        # Two VFs of one PF are fine together.
        claimed = claims.claim({}, 'a', [], [claims.PoolRequest(
            'g', 'vf-pool', 2, tuple(vfs))], relatives=relatives)
        self.assertEqual(vfs, [r.address for r in claimed])
        e = self.assertRaises(exception.DeviceNotFree, claims.claim, {},
                              'a', [{'address': pf}, {'address': vfs[0]}],
                              relatives=relatives)
        self.assertIn('together with its PF or VF', str(e))
