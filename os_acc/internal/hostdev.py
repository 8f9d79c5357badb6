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
"""Shared attach/detach logic of the hostdev-based plugins."""

from __future__ import annotations

import typing as ty

from nova.compute import power_state
from oslo_log import log as logging

from os_acc import exception
from os_acc import plugin

if ty.TYPE_CHECKING:
    from nova.virt.libvirt import guest as libvirt_guest
    from nova.virt.libvirt import host as libvirt_host

    from os_acc import objects

LOG = logging.getLogger(__name__)


def _affects_live(guest: libvirt_guest.Guest,
                  host: libvirt_host.Host) -> bool:
    # As Nova's LibvirtDriver.attach_interface: a running or paused guest
    # has a live domain to change too; a stopped one only has its config.
    state = guest.get_power_state(host)
    return state in (power_state.RUNNING, power_state.PAUSED)


class HostdevPlugin(plugin.PluginBase):
    """A plugin whose device is a libvirt ``<hostdev>``.

    Changes always go to the persistent domain definition, so the device
    survives a guest restart, and to the live domain when there is one.
    libvirt errors are left to the caller, which knows how to roll back.
    """

    #: The interface type, and entry point name, of the plugin.
    interface_type: ty.ClassVar[str]

    def check_interface_type(self, acc: objects.Accelerator) -> None:
        if acc.interface_type != self.interface_type:
            raise exception.InvalidAccelerator(
                'The %s plugin cannot handle interface type %r' %
                (self.interface_type, acc.interface_type))

    def attach(self, acc: objects.Accelerator,
               guest: libvirt_guest.Guest,
               host: libvirt_host.Host,
               instance: ty.Any) -> None:
        cfg = self.get_config(acc)
        live = _affects_live(guest, host)
        LOG.debug('Attaching %s (live=%s)', acc, live, instance=instance)
        guest.attach_device(cfg, persistent=True, live=live)

    def detach(self, acc: objects.Accelerator,
               guest: libvirt_guest.Guest,
               host: libvirt_host.Host,
               instance: ty.Any) -> None:
        cfg = self.get_config(acc)
        live = _affects_live(guest, host)
        # A live detach is only a request to the guest: libvirt completes it
        # asynchronously and reports VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED.
        # Callers that must know the device is gone wait for that event,
        # as Nova's driver does for interfaces.
        LOG.debug('Detaching %s (live=%s)', acc, live, instance=instance)
        guest.detach_device(cfg, persistent=True, live=live)
