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
"""Which PCI node devices the host has: their XML, as libvirt describes it.

Describing a node device is one libvirt call per device (``XMLDesc``): on a
host with a PF of 2048 VFs, a full listing is 2049 of them, and it was most
of what such a host cost each resource update. Nova's libvirt driver lists
the host's PCI devices once per nova-compute process since 2024
(``LibvirtDriver._get_pci_passthrough_devices`` is ``functools.cache``\\ d:
"changing pci devices at runtime is currently not supported").

nova-acc keeps seeing changes at runtime, for less: ``NodeDeviceListing``
asks libvirt for the devices' *names* on every listing (one call) and
describes them all again only when

* it has not listed them in full yet (nova-compute's start);
* the names changed (a device added or removed, a PF's VFs enabled or
  disabled: their names come and go);
* its last full listing is older than ``FULL_LISTING_AFTER`` seconds: what
  can change under the same name (a device swapped in the same slot, a GPU
  that gained mdev types when its vGPU driver loaded) is seen within that
  time;
* a device it describes again cannot be described (it went away meanwhile).

In between it describes again only the devices whose XML can change under
the same name while nova-compute runs: the mdev-capable ones, whose
``availableInstances`` changes with every mdev created or removed on them.
The rest comes from the last listing. A listing that fails (libvirt times
out) raises ``DeviceListingFailed`` either way: the callers fail closed.
"""

from __future__ import annotations

import time
import typing as ty

from nova import exception as nova_exc
from nova import utils
from nova.virt.libvirt import host as libvirt_host
from oslo_log import log as logging

from nova_acc import exception

LOG = logging.getLogger(__name__)

#: Seconds after which a listing describes every device again.
FULL_LISTING_AFTER = 600.0

# In the XML of every mdev-capable device (its ``<capability
# type='mdev_types'>``); a device that merely mentions it is described again
# too, which costs a call and is never wrong.
_MDEV_TYPES = 'mdev_types'


def _listing_failed(e: Exception) -> exception.DeviceListingFailed:
    return exception.DeviceListingFailed(
        "libvirt could not list the host's PCI devices: %s" % e)


class _NodeDeviceDescriber:
    """Describes many node devices in one call, run in one native thread.

    Nova proxies every libvirt object through eventlet's thread pool, so
    each ``XMLDesc`` of a listed device is a round trip to a native thread:
    on a host with a PF of 2048 VFs that alone was a large part of each
    discovery. Called through ``nova.utils.tpool_wrap``, the whole loop is
    one round trip (a proxied call made inside the pool runs directly);
    without eventlet the wrap does nothing.
    """

    @staticmethod
    def describe(devices: list) -> list[tuple[str, str | None, str | None]]:
        """(name, XML, None) for each device, or (name, None, why) for one
        that libvirt cannot describe."""
        libvirt = libvirt_host.libvirt
        described: list[tuple[str, str | None, str | None]] = []
        for dev in devices:
            try:
                described.append((dev.name(), dev.XMLDesc(0), None))
            except libvirt.libvirtError as e:
                described.append(('', None, str(e)))
        return described

    @staticmethod
    def describe_by_name(conn, names: list[str]) -> list[str] | None:
        """The XML of each named device; None if one cannot be described."""
        libvirt = libvirt_host.libvirt
        try:
            return [conn.nodeDeviceLookupByName(name).XMLDesc(0)
                    for name in names]
        except libvirt.libvirtError:
            return None


def _full_listing(host: libvirt_host.Host) -> dict[str, str]:
    """Node device name -> XML of each PCI device libvirt knows of.

    :raises DeviceListingFailed: libvirt could not list them.
    """
    # Nova's Host imports libvirt lazily; the module is set by now.
    libvirt = libvirt_host.libvirt
    # Not Nova's Host.list_all_devices: it logs libvirt's error and returns
    # no device, which would read as every device gone from the host.
    try:
        listed = host.get_connection().listAllDevices(
            libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV)
    except (libvirt.libvirtError, nova_exc.HypervisorUnavailable) as e:
        raise _listing_failed(e) from e
    describer = utils.tpool_wrap(_NodeDeviceDescriber())
    xmls = {}
    for name, xml, error in describer.describe(listed):
        if xml is None:
            # A VF can go away between the listing and its description.
            LOG.warning('Ignoring a node device libvirt cannot describe: %s',
                        error)
            continue
        xmls[name] = xml
    return xmls


class NodeDeviceListing:
    """The XML of one host's PCI node devices, kept between listings.

    One per nova-compute process and libvirt host (``snapshot.Host``);
    see the module's docstring for when it describes every device again.
    """

    def __init__(self, clock: ty.Callable[[], float] = time.monotonic):
        self._clock = clock
        # name -> XML, as of the last listing; replaced whole, never changed
        # in place, so a listing running meanwhile in another green thread
        # reads one listing or the other.
        self._xmls: dict[str, str] = {}
        self._listed_in_full_at: float | None = None

    def xmls(self, host: libvirt_host.Host) -> list[str]:
        """The XML of each PCI node device of the host, now.

        :raises DeviceListingFailed: libvirt could not list them.
        """
        libvirt = libvirt_host.libvirt
        try:
            conn = host.get_connection()
            names = list(conn.listDevices('pci', 0))
        except (libvirt.libvirtError, nova_exc.HypervisorUnavailable) as e:
            raise _listing_failed(e) from e
        known = self._xmls
        if (self._listed_in_full_at is None or
                self._clock() - self._listed_in_full_at >=
                FULL_LISTING_AFTER or known.keys() != set(names)):
            return self._list_in_full(host)
        changing = [name for name in names
                    if _MDEV_TYPES in known[name]]
        if changing:
            described = utils.tpool_wrap(
                _NodeDeviceDescriber()).describe_by_name(conn, changing)
            if described is None:
                return self._list_in_full(host)
            known = dict(known, **dict(zip(changing, described)))
            self._xmls = known
        return [known[name] for name in names]

    def _list_in_full(self, host: libvirt_host.Host) -> list[str]:
        listed_at = self._clock()
        xmls = _full_listing(host)
        self._xmls, self._listed_in_full_at = xmls, listed_at
        return list(xmls.values())
