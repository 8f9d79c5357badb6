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
"""Function-level reset of a PCI device through sysfs.

This runs as root (in nova-acc's privsep daemon), so nothing between the
sysfs root and the ``reset`` attribute is looked up by name twice: the
root is opened once; ``bus/pci/devices/<address>`` (on a real host a
relative symlink into ``devices/``) is read and resolved component by
component from the root's descriptor, each component opened as a
directory without following links and never above the root; the device's
identity and its ``reset`` attribute are then read and opened relative to
the device directory's descriptor, without following links. What the
checks saw is what the reset is written to.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import typing as ty

from oslo_log import log as logging

from os_acc import exception
from os_acc.internal import device_spec as _device_spec
from os_acc.internal import pci
from os_acc import objects

LOG = logging.getLogger(__name__)

#: Where the PCI functions are listed, relative to the sysfs root.
DEVICES_DIR = ('bus', 'pci', 'devices')
# A directory reached through no link: O_PATH is enough to open names in it.
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# sysfs attributes are at most a page.
_MAX_READ = 4096
_ID_RE = re.compile(r'0x([0-9a-fA-F]{4})')


def _open_path(root_fd: int, components: ty.Sequence[str]) -> int:
    """Open ``root/<components>`` as a directory reached through no link.

    :raises OSError: a component is missing, not a directory or a link.
    """
    fd = os.dup(root_fd)
    try:
        for name in components:
            next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _device_components(root_fd: int, address: str) -> list[str] | None:
    """The device directory of ``address``, as components below the root.

    ``bus/pci/devices/<address>`` is a relative link (or, in test trees,
    the directory itself). None when it leads above the root or is
    absolute: such an entry is not a device of this sysfs.

    :raises OSError: the entry cannot be read (FileNotFoundError: absent).
    """
    devices_fd = _open_path(root_fd, DEVICES_DIR)
    try:
        target = os.readlink(address, dir_fd=devices_fd)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        os.stat(address, dir_fd=devices_fd, follow_symlinks=False)
        return list(DEVICES_DIR) + [address]
    finally:
        os.close(devices_fd)
    if target.startswith('/'):
        return None
    components = list(DEVICES_DIR)
    for name in target.split('/'):
        if name in ('', '.'):
            continue
        if name == '..':
            if not components:
                return None
            components.pop()
        else:
            components.append(name)
    return components


def _open_device_dir(root_fd: int, address: str, sysfs_root: str) -> int:
    """The device directory of ``address``, opened below the root.

    :raises os_acc.exception.DeviceNotFound: there is none, or its entry
        leads outside the root, through a link other than its own, or to
        a directory named after another device.
    """
    try:
        components = _device_components(root_fd, address)
    except FileNotFoundError:
        raise exception.DeviceNotFound(
            'PCI device %s not found under %s' % (address, sysfs_root))
    except OSError as e:
        raise exception.DeviceNotFound(
            'PCI device %s not found under %s: %s' % (
                address, sysfs_root, e.strerror or e))
    if components is None or components[-1] != address:
        raise exception.DeviceNotFound(
            'PCI device %s not found under %s: its entry in bus/pci/devices '
            'does not lead to a device directory of that name inside it'
            % (address, sysfs_root))
    try:
        return _open_path(root_fd, components)
    except OSError as e:
        raise exception.DeviceNotFound(
            'PCI device %s not found under %s: %s/%s is not a directory '
            'reached without following links (%s)' % (
                address, sysfs_root, sysfs_root, '/'.join(components),
                e.strerror or e))


def _read_attribute(dir_fd: int, name: str) -> str | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                     os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, _MAX_READ).decode('ascii', 'replace').strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def _identity(dir_fd: int, address: str) -> objects.Device | None:
    """The device as a ``device_spec`` matches it: IDs and PF, from sysfs.

    None when its vendor or product ID cannot be read.
    """
    ids = []
    for name in ('vendor', 'device'):
        m = _ID_RE.fullmatch(_read_attribute(dir_fd, name) or '')
        if m is None:
            return None
        ids.append(m.group(1).lower())
    try:
        physfn = pci.normalize_address(os.path.basename(
            os.readlink('physfn', dir_fd=dir_fd).rstrip('/')))
    except OSError:
        physfn = None
    return objects.Device(address=address, vendor_id=ids[0],
                          product_id=ids[1], physfn=physfn)


def _check_managed(dir_fd: int, address: str,
                   specs: list[_device_spec.DeviceSpec]) -> None:
    device = _identity(dir_fd, address)
    if device is None:
        raise exception.DeviceNotManaged(
            'PCI device %s: its vendor and device IDs cannot be read from '
            'sysfs, so no device_spec entry can select it; not resetting it'
            % address)
    whole = [d for d in _device_spec.match_devices([device], specs)
             if d.mdev_type is None]
    if not whole:
        raise exception.DeviceNotManaged(
            'PCI device %s (%s:%s) is not selected by a whole-device '
            'device_spec entry; only the devices nova-acc manages are reset'
            % (address, device.vendor_id, device.product_id))


def reset_device(address: str, sysfs_root: str = '/sys',
                 device_specs: ty.Iterable[ty.Mapping[str, ty.Any]] | None
                 = None) -> bool:
    """Reset a PCI function by writing ``1`` to its sysfs ``reset`` file.

    Used when an accelerator is released, so that the next tenant does not
    see what the previous one left in the device.

    No link is followed below ``sysfs_root`` except the device's own entry
    in ``bus/pci/devices``, which must lead to a directory of the same
    name inside the root; see the module documentation.

    :param device_specs: when given, only a device that one of these
        ``device_spec`` entries selects as a whole device (an entry
        without ``mdev_type``) is reset, matched on what sysfs says of it.
    :returns: True if the reset was requested, False if the device offers
        no reset method.
    :raises os_acc.exception.InvalidDeviceAddress: if ``address`` is not a
        ``DDDD:BB:SS.F`` PCI address.
    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
    :raises os_acc.exception.DeviceNotFound: if the device is not in sysfs.
    :raises os_acc.exception.DeviceNotManaged: no ``device_specs`` entry
        selects it.
    :raises os_acc.exception.ResetNotSupported: its ``reset`` is a link or
        a special file, not a sysfs attribute.
    :raises os_acc.exception.ResetFailed: the kernel failed the reset.
    :raises OSError: the reset could not be attempted (no privilege to
        open the attribute, sysfs cannot be opened).
    """
    normalized = str(pci.PciAddress.parse(address))
    specs = (None if device_specs is None
             else _device_spec.parse_device_specs(device_specs))
    # The root itself is configuration: it may be reached through links.
    root_fd = os.open(sysfs_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dev_fd = _open_device_dir(root_fd, normalized, sysfs_root)
    finally:
        os.close(root_fd)
    try:
        if specs is not None:
            _check_managed(dev_fd, normalized, specs)
        return _write_reset(dev_fd, normalized)
    finally:
        os.close(dev_fd)


def _write_reset(dev_fd: int, address: str) -> bool:
    try:
        before = os.stat('reset', dir_fd=dev_fd, follow_symlinks=False)
    except FileNotFoundError:
        # The kernel only creates "reset" when it knows a method (FLR, bus
        # reset, ...) for the function.
        LOG.info('PCI device %s offers no reset method; not resetting it',
                 address)
        return False
    if not stat.S_ISREG(before.st_mode):
        raise exception.ResetNotSupported(
            'PCI device %s: its reset attribute is a link or a special '
            'file, not a sysfs attribute; not resetting through it'
            % address)
    # No O_CREAT: never create a file in sysfs; O_NOFOLLOW and the same
    # inode as checked: the name must not become something else between.
    # sysfs ignores the file offset; O_APPEND makes every reset one more
    # byte on a plain file, so a test tree counts resets exactly.
    fd = os.open('reset', os.O_WRONLY | os.O_NOFOLLOW | os.O_APPEND |
                 os.O_CLOEXEC, dir_fd=dev_fd)
    try:
        after = os.fstat(fd)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            raise exception.ResetNotSupported(
                'PCI device %s: its reset attribute changed while it was '
                'opened; not resetting through it' % address)
        try:
            os.write(fd, b'1')
        except OSError as e:
            raise exception.ResetFailed(
                'the kernel failed the reset of PCI device %s: %s'
                % (address, e)) from e
    finally:
        os.close(fd)
    LOG.debug('Reset PCI device %s', address)
    return True
