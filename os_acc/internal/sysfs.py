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
"""Read PCI functions from sysfs.

Everything here reads kernel-provided files that may be missing (no SR-IOV,
no IOMMU, unbound device), racy (a device unplugged mid-scan) or, in odd
drivers, garbage. None of that may stop the scan: an unreadable value
becomes None and is logged at debug level.
"""

from __future__ import annotations

import os
import re

from oslo_log import log as logging

from os_acc.internal import pci
from os_acc import objects

LOG = logging.getLogger(__name__)

# sysfs attributes are at most a page; anything longer is not an attribute.
_MAX_READ = 4096

_VENDOR_RE = re.compile(r'0x([0-9a-fA-F]{4})')
_CLASS_RE = re.compile(r'0x([0-9a-fA-F]{6})')
_INT_RE = re.compile(r'(-?[0-9]+)')


def pci_devices_dir(sysfs_root: str) -> str:
    return os.path.join(sysfs_root, 'bus', 'pci', 'devices')


def _read_text(path: str) -> str | None:
    try:
        with open(path, 'rb') as f:
            data = f.read(_MAX_READ)
    except FileNotFoundError:
        return None
    except OSError as e:
        # EIO, ENODEV, EISDIR...: some attributes refuse reads on some
        # devices, and a device may vanish while we scan.
        LOG.debug('Cannot read %s: %s', path, e)
        return None
    try:
        return data.decode('ascii').strip()
    except UnicodeDecodeError:
        LOG.debug('Ignoring non-ASCII content of %s', path)
        return None


def _read_match(path: str, regex: re.Pattern[str]) -> str | None:
    text = _read_text(path)
    if text is None:
        return None
    m = regex.fullmatch(text)
    if m is None:
        LOG.debug('Ignoring unexpected content %r of %s', text, path)
        return None
    return m.group(1)


def _read_int(path: str, minimum: int) -> int | None:
    value = _read_match(path, _INT_RE)
    if value is None:
        return None
    number = int(value)
    if number < minimum:
        LOG.debug('Ignoring out of range value %d of %s', number, path)
        return None
    return number


def _read_link_name(path: str) -> str | None:
    """Return the last component of a symlink's target."""
    try:
        target = os.readlink(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        # EINVAL: a plain file where the kernel puts a symlink.
        LOG.debug('Cannot read link %s: %s', path, e)
        return None
    name = os.path.basename(target.rstrip('/'))
    # readlink() smuggles undecodable bytes in as surrogates, which are not
    # printable: such a name is of no use to anyone.
    if not name or not name.isprintable():
        LOG.debug('Ignoring unexpected target %r of %s', target, path)
        return None
    return name


def _read_iommu_group(path: str) -> int | None:
    name = _read_link_name(path)
    if name is None:
        return None
    if not name.isascii() or not name.isdigit():
        LOG.debug('Ignoring IOMMU group %r of %s', name, path)
        return None
    return int(name)


def _read_physfn(path: str) -> str | None:
    name = _read_link_name(path)
    if name is None:
        return None
    address = pci.normalize_address(name)
    if address is None:
        LOG.debug('Ignoring physfn %r of %s', name, path)
    return address


def _read_mdev_types(path: str) -> dict[str, int]:
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return {}
    except OSError as e:
        LOG.debug('Cannot list %s: %s', path, e)
        return {}
    types = {}
    for name in sorted(names):
        if not name.isprintable():
            LOG.debug('Ignoring mdev type %r in %s', name, path)
            continue
        available = _read_int(
            os.path.join(path, name, 'available_instances'), minimum=0)
        # A type whose capacity is unknown cannot be offered: leave it out
        # rather than guess.
        if available is not None:
            types[name] = available
    return types


def read_device(sysfs_root: str, address: str) -> objects.Device | None:
    """Read one PCI function.

    :returns: the device, or None if it is gone or its vendor or product ID
        cannot be read (such a device could not be matched or named).
    """
    path = os.path.join(pci_devices_dir(sysfs_root), address)
    vendor_id = _read_match(os.path.join(path, 'vendor'), _VENDOR_RE)
    product_id = _read_match(os.path.join(path, 'device'), _VENDOR_RE)
    if vendor_id is None or product_id is None:
        LOG.debug('Skipping PCI device %s: no readable vendor/device ID',
                  address)
        return None
    class_code = _read_match(os.path.join(path, 'class'), _CLASS_RE)
    # The kernel writes -1 when the device has no NUMA affinity.
    numa_node = _read_int(os.path.join(path, 'numa_node'), minimum=-1)
    return objects.Device(
        address=address,
        vendor_id=vendor_id.lower(),
        product_id=product_id.lower(),
        class_code=class_code.lower() if class_code else None,
        numa_node=None if numa_node == -1 else numa_node,
        iommu_group=_read_iommu_group(os.path.join(path, 'iommu_group')),
        driver=_read_link_name(os.path.join(path, 'driver')),
        physfn=_read_physfn(os.path.join(path, 'physfn')),
        sriov_totalvfs=_read_int(
            os.path.join(path, 'sriov_totalvfs'), minimum=0),
        sriov_numvfs=_read_int(os.path.join(path, 'sriov_numvfs'), minimum=0),
        mdev_types=_read_mdev_types(
            os.path.join(path, 'mdev_supported_types')),
    )


def read_devices(sysfs_root: str = '/sys') -> list[objects.Device]:
    """Read every PCI function under ``sysfs_root``, sorted by address."""
    devices_dir = pci_devices_dir(sysfs_root)
    try:
        names = os.listdir(devices_dir)
    except OSError as e:
        # A host (or container) without PCI has nothing to offer.
        LOG.debug('Cannot list %s: %s', devices_dir, e)
        return []
    devices = []
    for name in sorted(names):
        address = pci.normalize_address(name)
        # The kernel names entries in lowercase; anything else is not ours.
        if address != name:
            LOG.debug('Ignoring unexpected entry %r in %s', name, devices_dir)
            continue
        device = read_device(sysfs_root, address)
        if device is not None:
            devices.append(device)
    return devices
