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
"""Step 0 of the flow, inventory: a host's accelerators as device pools.

Called from the compute driver's ``update_provider_tree``. Interchangeable
devices - the same resource class and traits, and for VFs the same PF
(``PoolKey``) - form one *pool*: one child provider of the compute node
with an inventory of as many units as the pool has devices, its traits,
``OWNER_NOVA`` and the capability trait. Placement counts; the host picks
the concrete devices when it claims them (``nova_acc.compute.claims``,
recorded in the device ledger). That is how Nova treats the VFs of a PF in
placement, and it keeps ``GET /allocation_candidates`` small: a server
asking for 8 devices of one pool is one group and one candidate per host,
not 8! permutations of 8 single-device providers.

Which devices form a pool and its provider's name and UUID are
``nova_acc.pools``, shared with the conductor; this module reports them.
The per-device providers nova-acc reported before pools are folded into
them by ``nova_acc.compute.reshape`` (the upgrade reshape); which free
devices are blocked by a relative is ``nova_acc.compute.claims``' rule,
reported here as reserved.

What a pool reports (``pool_inventory``):

* ``total``: its devices present on the host, plus devices a server still
  holds that vanished from the host or moved to another pool by a changed
  ``device_spec`` (their allocation stays valid until the server lets go);
* ``reserved``: devices the ledger keeps out of service (dirty, orphaned,
  foreign), free devices blocked by their PF or VFs being in use (a PF and
  its VFs are never in two guests), and devices held without a placement
  allocation.

Mediated devices (``device_spec`` entries with ``mdev_type``) form pools
too: the parents (GPUs) selected for one type, tags and NUMA node are one
pool, whose provider counts the mdevs of that type its parents can still
create (libvirt's ``availableInstances``) plus those servers hold there now
(``mdev_pool_inventory``). A parent serves one mdev type at a time and is
never handed out whole while it has mdevs: the other types' capacity on a
parent with mdevs, and a parent's mdev capacity while it is used whole, is
reserved. Types that share a parent's capacity so never add up to more
than it can create.

Only changes are written: ProviderTree compares with what placement has,
and the report client sends nothing for an unchanged tree.

Which devices there are: ``[nova_acc] device_spec`` (``configured_device_
specs``) applied to the node devices libvirt lists (``discover``), the way
Nova discovers ``[pci] device_spec`` devices: libvirt reads sysfs on a real
host, and Nova's fake-libvirt fixtures stand in for a host in functional
tests. The node devices' XML comes from ``nova_acc.compute.listing``,
which describes them again only when they changed; parsing the XML and
applying the specs is ``os_acc.discover_from_nodedevs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Set
import dataclasses
import typing as ty

from nova.virt.libvirt import host as libvirt_host
import os_acc
import os_traits
from oslo_log import log as logging

from nova_acc import conf
from nova_acc.compute import claims
from nova_acc.compute import ledger
from nova_acc.compute import listing
from nova_acc.compute import reshape
from nova_acc import pools

CONF = conf.CONF

LOG = logging.getLogger(__name__)


# The blocking rules are the claims' (a device blocked there is reserved
# here); named here too for the callers that read them from inventory.
blocked = claims.blocked
parents_with_mdevs = claims.parents_with_mdevs
relatives = claims.relatives


# ---- mediated devices ----------------------------------------------------


def _types_on(parent: str, records: Mapping[str, ledger.DeviceRecord],
              host_mdevs: Mapping[str, os_acc.MediatedDevice]) -> set:
    return ({r.mdev_type for r in records.values()
             if r.is_mdev and r.parent == parent} |
            {m.mdev_type for m in host_mdevs.values() if m.parent == parent})


def mdev_capacity(mdev_parents: Iterable[os_acc.Device],
                  records: Mapping[str, ledger.DeviceRecord],
                  host_mdevs: Mapping[str, os_acc.MediatedDevice]
                  ) -> dict[tuple[str, str], int]:
    """(parent, type) -> how many more mdevs of the type a claim may record.

    What libvirt says the parent can still create, less the mdevs recorded
    there that do not exist yet (claimed, or lost with a host reboot: they
    are created from that capacity); 0 while the parent is used whole or
    has mdevs of another type.
    """
    result = {}
    for dev in mdev_parents:
        mdev_type = ty.cast(str, dev.mdev_type)
        whole = records.get(dev.address)
        if (whole is not None and whole.state != ledger.FREE) or \
                _types_on(dev.address, records, host_mdevs) - {mdev_type}:
            result[(dev.address, mdev_type)] = 0
            continue
        pending = sum(1 for u, r in records.items()
                      if r.is_mdev and r.parent == dev.address and
                      r.mdev_type == mdev_type and u not in host_mdevs)
        result[(dev.address, mdev_type)] = max(
            0, dev.mdev_types.get(mdev_type, 0) - pending)
    return result


def mdev_pool_inventory(parents: Iterable[os_acc.Device],
                        records: Mapping[str, ledger.DeviceRecord],
                        host_mdevs: Mapping[str, os_acc.MediatedDevice],
                        held_without_allocation: int) -> tuple[int, int]:
    """(total, reserved) of one mdev pool.

    total: what its parents can still create plus the mdevs servers hold
    there that exist (an mdev lost with a reboot is in the first number
    already). Reserved: the capacity of parents used whole or for another
    type, and mdevs held without an allocation.
    """
    total = reserved = 0
    for dev in parents:
        mdev_type = ty.cast(str, dev.mdev_type)
        available = dev.mdev_types.get(mdev_type, 0)
        held = sum(1 for u, r in records.items()
                   if r.is_mdev and r.parent == dev.address and
                   r.mdev_type == mdev_type and u in host_mdevs and
                   r.state in ledger.ACTIVE)
        total += available + held
        whole = records.get(dev.address)
        if (whole is not None and whole.state != ledger.FREE) or \
                _types_on(dev.address, records, host_mdevs) - {mdev_type}:
            reserved += available
    return total, min(total, reserved + held_without_allocation)


# ---- the provider tree ------------------------------------------------------


def _inventory(resource_class: str, total: int, reserved: int) -> dict:
    return {resource_class: {
        'total': total, 'reserved': min(reserved, total), 'min_unit': 1,
        'max_unit': total, 'step_size': 1, 'allocation_ratio': 1.0}}


@dataclasses.dataclass
class _Member:
    address: str
    present: bool
    record: ledger.DeviceRecord | None


def _members(device_pools: Mapping[str, pools.Pool],
             managed: Mapping[str, os_acc.Device],
             records: Mapping[str, ledger.DeviceRecord],
             known_pools: set[str], legacy_left: Set[str] = frozenset()
             ) -> dict[str, list[_Member]]:
    """pool UUID -> the devices it counts.

    A device a server holds counts in the pool it was allocated from
    (``record.rp_uuid``) even when it vanished or ``device_spec`` now puts
    it elsewhere: the server's allocation is there.
    """
    current = {a: uuid for uuid, pool in device_pools.items()
               for a in pool.addresses}
    pool_ids = known_pools | set(device_pools)
    members: dict[str, list[_Member]] = {}
    # Counted, not listed: the order does not matter.
    for address in set(managed) | set(records):
        rec = records.get(address)
        if rec is not None and rec.is_mdev:
            continue  # counted by mdev_pool_inventory
        pool = current.get(address)
        if rec is not None and rec.state in ledger.HELD:
            if rec.rp_uuid in legacy_left:
                continue  # its allocation is on its per-device provider
            if rec.rp_uuid in pool_ids:
                pool = rec.rp_uuid
        if pool is None:
            continue  # gone and not held: nothing to count
        members.setdefault(pool, []).append(
            _Member(address, address in managed, rec))
    return members


def pool_inventory(members: list[_Member], blocked_addresses: set[str],
                   held_without_allocation: int) -> tuple[int, int]:
    """(total, reserved) of one pool."""
    total = reserved = 0
    for m in members:
        state = m.record.state if m.record else ledger.FREE
        if not m.present and state not in ledger.ACTIVE:
            continue  # vanished and released (or never held)
        total += 1
        if state in ledger.OUT_OF_SERVICE or m.address in blocked_addresses:
            reserved += 1
    return total, min(total, reserved + held_without_allocation)


def update_provider_tree(
    provider_tree,
    nodename: str,
    devices: Iterable[os_acc.Device],
    capability_trait: str,
    has_allocations: Callable[[str], bool],
    records: Mapping[str, ledger.DeviceRecord] | None = None,
    held_without_allocation: Mapping[str, int] | None = None,
    allocations: dict | None = None,
    may_reshape: bool = True,
    mdev_parents: Iterable[os_acc.Device] = (),
    host_mdevs: Mapping[str, os_acc.MediatedDevice] | None = None,
) -> dict[str, str]:
    """Make ``nodename``'s pool children match ``devices`` and the ledger.

    :param has_allocations: tells whether a provider (by UUID) has
        allocations; only asked about providers that would be removed.
    :param records: the device ledger.
    :param held_without_allocation: pool UUID -> devices servers hold there
        beyond what placement allocated them: reserved.
    :param allocations: Nova's reshape: every consumer's allocations in the
        node's tree, changed in place when per-device providers of nova-acc
        before pools are folded into pools.
    :param may_reshape: whether Nova would reshape now: it does only when
        nova-compute starts. Otherwise per-device providers with
        allocations stay, fully reserved, until the next start.
    :param mdev_parents: the parents ``device_spec`` selects for mdev
        types (one ``os_acc.Device`` per parent and type).
    :param host_mdevs: the mdevs on the host now, by UUID.
    :raises nova.exception.ReshapeNeeded: per-device providers with
        allocations exist, ``allocations`` was not given and
        ``may_reshape``.
    :returns: per-device provider UUID -> the pool UUID its allocations
        moved to (for the ledger), when a reshape happened.
    """
    managed = {d.address: d for d in devices}
    device_pools = pools.pools_of(nodename, managed.values())
    mdev_parents = list(mdev_parents)
    mdev_pools = pools.pools_of(nodename, mdev_parents)
    provider_tree.add_traits(nodename, capability_trait)

    moved = reshape.fold_legacy_providers(
        provider_tree, nodename, managed, device_pools, has_allocations,
        allocations, may_reshape)

    ours = reshape.children(provider_tree, nodename,
                            lambda name, uuid: pools.is_pool_provider(
                                nodename, name, uuid))
    # Per-device providers still allocated (until Nova can reshape them):
    # their devices count there, not in a pool.
    legacy_left = set(reshape.legacy_children(provider_tree, nodename))
    counts = _pool_counts(
        _HostDevices(managed, mdev_parents, records or {}, host_mdevs or {}),
        device_pools, mdev_pools, held_without_allocation or {}, set(ours),
        legacy_left)
    kept = set()
    for uuid, (total, reserved) in counts.items():
        pool = device_pools.get(uuid) or mdev_pools.get(uuid)
        if total == 0 or (pool is None and not provider_tree.exists(uuid)):
            continue  # no devices: handled below with the stale pools
        kept.add(uuid)
        _report_pool(provider_tree, nodename, uuid, pool, total, reserved,
                     capability_trait)
    _drop_stale_pools(provider_tree, ours, kept, has_allocations)
    return moved


@dataclasses.dataclass
class _HostDevices:
    """What a pool's counts are made of (see ``update_provider_tree``)."""

    managed: Mapping[str, os_acc.Device]
    mdev_parents: list[os_acc.Device]
    records: Mapping[str, ledger.DeviceRecord]
    host_mdevs: Mapping[str, os_acc.MediatedDevice]


def _pool_counts(host: _HostDevices, device_pools: Mapping[str, pools.Pool],
                 mdev_pools: Mapping[str, pools.Pool],
                 held_without_allocation: Mapping[str, int],
                 known_pools: set[str], legacy_left: Set[str]
                 ) -> dict[str, tuple[int, int]]:
    """pool UUID -> (total, reserved), in UUID order.

    For the pools the devices form now, and for pools that only devices
    servers still hold count in (the others are not reported).
    """
    parents_of = {uuid: [d for d in host.mdev_parents
                         if d.address in pool.addresses and
                         d.mdev_type == pool.key.mdev_type]
                  for uuid, pool in mdev_pools.items()}
    members = _members(device_pools, host.managed, host.records,
                       known_pools, legacy_left)
    blocked_addresses = claims.blocked(
        host.managed, host.records,
        claims.parents_with_mdevs(host.records, host.host_mdevs))
    counts = {}
    for uuid in sorted(set(device_pools) | set(members) | set(mdev_pools)):
        if uuid in mdev_pools:
            counts[uuid] = mdev_pool_inventory(
                parents_of[uuid], host.records, host.host_mdevs,
                held_without_allocation.get(uuid, 0))
        else:
            counts[uuid] = pool_inventory(
                members.get(uuid, []), blocked_addresses,
                held_without_allocation.get(uuid, 0))
    return counts


def _report_pool(provider_tree, nodename: str, uuid: str,
                 pool: pools.Pool | None, total: int, reserved: int,
                 capability_trait: str) -> None:
    """Create or update one pool's provider: its traits and inventory."""
    if pool is not None:
        resource_class = pool.key.resource_class
        if not provider_tree.exists(uuid):
            provider_tree.new_child(pool.name, nodename, uuid=uuid)
            LOG.info('Reporting device pool %s (%d x %s) as resource '
                     'provider %s', pool.name, total, resource_class, uuid)
        provider_tree.update_traits(uuid, set(pool.key.traits) | {
            os_traits.OWNER_NOVA, capability_trait})
    else:
        # Devices still held from a pool that device_spec no longer
        # makes: it keeps its class and traits until they are released.
        resource_class = next(iter(provider_tree.data(uuid).inventory))
    inventory = _inventory(resource_class, total, reserved)
    old = provider_tree.data(uuid).inventory.get(resource_class)
    if old is not None and (old['total'], old['reserved']) != (
            total, inventory[resource_class]['reserved']):
        LOG.info('Device pool %s: %d device(s), %d reserved (was %d, '
                 '%d).', provider_tree.data(uuid).name, total,
                 inventory[resource_class]['reserved'], old['total'],
                 old['reserved'])
    provider_tree.update_inventory(uuid, inventory)


def _drop_stale_pools(provider_tree, ours: Mapping[str, str], kept: Set[str],
                      has_allocations: Callable[[str], bool]) -> None:
    """Remove the pool providers with no devices left, unless allocated."""
    for uuid, name in ours.items():
        if uuid in kept:
            continue
        if has_allocations(uuid):
            # Deleting a provider with allocations fails in placement and
            # would stop every later inventory update of this host. Keep it,
            # fully reserved so nothing new lands on it, until it is freed.
            inv = provider_tree.data(uuid).inventory
            if inv and reshape.fully_reserved(inv) != inv:
                LOG.warning(
                    'Device pool %s (%s) is allocated but none of its '
                    'devices is on the host or in [nova_acc] device_spec '
                    'any more; keeping it fully reserved until its servers '
                    'are deleted.', name, uuid)
                provider_tree.update_inventory(uuid,
                                               reshape.fully_reserved(inv))
        else:
            LOG.info('Device pool %s (%s) has no devices any more; removing '
                     'its provider.', name, uuid)
            provider_tree.remove(uuid)


# ---- which devices the host has -------------------------------------------


def discover(host: libvirt_host.Host,
             device_specs: ty.Iterable[ty.Mapping[str, ty.Any]],
             node_devices: listing.NodeDeviceListing,
             ) -> list[os_acc.Device]:
    """Devices of this host selected by ``device_specs``.

    libvirt is not asked when there are no specs. Parents selected for an
    mdev type come once more per type, with ``mdev_type`` set.

    :param host: the driver's ``nova.virt.libvirt.host.Host``.
    :param device_specs: as ``nova_acc.conf.device_specs`` returns them.
    :param node_devices: the host's listing, kept between calls
        (``snapshot.Host.node_devices``).
    :returns: devices shared with other discoveries that found the same
        node device (``os_acc.discover_from_nodedevs`` works each out
        once): read them, never change them.
    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
    :raises DeviceListingFailed: libvirt could not list the devices.
    """
    def xmls() -> ty.Iterator[str]:
        # Lazily: os_acc validates the specs before it reads the devices.
        yield from node_devices.xmls(host)
    return os_acc.discover_from_nodedevs(xmls(), device_specs)
