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
claims the devices in the host's ledger (``nova_acc.ledger``); every guest
definition then gets an ``os_acc`` hostdev per device the server holds.
It also runs the reconcile (``nova_acc.reconcile``) with the release of
step 5 (``nova_acc.release``), and tells inventory which devices placement
must not offer.

Failures raise ``DeviceNotUsable``; the seam turns it into Nova's
``ComputeResourcesUnavailable`` so the server alone is rescheduled.
"""

from __future__ import annotations

import dataclasses
from xml.etree import ElementTree

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
from nova_acc import inventory
from nova_acc import ledger
from nova_acc import privsep
from nova_acc import reconcile
from nova_acc import release

CONF = conf.CONF
LOG = logging.getLogger(__name__)


def pci_addresses(domain_xml: str) -> set[str]:
    """PCI addresses (``0000:81:00.0``) of the PCI hostdevs of a domain."""
    return {str(os_acc.PciAddress.from_libvirt_attrs(addr.attrib))
            for addr in ElementTree.fromstring(domain_xml).findall(
                "./devices/hostdev[@type='pci']/source/address")}


class HostDevices:
    """nova-acc's devices on one libvirt host (one compute node).

    :param host: the driver's ``nova.virt.libvirt.host.Host``.
    :param device_specs: ``[nova_acc] device_spec``, parsed.
    """

    def __init__(self, host, device_specs: list[dict]):
        self._host = host
        self._device_specs = device_specs
        self._ledger: ledger.DeviceLedger | None = None
        # Server UUID -> request context of its last guest teardown, for
        # unbinding its backend contexts as the user (see _unbind).
        self._teardown_contexts: dict = {}

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

    def managed_devices(self) -> dict[str, os_acc.Device]:
        """The devices of ``device_spec`` on the host, by address."""
        return {d.address: d for d in inventory.discover(
            self._host, self._device_specs)}

    def check_no_shared_devices(self) -> None:
        """Refuse to start when Nova's PCI tracker could hand out our devices.

        Two owners of one device is how a device ends up in two guests.

        :raises ConflictingDeviceSpec:
        """
        if not CONF.pci.device_spec:
            return
        nova_specs = [nova_devspec.PciDeviceSpec(jsonutils.loads(line))
                      for line in CONF.pci.device_spec]
        for dev in self.managed_devices().values():
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
                        resetter=privsep.reset_device)

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

    def _reconcile_locked(self, records, managed, only=None) -> None:
        book = self.ledger
        facts = reconcile.gather_facts(self._host, self.nodename, managed,
                                       records)
        lost = book.recovered_from is not None
        reconcile.reconcile(records, facts, self._release,
                            only=None if lost else only, history_lost=lost)
        book.recovered_from = None

    def reconcile(self, only=None, managed=None
                  ) -> dict[str, ledger.DeviceRecord]:
        """Reconcile the ledger (all devices, or the addresses ``only``).

        :param managed: the devices of ``device_spec`` on the host, if the
            caller has just listed them.
        :returns: the ledger's records afterwards (copies).
        """
        if managed is None:
            managed = self.managed_devices()
        with self.ledger.transaction() as records:
            self._reconcile_locked(records, managed, only=only)
            holders = {r.instance_uuid for r in records.values()}
            for uuid in set(self._teardown_contexts) - holders:
                del self._teardown_contexts[uuid]
            return {a: dataclasses.replace(r) for a, r in records.items()}

    def after_teardown(self, context, instance) -> None:
        """The server's guest is gone: release what it no longer holds.

        Whether the server still holds its devices (a hard reboot, a
        rebuild) or not (delete, reap, shelve offload, failed build) is for
        the reconcile to tell from what Nova records, not from why the guest
        was destroyed. The resource update Nova makes once the server is
        deleted or offloaded catches the rest.
        """
        records = self.ledger.records()
        held = [a for a, r in records.items()
                if r.instance_uuid == instance.uuid]
        if any(records[a].backend_owned for a in held):
            self._teardown_contexts[instance.uuid] = context
        if held:
            self.reconcile(only=held)

    def inventory_records(self, managed) -> dict[str, ledger.DeviceRecord]:
        """The reconciled ledger for a resource update; never raises."""
        if not managed and not self.ledger.exists():
            return {}
        try:
            return self.reconcile(managed=managed)
        except Exception:
            # Never stop the host's inventory updates for it: report what
            # the ledger last recorded (out-of-service devices stay
            # reserved) and try again at the next update.
            LOG.exception('Reconciling the device ledger of node %s failed; '
                          'reporting its last recorded state.',
                          self.nodename)
            return self.ledger.records()

    @staticmethod
    def held_without_allocation(records) -> set[str]:
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
    def provider_has_allocations(rp_uuid: str) -> bool:
        ctxt = nova_context.get_admin_context()
        allocs = report.report_client_singleton(
            ).get_allocations_for_resource_provider(ctxt, rp_uuid)
        return bool(allocs.allocations)

    # ---- claims -------------------------------------------------------------

    @staticmethod
    def _wanted(instance, managed) -> list[dict]:
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

    def claim(self, instance) -> None:
        """Claim the instance's bound devices in the ledger, all or nothing.

        :raises DeviceNotUsable: a device is not free on this host; nothing
            was claimed.
        """
        managed = self.managed_devices()
        wanted = self._wanted(instance, managed)
        if not wanted:
            return
        with self.ledger.transaction() as records:
            # A device still recorded for a server that is gone is released
            # (and reset) now rather than at the next periodic run.
            self._reconcile_locked(records, managed,
                                   only=[w['address'] for w in wanted])
            try:
                claimed = ledger.claim(records, instance.uuid, wanted)
            except exception.DeviceNotFree as e:
                raise exception.DeviceNotUsable(
                    '%s on node %s' % (e, instance.node))
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

    def accelerators(self, instance) -> list[os_acc.Accelerator]:
        """The devices the instance holds on this host, as Accelerators.

        Every binding on this node must be held by the instance in the
        ledger; a device the ledger does not give it never reaches its
        guest (a server booted before the ledger existed claims a free
        device here).

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
            if b.nodename != instance.node:
                raise exception.DeviceNotUsable(
                    'device group %s is bound to node %s, not %s' % (
                        b.requester_id, b.nodename, instance.node))
            if b.address is None:
                raise exception.DeviceNotUsable(
                    'device context %s has no attach handle yet' %
                    b.context_id)
            # Devices of ID-based contexts belong to their backend (Cyborg),
            # not to [nova_acc] device_spec.
            if not b.context_id and b.address not in managed:
                raise exception.DeviceNotUsable(
                    'bound device %s is not present on node %s' % (
                        b.address, b.nodename))
        records = self.ledger.records()
        if any(records.get(b.address) is None or
               records[b.address].instance_uuid != instance.uuid
               for b in bindings):
            self.claim(instance)
        accelerators = []
        for b in bindings:
            try:
                acc = os_acc.Accelerator(interface_type='pci',
                                         address=b.address)
                os_acc.get_config(acc)
            except acc_exc.InvalidAccelerator as e:
                raise exception.DeviceNotUsable(str(e))
            accelerators.append(acc)
        return accelerators

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
                {b.context_id: b.rp_uuid for b in pending})
        except (exception.BackendUnavailable,
                nova_exc.InstanceEventTimeout) as e:
            raise exception.DeviceNotUsable(
                'device contexts %s were not bound: %s' % (
                    ', '.join(ids), e or 'timed out after %ss' %
                    CONF.nova_acc_cyborg.bind_timeout))
        unsupported = sorted(ctx for ctx, acc in handles.items()
                             if acc.interface_type != 'pci')
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
        binding.replace(instance, [
            dataclasses.replace(b, address=handles[b.context_id].address)
            if b in pending else b for b in bindings])
        instance.save()
