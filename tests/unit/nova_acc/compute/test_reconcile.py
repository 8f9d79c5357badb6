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
"""Every rule of the reconcile, with the facts spelled out."""

import fixtures
import os_acc
from oslotest import base

from nova_acc.compute import ledger
from nova_acc.compute import moves
from nova_acc.compute import reconcile

A = '0000:81:00.0'
B = '0000:81:01.0'
C = '0000:81:02.0'
SERVER = '11111111-1111-4111-8111-111111111111'
OTHER = '22222222-2222-4222-8222-222222222222'
GUEST = '33333333-3333-4333-8333-333333333333'


def device(address):
    return os_acc.Device(address=address, vendor_id='1172',
                         product_id='5050', resource_class='FPGA',
                         traits={'CUSTOM_GZIP'})


POOL = 'pool-uuid'


def held(address, server, state=ledger.ATTACHED, pool='rp'):
    rec = ledger.DeviceRecord(address=address)
    rec.claim(server, pool, 'FPGA', [], None)
    rec.state = state
    return rec


class ReconcileTestBase(base.BaseTestCase):
    """Runs the reconcile on facts spelled out; records what it released."""

    def setUp(self):
        super().setUp()
        self.released = []

    def release(self, records, rec, why):
        self.released.append(rec.address)
        rec.free(reset=True)

    def run_reconcile(self, records, managed=(A,), guests=None, bound=None,
                      bound_pools=None, unreadable=None, **kw):
        facts = reconcile.HostFacts(
            managed={a: device(a) for a in managed}, guests=guests or {},
            bound=bound or {}, bound_pools=bound_pools or {},
            pool_of={a: POOL for a in managed},
            unreadable=unreadable or {})
        return reconcile.reconcile(records, facts, self.release, **kw)


class ReconcileTest(ReconcileTestBase):

    # ---- servers bound to a pool: the ledger names their devices ----------

    def test_server_bound_to_the_pool_keeps_the_devices_it_was_given(self):
        records = {A: held(A, SERVER, pool=POOL), B: held(B, SERVER,
                                                          pool=POOL)}
        notes = self.run_reconcile(records, managed=(A, B),
                                   guests={SERVER: {A, B}},
                                   bound_pools={SERVER: {POOL: {'g': 2}}})
        self.assertEqual([], notes)
        self.assertEqual([], self.released)

    def test_server_no_longer_bound_to_the_pool_releases_its_devices(self):
        records = {A: held(A, SERVER, pool=POOL), B: held(B, SERVER,
                                                          pool=POOL)}
        # Moved to another node, or bound to another pool: either way not
        # to the pool these devices came from.
        self.run_reconcile(records, managed=(A, B),
                           bound_pools={SERVER: {'other-pool': {'g': 2}}})
        self.assertEqual([A, B], self.released)

    def test_guest_of_a_server_bound_to_the_pool_adopts_a_free_device(self):
        records = {}
        self.run_reconcile(records, guests={SERVER: {A}},
                           bound_pools={SERVER: {POOL: {'nova_acc_0_0': 1}}})
        self.assertEqual((ledger.ATTACHED, SERVER, POOL, 'nova_acc_0_0'),
                         (records[A].state, records[A].instance_uuid,
                          records[A].rp_uuid, records[A].requester_id))

    # ---- moves ------------------------------------------------------------

    def move_facts(self, records, status, source='n1', dest='n2',
                   node='n1', on_node=False, tagged=None, **kw):
        move = moves.Move(7, status, source, dest)
        facts = reconcile.HostFacts(
            managed={a: device(a) for a in (A, B)}, guests={},
            bound={SERVER: set()} if on_node else {},
            bound_pools={SERVER: {POOL: {'g': 1}}} if on_node else {},
            pool_of={A: POOL, B: POOL}, nodename=node,
            moves={SERVER: move}, migrations={7: move})
        return reconcile.reconcile(records, facts, self.release, **kw)

    def tagged(self, address):
        rec = held(address, SERVER, pool=POOL)
        rec.requester_id = 'g'
        rec.migration_id = 7
        return rec

    def test_source_keeps_its_devices_while_the_move_is_under_way(self):
        for status in ('migrating', 'post-migrating', 'finished',
                       'reverting', 'reverted'):
            records = {A: held(A, SERVER, pool=POOL)}
            self.move_facts(records, status)
            self.assertEqual([], self.released, status)

    def test_source_releases_once_the_move_is_confirmed_or_failed(self):
        for status in ('confirmed', 'error', 'failed'):
            self.released = []
            records = {A: held(A, SERVER, pool=POOL)}
            self.move_facts(records, status)
            self.assertEqual([A], self.released, status)

    def test_destination_keeps_what_it_claimed_until_the_move_is_undone(self):
        records = {B: self.tagged(B)}
        # Evacuate: the server's node is still the source, the move is
        # under way to here.
        self.move_facts(records, 'pre-migrating', node='n2')
        self.assertEqual([], self.released)
        for status in ('reverted', 'error', 'failed'):
            records = {B: self.tagged(B)}
            self.move_facts(records, status, node='n2', on_node=True)
            self.assertEqual([B], self.released[-1:], status)

    def test_a_confirmed_move_on_one_host_releases_the_old_devices(self):
        records = {A: held(A, SERVER, pool=POOL), B: self.tagged(B)}
        records[A].requester_id = 'g'
        self.move_facts(records, 'confirmed', source='n1', dest='n1',
                        on_node=True)
        self.assertEqual([A], self.released)
        # ... and the move's devices are the server's like any now.
        self.assertEqual((ledger.ATTACHED, None),
                         (records[B].state, records[B].migration_id))

    def test_during_a_move_on_one_host_both_sets_are_held(self):
        records = {A: held(A, SERVER, pool=POOL), B: self.tagged(B)}
        self.move_facts(records, 'finished', source='n1', dest='n1',
                        on_node=True)
        self.assertEqual([], self.released)

    def test_adopted_devices_are_shared_out_over_the_groups_of_a_pool(self):
        # A ledger rebuilt after it was lost: a guest holds 3 devices of a
        # pool its server's two groups (2 + 1) are bound to.
        records = {}
        self.run_reconcile(records, managed=(A, B, C),
                           guests={SERVER: {A, B, C}},
                           bound_pools={SERVER: {POOL: {'g1': 2, 'g2': 1}}})
        self.assertEqual(['g1', 'g1', 'g2'],
                         sorted(r.requester_id for r in records.values()))
        self.assertEqual({ledger.ATTACHED},
                         {r.state for r in records.values()})

    def test_server_that_still_holds_its_device_keeps_it(self):
        records = {A: held(A, SERVER)}
        notes = self.run_reconcile(records, guests={SERVER: {A}},
                                   bound={SERVER: {A}})
        self.assertEqual([], notes)
        self.assertEqual(ledger.ATTACHED, records[A].state)
        self.assertEqual([], self.released)

    def test_stopped_server_without_a_running_guest_keeps_its_device(self):
        # Nothing about the guest running matters; only that the server is
        # on this node and bound to the device.
        records = {A: held(A, SERVER)}
        self.run_reconcile(records, guests={}, bound={SERVER: {A}})
        self.assertEqual(ledger.ATTACHED, records[A].state)
        self.assertEqual([], self.released)

    def test_device_of_a_gone_server_without_a_guest_is_released(self):
        records = {A: held(A, SERVER)}
        notes = self.run_reconcile(records, guests={}, bound={})
        self.assertEqual([A], self.released)
        self.assertEqual(ledger.FREE, records[A].state)
        self.assertIn('released from server %s' % SERVER, notes[0])

    def test_server_rebound_elsewhere_releases_the_old_device(self):
        records = {A: held(A, SERVER, ledger.CLAIMED)}
        self.run_reconcile(records, managed=(A, B), bound={SERVER: {B}})
        self.assertEqual([A], self.released)

    def test_gone_server_whose_guest_remains_is_orphaned_not_reset(self):
        # Deleted while nova-compute was down: the guest still runs.
        records = {A: held(A, SERVER)}
        self.run_reconcile(records, guests={SERVER: {A}}, bound={})
        self.assertEqual([], self.released)
        self.assertEqual(ledger.ORPHANED, records[A].state)
        self.assertIn(ledger.ORPHANED, ledger.OUT_OF_SERVICE)
        # Idempotent.
        self.assertEqual([], self.run_reconcile(
            records, guests={SERVER: {A}}, bound={}))
        # Nova reaps the guest: now it is released (and reset).
        self.run_reconcile(records, guests={}, bound={})
        self.assertEqual([A], self.released)
        self.assertEqual(ledger.FREE, records[A].state)

    def test_free_device_in_an_unknown_guest_becomes_foreign(self):
        records = {}
        self.run_reconcile(records, guests={GUEST: {A}})
        self.assertEqual((ledger.FOREIGN, GUEST),
                         (records[A].state, records[A].guest))
        self.assertIn(ledger.FOREIGN, ledger.OUT_OF_SERVICE)
        # The guest lets go of it: released (reset) before reuse.
        self.run_reconcile(records, guests={})
        self.assertEqual([A], self.released)
        self.assertEqual(ledger.FREE, records[A].state)

    def test_device_of_a_gone_server_in_another_guest_is_foreign(self):
        records = {A: held(A, SERVER)}
        self.run_reconcile(records, guests={GUEST: {A}}, bound={})
        self.assertEqual(ledger.FOREIGN, records[A].state)
        self.assertEqual([], self.released)

    def test_server_booted_before_the_ledger_is_adopted(self):
        records = {}
        notes = self.run_reconcile(records, guests={SERVER: {A}},
                                   bound={SERVER: {A}})
        self.assertEqual((ledger.ATTACHED, SERVER),
                         (records[A].state, records[A].instance_uuid))
        self.assertEqual('FPGA', records[A].resource_class)
        self.assertIn('adopted', notes[0])

    def test_claimed_device_becomes_attached_once_its_guest_has_it(self):
        records = {A: held(A, SERVER, ledger.CLAIMED)}
        self.run_reconcile(records, guests={SERVER: {A}},
                           bound={SERVER: {A}})
        self.assertEqual(ledger.ATTACHED, records[A].state)

    def test_claimed_device_without_guest_yet_stays_claimed(self):
        records = {A: held(A, SERVER, ledger.CLAIMED)}
        self.assertEqual([], self.run_reconcile(records,
                                                bound={SERVER: {A}}))
        self.assertEqual(ledger.CLAIMED, records[A].state)

    def test_dirty_device_stays_dirty(self):
        rec = ledger.DeviceRecord(address=A)
        rec.dirty('no reset method')
        records = {A: rec}
        self.assertEqual([], self.run_reconcile(records))
        self.assertEqual(ledger.DIRTY, records[A].state)
        self.assertEqual([], self.released)

    def test_free_device_gone_from_the_host_is_forgotten(self):
        records = {A: ledger.DeviceRecord(address=A)}
        self.run_reconcile(records, managed=())
        self.assertEqual({}, records)

    def test_held_device_gone_from_the_host_stays_held(self):
        records = {A: held(A, SERVER)}
        self.run_reconcile(records, managed=(), bound={SERVER: {A}})
        self.assertEqual(ledger.ATTACHED, records[A].state)

    def test_only_looks_at_the_named_devices(self):
        records = {A: held(A, SERVER), B: held(B, OTHER)}
        self.run_reconcile(records, managed=(A, B), bound={}, only=[B])
        self.assertEqual([B], self.released)
        self.assertEqual(ledger.ATTACHED, records[A].state)

    def test_lost_history_resets_every_device_no_guest_uses(self):
        records = {}
        self.run_reconcile(records, managed=(A, B), guests={SERVER: {A}},
                           bound={SERVER: {A}}, history_lost=True)
        self.assertEqual([B], self.released)
        self.assertEqual(ledger.ATTACHED, records[A].state)

    def test_new_ledger_resets_nothing(self):
        records = {}
        self.run_reconcile(records, managed=(A, B))
        self.assertEqual([], self.released)

    def test_second_run_with_the_same_facts_changes_nothing(self):
        records = {A: held(A, SERVER), B: held(B, OTHER)}
        facts = dict(managed=(A, B), guests={SERVER: {A}},
                     bound={SERVER: {A}})
        self.run_reconcile(records, **facts)
        snapshot = {a: r.to_dict() for a, r in records.items()}
        self.assertEqual([], self.run_reconcile(records, **facts))
        self.assertEqual(snapshot, {a: r.to_dict()
                                    for a, r in records.items()})

    def test_interesting_servers(self):
        records = {A: held(A, SERVER), B: ledger.DeviceRecord(address=B)}
        self.assertEqual({SERVER, GUEST}, reconcile.interesting_servers(
            records, {GUEST: {B}, OTHER: set()}))


class FailClosedTest(ReconcileTestBase):
    """While a guest cannot be read, nothing is released."""

    def test_nothing_is_released_while_a_guest_cannot_be_read(self):
        cases = {
            'gone server': {A: held(A, SERVER)},
            'foreign guest gone': {A: ledger.DeviceRecord(
                address=A, state=ledger.FOREIGN, guest=GUEST)},
            'orphaned': {A: held(A, SERVER, ledger.ORPHANED)},
            'releasing': {A: held(A, SERVER, ledger.RELEASING)},
        }
        for name, records in cases.items():
            before = {a: r.to_dict() for a, r in records.items()}
            self.run_reconcile(records, unreadable={GUEST: 'timed out'})
            self.assertEqual([], self.released, name)
            self.assertEqual(before, {a: r.to_dict()
                                      for a, r in records.items()}, name)

    def test_lost_history_resets_nothing_while_a_guest_cannot_be_read(self):
        records = {}
        self.run_reconcile(records, managed=(A, B), history_lost=True,
                           unreadable={GUEST: 'timed out'})
        self.assertEqual([], self.released)

    def test_what_was_seen_still_counts(self):
        # A guest that was read and uses a device makes it foreign.
        records = {}
        self.run_reconcile(records, guests={GUEST: {A}},
                           unreadable={OTHER: 'timed out'})
        self.assertEqual(ledger.FOREIGN, records[A].state)

    def test_releasing_device_is_released_when_no_guest_uses_it(self):
        records = {A: held(A, SERVER, ledger.RELEASING)}
        records[A].reason = 'server gone'
        self.run_reconcile(records)
        self.assertEqual([A], self.released)

    def test_releasing_device_in_a_guest_becomes_foreign(self):
        records = {A: held(A, SERVER, ledger.RELEASING)}
        self.run_reconcile(records, guests={GUEST: {A}})
        self.assertEqual([], self.released)
        self.assertEqual((ledger.FOREIGN, GUEST),
                         (records[A].state, records[A].guest))


class ReadGuestsTest(base.BaseTestCase):
    """Only a guest that is gone drops out of the facts."""

    class Guest:
        def __init__(self, uuid, xml=None, error=None):
            self.uuid, self._xml, self._error = uuid, xml, error

        def get_xml_desc(self):
            if self._error is not None:
                raise self._error
            return self._xml

    class Host:
        def __init__(self, guests):
            self.guests = guests

        def list_guests(self, only_running=True):
            return self.guests

    def libvirt_error(self, code, message):
        from nova.tests.fixtures import libvirt as fakelibvirt
        return fakelibvirt.make_libvirtError(
            fakelibvirt.libvirtError, message, error_code=code)

    def setUp(self):
        super().setUp()
        from nova.tests.fixtures import libvirt as fakelibvirt
        from nova.virt.libvirt import guest as libvirt_guest
        self.useFixture(fixtures.MockPatchObject(libvirt_guest, 'libvirt',
                                                 fakelibvirt))
        self.fakelibvirt = fakelibvirt

    def test_gone_unreadable_and_malformed(self):
        hostdev_xml = ("<hostdev mode='subsystem' type='pci'><source>"
                       "<address domain='0x0000' bus='0x%s' slot='0x00' "
                       "function='0x0'/></source></hostdev>")
        xml = "<domain><devices>%s%s</devices></domain>" % (
            hostdev_xml % 'zz', hostdev_xml % '81')
        gone = self.libvirt_error(self.fakelibvirt.VIR_ERR_NO_DOMAIN,
                                  'Domain not found')
        timeout = self.libvirt_error(
            self.fakelibvirt.VIR_ERR_OPERATION_TIMEOUT,
            'cannot acquire state change lock')
        host = self.Host([self.Guest(SERVER, xml=xml),
                          self.Guest(OTHER, error=gone),
                          self.Guest(GUEST, error=timeout),
                          self.Guest(B, xml='<domain><devices>')])
        guests, unreadable = reconcile.read_guests(host,
                                                   os_acc.guest_devices)
        # The malformed address hides only its own hostdev.
        self.assertEqual({SERVER: {A}}, guests)
        self.assertEqual({GUEST, B}, set(unreadable))
        self.assertIn('state change lock', unreadable[GUEST])
