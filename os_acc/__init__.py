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
"""os_acc: accelerator plumbing for the libvirt hypervisor.

In the manner of os-vif, a small API over plugins: parse what a user asks
for (:func:`parse_device_context`), find what the host has (from sysfs with
:func:`discover`, from libvirt node devices with
:func:`discover_from_nodedevs`), attach or detach it (:func:`attach`,
:func:`detach`; :func:`get_config` for a guest being defined) through the
plugin of its interface type, and read back which devices a guest's
hostdevs hold (:func:`guest_devices`), and configure a claimed device as its
context's config data asks (:func:`config_rules_for`, :func:`configure`,
:func:`unconfigure`, through the configurator its ``device_spec`` entry
names; see ``os_acc.configurator``).

Everything a caller needs is importable from here and listed in
``__all__``; ``os_acc.internal`` is not an API. Importing os_acc imports no
Nova or libvirt module: only the plugins, loaded by :func:`initialize`, do.
See doc/source/os_acc.rst.
"""

from __future__ import annotations

import dataclasses
import typing as ty

from oslo_log import log as logging
from stevedore import extension

from os_acc import configurator as _configurator
from os_acc import exception
from os_acc.internal import device_spec as _device_spec
from os_acc.internal import hostdev as _hostdev
from os_acc.internal import nodedev as _nodedev
from os_acc.internal.pci import PciAddress
from os_acc.internal import reset as _reset
from os_acc.internal import spec as _spec
from os_acc.internal import sysfs as _sysfs
from os_acc.objects import Accelerator
from os_acc.objects import Device
from os_acc.objects import DeviceContext
from os_acc.objects import DeviceContextGroup
from os_acc.objects import MediatedDevice
from os_acc import plugin as _plugin

if ty.TYPE_CHECKING:
    from nova.virt.libvirt import config as vconfig
    from nova.virt.libvirt import guest as libvirt_guest
    from nova.virt.libvirt import host as libvirt_host

    #: What initialize() loads: one plugin per interface type.
    PluginManager = extension.ExtensionManager[_plugin.PluginBase]

__all__ = [
    'Accelerator',
    'ConfigRules',
    'ConfigureRequest',
    'Device',
    'DeviceContext',
    'DeviceContextGroup',
    'MediatedDevice',
    'PciAddress',
    'attach',
    'config_rules_for',
    'config_trait',
    'configure',
    'detach',
    'device_from_nodedev_xml',
    'discover',
    'discover_from_nodedevs',
    'get_config',
    'guest_devices',
    'guest_pci_addresses',
    'initialize',
    'is_valid_mdev_type',
    'mdevs_from_nodedevs',
    'parse_device_context',
    'reset_device',
    'select_devices',
    'unconfigure',
]

LOG = logging.getLogger(__name__)

#: Entry point namespace of the plugins.
PLUGIN_NAMESPACE = 'os_acc'
#: Plugins shipped with os_acc; initialize() fails if one is missing.
BUILTIN_PLUGINS = ('pci', 'mdev')

_EXT_MANAGER: PluginManager | None = None

ConfigRules = _device_spec.ConfigRules
config_trait = _device_spec.config_trait
ConfigureRequest = _configurator.ConfigureRequest

AcceleratorLike = ty.Union[Accelerator, ty.Mapping[str, ty.Any]]
DeviceSpecs = ty.Iterable[ty.Mapping[str, ty.Any]]


def initialize(
        reset: bool = False, *,
        extension_manager: PluginManager | None = None,
) -> None:
    """Load the plugins.

    :param reset: load them again even if already loaded.
    :param extension_manager: use this stevedore manager instead of
        scanning the ``os_acc`` entry points, for example one built with
        ``ExtensionManager.make_test_instance()``.
    :raises os_acc.exception.PluginNotFound: if a built-in plugin is not
        registered, which means os_acc is not installed properly, or an
        extension has no ``PluginBase`` object.
    """
    global _EXT_MANAGER
    if extension_manager is None:
        if _EXT_MANAGER is not None and not reset:
            return
        extension_manager = extension.ExtensionManager(
            namespace=PLUGIN_NAMESPACE, invoke_on_load=True)
    names = extension_manager.names()
    for name in BUILTIN_PLUGINS:
        if name not in names:
            raise exception.PluginNotFound(
                'No os_acc plugin for interface type %r in entry point '
                'namespace %r; is os_acc installed?' %
                (name, PLUGIN_NAMESPACE))
    for ext in extension_manager:
        if not isinstance(ext.obj, _plugin.PluginBase):
            raise exception.PluginNotFound(
                'os_acc plugin %r is %r, not a loaded PluginBase; is it '
                'registered with the right class?' % (ext.name, ext.obj))
        LOG.debug('Loaded os_acc plugin %s: %s', ext.name, ext.obj.describe())
    _EXT_MANAGER = extension_manager


def _to_accelerator(acc: AcceleratorLike) -> Accelerator:
    if isinstance(acc, Accelerator):
        return acc
    if not isinstance(acc, ty.Mapping):
        raise exception.InvalidAccelerator(
            'Expected an Accelerator or a dict, not %s' % type(acc).__name__)
    fields = {f.name for f in dataclasses.fields(Accelerator)}
    unknown = [k for k in acc if k not in fields]
    if unknown:
        raise exception.InvalidAccelerator(
            'Unknown accelerator field(s): %s' %
            ', '.join(sorted(map(repr, unknown))))
    if 'interface_type' not in acc:
        raise exception.InvalidAccelerator(
            'Accelerator %r has no interface_type' % (dict(acc),))
    return Accelerator(**acc)


def _get_plugin(acc: Accelerator) -> _plugin.PluginBase:
    if _EXT_MANAGER is None:
        raise exception.LibraryNotInitialized(
            'os_acc.initialize() has not been called')
    if (not isinstance(acc.interface_type, str) or
            acc.interface_type not in _EXT_MANAGER.names()):
        raise exception.InvalidAccelerator(
            'Unknown interface type %r; known types: %s' %
            (acc.interface_type, ', '.join(sorted(_EXT_MANAGER.names()))))
    # initialize() checked that every extension has its plugin object.
    return ty.cast(_plugin.PluginBase, _EXT_MANAGER[acc.interface_type].obj)


def get_config(acc: AcceleratorLike) -> vconfig.LibvirtConfigObject:
    """Return the libvirt device config of an accelerator.

    :param acc: an :class:`Accelerator`, or a dict with its fields.
    :raises os_acc.exception.InvalidAccelerator: if ``acc`` is malformed.
    :raises os_acc.exception.LibraryNotInitialized: before initialize().
    """
    acc = _to_accelerator(acc)
    return _get_plugin(acc).get_config(acc)


def attach(acc: AcceleratorLike, guest: libvirt_guest.Guest,
           host: libvirt_host.Host, instance: ty.Any) -> None:
    """Attach an accelerator to a guest.

    The persistent definition always changes; the live domain too if the
    guest is running or paused. libvirt errors propagate.

    :param instance: the Nova instance, used for logging only.
    """
    acc = _to_accelerator(acc)
    _get_plugin(acc).attach(acc, guest, host, instance)


def detach(acc: AcceleratorLike, guest: libvirt_guest.Guest,
           host: libvirt_host.Host, instance: ty.Any) -> None:
    """Detach an accelerator from a guest; see :func:`attach`.

    A live detach completes asynchronously in libvirt.
    """
    acc = _to_accelerator(acc)
    _get_plugin(acc).detach(acc, guest, host, instance)


def parse_device_context(spec: _spec.Spec) -> DeviceContext:
    """Parse a device-context spec (a string or Cyborg-style group dicts).

    ``DeviceContext.to_spec()`` is the reverse.

    :raises os_acc.exception.InvalidDeviceContext: naming the bad token;
        no other exception escapes, whatever ``spec`` is.
    """
    return _spec.parse_device_context(spec)


def select_devices(devices: ty.Iterable[Device],
                   device_specs: DeviceSpecs) -> list[Device]:
    """Return copies of the devices a spec matches, sorted by address.

    Each copy has the ``resource_class`` and ``traits`` of the first
    matching spec.

    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
    """
    return _device_spec.select_devices(devices, device_specs)


def config_rules_for(device: Device, device_specs: DeviceSpecs
                     ) -> ConfigRules | None:
    """What config data ``device`` accepts, or None if it accepts none.

    ``device`` is one :func:`select_devices` returned for the same
    ``device_specs``; the rules are those of the entry that selected it.

    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
    """
    return _device_spec.config_rules_for(
        device, _device_spec.parse_device_specs(device_specs))


def configure(rules: ConfigRules, request: ConfigureRequest) -> None:
    """Check ``request.config`` against ``rules``, then apply it.

    :raises os_acc.exception.InvalidConfig: the config is not allowed
        (nothing was done).
    :raises os_acc.exception.ConfiguratorNotFound: the entry's configurator
        is not installed (nothing was done).
    :raises os_acc.exception.ConfigureFailed: the configurator failed; it
        left the device unconfigured.
    """
    rules.check(request.config)
    _configurator.load(rules.configurator).configure(request)


def unconfigure(rules: ConfigRules, address: str) -> None:
    """Undo :func:`configure` on ``address`` (best effort, before reset)."""
    _configurator.load(rules.configurator).unconfigure(address)


def discover(device_specs: DeviceSpecs,
             sysfs_root: str = '/sys') -> list[Device]:
    """Read the host's PCI functions from sysfs; return those a spec matches.

    :param sysfs_root: where sysfs is mounted; tests pass a fake tree.
    :returns: as :func:`select_devices`.
    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
    """
    # Validate before scanning: a configuration error must not depend on
    # what the host has.
    specs = _device_spec.parse_device_specs(device_specs)
    return _device_spec.match_devices(_sysfs.read_devices(sysfs_root), specs)


def discover_from_nodedevs(nodedev_xmls: ty.Iterable[str],
                           device_specs: DeviceSpecs) -> list[Device]:
    """Parse libvirt node devices; return the PCI functions a spec matches.

    What nova-compute uses: libvirt reads sysfs on a real host, and Nova's
    fake libvirt stands in for one in functional tests. A node device that
    is not a PCI device is skipped; one with unusable XML is logged as a
    warning and skipped.

    :param nodedev_xmls: the XML of each node device
        (``virNodeDevice.XMLDesc(0)``). Not iterated when ``device_specs``
        is empty, so it can be a generator that lists libvirt's devices.
    :returns: as :func:`select_devices`.
    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key, before
        any node device is read.
    """
    return _nodedev.discover(nodedev_xmls, device_specs)


def device_from_nodedev_xml(xml: str) -> Device | None:
    """Parse the XML of one libvirt node device.

    :returns: the PCI function, without ``resource_class`` and ``traits``
        (see :func:`select_devices`), or None for a node device that is not
        a PCI device.
    :raises os_acc.exception.InvalidNodeDevice: for XML that does not parse
        or a PCI device without a well-formed address or vendor and product
        IDs.
    """
    return _nodedev.device_from_nodedev_xml(xml)


def is_valid_mdev_type(name: object) -> bool:
    """Is ``name`` an mdev type name as kernels make them (``nvidia-35``,
    ``i915-GVTg_V5_4``), safe in a sysfs path and in libvirt XML?"""
    return _device_spec.is_valid_mdev_type(name)


def mdevs_from_nodedevs(nodedev_xmls: ty.Iterable[str]
                        ) -> dict[str, MediatedDevice]:
    """Parse libvirt's mdev node devices: mdev UUID -> MediatedDevice.

    A node device that is not an mdev is skipped; one with unusable XML is
    logged as a warning and skipped.
    """
    return _nodedev.read_mdevs(nodedev_xmls)


def guest_devices(domain_xml: str) -> set[str]:
    """The devices in a guest's hostdevs: what the plugins attached.

    PCI addresses as :class:`PciAddress` writes them (``0000:81:00.0``) and
    mdev UUIDs in lowercase, from the ``<hostdev type='pci'>`` and
    ``<hostdev type='mdev'>`` elements of ``<devices>``. A PCI hostdev
    whose address does not parse is logged as a warning and left out
    alone: os_acc writes none such, and it must not hide the others.

    :param domain_xml: a libvirt domain's XML (``virDomain.XMLDesc()``).
    :raises xml.etree.ElementTree.ParseError: XML that does not parse.
    """
    return _hostdev.guest_devices(domain_xml)


def guest_pci_addresses(domain_xml: str) -> list[str]:
    """The PCI addresses of a guest's PCI hostdevs, as in
    :func:`guest_devices`, one per hostdev in the order of the XML.

    :raises xml.etree.ElementTree.ParseError: XML that does not parse.
    """
    return _hostdev.guest_pci_addresses(domain_xml)


def reset_device(address: str, sysfs_root: str = '/sys',
                 device_specs: DeviceSpecs | None = None) -> bool:
    """Reset a PCI function through sysfs, following no link but its own.

    :param device_specs: when given, only a device one of these entries
        selects as a whole device, as sysfs describes it, is reset: what a
        privileged caller passes from its own configuration.
    :returns: True if reset, False if the device offers no reset method.
    :raises os_acc.exception.InvalidDeviceAddress: for a malformed address.
    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
    :raises os_acc.exception.DeviceNotFound: if the device is absent, or
        its entry leads outside ``sysfs_root``.
    :raises os_acc.exception.DeviceNotManaged: no entry selects it.
    :raises os_acc.exception.ResetNotSupported: its ``reset`` is not a
        sysfs attribute (a link, a special file).
    :raises os_acc.exception.ResetFailed: the kernel failed the reset.
    :raises OSError: the reset could not be attempted (no privilege).
    """
    return _reset.reset_device(address, sysfs_root, device_specs)
