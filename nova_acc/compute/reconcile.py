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
"""Reconcile: the ledger against what the host and Nova say now.

Run by nova-compute on every resource update (the periodic one, and the
ones Nova makes after a server was deleted, shelved offloaded or failed to
build), after every guest teardown, and for the devices a build claims. It
compares each device's record with three facts:

* the servers Nova has on this node, and what each is bound to (the
  binding in its system metadata, written at pre-bind): device pools, of
  which the ledger records the devices the host picked, or specific
  devices (those of backend contexts, and bindings from before pools);
* the libvirt guests defined on the host and the PCI devices and mdevs in
  each;
* the devices ``[nova_acc] device_spec`` selects on the host now.

A server holds a device while it is on this node and bound to it (to the
device, or to the pool the ledger recorded the device for), whatever the
server's task state. Moves (resize, cold migration) add two rules, read
from Nova's migration record as its resource tracker does: while a move
from this node is under way (until it is confirmed), the server keeps its
source devices here; and devices claimed on the destination for a move
(``DeviceRecord.migration_id``) are released when that move is reverted or
failed, while after a confirmed move the server's older devices on the
same host are. When a server stops
holding a device (deleted, reclaimed, shelved offloaded, rescheduled,
moved, deleted while this host was down) its device is released
(``nova_acc.compute.release``: reset, or dirty) - but only once no guest uses
it: until then it is ``orphaned`` and reserved. A device in a guest that is not
its bound server is ``foreign`` and reserved. The reconcile is idempotent:
a second run with the same facts changes nothing and writes nothing.

The reconcile fails closed. A guest whose definition cannot be read (a
libvirt call that timed out, "cannot acquire state change lock") might be
using any device, so while one cannot be read nothing is released that
round: the facts say which guests were unreadable (``HostFacts.unreadable``)
and ``reconcile`` defers every release, while the transitions that rest on
what was seen (a guest using a device) still happen. Only a guest that is
gone (libvirt's ``VIR_ERR_NO_DOMAIN``) drops out of the facts, and a
malformed address in one hostdev hides only that hostdev.

``reconcile`` is pure (facts in, records changed, notes out) so that every
rule has a unit test; ``gather_facts`` reads the facts from Nova and
libvirt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from oslo_log import log as logging

from nova_acc.compute import ledger
from nova_acc.compute import moves

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class HostFacts:
    """What the host and Nova say now.

    :ivar managed: address -> os_acc.Device, the devices of ``[nova_acc]
        device_spec`` present on the host.
    :ivar guests: libvirt domain UUID -> PCI addresses and mdev UUIDs in
        its hostdevs, for every guest defined on the host (running or not).
    :ivar bound: server UUID -> addresses it is bound to on this node, for
        each server of interest that is on this node. A server that is not
        on this node (deleted, moved, offloaded) is absent.
    :ivar bound_pools: server UUID -> {pool provider UUID: {requester id:
        number of devices}} of the groups it has bound to pools of this node
        (same servers; several groups may share a pool).
    :ivar pool_of: address -> the UUID of the pool a managed device is in.
    """

    managed: dict
    guests: dict[str, set[str]]
    bound: dict[str, set[str]]
    bound_pools: dict[str, dict[str, dict[str, int]]] = dataclasses.field(
        default_factory=dict)
    pool_of: dict[str, str] = dataclasses.field(default_factory=dict)
    #: This node's name.
    nodename: str | None = None
    #: server UUID -> its move under way (Nova's migration context).
    moves: dict[str, moves.Move] = dataclasses.field(default_factory=dict)
    #: migration ID -> the move, for the moves devices were claimed for
    #: (None: Nova has no such migration).
    migrations: dict[int, moves.Move | None] = dataclasses.field(
        default_factory=dict)
    #: Servers holding devices here that were claimed for a move not undone
    #: (set by ``reconcile``, from the records, before it changes any).
    live_tags: set[str] = dataclasses.field(default_factory=set)
    #: libvirt domain UUID -> why its definition could not be read. Any of
    #: them may use any device: while one is here nothing is released.
    unreadable: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Were the devices of every guest on the host read?"""
        return not self.unreadable

    def guests_using(self, address: str) -> list[str]:
        return sorted(g for g, addrs in self.guests.items()
                      if address in addrs)

    def holds(self, instance_uuid: str | None, address: str,
              rp_uuid: str | None = None) -> bool:
        """Is the server bound to the device, or to the pool it was from?"""
        return (address in self.bound.get(instance_uuid, ()) or
                rp_uuid is not None and
                rp_uuid in self.bound_pools.get(instance_uuid, {}))

    def server_holds(self, rec: ledger.DeviceRecord) -> bool:
        """Does the record's server still hold its device on this node?"""
        server = rec.instance_uuid
        if rec.migration_id is not None:
            tagged = self.migrations.get(rec.migration_id)
            if tagged is None or tagged.status in moves.UNDONE:
                return False  # the move it was claimed for was undone
            if tagged.dest_node == self.nodename and \
                    tagged.status not in moves.SUCCEEDED:
                # A move to here under way: Nova moves the server's node
                # here only once its guest runs (evacuate).
                return True
            return self.holds(server, rec.address, rec.rp_uuid)
        move = self.moves.get(server or '')
        if (move is not None and move.source_node == self.nodename and
                move.status not in moves.SOURCE_RELEASED):
            return True  # a move from here is under way, or being reverted
        if server in self.live_tags:
            return False  # replaced by devices claimed for a confirmed move
        return self.holds(server, rec.address, rec.rp_uuid)

    def adopter(self, users: list[str], address: str,
                records: dict[str, ledger.DeviceRecord]
                ) -> tuple[str, str | None, str | None] | None:
        """(server, pool, requester id) of a guest entitled to the device.

        A guest is entitled when it is a server bound to this device, or to
        the pool the device is in now with a group that the ledger does not
        give all its devices yet.
        """
        pool = self.pool_of.get(address)
        for g in users:
            if address in self.bound.get(g, ()):
                return g, None, None
            groups = self.bound_pools.get(g, {}).get(pool or '', {})
            for requester, amount in sorted(groups.items()):
                held = sum(1 for r in records.values()
                           if r.instance_uuid == g and
                           r.requester_id == requester and
                           r.state in ledger.HELD)
                if held < amount:
                    return g, pool, requester
        return None


# release(records, record, why) -> None: resets/unbinds and frees or dirties.
Releaser = Callable[[dict, ledger.DeviceRecord, str], None]


def interesting_servers(records: dict[str, ledger.DeviceRecord],
                        guests: dict[str, set[str]]) -> set[str]:
    """The servers whose Nova record the reconcile needs."""
    return ({r.instance_uuid for r in records.values() if r.instance_uuid} |
            {g for g, addrs in guests.items() if addrs})


def reconcile(records: dict[str, ledger.DeviceRecord], facts: HostFacts,
              release: Releaser, *, only: Iterable[str] | None = None,
              history_lost: bool = False) -> list[str]:
    """Bring ``records`` in line with ``facts``; return what was done.

    :param only: addresses to look at (default: all known and managed).
    :param history_lost: the ledger was lost (unreadable file): devices no
        server holds are released (reset) before they are handed out.

    ``release`` is not called at all when the facts are incomplete (a
    guest could not be read): those devices stay as recorded, out of
    service or held, until a later reconcile sees every guest.
    """
    if not facts.complete:
        release = _deferred_release(facts, release)
    addresses = set(only) if only is not None else (
        set(records) | set(facts.managed))
    facts.live_tags = {
        r.instance_uuid for r in records.values()
        if r.migration_id is not None and r.instance_uuid and
        facts.migrations.get(r.migration_id) is not None and
        facts.migrations[r.migration_id].status not in moves.UNDONE}
    notes = []
    for address in sorted(addresses):
        rec = records.get(address)
        if rec is None:
            if address not in facts.managed:
                continue
            rec = records[address] = ledger.DeviceRecord(address=address)
            if history_lost and not facts.guests_using(address):
                release(records, rec, 'its history was lost with the '
                        'ledger')
                notes.append('%s: reset, the ledger was lost' % address)
                continue
        note = _reconcile_one(records, rec, facts, release)
        if note:
            notes.append('%s: %s' % (address, note))
    # A move that is over: its devices are the server's like any.
    for address in sorted(addresses):
        rec = records.get(address)
        move = facts.migrations.get(rec.migration_id) if (
            rec is not None and rec.migration_id is not None) else None
        if (move is not None and rec.state in ledger.HELD and
                move.status in moves.SUCCEEDED):
            rec.migration_id = None
    for note in notes:
        LOG.info('Device ledger: %s', note)
    return notes


def _deferred_release(facts: HostFacts, release: Releaser) -> Releaser:
    """A releaser that releases nothing: the facts are incomplete."""
    unreadable = ', '.join('%s (%s)' % item
                           for item in sorted(facts.unreadable.items()))

    def defer(records, rec: ledger.DeviceRecord, why: str) -> None:
        LOG.warning('Not releasing device %s (%s) this time: the devices '
                    'of guest(s) %s could not be read, and any of them may '
                    'use it. It stays out of service until the next '
                    'resource update can read every guest.', rec.address,
                    why, unreadable)
    return defer


def _reconcile_one(records, rec: ledger.DeviceRecord, facts: HostFacts,
                   release: Releaser) -> str | None:
    """One device's record against the facts: the state machine's step."""
    users = facts.guests_using(rec.address)
    if rec.state == ledger.RELEASING:
        return _reconcile_releasing(records, rec, release, users)
    if rec.state in ledger.HELD:
        return _reconcile_held(records, rec, facts, release, users)
    if rec.state == ledger.FOREIGN:
        return _reconcile_foreign(records, rec, facts, release, users)
    if rec.state == ledger.DIRTY:
        if rec.is_mdev and not users:
            # Its removal failed before: try again, it holds capacity.
            release(records, rec, 'removing it again')
            return None if rec.address in records else 'mdev removed'
        return None
    return _reconcile_free(records, rec, facts, users)


def _reconcile_held(records, rec: ledger.DeviceRecord, facts: HostFacts,
                    release: Releaser, users: list[str]) -> str | None:
    """A device a server holds (claimed, attached or orphaned)."""
    address = rec.address
    server = rec.instance_uuid
    if facts.server_holds(rec):
        others = [g for g in users if g != server]
        if others:
            # Only possible if something outside Nova attached it.
            LOG.error('Device %s of server %s is also in guest(s) %s.',
                      address, server, ', '.join(others))
        if server in users and rec.state != ledger.ATTACHED:
            rec.attach()
            return 'attached to server %s' % server
        if rec.state == ledger.ORPHANED:
            rec.claim(server, rec.rp_uuid, rec.resource_class,
                      rec.traits, rec.context_id, rec.requester_id,
                      rec.migration_id)
            return 'held by server %s again' % server
        return None
    # The server no longer holds the device on this node.
    if server in users:
        if rec.state != ledger.ORPHANED:
            rec.orphan('server %s left this host but its guest still '
                       'uses the device; released when the guest is '
                       'gone' % server)
            return 'orphaned: server %s is gone, its guest is not' % (
                server,)
        return None
    if users:
        rec.held_by_guest(users[0], 'guest %s uses it after server %s '
                          'left' % (users[0], server))
        return 'foreign: guest %s uses it' % users[0]
    release(records, rec, 'server %s no longer holds it on this node'
            % server)
    return 'released from server %s' % server


def _reconcile_foreign(records, rec: ledger.DeviceRecord, facts: HostFacts,
                       release: Releaser, users: list[str]) -> str | None:
    """A device a guest that is not its server uses, or used."""
    adopter = facts.adopter(users, rec.address, records)
    if adopter:
        server, pool, requester = adopter
        rec.claim(server, pool, None, (), None, requester)
        rec.attach()
        return 'attached to server %s' % server
    if users:
        if rec.guest not in users:
            rec.held_by_guest(users[0], 'guest %s uses it' % users[0])
            return 'foreign: guest %s uses it' % users[0]
        return None
    release(records, rec, 'guest %s no longer uses it' % rec.guest)
    return 'released from guest %s' % rec.guest


def _reconcile_free(records, rec: ledger.DeviceRecord, facts: HostFacts,
                    users: list[str]) -> str | None:
    """A free device: adopted, foreign, forgotten or left free."""
    address = rec.address
    if users:
        adopter = facts.adopter(users, address, records)
        if adopter:
            # A server booted before this ledger existed (upgrade), or a
            # ledger rebuilt after it was lost.
            server, pool, requester = adopter
            dev = facts.managed.get(address)
            rec.claim(server, pool, getattr(dev, 'resource_class', None),
                      getattr(dev, 'traits', ()), None, requester)
            rec.attach()
            return 'adopted by server %s, whose guest uses it' % server
        rec.held_by_guest(users[0], 'guest %s uses it and is not a server '
                          'bound to it' % users[0])
        return 'foreign: guest %s uses it' % users[0]
    if address not in facts.managed:
        del records[address]
        return 'forgotten: no longer on the host or in [nova_acc] ' \
               'device_spec'
    return None


def _reconcile_releasing(records, rec: ledger.DeviceRecord,
                         release: Releaser, users: list[str]) -> str | None:
    """A device whose release was recorded but not finished."""
    if not users:
        # Finish it: the record says why it was released.
        release(records, rec, rec.reason or 'its release was recorded')
        return None
    # Nothing nova-acc does gives a releasing device to a guest: something
    # outside Nova did. Never reset it under that guest; as a foreign
    # device it is adopted by a server entitled to it, or released once
    # the guest lets go.
    rec.held_by_guest(users[0], 'guest %s uses it while it was being '
                      'released' % users[0])
    return 'foreign: guest %s uses it' % users[0]


def gather_facts(host, nodename: str, managed: dict,
                 records: dict[str, ledger.DeviceRecord],
                 guest_devices: Callable[[str], set[str]]) -> HostFacts:
    """Read the facts from libvirt (``host``) and Nova's cell database.

    :param host: ``nova.virt.libvirt.host.Host``
    :param guest_devices: domain XML -> the PCI addresses and mdev UUIDs
        of its hostdevs (``os_acc.guest_devices``, which builds them).
    """
    from nova.compute import vm_states
    from nova import context as nova_context
    from nova import objects

    from nova_acc import binding
    from nova_acc import pools

    guests, unreadable = read_guests(host, guest_devices)
    wanted = interesting_servers(records, guests)
    bound: dict[str, set[str]] = {}
    bound_pools: dict[str, dict[str, dict[str, int]]] = {}
    under_way: dict[str, moves.Move] = {}
    migrations: dict[int, moves.Move | None] = {}
    if wanted:
        ctxt = nova_context.get_admin_context()
        instances = objects.InstanceList.get_by_filters(
            ctxt, {'uuid': sorted(wanted), 'deleted': False,
                   # Soft-deleted servers can be restored: they keep
                   # their devices until reclaimed.
                   'soft_deleted': True},
            expected_attrs=['system_metadata', 'migration_context'])
        for inst in instances:
            if inst.migration_context is not None:
                move = moves.read_move(
                    ctxt, inst.migration_context.migration_id)
                if move is not None:
                    under_way[inst.uuid] = move
                    migrations[move.migration_id] = move
            # Nova's resource tracker frees a server's resources by the
            # same rule (deleted, or shelved offloaded and not unshelving).
            if inst.node != nodename or vm_states.allow_resource_removal(
                    inst.vm_state, inst.task_state):
                continue
            here = [b for b in binding.load(inst) if b.nodename == nodename]
            bound[inst.uuid] = {b.address for b in here if b.address}
            groups_by_pool: dict[str, dict[str, int]] = {}
            for b in here:
                if b.is_pool:
                    groups_by_pool.setdefault(b.rp_uuid, {})[
                        b.requester_id] = b.amount
            bound_pools[inst.uuid] = groups_by_pool
    for rec in records.values():
        if rec.migration_id is not None and \
                rec.migration_id not in migrations:
            migrations[rec.migration_id] = moves.read_move(
                nova_context.get_admin_context(), rec.migration_id)
    return HostFacts(managed=managed, guests=guests, bound=bound,
                     bound_pools=bound_pools,
                     pool_of=pools.pool_of_address(nodename,
                                                   managed.values()),
                     nodename=nodename, moves=under_way,
                     migrations=migrations, unreadable=unreadable)


def _is_gone(error: Exception) -> bool:
    """Is ``error`` libvirt saying the domain does not exist (any more)?"""
    from nova.virt.libvirt import guest as libvirt_guest

    libvirt = libvirt_guest.libvirt
    return (libvirt is not None and
            isinstance(error, libvirt.libvirtError) and
            error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)


def read_guests(host, devices_of: Callable[[str], set[str]]
                ) -> tuple[dict[str, set[str]], dict[str, str]]:
    """(domain UUID -> its devices, domain UUID -> why it was not read).

    A guest that vanished between the listing and the read (libvirt's
    ``VIR_ERR_NO_DOMAIN``) is left out: it uses nothing. Any other failure
    (a timeout, "cannot acquire state change lock", XML that does not
    parse) makes the guest unreadable, not absent.

    :param devices_of: domain XML -> the devices the ledger knows.
    """
    guests: dict[str, set[str]] = {}
    unreadable: dict[str, str] = {}
    for guest in host.list_guests(only_running=False):
        try:
            uuid = guest.uuid
        except Exception as e:  # libvirt's errors are many
            if _is_gone(e):
                continue
            unreadable[repr(guest)] = str(e)
            continue
        try:
            guests[uuid] = devices_of(guest.get_xml_desc())
        except Exception as e:  # libvirt's and the XML parser's
            if _is_gone(e):
                LOG.debug('Guest %s is gone: %s', uuid, e)
                continue
            LOG.error('Cannot read the devices of guest %s: %s. No device '
                      'is released until it can be read.', uuid, e)
            unreadable[uuid] = str(e)
    return guests, unreadable
