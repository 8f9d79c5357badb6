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
"""The host's PCI functions as libvirt sees them, as os_acc Devices.

nova-compute asks libvirt's node-device API rather than reading sysfs
itself, the way Nova discovers ``[pci] device_spec`` devices: libvirt reads
sysfs on a real host, and Nova's fake-libvirt fixtures can stand in for a
host in functional tests. ``os_acc.select_devices`` then applies
``[nova_acc] device_spec`` exactly as ``os_acc.discover`` does for sysfs.
"""

from __future__ import annotations

from xml.etree import ElementTree

from nova.virt.libvirt import host as libvirt_host
import os_acc
from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_acc import conf

CONF = conf.CONF
LOG = logging.getLogger(__name__)


class InvalidDeviceSpecConfig(ValueError):
    pass


def configured_device_specs() -> list[dict]:
    specs = []
    for line in CONF.nova_acc.device_spec:
        try:
            spec = jsonutils.loads(line)
        except ValueError as e:
            raise InvalidDeviceSpecConfig(
                '[nova_acc] device_spec %r is not valid JSON: %s' % (line, e))
        if not isinstance(spec, dict):
            raise InvalidDeviceSpecConfig(
                '[nova_acc] device_spec %r must be a JSON object' % line)
        specs.append(spec)
    return specs


def _int_or_none(text):
    try:
        return int(text, 0)
    except (TypeError, ValueError):
        return None


def device_from_nodedev_xml(xml: str) -> os_acc.Device | None:
    """Parse one node device's XML; None for a non-PCI device."""
    root = ElementTree.fromstring(xml)
    cap = root.find("./capability[@type='pci']")
    if cap is None:
        return None
    domain, bus, slot, function = (
        _int_or_none(cap.findtext(k)) for k in
        ('domain', 'bus', 'slot', 'function'))
    if None in (domain, bus, slot, function):
        return None
    vendor = cap.find('vendor')
    product = cap.find('product')
    if vendor is None or product is None:
        return None
    numa = cap.find('numa')
    iommu = cap.find('iommuGroup')
    physfn = None
    totalvfs = None
    numvfs = None
    mdev_types = {}
    for sub in cap.findall('capability'):
        kind = sub.get('type')
        if kind == 'phys_function':
            addr = sub.find('address')
            if addr is not None:
                physfn = '%04x:%02x:%02x.%x' % tuple(
                    int(addr.get(k), 16) for k in
                    ('domain', 'bus', 'slot', 'function'))
        elif kind == 'virt_functions':
            numvfs = len(sub.findall('address'))
            totalvfs = _int_or_none(sub.get('maxCount')) or numvfs
        elif kind == 'mdev_types':
            for t in sub.findall('type'):
                mdev_types[t.get('id')] = _int_or_none(
                    t.findtext('availableInstances')) or 0
    numa_node = _int_or_none(numa.get('node')) if numa is not None else None
    return os_acc.Device(
        address='%04x:%02x:%02x.%x' % (domain, bus, slot, function),
        vendor_id='%04x' % int(vendor.get('id'), 16),
        product_id='%04x' % int(product.get('id'), 16),
        numa_node=None if numa_node == -1 else numa_node,
        iommu_group=(_int_or_none(iommu.get('number'))
                     if iommu is not None else None),
        driver=root.findtext('./driver/name'),
        physfn=physfn,
        sriov_totalvfs=totalvfs,
        sriov_numvfs=numvfs,
        mdev_types=mdev_types)


def discover(host, device_specs: list[dict]) -> list[os_acc.Device]:
    """Devices of this host selected by ``device_specs``.

    :param host: ``nova.virt.libvirt.host.Host``
    """
    if not device_specs:
        return []
    candidates = []
    # Nova's Host imports libvirt lazily; the module is set by now.
    flags = libvirt_host.libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV
    for dev in host.list_all_devices(flags):
        try:
            parsed = device_from_nodedev_xml(dev.XMLDesc(0))
        except (ElementTree.ParseError, ValueError) as e:
            LOG.warning('Ignoring a node device libvirt described with '
                        'unparsable XML: %s', e)
            continue
        if parsed is not None:
            candidates.append(parsed)
    return os_acc.select_devices(candidates, device_specs)
