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
"""Suspend and resume of servers with device contexts.

A suspended guest's memory is saved to disk (libvirt's managed save), but
the state of a passed-through device cannot be: QEMU refuses to save a
guest with VFIO devices. So, as Nova does for its own flavor PCI devices,
direct SR-IOV ports and mdevs (``LibvirtDriver.suspend``/``resume``), the
server's devices leave the running guest before its memory is saved and
come back once it is restored:

* ``detach_for_suspend``: the hostdevs of the devices the ledger gives the
  server (PCI devices and mdevs) are detached from the live guest only;
  its persistent definition keeps them, as Nova's keeps its own. A detach
  that libvirt does not complete re-attaches what was detached and fails
  the suspend with ``InstanceFaultRollback``: the server stays ACTIVE
  with its devices;
* ``prepare_resume``/``reattach_after_resume``: before the guest is
  restored the devices are checked as for any guest definition
  (``GuestDevices.prepare``: the bindings, the ledger, the device present,
  an mdev recreated if a host reboot lost it); after, those the live guest
  lacks are attached. A device that cannot be re-attached fails the resume
  with ``InstanceResumeFailure`` naming the device, its group and why:
  Nova puts the server in ERROR, and a hard reboot gives it its devices
  again once they are usable.

Nothing here claims, releases or resets: throughout, the devices stay held
by the server in the ledger (``attached``) and in placement. The reconcile
holds a device for its bound server whether or not the guest uses it, so
a resource update while the server is suspended releases nothing and no
other server is given its devices.
"""

from __future__ import annotations

from nova import exception as nova_exc
import os_acc
from os_acc import exception as acc_exc
from oslo_log import log as logging

from nova_acc import exception
from nova_acc.compute import guest as guest_devices
from nova_acc.compute import ledger
from nova_acc.compute import snapshot as host_snapshot

LOG = logging.getLogger(__name__)


def name(acc: os_acc.Accelerator) -> str:
    return acc.mdev_uuid if acc.interface_type == 'mdev' else acc.address


def guest_libvirt_error() -> type:
    """libvirt's error class, as Nova's driver imports it."""
    from nova.virt.libvirt import guest as libvirt_guest
    return libvirt_guest.libvirt.libvirtError


def _live_devices(guest) -> set[str]:
    return os_acc.guest_devices(guest.get_xml_desc())


def _describe(records: dict, acc: os_acc.Accelerator) -> str:
    """The device in a fault: its address and the group it serves."""
    rec = records.get(name(acc))
    if rec is None:
        return 'device %s' % name(acc)
    context = (' (device context %s)' % rec.context_id
               if rec.context_id else '')
    return 'device %s of device group %s%s' % (
        rec.address, rec.requester_id, context)


def detach_from_guest(host: host_snapshot.Host, guest, instance,
                      operation: str) -> list[os_acc.Accelerator]:
    """Detach the devices the ledger gives the server from its live guest.

    :param operation: what they leave for, in the log (``suspend``).
    :returns: the devices detached, for ``attach_back``.
    :raises DeviceNotUsable: a device stayed in the guest, or libvirt
        refused its detach; the devices detached were attached again.
    """
    records = host.ledger.records()
    present = _live_devices(guest)
    held = [r.accelerator() for a, r in sorted(records.items())
            if r.instance_uuid == instance.uuid and
            r.state in ledger.ACTIVE and a in present]
    detached = []
    try:
        for acc in held:
            guest.detach_device(os_acc.get_config(acc), live=True)
            detached.append(acc)
        left = [a for a in held if name(a) in _live_devices(guest)]
        if left:
            raise exception.DeviceNotUsable(
                '%s is still in the guest after its detach'
                % _describe(records, left[0]))
    except Exception as e:
        reason = getattr(e, 'reason', None) or str(e)
        LOG.error('Could not detach the devices of the server for its '
                  '%s: %s; attaching back those detached.', operation,
                  reason, instance=instance)
        attach_back(guest, detached)
        raise exception.DeviceNotUsable(reason) from e
    LOG.info('Detached devices %s for the %s; the server keeps them.',
             ', '.join(name(a) for a in detached), operation,
             instance=instance)
    return detached


def detach_for_suspend(host: host_snapshot.Host, guest, instance
                       ) -> list[os_acc.Accelerator]:
    """The server's devices out of its running guest before its suspend.

    :returns: the devices detached, for ``attach_back``.
    :raises InstanceFaultRollback: a device stayed in the guest; the
        devices detached were attached again.
    """
    try:
        return detach_from_guest(host, guest, instance, 'suspend')
    except exception.DeviceNotUsable as e:
        raise nova_exc.InstanceFaultRollback(
            inner_exception=nova_exc.InstanceSuspendFailure(
                reason='its devices could not be detached from the guest, '
                       'and their state cannot be saved: %s' % e.reason)
        ) from e


def attach_back(guest, accelerators: list[os_acc.Accelerator]) -> None:
    """Best effort, on the way out of a failed suspend.

    A device that cannot come back is logged: the server's fault is the
    suspend's, and a hard reboot gives the guest its devices.
    """
    try:
        present = _live_devices(guest)
    except Exception:
        present = set()
    for acc in accelerators:
        if name(acc) in present:
            continue
        try:
            guest.attach_device(os_acc.get_config(acc), live=True)
        except Exception as e:
            LOG.error('Could not attach device %s back: %s; a hard reboot '
                      'of the server gives it back.', name(acc), e)


def prepare_resume(guests: guest_devices.GuestDevices,
                   snapshot: host_snapshot.HostSnapshot, instance,
                   request_context=None) -> list[os_acc.Accelerator]:
    """The devices the resumed guest gets back, checked before it runs.

    :raises InstanceResumeFailure: one is not usable here now.
    """
    try:
        return guests.prepare(instance, snapshot,
                              request_context=request_context)
    except exception.DeviceNotUsable as e:
        raise nova_exc.InstanceResumeFailure(
            reason='the devices of its device contexts cannot be attached '
                   'again: %s; hard reboot the server once they are '
                   'usable' % e.reason) from e


def reattach_after_resume(host: host_snapshot.Host, guest, instance,
                          accelerators: list[os_acc.Accelerator]) -> None:
    """Attach to the restored guest the devices it lacks.

    Nova re-attaches the mdevs the persistent definition names (real
    libvirt keeps them there): those are not attached twice.

    :raises InstanceResumeFailure: naming the device and why.
    """
    present = _live_devices(guest)
    for acc in accelerators:
        if name(acc) in present:
            continue
        try:
            guest.attach_device(os_acc.get_config(acc), live=True)
        except (acc_exc.InvalidAccelerator, guest_libvirt_error()) as e:
            raise nova_exc.InstanceResumeFailure(
                reason='%s could not be attached again: %s; hard reboot the '
                       'server once it is usable'
                % (_describe(host.ledger.records(), acc), e)) from e
    missing = [a for a in accelerators if name(a) not in
               _live_devices(guest)]
    if missing:
        raise nova_exc.InstanceResumeFailure(
            reason='%s is not in the guest after its attach; hard reboot '
                   'the server' % _describe(host.ledger.records(),
                                            missing[0]))
