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
"""nova-compute's libvirt driver with device contexts.

Enabled with ``[DEFAULT] compute_driver = nova_acc.LibvirtAccDriver`` (see
``nova/virt/nova_acc``: Nova only loads drivers from ``nova.virt``). Each
override is a few lines calling one room of ``nova_acc.compute`` (built and
wired by ``nova_acc.compute.wiring``); an operation takes one snapshot of
the host's devices (``nova_acc.compute.snapshot``) and passes it on:

* ``init_host``: refuse devices that ``[pci] device_spec`` also selects
  (and mdev types with Nova's own ``[devices] enabled_mdev_types``);
  recreate the mdevs servers hold that a host reboot lost;
* ``get_available_resource`` (the periodic resource update, before the
  resource tracker takes its lock): the update's host snapshot and the
  reconcile of step 5, which releases what no server holds;
* ``update_provider_tree`` (step 0, on every resource update, with the
  reconcile of step 5 where ``get_available_resource`` did not run it in
  the same update): the device pools as child providers
  (``nova_acc.compute.report``), the devices the ledger keeps out of
  service reserved; per-device providers of before pools are reshaped into
  pools;
* ``spawn`` (step 4): wait for the backend, then prepare the guest's
  devices once (``nova_acc.compute.guest``: check the bindings, pick and
  claim the devices in the ledger, create mdevs); a pool without enough
  free devices reschedules the server;
* ``_guest_add_pci_devices`` (step 4; private, see the pinned Nova range and
  tests/unit/nova_acc/test_nova_seams.py): a hostdev for each device the
  server holds, in every guest definition Nova generates: those spawn or
  finish_migration prepared, else prepared for this definition (hard
  reboot, power on, rescue...);
* ``_guest_add_mdevs`` (private, pinned like the one above): Nova adds
  back the mdevs a guest had on a hard reboot or rescue, after the hook
  above added the server's nova-acc mdevs: each is added once;
* ``destroy`` (step 5): after the guest is gone, release what the server no
  longer holds, and report the pools of the devices it freed to placement
  at once (Nova reports a delete itself, but not a guest it reaps): a
  failure there is logged, never raised, as the devices stay out of
  service until the next resource update releases them;
* ``finish_migration`` (resize and cold migration, destination): bind the
  server's groups to the pools of its new allocation here and pick and
  claim their devices, before the guest is defined; the source keeps its
  devices until the move is confirmed;
* ``finish_revert_migration`` (source of a reverted move): the bindings of
  the devices the server kept here;
* ``suspend``/``resume``: the server's devices leave the running guest
  before its memory is saved and come back once it is restored
  (``nova_acc.compute.suspend``), held by the server throughout; a device
  that cannot come back puts the server in ERROR with a fault naming it.
* live migration (by unplug and replug): the overrides of the mixin
  ``nova_acc.seams.live_migration``, which keeps this class small.

``DeviceNotUsable`` becomes Nova's ``ComputeResourcesUnavailable`` here: on a
build nova-compute then reschedules the server instead of failing it; on
the destination of a move Nova fails the move as it fails any (the server
in ERROR there, recovered by a hard reboot once devices are free).
"""

from __future__ import annotations

import contextlib

from nova.compute import resource_tracker
from nova import exception as nova_exc
from nova import utils
from oslo_log import log as logging
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import driver as libvirt_driver
import os_acc

from nova_acc import binding
from nova_acc import conf
from nova_acc import exception
from nova_acc.compute import attach
from nova_acc.compute import attach_rpc
from nova_acc.compute import suspend
from nova_acc.compute import wiring
from nova_acc.seams import live_migration

CONF = conf.CONF
LOG = logging.getLogger(__name__)


@contextlib.contextmanager
def _reschedule_on_unusable_device():
    try:
        yield
    except exception.DeviceNotUsable as e:
        raise nova_exc.ComputeResourcesUnavailable(reason=e.reason) from e


class LibvirtAccDriver(live_migration.LiveMigrationMixin,
                       libvirt_driver.LibvirtDriver):

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only=read_only)
        self.acc = wiring.build(self._host, conf.device_specs())
        # Nodes whose provider tree this process has updated once.
        self._acc_nodes_reported: set[str] = set()
        # Server UUID -> the devices its operation under way prepared for
        # its guest (spawn, finish_migration), so the guest definition in
        # that operation gets them without checking and listing again.
        self._acc_prepared: dict[str, list[os_acc.Accelerator]] = {}
        os_acc.initialize()

    def init_host(self, host):
        super().init_host(host)
        self.acc.host.check_no_shared_devices()
        # Before Nova's _init_instance starts any guest (host reboot).
        self.acc.guests.restore_mdevs()
        # nova-acc-api's attach and detach casts to this host (issue 23),
        # served by nova-compute's own RPC server, which Service.start makes
        # from the manager's endpoints after init_host (private: the
        # manager is ComputeVirtAPI's _compute, see test_nova_seams).
        attach_rpc.register(attach.Attacher(self), host,
                            self.virtapi._compute.additional_endpoints)

    def get_available_resource(self, nodename):
        resources = super().get_available_resource(nodename)
        # The periodic resource update's listing and reconcile, before the
        # resource tracker takes its lock (PoolReport.look).
        self.acc.report.look(nodename)
        return resources

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        super().update_provider_tree(provider_tree, nodename,
                                     allocations=allocations)
        self._update_device_pools(provider_tree, nodename, allocations)

    def _update_device_pools(self, provider_tree, nodename,
                             allocations=None):
        """nova-acc's half of ``update_provider_tree``: the device pools."""
        self.acc.report.update(
            provider_tree, nodename, allocations,
            may_reshape=nodename not in self._acc_nodes_reported)
        self._acc_nodes_reported.add(nodename)

    @contextlib.contextmanager
    def _acc_guest_prepared(self, instance, accelerators):
        self._acc_prepared[instance.uuid] = accelerators
        try:
            yield
        finally:
            self._acc_prepared.pop(instance.uuid, None)

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        snapshot = self.acc.host.snapshot()
        # Evacuate rebuilds the server here through spawn: its groups are
        # bound here first, and bound back if it fails here.
        with _reschedule_on_unusable_device():
            evacuated_from = self.acc.moves.rebind_for_evacuation(
                context, instance, allocations, snapshot)
        try:
            # Before any disk or network work so a reschedule is cheap.
            with _reschedule_on_unusable_device():
                self.acc.attach_handles.wait_for_backend(
                    context, instance, self.virtapi)
                prepared = self.acc.guests.prepare(instance, snapshot,
                                                   request_context=context)
            with self._acc_guest_prepared(instance, prepared):
                result = super().spawn(
                    context, instance, image_meta, injected_files,
                    admin_password, allocations, network_info=network_info,
                    block_device_info=block_device_info, power_on=power_on,
                    accel_info=accel_info)
        except Exception:
            if evacuated_from is not None:
                self.acc.moves.restore_bindings(context, instance,
                                                evacuated_from)
            raise
        self.acc.claims.mark_attached(instance)
        return result

    def _guest_add_pci_devices(self, guest, instance):
        # Nova's _get_guest_config calls this for every guest definition it
        # generates (first boot, rebuild, unshelve, hard reboot, power on,
        # host boot, rescue, resize), with the server, where it adds the
        # server's own PCI hostdevs. Not _get_guest_config itself: patches
        # that wrap LibvirtDriver._get_guest_config around the driver's
        # bound method, as Nova's functional tests do, would make super()
        # call the wrapper, which calls this override again, without end.
        # The bindings are checked for each operation, not only at spawn: a
        # bound device the ledger gives another server fails the operation
        # instead of a guest started without it. Within spawn and
        # finish_migration they were checked moments ago: not again.
        super()._guest_add_pci_devices(guest, instance)
        accelerators = self._acc_prepared.get(instance.uuid)
        if accelerators is None:
            with _reschedule_on_unusable_device():
                accelerators = self.acc.guests.prepare(
                    instance, self.acc.host.snapshot())
        for acc in accelerators:
            guest.add_device(os_acc.get_config(acc))

    def _guest_add_mdevs(self, guest, chosen_mdevs):
        # Private, see test_nova_seams. Nova adds back the mdevs the guest
        # had (hard reboot, rescue) after _guest_add_pci_devices, which
        # added the server's nova-acc mdevs already: each only once.
        present = {d.uuid for d in guest.devices
                   if isinstance(d, vconfig.LibvirtConfigGuestHostdevMDEV)}
        super()._guest_add_mdevs(
            guest, [m for m in chosen_mdevs if m not in present])

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        snapshot = self.acc.host.snapshot()
        with _reschedule_on_unusable_device():
            self.acc.moves.claim_for_move(context, instance, migration,
                                          allocations, self.virtapi, snapshot)
            prepared = self.acc.guests.prepare(instance, snapshot,
                                               request_context=context)
        with self._acc_guest_prepared(instance, prepared):
            super().finish_migration(
                context, migration, instance, disk_info, network_info,
                image_meta, resize_instance, allocations,
                block_device_info=block_device_info, power_on=power_on,
                share_info=share_info)
        self.acc.claims.mark_attached(instance)

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None,
                                power_on=True, share_info=None):
        with _reschedule_on_unusable_device():
            self.acc.moves.restore_after_revert(context, instance,
                                                self.virtapi)
        super().finish_revert_migration(
            context, instance, network_info, migration,
            block_device_info=block_device_info, power_on=power_on,
            share_info=share_info)

    def suspend(self, context, instance):
        # As Nova does for its own devices: out of the running guest before
        # its memory is saved (nova_acc.compute.suspend), still held.
        if not binding.load(instance):
            return super().suspend(context, instance)
        guest = self._host.get_guest(instance)
        detached = suspend.detach_for_suspend(self.acc.host, guest, instance)
        try:
            super().suspend(context, instance)
        except Exception:
            suspend.attach_back(guest, detached)
            raise

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        prepared = None
        if binding.load(instance):
            prepared = suspend.prepare_resume(
                self.acc.guests, self.acc.host.snapshot(), instance,
                request_context=context)
        with self._acc_guest_prepared(instance, prepared or []):
            super().resume(context, instance, network_info,
                           block_device_info=block_device_info,
                           share_info=share_info)
        if prepared:
            suspend.reattach_after_resume(
                self.acc.host, self._host.get_guest(instance), instance,
                prepared)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        super().destroy(context, instance, network_info,
                        block_device_info=block_device_info,
                        destroy_disks=destroy_disks,
                        destroy_secrets=destroy_secrets)
        try:
            self.acc.reconciler.after_teardown(context, instance)
        except Exception:
            # The guest is gone whatever happened here: failing the delete
            # (or the reboot) would not give the devices back. Nothing was
            # released that the ledger does not record; the devices stay
            # out of service until a resource update releases them.
            LOG.exception('Could not release the devices of the server '
                          'after its guest was destroyed; they stay out of '
                          'service and nova-compute tries again at its '
                          'next resource update.', instance=instance)
        if self.acc.reconciler.take_freed_pools():
            self._report_device_pools(context)

    def _report_device_pools(self, context) -> None:
        """Report the device pools to placement now, not at the next update.

        As the resource tracker does on every update, through the compute
        service's own report client (its provider tree cache) and under the
        resource tracker's own lock, which guards that cache: the tracker
        may be updating the same tree in another thread (a build, the
        periodic). Only what changed is sent, in practice the ``reserved``
        of the pools whose devices a release just freed. A failure
        (placement down) is logged: the next periodic update reports the
        same. ``destroy`` is never called with that lock held.
        """
        report = utils.synchronized(
            resource_tracker.COMPUTE_RESOURCE_SEMAPHORE, fair=True)(
                self._report_device_pools_locked)
        report(context)

    def _report_device_pools_locked(self, context) -> None:
        nodename = self.acc.host.nodename
        client = self.virtapi.reportclient
        try:
            found = client.get('/resource_providers?name=%s' % nodename,
                               version='1.14',
                               global_request_id=context.global_id)
            roots = found.json()['resource_providers'] if found else []
            if not roots:
                return
            tree = client.get_provider_subtree_and_ensure_root(
                context, roots[0]['uuid'], name=nodename)
            self._update_device_pools(tree, nodename)
            client.update_from_provider_tree(context, tree)
        except Exception as e:  # placement's and the tree's errors
            LOG.warning('Could not report the device pools of node %s to '
                        'placement after a release (%s); the next periodic '
                        'resource update reports them.', nodename, e)
