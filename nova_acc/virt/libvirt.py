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
"""Steps 4 and 5: the libvirt driver with device contexts.

Enabled with ``[DEFAULT] compute_driver = nova_acc.LibvirtAccDriver`` (see
``nova/virt/nova_acc``: Nova only loads drivers from ``nova.virt``). On top
of Nova's LibvirtDriver it

* keeps the host's device ledger (``nova_acc.ledger``) and reconciles it on
  every resource update (``update_provider_tree``) and after every guest
  teardown (``destroy``): devices of servers that no longer hold them are
  released - reset, or kept out of service as dirty (``nova_acc.release``,
  ``nova_acc.reconcile``);
* reports the devices of ``[nova_acc] device_spec`` as child providers,
  with the devices the ledger keeps out of service reserved
  (``update_provider_tree``);
* before building a server, claims every device bound to it in the ledger,
  and reschedules the server when one is not free (``spawn``);
* adds a hostdev for each device the server holds in the ledger to every
  guest definition Nova generates - first boot, hard reboot, start after
  stop - through ``os_acc.get_config`` (``_get_guest_config``, private: see
  the pinned Nova range and tests/unit/nova_acc/test_nova_seams.py).
"""

from __future__ import annotations

import dataclasses

from nova import context as nova_context
from nova import exception as nova_exc
from nova import objects
from nova.pci import devspec as nova_devspec
from nova.scheduler.client import report
from nova.virt.libvirt import driver as libvirt_driver
import os_acc
from os_acc import exception as acc_exc
from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_acc import backends
from nova_acc import binding
from nova_acc import conf
from nova_acc import exception
from nova_acc import inventory
from nova_acc import ledger
from nova_acc import privsep
from nova_acc import reconcile
from nova_acc import release
from nova_acc.virt import devices

CONF = conf.CONF
LOG = logging.getLogger(__name__)


class LibvirtAccDriver(libvirt_driver.LibvirtDriver):

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only=read_only)
        self._acc_device_specs = devices.configured_device_specs()
        self._ledger: ledger.DeviceLedger | None = None
        # Server UUID -> request context of its last guest teardown, for
        # unbinding its backend contexts as the user (see _unbind_orphaned).
        self._teardown_contexts: dict = {}
        os_acc.initialize()

    def init_host(self, host):
        super().init_host(host)
        self._check_no_shared_devices()

    def _check_no_shared_devices(self):
        """Refuse to start when Nova's PCI tracker could hand out our devices.

        Two owners of one device is how a device ends up in two guests.
        """
        if not CONF.pci.device_spec:
            return
        nova_specs = [nova_devspec.PciDeviceSpec(jsonutils.loads(line))
                      for line in CONF.pci.device_spec]
        for dev in devices.discover(self._host, self._acc_device_specs):
            as_nova = {'address': dev.address, 'vendor_id': dev.vendor_id,
                       'product_id': dev.product_id,
                       'parent_addr': dev.physfn}
            if any(s.match(as_nova) for s in nova_specs):
                raise exception.ConflictingDeviceSpec(address=dev.address)

    # ---- the device ledger -----------------------------------------------

    def _nodename(self) -> str:
        # The libvirt driver has one node, named after the host.
        return self._host.get_hostname()

    def _device_ledger(self) -> ledger.DeviceLedger:
        nodename = self._nodename()
        if self._ledger is None or self._ledger.nodename != nodename:
            self._ledger = ledger.DeviceLedger(nodename)
        return self._ledger

    def _managed_devices(self) -> dict[str, os_acc.Device]:
        return {d.address: d for d in devices.discover(
            self._host, self._acc_device_specs)}

    def _release(self, records, record, why) -> None:
        release.release(records, record, why,
                        reset_on_release=CONF.nova_acc.reset_on_release,
                        sysfs_root=CONF.nova_acc.sysfs_root,
                        unbind=self._unbind_orphaned,
                        resetter=privsep.reset_device)

    def _unbind_orphaned(self, instance_uuid: str, context_ids: list) -> None:
        # The user's request context of the guest's teardown, when this
        # process saw it: Cyborg then sees the user's token plus Nova's
        # service token, as for every other call. Without it (deleted while
        # this host was down) the backend uses Nova's own credentials.
        user_context = self._teardown_contexts.pop(instance_uuid, None)
        backend = backends.get_backend()
        # Only this node's binding: after a reschedule the same server may
        # hold the context on another node by now.
        if user_context is not None:
            backend.unbind(user_context, objects.Instance(uuid=instance_uuid),
                           context_ids, hostname=self._nodename())
        else:
            backend.unbind_orphaned(nova_context.get_admin_context(),
                                    instance_uuid, context_ids,
                                    hostname=self._nodename())

    def _reconcile_locked(self, book, records, managed, only=None):
        facts = reconcile.gather_facts(self._host, self._nodename(), managed,
                                       records)
        if book.recovered_from is not None:
            only = None
        reconcile.reconcile(records, facts, self._release, only=only,
                            history_lost=book.recovered_from is not None)
        book.recovered_from = None
        return facts

    def reconcile_devices(self, only=None, managed=None
                          ) -> dict[str, ledger.DeviceRecord]:
        """Reconcile the ledger (all devices, or the addresses ``only``).

        :param managed: the devices of ``device_spec`` on the host, if the
            caller has just listed them.
        """
        if managed is None:
            managed = self._managed_devices()
        book = self._device_ledger()
        with book.transaction() as records:
            self._reconcile_locked(book, records, managed, only=only)
            holders = {r.instance_uuid for r in records.values()}
            for uuid in set(self._teardown_contexts) - holders:
                del self._teardown_contexts[uuid]
            return {a: dataclasses.replace(r) for a, r in records.items()}

    def _wanted_devices(self, instance, managed) -> list[dict]:
        """What the instance's bindings on this node ask the ledger for."""
        wanted = []
        for b in binding.load(instance):
            if b.nodename != instance.node or b.address is None:
                continue
            dev = managed.get(b.address)
            wanted.append({
                'address': b.address, 'rp_uuid': b.rp_uuid,
                'resource_class': dev.resource_class if dev else None,
                'traits': dev.traits if dev else (),
                'context_id': b.context_id})
        return wanted

    def _claim_devices(self, instance) -> None:
        """Claim the instance's bound devices in the ledger, all or nothing.

        :raises DeviceBindingFailed: a device is not free on this host; the
            server is rescheduled, and nothing was claimed.
        """
        managed = self._managed_devices()
        wanted = self._wanted_devices(instance, managed)
        if not wanted:
            return
        book = self._device_ledger()
        with book.transaction() as records:
            # A device still recorded for a server that is gone is released
            # (and reset) now rather than at the next periodic run.
            self._reconcile_locked(book, records, managed,
                                   only=[w['address'] for w in wanted])
            try:
                claimed = ledger.claim(records, instance.uuid, wanted)
            except exception.DeviceNotFree as e:
                raise exception.DeviceBindingFailed(reason=(
                    '%s on node %s' % (e, instance.node)))
        LOG.info('Claimed devices %s in the device ledger',
                 ', '.join(r.address for r in claimed), instance=instance)

    def _mark_attached(self, instance) -> None:
        book = self._device_ledger()
        with book.transaction() as records:
            for rec in records.values():
                if rec.instance_uuid == instance.uuid and \
                        rec.state == ledger.CLAIMED:
                    rec.attach()

    # ---- step 4: inventory ---------------------------------------------

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        super().update_provider_tree(provider_tree, nodename,
                                     allocations=allocations)
        managed = self._managed_devices()
        records = {}
        if managed or self._device_ledger().exists():
            try:
                records = self.reconcile_devices(managed=managed)
            except Exception:
                # Never stop the host's inventory updates for it: report
                # what the ledger last recorded (out-of-service devices
                # stay reserved) and try again at the next update.
                LOG.exception('Reconciling the device ledger of node %s '
                              'failed; reporting its last recorded state.',
                              nodename)
                records = self._device_ledger().records()
        inventory.update_provider_tree(
            provider_tree, nodename, managed.values(),
            CONF.nova_acc.capability_trait,
            has_allocations=self._provider_has_allocations,
            records=records,
            unallocated=self._held_without_allocation(records))

    def _held_without_allocation(self, records) -> set[str]:
        """Devices a server holds here that placement says it does not.

        Placement would offer such a device to the next server, whose claim
        the ledger then refuses; reserving it keeps placement from trying
        until the holder leaves.
        """
        result = set()
        client = report.report_client_singleton()
        ctxt = nova_context.get_admin_context()
        for address, rec in records.items():
            if (rec.state not in (ledger.CLAIMED, ledger.ATTACHED) or
                    rec.backend_owned or not rec.rp_uuid):
                continue
            try:
                consumers = client.get_allocations_for_resource_provider(
                    ctxt, rec.rp_uuid).allocations
            except nova_exc.NovaException as e:
                LOG.warning('Cannot check the allocations of device %s: %s',
                            address, e)
                continue
            if rec.instance_uuid not in consumers:
                LOG.warning('Device %s is held by server %s on this host, '
                            'but placement has no allocation of it for that '
                            'server; reserving it until the server leaves.',
                            address, rec.instance_uuid)
                result.add(address)
        return result

    @staticmethod
    def _provider_has_allocations(rp_uuid: str) -> bool:
        ctxt = nova_context.get_admin_context()
        allocs = report.report_client_singleton(
            ).get_allocations_for_resource_provider(ctxt, rp_uuid)
        return bool(allocs.allocations)

    # ---- step 5: hostdevs -----------------------------------------------

    def _bound_accelerators(self, instance) -> list:
        """The devices the instance holds on this host, as Accelerators.

        Every binding on this node must be held by the instance in the
        ledger; a device the ledger does not give it never reaches its
        guest (a server booted before the ledger existed claims a free
        device here).

        :raises DeviceBindingFailed: a bound device is not usable here.
        """
        error = binding.load_error(instance)
        if error:
            raise exception.DeviceBindingFailed(reason=error)
        bindings = binding.load(instance)
        if not bindings:
            return []
        managed = self._managed_devices() if any(
            not b.context_id for b in bindings) else {}
        for b in bindings:
            if b.nodename != instance.node:
                raise exception.DeviceBindingFailed(reason=(
                    'device group %s is bound to node %s, not %s' % (
                        b.requester_id, b.nodename, instance.node)))
            if b.address is None:
                raise exception.DeviceBindingFailed(reason=(
                    'device context %s has no attach handle yet' %
                    b.context_id))
            # Devices of ID-based contexts belong to their backend (Cyborg),
            # not to [nova_acc] device_spec.
            if not b.context_id and b.address not in managed:
                raise exception.DeviceBindingFailed(reason=(
                    'bound device %s is not present on node %s' % (
                        b.address, b.nodename)))
        records = self._device_ledger().records()
        if any(records.get(b.address) is None or
               records[b.address].instance_uuid != instance.uuid
               for b in bindings):
            self._claim_devices(instance)
        accelerators = []
        for b in bindings:
            try:
                acc = os_acc.Accelerator(interface_type='pci',
                                         address=b.address)
                os_acc.get_config(acc)
            except acc_exc.InvalidAccelerator as e:
                raise exception.DeviceBindingFailed(reason=str(e))
            accelerators.append(acc)
        return accelerators

    def _wait_for_backend_bindings(self, context, instance):
        """ID-based contexts: wait for the backend; record attach handles."""
        bindings = binding.load(instance)
        pending = [b for b in bindings if b.context_id and not b.address]
        if not pending:
            return
        try:
            handles = backends.get_backend().wait_bound(
                context, instance, self.virtapi,
                {b.context_id: b.rp_uuid for b in pending})
        except (exception.BackendUnavailable,
                nova_exc.InstanceEventTimeout) as e:
            raise exception.DeviceBindingFailed(reason=(
                'device contexts %s were not bound: %s' % (
                    ', '.join(b.context_id for b in pending), e or
                    'timed out after %ss' %
                    CONF.nova_acc_cyborg.bind_timeout)))
        unsupported = sorted(ctx for ctx, acc in handles.items()
                             if acc.interface_type != 'pci')
        if unsupported:
            # Nothing of them reached the ledger yet: unbind here, or a
            # server that ends in ERROR would keep them bound.
            try:
                backends.get_backend().unbind(
                    context, instance, [b.context_id for b in pending],
                    hostname=instance.node)
            except Exception as e:  # best effort; the reason is below
                LOG.error('Could not unbind device contexts %s: %s',
                          ', '.join(b.context_id for b in pending), e,
                          instance=instance)
            raise exception.DeviceBindingFailed(reason=(
                'attach handle type %s of device contexts %s is not '
                'supported yet' % (
                    ', '.join(sorted({handles[c].interface_type
                                      for c in unsupported})),
                    ', '.join(unsupported))))
        binding.replace(instance, [
            dataclasses.replace(b, address=handles[b.context_id].address)
            if b in pending else b for b in bindings])
        instance.save()

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        # Before any disk or network work so a reschedule is cheap.
        self._wait_for_backend_bindings(context, instance)
        # Validates the bindings and claims the devices in the ledger.
        self._bound_accelerators(instance)
        result = super().spawn(
            context, instance, image_meta, injected_files, admin_password,
            allocations, network_info=network_info,
            block_device_info=block_device_info, power_on=power_on,
            accel_info=accel_info)
        self._mark_attached(instance)
        return result

    def _get_guest_config(self, instance, *args, **kwargs):
        guest = super()._get_guest_config(instance, *args, **kwargs)
        for acc in self._bound_accelerators(instance):
            guest.add_device(os_acc.get_config(acc))
        return guest

    # ---- release ----------------------------------------------------------

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        super().destroy(context, instance, network_info,
                        block_device_info=block_device_info,
                        destroy_disks=destroy_disks,
                        destroy_secrets=destroy_secrets)
        # Whether the server still holds its devices (a hard reboot, a
        # rebuild) or not (delete, reap, shelve offload, failed build) is
        # for the reconcile to tell from what Nova records, not from why
        # the guest was destroyed. Its guest is gone now, so a device it
        # no longer holds can be reset right away; the resource update Nova
        # makes once the server is deleted or offloaded catches the rest.
        records = self._device_ledger().records()
        held = [a for a, r in records.items()
                if r.instance_uuid == instance.uuid]
        if any(records[a].backend_owned for a in held):
            self._teardown_contexts[instance.uuid] = context
        if held:
            self.reconcile_devices(only=held)
