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
"""The ``<hostdev>`` elements of os_acc's plugins: written and read back.

The shared attach/detach logic of the hostdev-based plugins (``pci``,
``mdev``), and the reading of those hostdevs in a guest's domain XML
(:func:`guest_devices`): os_acc writes them, so it is the one that knows
where the PCI address or the mdev UUID is in them.
"""

from __future__ import annotations

import typing as ty
from xml.etree import ElementTree

from oslo_log import log as logging

from os_acc import exception
from os_acc.internal import pci
from os_acc import plugin

if ty.TYPE_CHECKING:
    from nova.virt.libvirt import guest as libvirt_guest
    from nova.virt.libvirt import host as libvirt_host

    from os_acc import objects

LOG = logging.getLogger(__name__)


def _affects_live(guest: libvirt_guest.Guest,
                  host: libvirt_host.Host) -> bool:
    # Imported here, not at the top: os_acc imports this module for
    # guest_devices, and importing os_acc must import no Nova module.
    from nova.compute import power_state

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


# The <source><address> of the hostdevs the plugins write, as children of
# the domain's <devices>. An <interface type='hostdev'> (an SR-IOV port,
# which Nova attaches for Neutron) is another element and is not read.
_PCI_HOSTDEV_ADDRESSES = "./devices/hostdev[@type='pci']/source/address"
_MDEV_HOSTDEV_ADDRESSES = "./devices/hostdev[@type='mdev']/source/address"


def _pci_addresses(domain: ElementTree.Element) -> list[str]:
    addresses = []
    for addr in domain.findall(_PCI_HOSTDEV_ADDRESSES):
        try:
            addresses.append(str(pci.PciAddress.from_libvirt_attrs(
                addr.attrib)))
        except (exception.InvalidDeviceAddress, ValueError) as e:
            # Not a device os_acc wrote (its addresses are valid): it must
            # not hide the guest's other hostdevs.
            LOG.warning('Ignoring a PCI hostdev with a malformed address '
                        '%s in a guest: %s', dict(addr.attrib), e)
    return addresses


def _mdev_uuids(domain: ElementTree.Element) -> list[str]:
    return [addr.get('uuid', '').lower()
            for addr in domain.findall(_MDEV_HOSTDEV_ADDRESSES)]


def guest_pci_addresses(domain_xml: str) -> list[str]:
    """PCI addresses (``0000:81:00.0``) of a domain's PCI hostdevs.

    In the order of the domain XML, one per hostdev. A hostdev whose
    address does not parse is left out alone, with a warning.

    :raises xml.etree.ElementTree.ParseError: XML that does not parse.
    """
    return _pci_addresses(ElementTree.fromstring(domain_xml))


def guest_devices(domain_xml: str) -> set[str]:
    """The devices of a domain's hostdevs: PCI addresses and mdev UUIDs.

    PCI addresses as ``str(PciAddress)`` writes them (``0000:81:00.0``),
    mdev UUIDs in lowercase. A PCI hostdev whose address does not parse is
    left out alone, with a warning.

    :raises xml.etree.ElementTree.ParseError: XML that does not parse.
    """
    domain = ElementTree.fromstring(domain_xml)
    return set(_pci_addresses(domain)) | set(_mdev_uuids(domain))
