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
"""Read PCI functions from libvirt node-device XML.

The other source of :class:`~os_acc.objects.Device` next to
:mod:`os_acc.internal.sysfs`. nova-compute asks libvirt's node-device API
rather than reading sysfs itself, as Nova does for its ``[pci]
device_spec``: libvirt reads sysfs on a real host, and Nova's fake libvirt
stands in for a host in functional tests. This module only sees the XML
(``virNodeDevice.XMLDesc()``), so it needs neither libvirt nor Nova.

The XML comes from libvirt, not from users, but libvirt versions differ in
what they print. What names and matches a device (its address and IDs) must
be there and well-formed, or the device is refused with
``InvalidNodeDevice``; the rest (NUMA node, IOMMU group, SR-IOV and mdev
capabilities) becomes None or is left out when missing or malformed, as in
sysfs, and is logged at debug level.
"""

from __future__ import annotations

import functools
import json
import re
import typing as ty
from xml.etree import ElementTree

from oslo_log import log as logging

from os_acc import exception
from os_acc.internal import device_spec
from os_acc.internal import pci
from os_acc import objects

LOG = logging.getLogger(__name__)

_ID_RE = re.compile(r'0[xX]([0-9a-fA-F]{4})')
_CLASS_RE = re.compile(r'0[xX]([0-9a-fA-F]{6})')
_INT_RE = re.compile(r'-?[0-9]+')
_PCI_FIELDS = ('domain', 'bus', 'slot', 'function')


def _invalid(msg: str, *args: object) -> exception.InvalidNodeDevice:
    return exception.InvalidNodeDevice(msg % args)


def _parse(xml: str, cap_type: str
           ) -> tuple[ElementTree.Element, ElementTree.Element | None]:
    """The root of a node device's XML and its capability of ``cap_type``
    (None if it has none)."""
    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, ValueError) as e:
        raise _invalid('Unparsable node device XML: %s', e) from e
    return root, root.find("./capability[@type='%s']" % cap_type)


def _int(text: str | None, what: str, minimum: int) -> int | None:
    """A decimal int, or None (logged) when missing or malformed."""
    if text is None:
        return None
    text = text.strip()
    if _INT_RE.fullmatch(text) is None or int(text) < minimum:
        LOG.debug('Ignoring node device %s %r', what, text)
        return None
    return int(text)


def _address(cap: ElementTree.Element) -> str:
    # <domain>0</domain><bus>59</bus>...: decimal, unlike everywhere else.
    values = []
    for name in _PCI_FIELDS:
        text = (cap.findtext(name) or '').strip()
        if not text.isascii() or not text.isdigit():
            raise _invalid('PCI node device has no valid <%s>: %r',
                           name, text)
        values.append(int(text))
    try:
        return str(pci.PciAddress(*values))
    except exception.InvalidDeviceAddress as e:
        raise _invalid('PCI node device has an invalid address: %s',
                       e) from e


def _id(cap: ElementTree.Element, tag: str) -> str:
    element = cap.find(tag)
    value = element.get('id') if element is not None else None
    m = _ID_RE.fullmatch(value.strip()) if value is not None else None
    if m is None:
        raise _invalid('PCI node device has no valid <%s id="0xNNNN">: %r',
                       tag, value)
    return m.group(1).lower()


def _class_code(cap: ElementTree.Element) -> str | None:
    text = cap.findtext('class')
    if text is None:
        return None
    m = _CLASS_RE.fullmatch(text.strip())
    if m is None:
        LOG.debug('Ignoring node device class %r', text)
        return None
    return m.group(1).lower()


def _physfn(sub: ElementTree.Element) -> str | None:
    addr = sub.find('address')
    if addr is None:
        return None
    try:
        return str(pci.PciAddress.from_libvirt_attrs(addr.attrib))
    except exception.InvalidDeviceAddress as e:
        LOG.debug('Ignoring node device phys_function: %s', e)
        return None


def _mdev_types(sub: ElementTree.Element) -> dict[str, int]:
    types = {}
    for element in sub.findall('type'):
        name = element.get('id')
        if not name or not name.isprintable():
            LOG.debug('Ignoring mdev type %r', name)
            continue
        # As Nova reads libvirt: a type without availableInstances has
        # none to offer.
        types[name] = _int(element.findtext('availableInstances'),
                           'availableInstances of %s' % name, 0) or 0
    return types


def device_from_nodedev_xml(xml: str) -> objects.Device | None:
    """Parse the XML of one libvirt node device.

    :returns: the PCI function, or None if the node device is not a PCI
        device (no ``<capability type='pci'>``).
    :raises os_acc.exception.InvalidNodeDevice: if the XML does not parse,
        or the PCI capability has no well-formed address or vendor and
        product IDs.
    """
    root, cap = _parse(xml, 'pci')
    if cap is None:
        return None
    address = _address(cap)
    vendor_id = _id(cap, 'vendor')
    product_id = _id(cap, 'product')

    physfn = None
    totalvfs = None
    numvfs = None
    mdev_types: dict[str, int] = {}
    for sub in cap.findall('capability'):
        kind = sub.get('type')
        if kind == 'phys_function':
            physfn = _physfn(sub)
        elif kind == 'virt_functions':
            numvfs = len(sub.findall('address'))
            # libvirt omits maxCount on a PF whose VFs are not enabled.
            totalvfs = _int(sub.get('maxCount'), 'maxCount', 0) or numvfs
        elif kind == 'mdev_types':
            mdev_types.update(_mdev_types(sub))
    numa = cap.find('numa')
    # libvirt, like the kernel, says -1 for "no NUMA affinity".
    numa_node = (_int(numa.get('node'), 'NUMA node', -1)
                 if numa is not None else None)
    iommu = cap.find('iommuGroup')
    driver = (root.findtext('./driver/name') or '').strip() or None
    return objects.Device(
        address=address,
        vendor_id=vendor_id,
        product_id=product_id,
        class_code=_class_code(cap),
        numa_node=None if numa_node == -1 else numa_node,
        iommu_group=(_int(iommu.get('number'), 'IOMMU group', 0)
                     if iommu is not None else None),
        driver=driver,
        physfn=physfn,
        sriov_totalvfs=totalvfs,
        sriov_numvfs=numvfs,
        mdev_types=mdev_types)


_MDEV_NAME_RE = re.compile(
    r'mdev_([0-9a-fA-F]{8}(?:_[0-9a-fA-F]{4}){3}_[0-9a-fA-F]{12})(?:_.*)?')


def mdev_from_nodedev_xml(xml: str) -> objects.MediatedDevice | None:
    """Parse the XML of one libvirt node device that is a mediated device.

    libvirt 7.3 and later give the UUID in ``<capability type='mdev'>
    <uuid>``; older ones only in the name (``mdev_<uuid with _>``, with the
    parent's address appended since libvirt 7.7).

    :returns: the mdev, or None if the node device is not one.
    :raises os_acc.exception.InvalidNodeDevice: for XML that does not
        parse, or an mdev without a well-formed UUID.
    """
    root, cap = _parse(xml, 'mdev')
    if cap is None:
        return None
    text = cap.findtext('uuid')
    if text is None:
        m = _MDEV_NAME_RE.fullmatch((root.findtext('name') or '').strip())
        text = m.group(1).replace('_', '-') if m else None
    uuid = pci.normalize_uuid((text or '').strip())
    if uuid is None:
        raise _invalid('mdev node device has no valid UUID: %r', text)
    type_element = cap.find('type')
    mdev_type = (type_element.get('id') if type_element is not None
                 else None) or None
    parent = None
    parent_name = (root.findtext('parent') or '').strip()
    if parent_name:
        try:
            parent = str(pci.PciAddress.from_nodedev_name(parent_name))
        except exception.InvalidDeviceAddress:
            LOG.debug('mdev %s has a parent that is not a PCI function: '
                      '%r', uuid, parent_name)
    return objects.MediatedDevice(uuid=uuid, parent=parent,
                                  mdev_type=mdev_type)


def read_mdevs(nodedev_xmls: ty.Iterable[str]
               ) -> dict[str, objects.MediatedDevice]:
    """Parse mdev node devices: UUID -> MediatedDevice.

    One that cannot be parsed is logged as a warning and left out.
    """
    mdevs = {}
    for xml in nodedev_xmls:
        try:
            mdev = mdev_from_nodedev_xml(xml)
        except exception.InvalidNodeDevice as e:
            LOG.warning('Ignoring an mdev libvirt described as: %s', e)
            continue
        if mdev is not None:
            mdevs[mdev.uuid] = mdev
    return mdevs


def read_devices(nodedev_xmls: ty.Iterable[str]) -> list[objects.Device]:
    """Parse node devices, leaving out those that are not PCI functions.

    A node device that :func:`device_from_nodedev_xml` refuses is logged
    as a warning and left out: one odd device must not hide the others.
    """
    devices = []
    for xml in nodedev_xmls:
        try:
            device = device_from_nodedev_xml(xml)
        except exception.InvalidNodeDevice as e:
            LOG.warning('Ignoring a node device libvirt described as: %s', e)
            continue
        if device is not None:
            devices.append(device)
    return devices


#: Node devices whose selection ``_selected`` keeps: more than the PCI
#: functions of any host (a PF with 2048 VFs and a few hundred other
#: functions fits several times), and bounded, so that what was cached for
#: devices long gone (or for a device_spec no longer used) is dropped.
SELECTED_CACHE_SIZE = 16384


@functools.lru_cache(maxsize=16)
def _specs_of(specs_key: str) -> tuple[device_spec.DeviceSpec, ...]:
    """The parsed ``device_specs`` that ``specs_key`` (their JSON) names."""
    return tuple(device_spec.parse_device_specs(json.loads(specs_key)))


@functools.lru_cache(maxsize=SELECTED_CACHE_SIZE)
def _selected(xml: str, specs_key: str
              ) -> tuple[objects.Device, ...] | exception.InvalidNodeDevice:
    """What ``device_specs`` select of one node device, worked out once.

    A host's discovery lists the same node devices on every resource
    update, and parsing and matching them was most of its cost. The XML
    text and the specs are the whole input: a device that appears,
    vanishes or changes (its NUMA node, its VFs, the mdevs it can still
    create) is a new key, and one that is gone is no longer asked for.

    :returns: as ``match_devices`` for this device alone, or what
        ``device_from_nodedev_xml`` raised. The Devices are shared by
        every discovery that finds the same XML: read them, never change
        them.
    """
    try:
        device = device_from_nodedev_xml(xml)
    except exception.InvalidNodeDevice as e:
        return e
    if device is None:
        return ()
    return tuple(device_spec.match_devices([device], _specs_of(specs_key)))


class _LastListings:
    """The last selections of whole listings, for a listing seen again.

    An unchanged host lists the same node devices in the same order on
    every resource update; looking each of its 2057 XML texts up in
    ``_selected`` and sorting the result again was most of what selecting
    them cost. A listing equal to one kept here (every XML text compared,
    in order, with the same specs) selects what it selected then; any
    other is selected device by device. One entry per (specs, number of
    devices), so that the hosts of one process (the functional tests run
    several) do not push each other out; a few entries at most.
    """

    SIZE = 8

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], tuple[
            list[str], list[objects.Device],
            list[exception.InvalidNodeDevice]]] = {}

    def get(self, specs_key: str, xmls: list[str]
            ) -> tuple[list[objects.Device],
                       list[exception.InvalidNodeDevice]] | None:
        entry = self._entries.get((specs_key, len(xmls)))
        if entry is None or entry[0] != xmls:
            return None
        return entry[1], entry[2]

    def put(self, specs_key: str, xmls: list[str],
            selected: list[objects.Device],
            unusable: list[exception.InvalidNodeDevice]) -> None:
        key = (specs_key, len(xmls))
        self._entries.pop(key, None)
        while len(self._entries) >= self.SIZE:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (xmls, selected, unusable)

    def cache_clear(self) -> None:
        self._entries.clear()


_last_listings = _LastListings()


def _select_cached(nodedev_xmls: ty.Iterable[str], specs_key: str
                   ) -> list[objects.Device]:
    xmls = list(nodedev_xmls)
    known = _last_listings.get(specs_key, xmls)
    if known is None:
        selected: list[objects.Device] = []
        unusable: list[exception.InvalidNodeDevice] = []
        for xml in xmls:
            found = _selected(xml, specs_key)
            if isinstance(found, exception.InvalidNodeDevice):
                unusable.append(found)
                continue
            selected.extend(found)
        # As match_devices orders them.
        selected.sort(key=lambda d: (d.address, d.mdev_type or ''))
        _last_listings.put(specs_key, xmls, selected, unusable)
    else:
        selected, unusable = known
    for error in unusable:
        LOG.warning('Ignoring a node device libvirt described as: %s',
                    error)
    # The caller's own list (the Devices in it are shared, as documented).
    return list(selected)


def discover(nodedev_xmls: ty.Iterable[str],
             device_specs: ty.Iterable[ty.Mapping[str, ty.Any]],
             ) -> list[objects.Device]:
    """Validate ``device_specs``, then select among the node devices.

    ``nodedev_xmls`` is not iterated when there are no specs, so a caller
    may pass a generator that asks libvirt only when needed.

    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
    """
    # Validate before reading: a configuration error must not depend on
    # what the host has.
    specs = device_spec.parse_device_specs(device_specs)
    if not specs:
        return []
    specs_key = _specs_key(device_specs)
    if specs_key is None:
        return device_spec.match_devices(read_devices(nodedev_xmls), specs)
    return _select_cached(nodedev_xmls, specs_key)


def _specs_key(device_specs: ty.Iterable[ty.Mapping[str, ty.Any]]
               ) -> str | None:
    """``device_specs`` as JSON, if JSON gives them back exactly.

    What ``nova_acc.conf.device_specs`` returns always does (it parses
    JSON); None for anything else, which is then not cached.
    """
    if not isinstance(device_specs, (list, tuple)):
        return None
    try:
        key = json.dumps(list(device_specs), sort_keys=True)
    except (TypeError, ValueError):
        return None
    return key if json.loads(key) == list(device_specs) else None
