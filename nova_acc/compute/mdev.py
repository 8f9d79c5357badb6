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
"""The mediated devices (vGPUs) of a libvirt host: list, create, remove.

nova-acc creates an mdev when a server claims one
(``nova_acc.compute.guest``, recorded in the device ledger first) and removes
it when the server lets go (``nova_acc.compute.release``); a removed mdev's
capacity returns to its parent, and nothing of the previous tenant survives in
a new mdev. Creation is the way Nova's libvirt driver does it
(``LibvirtDriver._create_mdev``): a transient node device made persistent and
set to autostart, so the host's mdevs come back after a reboot (and Nova's
``init_host`` starts any that did not); nova-acc also recreates, with the same
UUID, every mdev the ledger gives a server that is missing when a guest is
defined.

Only libvirt's node-device API is used: no sysfs writes, so no privileges
beyond nova-compute's libvirt connection.
"""

from __future__ import annotations

from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import host as libvirt_host
import os_acc
from oslo_log import log as logging

from nova_acc import exception

LOG = logging.getLogger(__name__)


def _libvirt():
    # Nova's Host imports libvirt lazily; the module is set by now.
    return libvirt_host.libvirt


def _node_devices(host: libvirt_host.Host):
    """(name, virNodeDevice) of every mdev libvirt knows, active or not."""
    libvirt = _libvirt()
    found = {}
    for name in host.list_mediated_devices():
        try:
            found[name] = host.device_lookup_by_name(name)
        except libvirt.libvirtError as e:
            # Removed between the listing and the lookup.
            LOG.debug('Skipping mdev %s: %s', name, e)
    try:
        # Defined but not started (after a reboot, before autostart).
        for dev in host.list_all_devices(
                libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_MDEV |
                libvirt.VIR_CONNECT_LIST_NODE_DEVICES_INACTIVE):
            found.setdefault(dev.name(), dev)
    except (libvirt.libvirtError, AttributeError) as e:
        LOG.debug('Cannot list inactive mdevs: %s', e)
    return sorted(found.items())


def list_mdevs(host: libvirt_host.Host
               ) -> dict[str, os_acc.MediatedDevice]:
    """The active mdevs of the host: UUID -> MediatedDevice."""
    libvirt = _libvirt()
    xmls = []
    for name in host.list_mediated_devices():
        try:
            xmls.append(host.device_lookup_by_name(name).XMLDesc(0))
        except libvirt.libvirtError as e:
            LOG.debug('Skipping mdev %s: %s', name, e)
    return os_acc.mdevs_from_nodedevs(xmls)


def create(host: libvirt_host.Host, parent: str, mdev_type: str,
           uuid: str) -> None:
    """Create mdev ``uuid`` of ``mdev_type`` on the parent at ``parent``.

    :raises MdevError: libvirt refused (no capacity left, parent gone).
    """
    libvirt = _libvirt()
    if not os_acc.is_valid_mdev_type(mdev_type):
        raise exception.MdevError('invalid mdev type %r' % (mdev_type,))
    conf = vconfig.LibvirtConfigNodeDevice()
    conf.parent = os_acc.PciAddress.parse(parent).nodedev_name()
    conf.mdev_information = vconfig.LibvirtConfigNodeDeviceMdevInformation()
    conf.mdev_information.type = mdev_type
    conf.mdev_information.uuid = uuid
    try:
        host.device_create(conf)
    except libvirt.libvirtError as e:
        raise exception.MdevError(
            'cannot create mdev %s of type %s on %s: %s' % (
                uuid, mdev_type, parent, e))
    try:
        dev = host.device_define(conf)
        if dev is not None:
            host.device_set_autostart(dev, autostart=True)
    except libvirt.libvirtError as e:
        # It works until the host reboots; nova-acc recreates it then.
        LOG.warning('mdev %s on %s was created but could not be made '
                    'persistent: %s', uuid, parent, e)
    LOG.info('Created mdev %s of type %s on %s.', uuid, mdev_type, parent)


def remove(host: libvirt_host.Host, uuid: str) -> bool:
    """Remove mdev ``uuid``: stop it and drop its persistent definition.

    :returns: False if the host has no such mdev (nothing to do).
    :raises MdevError: libvirt could not remove it (a guest still uses it,
        or the vendor driver refused).
    """
    libvirt = _libvirt()
    found = False
    for name, dev in _node_devices(host):
        try:
            mdev = os_acc.mdevs_from_nodedevs([dev.XMLDesc(0)]).get(uuid)
        except libvirt.libvirtError:
            continue
        if mdev is None:
            continue
        found = True
        try:
            if dev.isActive():
                dev.destroy()
        except libvirt.libvirtError as e:
            raise exception.MdevError('cannot remove mdev %s (%s): %s' % (
                uuid, name, e))
        try:
            if dev.isPersistent():
                dev.undefine(0)
        except libvirt.libvirtError as e:
            # Stopped, so its capacity is back; the definition alone would
            # recreate it at the next reboot, with no server holding it.
            LOG.warning('mdev %s was stopped but its definition could not '
                        'be removed: %s', uuid, e)
    if found:
        LOG.info('Removed mdev %s.', uuid)
    return found
