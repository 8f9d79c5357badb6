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
"""Step 4 of the flow, hostdev: the devices a server holds, in its guest.

The compute side of nova-acc for one libvirt host (``HostDevices``, used by
the driver seam ``nova_acc.seams.libvirt``): before a build it waits for
the backend's attach handles (ID-based contexts), checks the bindings and
claims the devices in the host's ledger (``nova_acc.compute.ledger``). For a
group bound to a pool, this is where the concrete devices are chosen: under the
ledger lock, which every build, move, delete and reconcile on this host
takes, the host picks as many free devices of the pool as placement
allocated (as Nova's PCI tracker picks VFs under the resource tracker's
lock), never a device held, out of service or blocked by its PF or VFs,
and records them before the guest is defined. Every guest definition then
gets an ``os_acc`` hostdev per device the server holds.
It also runs the reconcile (``nova_acc.compute.reconcile``) with the release of
step 5 (``nova_acc.compute.release``), and tells inventory which devices
placement must not offer.

Failures raise ``DeviceNotUsable``; the seam turns it into Nova's
``ComputeResourcesUnavailable`` so the server alone is rescheduled.
"""

from __future__ import annotations

import contextlib
import dataclasses

from nova import context as nova_context
from nova import exception as nova_exc
from nova import objects
from nova.pci import devspec as nova_devspec
from nova.scheduler.client import report
import os_acc
from os_acc import exception as acc_exc
from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_acc import backends
from nova_acc import binding
from nova_acc import conf
from nova_acc import exception
from nova_acc.compute import inventory
from nova_acc.compute import ledger
from nova_acc.compute import mdev
from nova_acc import pools
from nova_acc.compute import privsep
from nova_acc.compute import reconcile
from nova_acc.compute import release

CONF = conf.CONF
LOG = logging.getLogger(__name__)


class HostDevices:
    """nova-acc's devices on one libvirt host (one compute node).

    :param host: the driver's ``nova.virt.libvirt.host.Host``.
    :param device_specs: ``[nova_acc] device_spec``, parsed.
    """

    def __init__(self, host, device_specs: list[dict]):
        self._host = host
        self._device_specs = device_specs
        self._has_mdev_specs = any(
            isinstance(s, dict) and 'mdev_type' in s for s in device_specs)
        self._ledger: ledger.DeviceLedger | None = None
        # Server UUID -> request context of its last guest teardown, for
        # unbinding its backend contexts as the user (see _unbind).
        self._teardown_contexts: dict = {}
        # Address -> the record as a release left it, for releases that
        # were carried out (reset, unbound, removed) but whose outcome the
        # ledger could not record: the next attempt records the outcome
        # instead of resetting the device again. None: the record went.
        self._released_unrecorded: dict[
            str, tuple[ledger.DeviceRecord,
                       ledger.DeviceRecord | None]] = {}
        # Pools whose devices a release freed since the last report to
        # placement (see ``take_freed_pools``).
        self._freed_pools: set[str] = set()

    # ---- facts ----------------------------------------------------------

    @property
    def nodename(self) -> str:
        # The libvirt driver has one node, named after the host.
        return self._host.get_hostname()

    @property
    def ledger(self) -> ledger.DeviceLedger:
        if self._ledger is None or self._ledger.nodename != self.nodename:
            self._ledger = ledger.DeviceLedger(self.nodename)
        return self._ledger

    def devices(self) -> tuple[dict[str, os_acc.Device],
                               list[os_acc.Device]]:
        """(whole devices by address, mdev parents) of ``device_spec``.

        The mdev parents come once per parent and mdev type, with their
        capacity as libvirt reports it now.
        """
        found = inventory.discover(self._host, self._device_specs)
        return ({d.address: d for d in found if d.mdev_type is None},
                [d for d in found if d.mdev_type is not None])

    def managed_devices(self) -> dict[str, os_acc.Device]:
        """The whole devices of ``device_spec`` on the host, by address."""
        return self.devices()[0]

    def mdev_parents(self) -> list[os_acc.Device]:
        """The parents ``device_spec`` selects for mdev types."""
        return self.devices()[1] if self._has_mdev_specs else []

    def host_mdevs(self, records=None) -> dict[str, os_acc.MediatedDevice]:
        """The mdevs on the host now, by UUID.

        libvirt is not asked on a host without mdev types in
        ``device_spec`` and without mdevs in its ledger.
        """
        if not self._has_mdev_specs and not any(
                r.is_mdev for r in (records or {}).values()):
            return {}
        return mdev.list_mdevs(self._host)

    def check_no_shared_devices(self) -> None:
        """Refuse to start when Nova's PCI tracker could hand out our devices.

        Two owners of one device is how a device ends up in two guests.
        The same for mdevs: Nova's own vGPU support hands out any mdev of
        its types that no guest uses, nova-acc's included.

        :raises ConflictingDeviceSpec:
        :raises ConflictingMdevConfig:
        :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
        """
        if self._has_mdev_specs and CONF.devices.enabled_mdev_types:
            raise exception.ConflictingMdevConfig()
        # Also validates [nova_acc] device_spec: a bad entry stops the start
        # rather than every resource update.
        whole, parents = self.devices()
        if not CONF.pci.device_spec:
            return
        nova_specs = [nova_devspec.PciDeviceSpec(jsonutils.loads(line))
                      for line in CONF.pci.device_spec]
        for dev in list(whole.values()) + parents:
            as_nova = {'address': dev.address, 'vendor_id': dev.vendor_id,
                       'product_id': dev.product_id,
                       'parent_addr': dev.physfn}
            if any(s.match(as_nova) for s in nova_specs):
                raise exception.ConflictingDeviceSpec(address=dev.address)

    # ---- reconcile and release (step 5) -----------------------------------

    def _release(self, records, record, why) -> None:
        release.release(records, record, why,
                        reset_on_release=CONF.nova_acc.reset_on_release,
                        sysfs_root=CONF.nova_acc.sysfs_root,
                        unbind=self._unbind,
                        resetter=privsep.reset_for_release,
                        remove_mdev=self._remove_mdev)

    def _remove_mdev(self, uuid: str) -> None:
        try:
            mdev.remove(self._host, uuid)
        except Exception as e:
            raise exception.MdevError(str(e))

    def _unbind(self, instance_uuid: str, context_ids: list) -> None:
        # The user's request context of the guest's teardown, when this
        # process saw it: Cyborg then sees the user's token plus Nova's
        # service token, as for every other call. Without it (deleted while
        # this host was down) the backend uses Nova's own credentials.
        # Only this node's binding: after a reschedule the same server may
        # hold the context on another node by now.
        user_context = self._teardown_contexts.pop(instance_uuid, None)
        backend = backends.get_backend()
        if user_context is not None:
            backend.unbind(user_context, objects.Instance(uuid=instance_uuid),
                           context_ids, hostname=self.nodename)
        else:
            backend.unbind_orphaned(nova_context.get_admin_context(),
                                    instance_uuid, context_ids,
                                    hostname=self.nodename)

    def _reconcile_locked(self, records, managed, only=None
                          ) -> list[str]:
        """Reconcile under the ledger lock; devices to release go releasing.

        Nothing is reset here: a release is only recorded (``releasing``),
        and carried out by ``_finish_releases`` once that record is on
        disk. :returns: the addresses whose release is due now (none when
        a guest could not be read).
        """
        book = self.ledger
        facts = reconcile.gather_facts(self._host, self.nodename, managed,
                                       records)
        due: list[str] = []

        def record_release(records, record, why) -> None:
            due.append(record.address)
            if record.state == ledger.DIRTY:
                return  # an mdev whose removal is tried again
            if record.state != ledger.RELEASING:
                record.releasing(why)

        lost = book.recovered_from is not None
        reconcile.reconcile(records, facts, record_release,
                            only=None if lost else only, history_lost=lost)
        book.recovered_from = None
        return due if facts.complete else []

    def _finish_releases(self, due: list[str]) -> None:
        """Release the devices whose release the ledger records.

        Run after the transaction that recorded them ``releasing`` was
        written: if the ledger cannot be written, nothing was reset. A
        release carried out here whose outcome cannot be written either is
        remembered, so the next attempt records it instead of resetting
        the device once more.
        """
        done: dict[str, tuple[ledger.DeviceRecord,
                              ledger.DeviceRecord | None]] = {}
        try:
            with self.ledger.transaction() as records:
                for address in sorted(set(due)):
                    rec = records.get(address)
                    if rec is None or not (
                            rec.state == ledger.RELEASING or
                            (rec.is_mdev and rec.state == ledger.DIRTY)):
                        continue
                    before = dataclasses.replace(rec)
                    self._release_once(records, rec)
                    after = records.get(address)
                    if after is not None and after.state == ledger.RELEASING:
                        continue  # not attempted (privsep down): later
                    done[address] = (before, dataclasses.replace(after)
                                     if after is not None else None)
        except Exception:
            self._released_unrecorded.update(done)
            raise
        for address, (before, after) in done.items():
            self._released_unrecorded.pop(address, None)
            if before.rp_uuid and after is not None and \
                    after.state == ledger.FREE:
                self._freed_pools.add(before.rp_uuid)

    def _release_once(self, records, rec: ledger.DeviceRecord) -> None:
        """Release ``rec``, or record the outcome of a release already done.
        """
        remembered = self._released_unrecorded.get(rec.address)
        if remembered is not None and remembered[0] == rec:
            outcome = remembered[1]
            LOG.info('Device %s was released before but the ledger could '
                     'not record it; recording it now without releasing '
                     'it again.', rec.address)
            if outcome is None:
                del records[rec.address]
            else:
                records[rec.address] = dataclasses.replace(outcome)
            return
        self._release(records, rec, rec.reason or 'its release is due')

    def reconcile(self, only=None, managed=None
                  ) -> dict[str, ledger.DeviceRecord]:
        """Reconcile the ledger (all devices, or the addresses ``only``).

        Two ledger transactions: the first records what is to be released
        (``releasing``), the second releases it (reset, unbind, removal)
        and records the outcome. Nothing is released when a guest could not
        be read (``nova_acc.compute.reconcile``).

        :param managed: the devices of ``device_spec`` on the host, if the
            caller has just listed them.
        :returns: the ledger's records afterwards (copies).
        """
        if managed is None:
            managed = self.managed_devices()
        with self.ledger.transaction() as records:
            due = self._reconcile_locked(records, managed, only=only)
            result = {a: dataclasses.replace(r) for a, r in records.items()}
        if due:
            self._finish_releases(due)
            result = self.ledger.read()
        holders = {r.instance_uuid for r in result.values()}
        for uuid in set(self._teardown_contexts) - holders:
            del self._teardown_contexts[uuid]
        return result

    def take_freed_pools(self) -> set[str]:
        """The pools whose devices were freed since the last call.

        Their inventory's ``reserved`` changed; the driver reports it to
        placement at once rather than at the next periodic update.
        """
        freed, self._freed_pools = self._freed_pools, set()
        return freed

    def after_teardown(self, context, instance) -> None:
        """The server's guest is gone: release what it no longer holds.

        Whether the server still holds its devices (a hard reboot, a
        rebuild) or not (delete, reap, shelve offload, failed build) is for
        the reconcile to tell from what Nova records, not from why the guest
        was destroyed. The resource update Nova makes once the server is
        deleted or offloaded catches the rest.

        When the ledger cannot be read now (``LedgerUnreadable``: EIO,
        EMFILE...), nothing is released and nothing raised: the guest is
        gone whatever happens here, the devices stay recorded as the
        server's (out of service for anyone else), and the first resource
        update that can read the ledger releases them.
        """
        try:
            records = self.ledger.records()
            held = [a for a, r in records.items()
                    if r.instance_uuid == instance.uuid]
            if any(records[a].backend_owned for a in held):
                self._teardown_contexts[instance.uuid] = context
            if held:
                self.reconcile(only=held)
        except exception.LedgerUnreadable as e:
            LOG.error('%s. Nothing of the server is released now; its '
                      'devices stay out of service and nova-compute releases '
                      'them at the first resource update that can read the '
                      'ledger.', e, instance=instance)

    def inventory_records(self, managed) -> dict[str, ledger.DeviceRecord]:
        """The reconciled ledger for a resource update; never raises.

        Never stops the host's inventory updates, and fails closed: when
        the reconcile fails, what the ledger last recorded (out-of-service
        devices stay reserved); when the ledger's state is unknown - it
        cannot be read now, or it was corrupt and is not rebuilt yet -
        records that keep every device of ``managed`` and every mdev parent
        out of service, so that every pool is reported fully reserved:
        placement must not offer devices whose state is unknown. The next
        update that can read the ledger reports them as they are.
        """
        try:
            if not managed and not self.ledger.exists():
                return {}
            return self.reconcile(managed=managed)
        except exception.LedgerUnreadable as e:
            return self._state_unknown(managed, str(e))
        except Exception:
            LOG.exception('Reconciling the device ledger of node %s failed; '
                          'reporting its last recorded state.',
                          self.nodename)
        try:
            if self.ledger.recovered_from is None:
                return self.ledger.read()
            why = ('the device ledger was corrupt, moved to %s and is not '
                   'rebuilt yet' % self.ledger.recovered_from)
        except exception.LedgerError as e:
            why = str(e)
        return self._state_unknown(managed, why)

    def _state_unknown(self, managed, why: str
                       ) -> dict[str, ledger.DeviceRecord]:
        """Records for inventory that keep every device out of service."""
        LOG.error('%s; reporting every device pool of node %s fully '
                  'reserved until the ledger can be read.', why,
                  self.nodename)
        addresses = set(managed)
        try:
            addresses.update(d.address for d in self.mdev_parents())
        except Exception as e:  # libvirt's: the whole devices are reserved
            LOG.warning('Cannot list the mdev parents of node %s: %s',
                        self.nodename, e)
        return {a: ledger.DeviceRecord(
                    address=a, state=ledger.DIRTY,
                    reason='state unknown: %s' % why)
                for a in sorted(addresses)}

    @staticmethod
    def held_without_allocation(records) -> dict[str, int]:
        """pool UUID -> devices servers hold there beyond their allocation.

        Placement would offer such devices to the next server, whose claim
        the ledger then refuses; reserving them keeps placement from trying
        until the holder leaves. One placement read per pool in use, not
        per device.
        """
        held: dict[str, dict[str, int]] = {}
        for rec in records.values():
            if (rec.state in ledger.ACTIVE and
                    not rec.backend_owned and rec.rp_uuid):
                per_server = held.setdefault(rec.rp_uuid, {})
                per_server[rec.instance_uuid] = per_server.get(
                    rec.instance_uuid, 0) + 1
        result = {}
        client = report.report_client_singleton()
        ctxt = nova_context.get_admin_context()
        for rp_uuid, per_server in sorted(held.items()):
            try:
                consumers = client.get_allocations_for_resource_provider(
                    ctxt, rp_uuid).allocations
            except nova_exc.NovaException as e:
                LOG.warning('Cannot check the allocations of device pool '
                            '%s: %s', rp_uuid, e)
                continue
            excess = 0
            for server, count in sorted(per_server.items()):
                allocated = sum(consumers.get(server, {}).get(
                    'resources', {}).values())
                if count > allocated:
                    LOG.warning('Server %s holds %d device(s) of pool %s on '
                                'this host but placement allocated it %d; '
                                'reserving the difference until the server '
                                'leaves.', server, count, rp_uuid, allocated)
                    excess += count - allocated
            if excess:
                result[rp_uuid] = excess
        return result

    def repoint(self, moved: dict[str, str]) -> None:
        """After a reshape: records of per-device providers -> their pool."""
        if not moved or not self.ledger.exists():
            return
        with self.ledger.transaction() as records:
            for rec in records.values():
                if rec.rp_uuid in moved:
                    rec.rp_uuid = moved[rec.rp_uuid]

    @staticmethod
    def provider_has_allocations(rp_uuid: str) -> bool:
        ctxt = nova_context.get_admin_context()
        allocs = report.report_client_singleton(
            ).get_allocations_for_resource_provider(ctxt, rp_uuid)
        return bool(allocs.allocations)

    # ---- claims -------------------------------------------------------------

    @contextlib.contextmanager
    def _reschedule_if_ledger_unusable(self):
        """A ledger that cannot be read or written now fails the claim.

        ``DeviceNotUsable``: the server is rescheduled to another host; the
        file is kept as it is.
        """
        try:
            yield
        except exception.LedgerUnreadable as e:
            raise exception.DeviceNotUsable(
                'the device ledger of node %s could not be read, so no '
                'device can be claimed there now (%s)' % (self.nodename, e)
            ) from e
        except (exception.LedgerError, OSError) as e:
            # A full disk, a read-only file system: the claim was not
            # recorded, so it did not happen (nothing was written).
            LOG.error('Could not write the device ledger of node %s: %s',
                      self.nodename, e)
            raise exception.DeviceNotUsable(
                'the device ledger of node %s could not be written, so no '
                'device can be claimed there now (%s)' % (
                    self.nodename, getattr(e, 'strerror', None) or e)
            ) from e

    def _claim_request(self, instance, managed, mdev_parents=()
                       ) -> tuple[list[dict], list[ledger.PoolRequest]]:
        """What the instance's bindings on this node ask the ledger for.

        :returns: (specific devices, pool requests) as ``ledger.claim``
            takes them.
        """
        node_pools = pools.pools_of(self.nodename, managed.values())
        node_pools.update(pools.pools_of(self.nodename, mdev_parents))
        wanted, requests = [], []
        for b in binding.load(instance):
            if b.nodename != self.nodename:
                continue
            if b.is_pool:
                pool = node_pools.get(b.rp_uuid)
                requests.append(ledger.PoolRequest(
                    requester_id=b.requester_id, rp_uuid=b.rp_uuid,
                    count=b.amount,
                    candidates=tuple(pool.addresses) if pool else (),
                    resource_class=pool.key.resource_class if pool else None,
                    traits=pool.key.traits if pool else (),
                    mdev_type=pool.key.mdev_type if pool else None))
            elif b.address is not None:
                dev = managed.get(b.address)
                wanted.append({
                    'address': b.address, 'rp_uuid': b.rp_uuid,
                    'resource_class': dev.resource_class if dev else None,
                    'traits': dev.traits if dev else (),
                    'context_id': b.context_id,
                    'requester_id': b.requester_id})
        return wanted, requests

    def claim(self, instance, migration_id: int | None = None,
              held_tags: set | None = None) -> None:
        """Claim the instance's devices in the ledger, all or nothing.

        Devices of pools are picked here. Idempotent: what the instance
        already holds for a group counts towards it.

        :param migration_id: on the destination of a move, the move (the
            server keeps its source devices until it is confirmed).

        :raises DeviceNotUsable: a device is not free on this host, or a
            pool has fewer free devices than the group was allocated;
            nothing was claimed.
        """
        managed, mdev_parents = self.devices()
        wanted, requests = self._claim_request(instance, managed,
                                               mdev_parents)
        if not wanted and not requests:
            return
        # A device still recorded for a server that is gone is released
        # (and reset) now rather than at the next periodic run.
        with self._reschedule_if_ledger_unusable():
            self.reconcile(managed=managed)
        with self._reschedule_if_ledger_unusable(), \
                self.ledger.transaction() as records:
            capacity = {}
            host_mdevs = {}
            if any(r.mdev_type for r in requests):
                # Under the lock: what the parents can create now, less
                # what other claims recorded and did not create yet.
                host_mdevs = self.host_mdevs(records)
                capacity = inventory.mdev_capacity(
                    self.mdev_parents(), records, host_mdevs)
            try:
                claimed = ledger.claim(
                    records, instance.uuid, wanted, requests,
                    blocked=inventory.blocked(
                        managed, records,
                        inventory.parents_with_mdevs(records, host_mdevs)),
                    relatives=inventory.relatives(managed),
                    migration_id=migration_id, held_tags=held_tags,
                    mdev_capacity=capacity)
            except exception.DeviceNotFree as e:
                raise exception.DeviceNotUsable(
                    '%s on node %s' % (e, self.nodename))
        LOG.info('Claimed devices %s in the device ledger',
                 ', '.join(r.address for r in claimed), instance=instance)

    def mark_attached(self, instance) -> None:
        # Servers without device contexts (most of them) never touch the
        # ledger, so a host without nova-acc devices never writes one.
        if not any(r.instance_uuid == instance.uuid and
                   r.state == ledger.CLAIMED
                   for r in self.ledger.records().values()):
            return
        with self.ledger.transaction() as records:
            for rec in records.values():
                if rec.instance_uuid == instance.uuid and \
                        rec.state == ledger.CLAIMED:
                    rec.attach()

    # ---- hostdevs -------------------------------------------------------

    @staticmethod
    def _move_here(instance, nodename: str) -> int | None:
        """The move under way whose destination is this node, if any.

        From the server's migration context; a move that was reverted or
        failed is not one (its devices here are being released).
        """
        mc = instance.migration_context
        if mc is None:
            return None
        try:
            migration = objects.Migration.get_by_id(
                nova_context.get_admin_context(), mc.migration_id)
        except nova_exc.MigrationNotFound:
            return None
        if migration.dest_node != nodename or \
                migration.status in reconcile.UNDONE:
            return None
        return migration.id

    @staticmethod
    def _current_tags(records, instance, move: int | None) -> set:
        """``migration_id`` values of the devices the guest gets now.

        During a move to this node, those claimed for the move; otherwise
        the others (on the same host the source devices stay recorded
        until the move is confirmed or reverted), except those of a move
        that was undone.
        """
        if move is not None:
            return {move}
        tags = {None}
        ctxt = nova_context.get_admin_context()
        for tag in {r.migration_id for r in records.values()
                    if r.instance_uuid == instance.uuid} - {None}:
            try:
                status = objects.Migration.get_by_id(ctxt, tag).status
            except nova_exc.MigrationNotFound:
                continue
            if status not in reconcile.UNDONE:
                tags.add(tag)
        return tags

    @staticmethod
    def _current(rec, instance, tags: set) -> bool:
        return (rec.instance_uuid == instance.uuid and
                rec.state in ledger.ACTIVE and
                rec.migration_id in tags)

    def _holds_all(self, instance, bindings, records, tags: set) -> bool:
        """Does the ledger give the instance everything it is bound to?"""
        for b in bindings:
            if b.is_pool:
                held = sum(1 for r in records.values()
                           if self._current(r, instance, tags) and
                           r.requester_id == b.requester_id)
                if held < b.amount:
                    return False
            else:
                rec = records.get(b.address)
                if rec is None or rec.instance_uuid != instance.uuid:
                    return False
        return True

    def accelerators(self, instance) -> list[os_acc.Accelerator]:
        """The devices the instance holds on this host, as Accelerators.

        Every binding on this node must be held by the instance in the
        ledger; a device the ledger does not give it never reaches its
        guest. Where the ledger does not give it all yet (the first spawn;
        a server bound before the ledger existed) the devices are claimed
        here.

        :raises DeviceNotUsable: a bound device is not usable here.
        """
        error = binding.load_error(instance)
        if error:
            raise exception.DeviceNotUsable(error)
        bindings = binding.load(instance)
        if not bindings:
            return []
        managed = self.managed_devices() if any(
            not b.context_id for b in bindings) else {}
        for b in bindings:
            if b.nodename != self.nodename:
                raise exception.DeviceNotUsable(
                    'device group %s is bound to node %s, not %s' % (
                        b.requester_id, b.nodename, self.nodename))
            if b.context_id and b.address is None:
                raise exception.DeviceNotUsable(
                    'device context %s has no attach handle yet' %
                    b.context_id)
            # Devices of ID-based contexts belong to their backend (Cyborg),
            # not to [nova_acc] device_spec.
            if not b.context_id and not b.is_pool and \
                    b.address not in managed:
                raise exception.DeviceNotUsable(
                    'bound device %s is not present on node %s' % (
                        b.address, b.nodename))
        with self._reschedule_if_ledger_unusable():
            records = self.ledger.records()
        move = self._move_here(instance, self.nodename) if any(
            b.is_pool for b in bindings) else None
        tags = self._current_tags(records, instance, move)
        if not self._holds_all(instance, bindings, records, tags):
            self.claim(instance, migration_id=move, held_tags=tags)
            with self._reschedule_if_ledger_unusable():
                records = self.ledger.records()
        pool_groups = {b.requester_id for b in bindings if b.is_pool}
        wanted = []
        mdevs = []
        for b in bindings:
            if b.is_pool:
                continue
            rec = records.get(b.address)
            if rec is not None and rec.is_mdev:
                # An MDEV attach handle of the backend.
                mdevs.append(rec)
                wanted.append(os_acc.Accelerator(interface_type='mdev',
                                                 mdev_uuid=b.address))
            else:
                wanted.append(os_acc.Accelerator(interface_type='pci',
                                                 address=b.address))
        for address, rec in sorted(records.items(),
                                   key=lambda i: (i[1].requester_id or '',
                                                  i[0])):
            if not (self._current(rec, instance, tags) and
                    rec.requester_id in pool_groups):
                continue
            if rec.is_mdev:
                mdevs.append(rec)
                wanted.append(os_acc.Accelerator(interface_type='mdev',
                                                 mdev_uuid=address))
                continue
            if address not in managed:
                raise exception.DeviceNotUsable(
                    'device %s of group %s is not present on node %s'
                    % (address, rec.requester_id, self.nodename))
            wanted.append(os_acc.Accelerator(interface_type='pci',
                                             address=address))
        if mdevs:
            self._ensure_mdevs(mdevs, records)
        accelerators = []
        for acc in wanted:
            try:
                os_acc.get_config(acc)
            except acc_exc.InvalidAccelerator as e:
                raise exception.DeviceNotUsable(str(e))
            accelerators.append(acc)
        return accelerators

    # ---- mediated devices -------------------------------------------------

    def _ensure_mdevs(self, held: list[ledger.DeviceRecord],
                      records) -> None:
        """Create the mdevs the ledger gives a server that do not exist.

        On the first boot (the claim recorded them), and after a host
        reboot that lost them: with the same UUID, on the same parent, so
        the guest gets back the device its definition names.

        :raises DeviceNotUsable: one could not be created.
        """
        present = self.host_mdevs(records)
        for rec in held:
            if rec.address in present:
                continue
            try:
                mdev.create(self._host, rec.parent, rec.mdev_type,
                            rec.address)
            except exception.MdevError as e:
                raise exception.DeviceNotUsable(
                    '%s on node %s' % (e, self.nodename))

    def restore_mdevs(self) -> None:
        """At nova-compute's start: recreate the mdevs servers still hold.

        After a host reboot mdevs that were not persistent (or whose
        parent came back late) are gone while their guests are defined;
        they are recreated with their UUIDs before any guest starts, as
        Nova does for its own vGPUs. A failure is logged, not raised: the
        server's next start tries again and fails alone if it must.
        """
        try:
            records = self.ledger.records()
        except exception.LedgerUnreadable as e:
            LOG.error('%s; no mdev recreated now.', e)
            return
        if not any(r.is_mdev for r in records.values()):
            return
        # No reconcile here: an mdev of a server deleted while the host was
        # down is recreated too, and removed by the first resource update.
        present = self.host_mdevs(records)
        for rec in sorted(records.values(), key=lambda r: r.address):
            if not rec.is_mdev or rec.address in present or \
                    rec.state not in ledger.ACTIVE:
                continue
            try:
                mdev.create(self._host, rec.parent, rec.mdev_type,
                            rec.address)
                LOG.info('Recreated mdev %s of server %s on %s.',
                         rec.address, rec.instance_uuid, rec.parent)
            except exception.MdevError as e:
                LOG.error('Could not recreate mdev %s of server %s: %s',
                          rec.address, rec.instance_uuid, e)

    # ---- moves ----------------------------------------------------------

    def rebind_for_evacuation(self, context, instance, allocations
                              ) -> list[binding.Binding] | None:
        """Destination of an evacuation: bind the groups to pools here.

        Nova's conductor binds nothing on evacuate for servers without
        Cyborg device profiles, and Nova moves the server's node here only
        once its guest runs: the groups are bound here from the allocation
        of the move (the backend's objects too, by the backend), and the
        devices claimed for it when the guest is defined (tagged with the
        move, so a failed evacuation releases them).

        :returns: the bindings before, for ``restore_bindings`` when the
            evacuation fails here (the server then stays on its source);
            None when nothing was rebound.
        :raises DeviceNotUsable: a group has no pool in the allocation, or
            a binding cannot move, or the backend did not bind it here.
        """
        bindings = binding.load(instance)
        if not bindings or all(b.nodename == self.nodename
                               for b in bindings):
            return None
        if self._move_here(instance, self.nodename) is None:
            return None  # not a move to here: accelerators() says why
        try:
            self._rebind(context, instance, bindings, allocations)
        except Exception:
            self.restore_bindings(context, instance, bindings)
            raise
        return bindings

    def restore_bindings(self, context, instance,
                         bindings: list[binding.Binding]) -> None:
        """Put back the bindings a failed evacuation replaced.

        The backend's objects are bound back to the source's providers,
        which the source allocation still holds for the server: what the
        backend records then matches placement and the server's record.
        """
        try:
            # The backend unbinds them here first.
            self._bind_backend(context, instance, [
                b for b in bindings if b.context_id])
            binding.replace(instance, bindings)
            instance.save()
        except Exception:  # the evacuation's own error is what matters
            LOG.exception('Could not restore the device bindings of the '
                          'server after its evacuation failed.',
                          instance=instance)

    def _rebind(self, context, instance, bindings, allocations) -> None:
        managed, mdev_parents = self.devices()
        node_pools = pools.pools_of(self.nodename, managed.values())
        node_pools.update(pools.pools_of(self.nodename, mdev_parents))
        try:
            moved = binding.for_move(
                bindings, allocations,
                {u: p.key.resource_class for u, p in node_pools.items()},
                self.nodename)
        except exception.PrebindFailed as e:
            raise exception.DeviceNotUsable(str(e))
        binding.keep_for_revert(instance, bindings)
        binding.replace(instance, moved)
        instance.save()
        self._bind_backend(context, instance, [
            b for b in moved if b.context_id])

    @staticmethod
    def _bind_backend(context, instance, bindings) -> None:
        """Have the backend bind its objects as ``bindings`` say.

        The backend first unbinds what is still bound to this server
        elsewhere (the source of the move); a failed bind leaves nothing
        bound to the server.

        :raises DeviceNotUsable: the backend did not bind them.
        """
        if not bindings:
            return
        by_node: dict[str, dict[str, str]] = {}
        for b in bindings:
            by_node.setdefault(b.nodename, {})[b.context_id] = b.rp_uuid
        for nodename, device_rps in sorted(by_node.items()):
            try:
                backends.get_backend().bind(context, instance, nodename,
                                            device_rps)
            except exception.BackendUnavailable as e:
                raise exception.DeviceNotUsable(
                    'device contexts %s could not be bound on node %s: %s'
                    % (', '.join(sorted(device_rps)), nodename, e))
            LOG.info('Bound device contexts %s to providers %s on node %s '
                     'for the move of the server',
                     ', '.join(sorted(device_rps)),
                     ', '.join(device_rps[c] for c in sorted(device_rps)),
                     nodename, instance=instance)

    def claim_for_move(self, context, instance, migration, allocations,
                       virtapi) -> None:
        """Destination of a resize or cold migration: bind and claim.

        The server's groups are bound to this node's pools that placement
        allocated to it for the move, and the devices picked and claimed
        for that move; the backend's objects are bound to the providers of
        the allocation here (the source's guest is shut off by now). The
        source keeps its own devices until the move is confirmed
        (``nova_acc.compute.reconcile``).

        :raises DeviceNotUsable: a group has no pool in the allocation, a
            binding cannot move, a pool has too few free devices, or the
            backend did not bind here.
        """
        bindings = binding.load(instance)
        if not bindings:
            return
        self._rebind(context, instance, bindings, allocations)
        self.wait_for_backend(context, instance, virtapi)
        self.claim(instance, migration_id=migration.id)

    def restore_after_revert(self, context, instance, virtapi) -> None:
        """Source of a reverted move: the bindings of the devices it kept.

        Those of the pools from this node's ledger; the backend's objects
        are bound back to the providers they had here, which the source
        allocation held for the server during the move (the destination
        unbound them when it destroyed its guest).

        :raises DeviceNotUsable: the backend did not bind them back.
        """
        restored = binding.from_records(self.ledger.records(), instance.uuid,
                                        self.nodename, ledger.HELD)
        kept = binding.kept_for_revert(instance, self.nodename)
        restored += [dataclasses.replace(b, address=None) for b in kept]
        if not restored:
            return
        binding.replace(instance, sorted(restored,
                                         key=lambda b: b.requester_id))
        binding.forget_kept(instance)
        instance.save()
        self._bind_backend(context, instance, kept)
        self.wait_for_backend(context, instance, virtapi)

    def wait_for_backend(self, context, instance, virtapi) -> None:
        """ID-based contexts: wait for the backend; record attach handles.

        :raises DeviceNotUsable: not bound in time, bound elsewhere, or an
            attach handle nova-acc cannot attach.
        """
        bindings = binding.load(instance)
        pending = [b for b in bindings if b.context_id and not b.address]
        if not pending:
            return
        ids = [b.context_id for b in pending]
        try:
            handles = backends.get_backend().wait_bound(
                context, instance, virtapi,
                {b.context_id: b.rp_uuid for b in pending},
                hostname=self.nodename)
        except (exception.BackendUnavailable,
                nova_exc.InstanceEventTimeout) as e:
            raise exception.DeviceNotUsable(
                'device contexts %s were not bound: %s' % (
                    ', '.join(ids), e or 'timed out after %ss' %
                    CONF.nova_acc_cyborg.bind_timeout))
        unsupported = sorted(ctx for ctx, acc in handles.items()
                             if acc.interface_type not in ('pci', 'mdev'))
        if unsupported:
            # Nothing of them reached the ledger yet: unbind here, or a
            # server that ends in ERROR would keep them bound.
            try:
                backends.get_backend().unbind(context, instance, ids,
                                              hostname=instance.node)
            except Exception as e:  # best effort; the reason is below
                LOG.error('Could not unbind device contexts %s: %s',
                          ', '.join(ids), e, instance=instance)
            raise exception.DeviceNotUsable(
                'attach handle type %s of device contexts %s is not '
                'supported yet' % (
                    ', '.join(sorted({handles[c].interface_type
                                      for c in unsupported})),
                    ', '.join(unsupported)))
        mdev_handles = {b.context_id: b for b in pending
                        if handles[b.context_id].interface_type == 'mdev'}
        if mdev_handles:
            self._record_backend_mdevs(context, instance, ids, mdev_handles,
                                       handles)
        binding.replace(instance, [
            dataclasses.replace(b, address=(
                handles[b.context_id].mdev_uuid
                if b.context_id in mdev_handles
                else handles[b.context_id].address))
            if b in pending else b for b in bindings])
        instance.save()

    def _record_backend_mdevs(self, context, instance, ids, pending,
                              handles) -> None:
        """Record the mdevs of the backend's MDEV attach handles.

        The backend chose the parent, type and UUID; nova-compute creates
        the mdev (when the guest is defined) as Nova does for Cyborg's
        mdevs, and removes it when the server lets go. The record is what
        ties it to the server until then.

        :raises DeviceNotUsable: another server holds that mdev here.
        """
        with self.ledger.transaction() as records:
            for ctx, b in sorted(pending.items()):
                acc = handles[ctx]
                rec = records.get(acc.mdev_uuid)
                if rec is not None and rec.instance_uuid != instance.uuid:
                    try:
                        backends.get_backend().unbind(
                            context, instance, ids, hostname=instance.node)
                    except Exception as e:  # the reason is below
                        LOG.error('Could not unbind device contexts %s: %s',
                                  ', '.join(ids), e, instance=instance)
                    raise exception.DeviceNotUsable(
                        'mdev %s of device context %s: %s' % (
                            acc.mdev_uuid, ctx,
                            ledger.describe_unavailable(rec)))
                if rec is None:
                    rec = records[acc.mdev_uuid] = ledger.DeviceRecord(
                        address=acc.mdev_uuid, parent=acc.parent,
                        mdev_type=acc.mdev_type)
                    rec.claim(instance.uuid, b.rp_uuid, None, (), ctx,
                              b.requester_id)
