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
"""VFIO passthrough of a whole PCI function."""

from __future__ import annotations

from nova.virt.libvirt import config as vconfig

from os_acc import exception
from os_acc.internal import hostdev
from os_acc.internal import pci
from os_acc import objects


class PciPlugin(hostdev.HostdevPlugin):
    """Attach a PCI function as ``<hostdev type='pci' managed='yes'>``."""

    interface_type = 'pci'

    def describe(self) -> objects.PluginInfo:
        return objects.PluginInfo(
            plugin_name=self.interface_type,
            description='VFIO passthrough of a PCI function '
                        '(libvirt <hostdev type="pci">)')

    def get_config(
            self, acc: objects.Accelerator
    ) -> vconfig.LibvirtConfigGuestHostdevPCI:
        self.check_interface_type(acc)
        try:
            address = pci.PciAddress.parse(acc.address)
        except exception.InvalidDeviceAddress as e:
            raise exception.InvalidAccelerator(str(e)) from e
        # Built as Nova's LibvirtDriver._get_guest_pci_device does, so that
        # Nova and os_acc describe the same device with the same XML.
        dev = vconfig.LibvirtConfigGuestHostdevPCI()
        dev.domain, dev.bus, dev.slot, dev.function = address.hex_fields()
        # managed='yes': libvirt binds the function to vfio-pci on attach and
        # gives it back to its host driver on detach.
        dev.managed = 'yes'
        return dev
