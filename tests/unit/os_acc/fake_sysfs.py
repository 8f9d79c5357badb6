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
"""A fake sysfs tree with the layout of the real one."""

from __future__ import annotations

import os


class FakeSysfs:
    """Build ``<root>/bus/pci/devices/<address>`` the way the kernel does.

    Device directories live under ``<root>/devices/pci<domain>:<bus>/`` and
    ``bus/pci/devices`` holds relative symlinks to them, so code that works
    here resolves links as it must on a real host. Attribute values are
    written verbatim: a test can put any garbage in any file.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.devices_dir = os.path.join(root, 'bus', 'pci', 'devices')
        os.makedirs(self.devices_dir, exist_ok=True)

    def device_dir(self, address: str) -> str:
        return os.path.join(
            self.root, 'devices', 'pci%s' % address[:7], address)

    def write(self, address: str, name: str, content: str | bytes) -> None:
        path = os.path.join(self.device_dir(address), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        with open(path, 'wb') as f:
            f.write(content)

    def link(self, address: str, name: str, target: str) -> None:
        os.symlink(target, os.path.join(self.device_dir(address), name))

    def add_device(
            self, address: str, *,
            vendor: str | bytes | None = '0x8086',
            device: str | bytes | None = '0x1572',
            pci_class: str | bytes | None = '0x020000',
            numa_node: str | bytes | None = '0',
            iommu_group: int | None = None,
            driver: str | None = None,
            sriov_totalvfs: str | bytes | None = None,
            sriov_numvfs: str | bytes | None = None,
            mdev_types: dict[str, str] | None = None,
            reset: bool = False,
    ) -> str:
        """Add a PCI function; None leaves the attribute out."""
        path = self.device_dir(address)
        os.makedirs(path)
        os.symlink(os.path.relpath(path, self.devices_dir),
                   os.path.join(self.devices_dir, address))
        for name, value in (('vendor', vendor), ('device', device),
                            ('class', pci_class), ('numa_node', numa_node),
                            ('sriov_totalvfs', sriov_totalvfs),
                            ('sriov_numvfs', sriov_numvfs)):
            # The kernel ends every attribute with a newline; bytes are for
            # tests that want exact, possibly broken, content.
            if isinstance(value, str):
                self.write(address, name, value + '\n')
            elif value is not None:
                self.write(address, name, value)
        if reset:
            self.write(address, 'reset', '')
        if iommu_group is not None:
            group_dir = os.path.join(
                self.root, 'kernel', 'iommu_groups', str(iommu_group))
            os.makedirs(group_dir, exist_ok=True)
            self.link(address, 'iommu_group', os.path.relpath(group_dir, path))
        if driver is not None:
            driver_dir = os.path.join(self.root, 'bus', 'pci', 'drivers',
                                      driver)
            os.makedirs(driver_dir, exist_ok=True)
            self.link(address, 'driver', os.path.relpath(driver_dir, path))
        for mdev_type, available in (mdev_types or {}).items():
            self.write(address, os.path.join('mdev_supported_types',
                                             mdev_type, 'available_instances'),
                       available + '\n')
        return path

    def add_vf(self, pf_address: str, vf_address: str, index: int,
               **kwargs) -> str:
        """Add a VF of ``pf_address``, linked both ways as by the kernel."""
        path = self.add_device(vf_address, **kwargs)
        self.link(vf_address, 'physfn',
                  os.path.relpath(self.device_dir(pf_address), path))
        self.link(pf_address, 'virtfn%d' % index,
                  os.path.relpath(path, self.device_dir(pf_address)))
        return path
