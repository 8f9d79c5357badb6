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
"""Attach an existing mediated device (vGPU, FPGA slice, ...)."""

from __future__ import annotations

from nova.virt.libvirt import config as vconfig

from os_acc import exception
from os_acc.internal import hostdev
from os_acc.internal import pci
from os_acc import objects


class MdevPlugin(hostdev.HostdevPlugin):
    """Attach an mdev as ``<hostdev type='mdev' model='vfio-pci'>``.

    The mdev must exist already: creating it belongs to whoever allocated it
    (Cyborg or nova_acc), as it does in Nova for Cyborg-managed mdevs.
    """

    interface_type = 'mdev'

    def describe(self) -> objects.PluginInfo:
        return objects.PluginInfo(
            plugin_name=self.interface_type,
            description='Mediated device passthrough '
                        '(libvirt <hostdev type="mdev">)')

    def get_config(
            self, acc: objects.Accelerator
    ) -> vconfig.LibvirtConfigGuestHostdevMDEV:
        self.check_interface_type(acc)
        uuid = pci.normalize_uuid(acc.mdev_uuid)
        if uuid is None:
            raise exception.InvalidAccelerator(
                'Invalid mdev UUID %r: expected the canonical '
                '8-4-4-4-12 hexadecimal form' % (acc.mdev_uuid,))
        # As Nova's LibvirtDriver._guest_add_mdevs: the class defaults
        # (managed='no', model='vfio-pci') are what Nova writes.
        dev = vconfig.LibvirtConfigGuestHostdevMDEV()
        dev.uuid = uuid
        return dev
