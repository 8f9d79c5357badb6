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

* reports the devices of ``[nova_acc] device_spec`` as child providers
  (``update_provider_tree``);
* before building a server, checks that every device bound to it is
  present and in no other domain, and reschedules the server otherwise
  (``spawn``);
* adds a hostdev for each bound device to every guest definition Nova
  generates - first boot, hard reboot, start after stop - through
  ``os_acc.get_config`` (``_get_guest_config``, private: see the pinned Nova
  range and tests/unit/nova_acc/test_nova_seams.py);
* on delete or a failed build, resets the devices and releases the
  bindings (``destroy``).
"""

from __future__ import annotations

from xml.etree import ElementTree

import dataclasses

from nova.compute import task_states
from nova.compute import vm_states
from nova import context as nova_context
from nova import exception as nova_exc
from nova.pci import devspec as nova_devspec
from nova.scheduler.client import report
from nova.virt.libvirt import driver as libvirt_driver
import os_acc
from os_acc import exception as acc_exc
from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_acc import backends
from nova_acc.backends import base as backend_base
from nova_acc import binding
from nova_acc import conf
from nova_acc import exception
from nova_acc.provider import tree
from nova_acc.virt import devices

CONF = conf.CONF
LOG = logging.getLogger(__name__)


def _leaves_host(instance) -> bool:
    """Is the guest destroyed because the server leaves this host?"""
    return (instance.task_state in (task_states.DELETING,
                                    task_states.SHELVING_OFFLOADING) or
            instance.vm_state == vm_states.BUILDING)


def _hostdev_addresses(xml: str) -> set[str]:
    """PCI addresses of the hostdevs in a domain's XML."""
    result = set()
    for addr in ElementTree.fromstring(xml).findall(
            "./devices/hostdev[@type='pci']/source/address"):
        result.add('%04x:%02x:%02x.%x' % tuple(
            int(addr.get(k), 16) for k in
            ('domain', 'bus', 'slot', 'function')))
    return result


class LibvirtAccDriver(libvirt_driver.LibvirtDriver):

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only=read_only)
        self._acc_device_specs = devices.configured_device_specs()
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

    # ---- step 4: inventory ---------------------------------------------

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        super().update_provider_tree(provider_tree, nodename,
                                     allocations=allocations)
        tree.update_provider_tree(
            provider_tree, nodename,
            devices.discover(self._host, self._acc_device_specs),
            CONF.nova_acc.capability_trait,
            has_allocations=self._provider_has_allocations)

    @staticmethod
    def _provider_has_allocations(rp_uuid: str) -> bool:
        ctxt = nova_context.get_admin_context()
        allocs = report.report_client_singleton(
            ).get_allocations_for_resource_provider(ctxt, rp_uuid)
        return bool(allocs.allocations)

    # ---- step 5: hostdevs -----------------------------------------------

    def _bound_accelerators(self, instance,
                            check_free: bool = False) -> list:
        """Resolve the instance's bindings to devices of this host.

        :raises DeviceBindingFailed: a bound device is not usable here.
        """
        error = binding.load_error(instance)
        if error:
            raise exception.DeviceBindingFailed(reason=error)
        bindings = binding.load(instance)
        if not bindings:
            return []
        # Devices of ID-based contexts belong to their backend (Cyborg),
        # not to [nova_acc] device_spec.
        present = {d.address for d in devices.discover(
            self._host, self._acc_device_specs)} if any(
                not b.context_id for b in bindings) else set()
        in_use = self._devices_in_other_domains(instance) if check_free \
            else set()
        accelerators = []
        for b in bindings:
            if b.nodename != instance.node:
                raise exception.DeviceBindingFailed(reason=(
                    'device group %s is bound to node %s, not %s' % (
                        b.requester_id, b.nodename, instance.node)))
            if b.address is None:
                raise exception.DeviceBindingFailed(reason=(
                    'device context %s has no attach handle yet' %
                    b.context_id))
            if not b.context_id and b.address not in present:
                raise exception.DeviceBindingFailed(reason=(
                    'bound device %s is not present on node %s' % (
                        b.address, b.nodename)))
            if b.address in in_use:
                raise exception.DeviceBindingFailed(reason=(
                    'bound device %s is already assigned to another guest '
                    'on node %s' % (b.address, b.nodename)))
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
                [b.context_id for b in pending])
        except (backend_base.BackendUnavailable,
                nova_exc.InstanceEventTimeout) as e:
            raise exception.DeviceBindingFailed(reason=(
                'device contexts %s were not bound: %s' % (
                    ', '.join(b.context_id for b in pending), e or
                    'timed out after %ss' %
                    CONF.nova_acc.cyborg_bind_timeout)))
        for acc in handles.values():
            if acc.interface_type != 'pci':
                raise exception.DeviceBindingFailed(reason=(
                    'attach handle type %s is not supported yet' %
                    acc.interface_type))
        binding.replace(instance, [
            dataclasses.replace(b, address=handles[b.context_id].address)
            if b in pending else b for b in bindings])
        instance.save()

    def _devices_in_other_domains(self, instance) -> set[str]:
        in_use = set()
        for guest in self._host.list_guests(only_running=False):
            if guest.uuid == instance.uuid:
                continue
            in_use |= _hostdev_addresses(guest.get_xml_desc())
        return in_use

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        # Check before any disk or network work so a reschedule is cheap.
        self._wait_for_backend_bindings(context, instance)
        self._bound_accelerators(instance, check_free=True)
        return super().spawn(
            context, instance, image_meta, injected_files, admin_password,
            allocations, network_info=network_info,
            block_device_info=block_device_info, power_on=power_on,
            accel_info=accel_info)

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
        # Nova also destroys the guest to hard reboot, power on or rebuild
        # it in place; the server keeps its devices then.
        if _leaves_host(instance):
            self._release_devices(context, instance)

    def _release_devices(self, context, instance):
        bindings = released = [b for b in binding.load(instance)
                               if b.nodename == instance.node]
        if not bindings:
            return
        context_ids = [b.context_id for b in bindings if b.context_id]
        if context_ids:
            # The user's device contexts outlive the server, like ports:
            # unbind, never delete. Their backend resets the devices.
            try:
                backends.get_backend().unbind(context, instance, context_ids)
            except backend_base.BackendUnavailable as e:
                LOG.error('Could not unbind device contexts %s: %s',
                          ', '.join(context_ids), e, instance=instance)
            bindings = [b for b in bindings if not b.context_id]
        # A failed build may have been refused because another guest holds
        # the device; resetting it would wipe that guest's device.
        in_use = self._devices_in_other_domains(instance)
        for b in bindings:
            if (not CONF.nova_acc.reset_on_release or b.address is None or
                    b.address in in_use):
                continue
            try:
                if not os_acc.reset_device(
                        b.address, sysfs_root=CONF.nova_acc.sysfs_root):
                    LOG.warning('Device %s has no function-level reset; it '
                                'is released without a reset.', b.address,
                                instance=instance)
            except (acc_exc.OsAccException, OSError) as e:
                LOG.warning('Resetting device %s failed: %s', b.address, e,
                            instance=instance)
        if instance.task_state != task_states.DELETING:
            # A failed build is rescheduled or ends in ERROR: in both cases
            # it must no longer claim this host's devices. A deleted server
            # takes its system metadata with it.
            binding.replace(instance, [])
            instance.save()
        LOG.info('Released devices %s', ', '.join(
            b.address or b.context_id for b in released), instance=instance)
