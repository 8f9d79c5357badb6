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
"""Live migration by unplug and replug, on the source and the destination.

For servers whose devices are all in pools of ``device_spec`` entries with
``"live_migration": "replug"`` (the conductor refuses the others,
``nova_acc.moves``), as Nova does for direct SR-IOV ports: the guest loses
its devices during the move and gets devices of the destination after it.

* destination, pre-check (``check_destination``): the pools placement
  allocated here for the server allow replug, else
  ``MigrationPreCheckError`` (Nova's conductor then tries another host);
* destination, ``pre_live_migration`` (``claim_at_destination``): the
  devices are picked and claimed in this host's ledger, tagged with the
  migration, from the pools of the allocation; the server's bindings are
  not changed yet (the source's reconcile must keep holding its devices).
  Nothing free: the migration fails before anything moved;
* source, before libvirt migrates (``detach_at_source``): the devices
  leave the live guest, which migrates without them; the source ledger
  keeps them the server's until the migration completed;
* destination, ``post_live_migration_at_destination``
  (``attach_at_destination``): the bindings become this node's, and the
  devices claimed are attached to the running guest (live and persistent);
* rollback at any point: the source attaches back those its live guest
  lacks (``reattach_at_source``); the destination's devices, tagged with a
  migration that failed, are released and reset by its reconcile.

Once the migration completed, the source's next resource update releases
and resets the source devices (the server is bound to the destination's).

vGPUs of pools with ``CUSTOM_ACC_LIVE_MIGRATION_MIGRATE`` (``mdev_type``
entries marked ``"live_migration": "migrate"``) stay in the guest and
migrate with it, as Nova's own vGPUs do:

* source, pre-check (``check_source``): post-copy is off (QEMU refuses
  VFIO devices with post-copy); Nova's own source check, which finds the
  mdevs in the guest, refuses libvirt < 8.6.0 or QEMU < 8.1.0 on either
  host and gives the destination the source's mdev types;
* destination, last pre-check (``claim_mdevs_at_destination``): mdevs
  of the same types are claimed here 1:1, tagged with the migration, and
  the source -> destination UUID map goes in the migrate data
  (``target_mdevs``), from which Nova rewrites the guest's XML; nothing
  free: ``MigrationPreCheckError`` (another host is tried);
* destination, ``pre_live_migration`` (``create_mdevs``): the claimed mdevs
  are created; the source unplugs nothing; after the move the destination
  binds them (they are in the guest already); a rollback leaves the source
  as it was and the destination's reconcile removes and releases them.

Whole PCI devices of pools with that trait (whole-device entries marked
``"migrate"``, VFIO variant drivers) migrate with the guest the same way:
the destination claims devices of the same pools in the same last
pre-check, nothing is created, and the source rewrites their addresses in
the migration XML; ``nova_acc.compute.live_migration_pci`` has the version
check, the address map and the rewrite.
"""

from __future__ import annotations

from nova import exception as nova_exc
import os_acc
from os_acc.internal import device_spec
from oslo_log import log as logging

from nova_acc import binding
from nova_acc import exception
from nova_acc.compute import claiming
from nova_acc.compute import guest as guest_devices
from nova_acc.compute import ledger
from nova_acc.compute import live_migration_pci
from nova_acc.compute import snapshot as host_snapshot
from nova_acc.compute import suspend

LOG = logging.getLogger(__name__)

REPLUG_TRAIT = device_spec.LIVE_MIGRATION_REPLUG_TRAIT
MIGRATE_TRAIT = device_spec.LIVE_MIGRATION_MIGRATE_TRAIT
POST_COPY_REFUSED = (
    'the server\'s devices (vGPUs, PCI devices on VFIO variant drivers) '
    'migrate with it, and QEMU refuses post-copy with VFIO devices: '
    '[libvirt] live_migration_permit_post_copy must be false on node %s')


def _pool_classes(snapshot: host_snapshot.HostSnapshot) -> dict[str, str]:
    return {u: p.key.resource_class for u, p in snapshot.pools.items()}


def mdev_map(source_types: dict[str, str], dest_types: dict[str, str]
             ) -> dict[str, str]:
    """Source mdev UUID -> destination mdev UUID, 1:1 by type.

    :raises DeviceNotUsable: a source mdev has no destination mdev of its
        type, or the destination has more than the source.
    """
    free = sorted(dest_types.items())
    mapped = {}
    for src, mdev_type in sorted(source_types.items()):
        match = next((d for d, t in free if t == mdev_type), None)
        if match is None:
            raise exception.DeviceNotUsable(
                'no mdev of type %s was claimed for the migration of mdev '
                '%s' % (mdev_type, src))
        free.remove((match, mdev_type))
        mapped[src] = match
    if free:
        raise exception.DeviceNotUsable(
            'mdevs %s were claimed for the migration with no source mdev '
            'of their type' % ', '.join(d for d, t in free))
    return mapped


class LiveMigrations:
    """Live migrations of servers to and from one host."""

    def __init__(self, host: host_snapshot.Host, claims: claiming.Claims,
                 guests: guest_devices.GuestDevices):
        self._host = host
        self._claims = claims
        self._guests = guests

    def check_destination(self, instance, allocations: dict) -> None:
        """Pre-check here: do this host's pools of the move allow replug?

        :raises MigrationPreCheckError: naming the pool and why.
        """
        if not binding.load(instance):
            return
        snapshot = self._host.snapshot()
        for rp in sorted(allocations):
            pool = snapshot.pools.get(rp)
            if pool is not None and not (
                    {REPLUG_TRAIT, MIGRATE_TRAIT} & set(pool.key.traits)):
                raise nova_exc.MigrationPreCheckError(
                    reason='the devices of pool %s on node %s are not '
                           'marked "live_migration": "replug" or '
                           '"migrate" in [nova_acc] device_spec' % (
                               rp, snapshot.nodename))

    def migrates_with_guest(self, instance) -> bool:
        """Source: do the server's devices stay in the guest for the move?

        The conductor refuses servers mixing both kinds.
        """
        bindings = binding.load(instance)
        if not bindings:
            return False
        pools = self._host.snapshot().pools
        return all(b.rp_uuid in pools and
                   MIGRATE_TRAIT in pools[b.rp_uuid].key.traits
                   for b in bindings)

    def migrates_pci_with_guest(self, instance) -> bool:
        """Source: do whole PCI devices of the server migrate with it?"""
        if not self.migrates_with_guest(instance):
            return False
        pools = self._host.snapshot().pools
        return any(pools[b.rp_uuid].key.mdev_type is None
                   for b in binding.load(instance))

    def _migrating_pools(self, instance, allocations: dict) -> list:
        if not binding.load(instance):
            return []
        pools = self._host.snapshot().pools
        here = [pools[rp] for rp in allocations if rp in pools]
        return here if all(MIGRATE_TRAIT in p.key.traits
                           for p in here) else []

    def migrates_here(self, instance, allocations: dict) -> bool:
        """Destination: is the move's allocation here of such pools?"""
        return bool(self._migrating_pools(instance, allocations))

    def migrates_pci_here(self, instance, allocations: dict) -> bool:
        """Destination: ... and are whole PCI devices among them?"""
        return any(p.key.mdev_type is None
                   for p in self._migrating_pools(instance, allocations))

    def check_source(self, instance, post_copy: bool) -> None:
        """Source pre-check: no post-copy with vGPUs that migrate.

        :raises MigrationPreCheckError: naming the option.
        """
        if post_copy and self.migrates_with_guest(instance):
            raise nova_exc.MigrationPreCheckError(
                reason=POST_COPY_REFUSED % self._host.nodename)

    def claim_mdevs_at_destination(self, instance, migration_id: int,
                                   allocations: dict,
                                   source_types: dict[str, str]
                                   ) -> dict[str, str]:
        """Claim mdevs of the source's types here, tagged with the move.

        :param source_types: the source's mdev UUID -> type.
        :returns: source mdev UUID -> the destination's mdev UUID.
        :raises MigrationPreCheckError: nothing free here (nothing claimed),
            or the types do not map 1:1.
        """
        try:
            self.claim_at_destination(instance, migration_id, allocations)
        except exception.DeviceNotUsable as e:
            raise nova_exc.MigrationPreCheckError(reason=e.reason) from e
        claimed = self._claimed_mdevs(instance, migration_id)
        try:
            return mdev_map(source_types, {
                u: r.mdev_type for u, r in claimed.items()})
        except exception.DeviceNotUsable as e:
            # Not expected (the claim follows the source's groups); what
            # was claimed is tagged with the move, whose reconcile releases
            # it once the move is over.
            raise nova_exc.MigrationPreCheckError(
                reason='%s on node %s' % (e.reason,
                                          self._host.nodename)) from e

    def _claimed_mdevs(self, instance, migration_id: int) -> dict:
        return {a: r for a, r in self._host.ledger.records().items()
                if r.instance_uuid == instance.uuid and r.is_mdev and
                r.migration_id == migration_id and r.state in ledger.ACTIVE}

    def claimed_pci(self, instance, migration_id: int
                    ) -> dict[str, str | None]:
        """Destination: the PCI devices claimed for the move here:
        address -> requester id."""
        return live_migration_pci.held_pci(
            (r for r in self._host.ledger.records().values()
             if r.migration_id == migration_id and
             r.state in ledger.ACTIVE), instance.uuid)

    def source_pci_map(self, instance, entries: dict[str, str]
                       ) -> dict[str, str]:
        """Source: its PCI devices of the server -> the destination's.

        :param entries: the destination's, from the migrate data.
        :raises DeviceNotUsable: the groups do not pair up.
        """
        held = live_migration_pci.held_pci(
            (r for r in self._host.ledger.records().values()
             if r.state in ledger.ACTIVE), instance.uuid)
        return live_migration_pci.source_map(entries, held)

    def create_mdevs(self, instance, migration_id: int,
                     target_mdevs: dict[str, str],
                     pci_targets: tuple[str, ...] = ()) -> None:
        """``pre_live_migration``: create the mdevs claimed for the move.

        :param target_mdevs: the map the pre-check put in the migrate data.
        :param pci_targets: the PCI devices it claimed here for the move.
        :raises DeviceNotUsable: one the maps name is no longer held here
            for the move, or an mdev could not be created.
        """
        claimed = self._claimed_mdevs(instance, migration_id)
        lost = sorted(
            (set(target_mdevs.values()) - set(claimed)) |
            (set(pci_targets) - set(self.claimed_pci(instance,
                                                     migration_id))))
        if lost or not (target_mdevs or pci_targets):
            # The guest's XML names them: migrating without them would
            # give the guest devices nobody holds, or none.
            raise exception.DeviceNotUsable(
                'devices %s claimed for the live migration are not held '
                'for it on node %s' % (', '.join(lost) or '(none)',
                                       self._host.nodename))
        present = self._host.snapshot().host_mdevs(
            self._host.ledger.records())
        for uuid, rec in sorted(claimed.items()):
            if uuid in present:
                continue
            try:
                self._host.create_mdev(rec.parent, rec.mdev_type, uuid)
            except exception.MdevError as e:
                raise exception.DeviceNotUsable(
                    '%s on node %s' % (e, self._host.nodename))

    def _moved(self, instance, allocations: dict,
               snapshot: host_snapshot.HostSnapshot
               ) -> list[binding.Binding]:
        try:
            return binding.for_move(binding.load(instance), allocations,
                                    _pool_classes(snapshot),
                                    snapshot.nodename)
        except exception.BindingCannotMove as e:
            raise exception.DeviceNotUsable(str(e))

    def claim_at_destination(self, instance, migration_id: int,
                             allocations: dict) -> None:
        """Pick and claim the server's devices here, tagged with the move.

        The bindings of the destination are given to the claim only: the
        server keeps its own until it runs here.

        :raises DeviceNotUsable: a group has no pool here, or a pool too
            few free devices; nothing was claimed.
        """
        if not binding.load(instance):
            return
        snapshot = self._host.snapshot()
        source = binding.load(instance)
        binding.replace(instance, self._moved(instance, allocations,
                                              snapshot))
        try:
            self._claims.claim(instance, snapshot, migration_id=migration_id)
        finally:
            binding.replace(instance, source)

    def detach_at_source(self, guest, instance) -> None:
        """The server's devices out of the live guest before it migrates.

        :raises MigrationError: a device stayed in the guest (the detached
            ones are back in it); Nova rolls the migration back.
        """
        if not binding.load(instance):
            return
        try:
            suspend.detach_from_guest(self._host, guest, instance,
                                      'live migration')
        except exception.DeviceNotUsable as e:
            raise nova_exc.MigrationError(
                reason='the devices of the server could not be unplugged '
                       'for the move: %s' % e.reason) from e

    def reattach_at_source(self, guest, instance) -> None:
        """Rollback on the source: the devices it still holds, back in."""
        records = self._host.ledger.records()
        held = [r.accelerator() for a, r in sorted(records.items())
                if r.instance_uuid == instance.uuid and
                r.state in ledger.ACTIVE]
        if held:
            suspend.attach_back(guest, held)

    def attach_at_destination(self, context, guest, instance,
                              allocations: dict) -> None:
        """After the migration: bind here and attach the claimed devices.

        :raises DeviceNotUsable: a device could not be attached.
        """
        if not binding.load(instance):
            return
        snapshot = self._host.snapshot()
        binding.replace(instance, self._moved(instance, allocations,
                                              snapshot))
        instance.save()
        accelerators = self._guests.prepare(instance, snapshot,
                                            request_context=context)
        present = os_acc.guest_devices(guest.get_xml_desc())
        for acc in accelerators:
            if suspend.name(acc) in present:
                continue
            try:
                guest.attach_device(os_acc.get_config(acc), persistent=True,
                                    live=True)
            except suspend.guest_libvirt_error() as e:
                raise exception.DeviceNotUsable(
                    'device %s could not be attached after the live '
                    'migration: %s' % (suspend.name(acc), e))
        self._claims.mark_attached(instance)
        LOG.info('Attached devices %s after the live migration.',
                 ', '.join(suspend.name(a) for a in accelerators),
                 instance=instance)
