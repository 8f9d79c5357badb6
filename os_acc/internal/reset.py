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
"""Function-level reset of a PCI device through sysfs."""

from __future__ import annotations

import os

from oslo_log import log as logging

from os_acc import exception
from os_acc.internal import pci
from os_acc.internal import sysfs

LOG = logging.getLogger(__name__)


def _is_within(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def reset_device(address: str, sysfs_root: str = '/sys') -> bool:
    """Reset a PCI function by writing ``1`` to its sysfs ``reset`` file.

    Used when an accelerator is released, so that the next tenant does not
    see what the previous one left in the device.

    Symlinks are resolved and must stay inside ``sysfs_root``: anything
    that leads elsewhere is treated as absent.

    :returns: True if the reset was requested, False if the device offers
        no reset method.
    :raises os_acc.exception.InvalidDeviceAddress: if ``address`` is not a
        ``DDDD:BB:SS.F`` PCI address.
    :raises os_acc.exception.DeviceNotFound: if the device is not in sysfs.
    :raises OSError: if the kernel fails the reset.
    """
    normalized = str(pci.PciAddress.parse(address))
    root = os.path.realpath(sysfs_root)
    # /sys/bus/pci/devices/<address> is a symlink into /sys/devices.
    device_dir = os.path.realpath(
        os.path.join(sysfs.pci_devices_dir(sysfs_root), normalized))
    if not _is_within(device_dir, root) or not os.path.isdir(device_dir):
        raise exception.DeviceNotFound(
            'PCI device %s not found under %s' % (normalized, sysfs_root))
    reset_path = os.path.realpath(os.path.join(device_dir, 'reset'))
    if not _is_within(reset_path, root) or not os.path.isfile(reset_path):
        # The kernel only creates "reset" when it knows a method (FLR, bus
        # reset, ...) for the function.
        LOG.info('PCI device %s offers no reset method; not resetting it',
                 normalized)
        return False
    # No O_CREAT: never create a file in sysfs_root; O_NOFOLLOW because the
    # path is resolved already and must not become a link in between.
    # sysfs ignores the file offset; O_APPEND makes every reset one more
    # byte on a plain file, so a test tree counts resets exactly.
    fd = os.open(reset_path, os.O_WRONLY | os.O_NOFOLLOW | os.O_APPEND)
    try:
        os.write(fd, b'1')
    finally:
        os.close(fd)
    LOG.debug('Reset PCI device %s', normalized)
    return True
