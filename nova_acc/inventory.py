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
"""Step 0 of the flow, inventory: a host's accelerators as resource providers.

Called from the compute driver's ``update_provider_tree``. Each device is a
child of the compute node named ``<nodename>_<pci address>`` with a UUID
derived from that name (``provider_uuid``), inventory 1 of its resource
class, its traits, ``OWNER_NOVA`` and the capability trait. This module is
the one home of that naming: ``device_address`` reads it back.

Only changes are written: ProviderTree compares with what placement has,
and the report client sends nothing for an unchanged tree.

Which devices there are: ``[nova_acc] device_spec`` (``configured_device_
specs``) applied to the node devices libvirt lists (``discover``), the way
Nova discovers ``[pci] device_spec`` devices: libvirt reads sysfs on a real
host, and Nova's fake-libvirt fixtures stand in for a host in functional
tests. Parsing the XML and applying the specs is
``os_acc.discover_from_nodedevs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Set
import typing as ty
import uuid as uuid_lib

from nova.virt.libvirt import host as libvirt_host
import os_acc
import os_traits
from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_acc import conf
from nova_acc import exception
from nova_acc import ledger

CONF = conf.CONF

LOG = logging.getLogger(__name__)

# Fixed namespace so a device's provider UUID is the same after every
# restart of nova-compute and can be recomputed from its name.
_PROVIDER_NAMESPACE = uuid_lib.UUID('a7f4b0b2-3c1e-4f6e-9a55-6f1d2b9c0e11')


def provider_name(nodename: str, address: str) -> str:
    """The name of the provider of device ``address`` of ``nodename``."""
    return '%s_%s' % (nodename, address)


def provider_uuid(nodename: str, address: str) -> str:
    """The UUID of that provider: stable, and derived from its name."""
    return str(uuid_lib.uuid5(_PROVIDER_NAMESPACE,
                              provider_name(nodename, address)))


def device_address(nodename: str, name: str, rp_uuid: str) -> str | None:
    """The PCI address of a provider nova-acc made for ``nodename``.

    None when the provider is not one of nova-acc's devices of that node:
    the name does not start with the node's, or the UUID was not derived
    from the name (someone else made a look-alike provider).
    """
    prefix = nodename + '_'
    if not name.startswith(prefix):
        return None
    address = name[len(prefix):]
    if provider_uuid(nodename, address) != rp_uuid:
        return None
    return address


def _inventory(resource_class: str, reserved: int = 0) -> dict:
    return {resource_class: {
        'total': 1, 'reserved': reserved, 'min_unit': 1, 'max_unit': 1,
        'step_size': 1, 'allocation_ratio': 1.0}}


def _our_children(provider_tree, nodename: str) -> dict[str, str]:
    """Device providers nova-acc made under ``nodename``: name -> uuid."""
    result = {}
    for uuid in provider_tree.get_provider_uuids_in_tree(nodename):
        data = provider_tree.data(uuid)
        if device_address(nodename, data.name, uuid) is not None:
            result[data.name] = uuid
    return result


def _fully_reserved(inventory: dict) -> dict:
    return {rc: dict(record, reserved=record['total'])
            for rc, record in inventory.items()}


def update_provider_tree(
    provider_tree,
    nodename: str,
    devices: Iterable[os_acc.Device],
    capability_trait: str,
    has_allocations: Callable[[str], bool],
    records: Mapping[str, ledger.DeviceRecord] | None = None,
    unallocated: Set[str] = frozenset(),
) -> None:
    """Make ``nodename``'s device children match ``devices``.

    :param has_allocations: tells whether a provider (by UUID) has
        allocations; only asked about providers whose device vanished or
        whose resource class or traits changed.
    :param records: the device ledger: devices it keeps out of service
        (dirty, orphaned, foreign) are reserved, and a device a server holds
        keeps the provider it was allocated from.
    :param unallocated: addresses of devices a server holds although
        placement has no allocation of them for it: reserved too.
    """
    records = records or {}
    provider_tree.add_traits(nodename, capability_trait)
    present = {}
    for dev in devices:
        name = provider_name(nodename, dev.address)
        present[name] = dev
        uuid = provider_uuid(nodename, dev.address)
        rec = records.get(dev.address)
        out_of_service = (rec is not None and
                          rec.state in ledger.OUT_OF_SERVICE) or \
            dev.address in unallocated
        inventory = _inventory(dev.resource_class,
                               reserved=1 if out_of_service else 0)
        traits = set(dev.traits) | {os_traits.OWNER_NOVA, capability_trait}
        if not provider_tree.exists(uuid):
            provider_tree.new_child(name, nodename, uuid=uuid)
            LOG.info('Reporting device %s (%s) as resource provider %s',
                     dev.address, dev.resource_class, uuid)
        else:
            data = provider_tree.data(uuid)
            old_rcs = set(data.inventory)
            changed = (old_rcs and old_rcs != {dev.resource_class}) or (
                data.traits and set(data.traits) != traits)
            if changed and ((rec is not None and rec.state in ledger.HELD) or
                            has_allocations(uuid)):
                # Placement refuses to change the resource class of an
                # allocated provider, and the server was given the device
                # for the old class and traits: keep them, fully reserved,
                # until the device is free; then it moves.
                kept = _fully_reserved(data.inventory)
                if kept != data.inventory:
                    LOG.warning(
                        'Device %s changed in [nova_acc] device_spec (now %s '
                        'with traits %s) while a server holds it; its '
                        'provider %s keeps %s and its traits, fully '
                        'reserved, until the device is released.',
                        dev.address, dev.resource_class,
                        ','.join(sorted(dev.traits)) or '-', uuid,
                        ','.join(sorted(old_rcs)))
                    provider_tree.update_inventory(uuid, kept)
                continue
        if out_of_service and provider_tree.data(uuid).inventory != inventory:
            LOG.warning('Device %s is %s (%s): reserved in placement until '
                        'it can be handed out again.', dev.address,
                        rec.state if rec else '-',
                        (rec.reason if rec else None) or '-')
        provider_tree.update_inventory(uuid, inventory)
        provider_tree.update_traits(uuid, traits)

    for name, uuid in _our_children(provider_tree, nodename).items():
        if name in present:
            continue
        address = name[len(nodename) + 1:]
        rec = records.get(address)
        if (rec is not None and rec.state in ledger.HELD) or \
                has_allocations(uuid):
            # Deleting a provider with allocations fails in placement and
            # would stop every later inventory update of this host. Keep it,
            # fully reserved so nothing new lands on it, until it is freed.
            inv = provider_tree.data(uuid).inventory
            reserved = _fully_reserved(inv)
            if reserved != inv:
                LOG.warning(
                    'Device provider %s (%s) is allocated but its device is '
                    'gone from the host or from [nova_acc] device_spec; '
                    'keeping it fully reserved until its servers are '
                    'deleted.', name, uuid)
                provider_tree.update_inventory(uuid, reserved)
        else:
            LOG.info('Device of resource provider %s (%s) is gone; removing '
                     'the provider.', name, uuid)
            provider_tree.remove(uuid)


# ---- which devices the host has -------------------------------------------


def configured_device_specs() -> list[dict[str, ty.Any]]:
    """The ``[nova_acc] device_spec`` entries, one dict per option line.

    Only the JSON is checked here; the entries themselves are validated by
    os_acc when devices are discovered (``InvalidDeviceSpec``).

    :raises InvalidDeviceSpecConfig: naming the line that is not a JSON
        object.
    """
    specs = []
    for line in CONF.nova_acc.device_spec:
        try:
            spec = jsonutils.loads(line)
        except ValueError as e:
            raise exception.InvalidDeviceSpecConfig(
                '[nova_acc] device_spec %r is not valid JSON: %s' % (line, e))
        if not isinstance(spec, dict):
            raise exception.InvalidDeviceSpecConfig(
                '[nova_acc] device_spec %r must be a JSON object' % line)
        specs.append(spec)
    return specs


def _nodedev_xmls(host: libvirt_host.Host) -> ty.Iterator[str]:
    """The XML of each PCI node device libvirt knows of, listed lazily."""
    # Nova's Host imports libvirt lazily; the module is set by now.
    libvirt = libvirt_host.libvirt
    for dev in host.list_all_devices(
            libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV):
        try:
            yield dev.XMLDesc(0)
        except libvirt.libvirtError as e:
            # A VF can go away between the listing and its description.
            LOG.warning('Ignoring a node device libvirt cannot describe: %s',
                        e)


def discover(host: libvirt_host.Host,
             device_specs: ty.Iterable[ty.Mapping[str, ty.Any]],
             ) -> list[os_acc.Device]:
    """Devices of this host selected by ``device_specs``.

    libvirt is not asked when there are no specs.

    :param host: the libvirt driver's ``nova.virt.libvirt.host.Host``.
    :param device_specs: as :func:`configured_device_specs` returns them.
    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
    """
    return os_acc.discover_from_nodedevs(_nodedev_xmls(host), device_specs)
