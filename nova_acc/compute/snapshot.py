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
"""The host's facts: one snapshot of its devices per operation.

``Host`` is what every compute room shares for one libvirt host: the node
name, ``[nova_acc] device_spec``, the device ledger, and ``snapshot()``.
``HostSnapshot`` is one look at the host's devices for one operation (a
build, a move, a resource update): the devices of ``device_spec`` and the
mdev parents come from one listing of the host's PCI node devices
(``inventory.discover``), taken the first time a fact is asked for and then
carried through everything the operation does, instead of each step
listing them again. Listing and parsing every PCI device is most of what a
device context costs a build on a host with many VFs, so a build takes one
snapshot, before it takes the ledger lock (``claiming`` makes sure of
that), not one per step.

A snapshot goes stale in one way that matters: a release that removes an
mdev gives its parent capacity back. The reconciler then calls
``refresh_mdevs`` (outside the ledger lock), so a claim or a report after
that reconcile sees the capacity as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

from nova.pci import devspec as nova_devspec
import os_acc
from oslo_serialization import jsonutils

from nova_acc import conf
from nova_acc import exception
from nova_acc import pools
from nova_acc.compute import inventory
from nova_acc.compute import ledger
from nova_acc.compute import listing
from nova_acc.compute import mdev

CONF = conf.CONF


class HostSnapshot:
    """The host's devices as one listing found them.

    Facts are read on first use and kept: take one per operation and pass
    it on, never keep one across operations.
    """

    def __init__(self, host, nodename: str, device_specs: list[dict],
                 has_mdev_specs: bool,
                 node_devices: listing.NodeDeviceListing):
        self._host = host
        self._node_devices = node_devices
        self.nodename = nodename
        self._device_specs = device_specs
        self._has_mdev_specs = has_mdev_specs
        self._found: tuple[dict[str, os_acc.Device],
                           list[os_acc.Device]] | None = None
        self._pools: dict[str, pools.Pool] | None = None
        self._host_mdevs: dict[str, os_acc.MediatedDevice] | None = None

    def take(self) -> HostSnapshot:
        """List the host's devices now, if not done yet (before a lock)."""
        if self._found is None:
            found = inventory.discover(self._host, self._device_specs,
                                       self._node_devices)
            self._found = (
                {d.address: d for d in found if d.mdev_type is None},
                [d for d in found if d.mdev_type is not None])
        return self

    @property
    def managed(self) -> dict[str, os_acc.Device]:
        """The whole devices of ``device_spec`` on the host, by address."""
        return self.take()._found[0]  # type: ignore[index]

    @property
    def mdev_parents(self) -> list[os_acc.Device]:
        """The parents ``device_spec`` selects for mdev types.

        Once per parent and mdev type, with their capacity as libvirt
        reported it when the snapshot was taken.
        """
        if not self._has_mdev_specs:
            return []
        return self.take()._found[1]  # type: ignore[index]

    @property
    def pools(self) -> dict[str, pools.Pool]:
        """The node's pools (whole devices and mdev parents), by UUID."""
        if self._pools is None:
            found = pools.pools_of(self.nodename, self.managed.values())
            found.update(pools.pools_of(self.nodename, self.mdev_parents))
            self._pools = found
        return self._pools

    def host_mdevs(self, records: Mapping[str, ledger.DeviceRecord] | None
                   = None) -> dict[str, os_acc.MediatedDevice]:
        """The mdevs on the host, by UUID (listed on first use).

        libvirt is not asked on a host without mdev types in
        ``device_spec`` and without mdevs in ``records``.
        """
        if self._host_mdevs is not None:
            return self._host_mdevs
        if not self._has_mdev_specs and not any(
                r.is_mdev for r in (records or {}).values()):
            return {}
        self._host_mdevs = mdev.list_mdevs(self._host)
        return self._host_mdevs

    def refresh_mdevs(self) -> None:
        """An mdev was removed: its parent's capacity changed; look again.

        Only when the mdev facts were asked for already; a discovery
        otherwise waits for its first use.
        """
        self._host_mdevs = None
        if self._found is not None and self._has_mdev_specs:
            self._found = None
            self._pools = None
            self.take()


class Host:
    """nova-acc's view of one libvirt host (one compute node).

    :param host: the driver's ``nova.virt.libvirt.host.Host``.
    :param device_specs: ``[nova_acc] device_spec``, parsed.
    """

    def __init__(self, host, device_specs: list[dict]):
        self.libvirt_host = host
        self._device_specs = device_specs
        self.has_mdev_specs = any(
            isinstance(s, dict) and 'mdev_type' in s for s in device_specs)
        self._ledger: ledger.DeviceLedger | None = None
        # The host's PCI node devices as last listed: a snapshot lists
        # their names and describes again only what changed.
        self.node_devices = listing.NodeDeviceListing()
        # Counts the changes nova-acc makes to the host's node devices
        # (mdevs created or removed): a snapshot taken before one of them
        # is not carried into another step (``PoolReport.look``).
        self.changes = 0

    @property
    def nodename(self) -> str:
        # The libvirt driver has one node, named after the host.
        return self.libvirt_host.get_hostname()

    @property
    def ledger(self) -> ledger.DeviceLedger:
        if self._ledger is None or self._ledger.nodename != self.nodename:
            self._ledger = ledger.DeviceLedger(self.nodename)
        return self._ledger

    def snapshot(self) -> HostSnapshot:
        """A new snapshot for one operation (nothing listed yet)."""
        return HostSnapshot(self.libvirt_host, self.nodename,
                            self._device_specs, self.has_mdev_specs,
                            self.node_devices)

    def create_mdev(self, parent: str, mdev_type: str, uuid: str) -> None:
        """:raises MdevError:"""
        self.changes += 1
        mdev.create(self.libvirt_host, parent, mdev_type, uuid)

    def remove_mdev(self, uuid: str) -> None:
        """:raises MdevError: libvirt's error, as the release expects."""
        self.changes += 1
        try:
            mdev.remove(self.libvirt_host, uuid)
        except Exception as e:
            raise exception.MdevError(str(e))

    def check_no_shared_devices(self) -> None:
        """Refuse to start when Nova's PCI tracker could hand out our devices.

        Two owners of one device is how a device ends up in two guests.
        The same for mdevs: Nova's own vGPU support hands out any mdev of
        its types that no guest uses, nova-acc's included.

        :raises ConflictingDeviceSpec:
        :raises ConflictingMdevConfig:
        :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
        """
        if self.has_mdev_specs and CONF.devices.enabled_mdev_types:
            raise exception.ConflictingMdevConfig()
        # Also validates [nova_acc] device_spec: a bad entry stops the start
        # rather than every resource update.
        snapshot = self.snapshot().take()
        if not CONF.pci.device_spec:
            return
        nova_specs = [nova_devspec.PciDeviceSpec(jsonutils.loads(line))
                      for line in CONF.pci.device_spec]
        for dev in list(snapshot.managed.values()) + snapshot.mdev_parents:
            as_nova = {'address': dev.address, 'vendor_id': dev.vendor_id,
                       'product_id': dev.product_id,
                       'parent_addr': dev.physfn}
            if any(s.match(as_nova) for s in nova_specs):
                raise exception.ConflictingDeviceSpec(address=dev.address)
