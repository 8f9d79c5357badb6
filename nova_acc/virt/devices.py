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
"""The host's managed PCI functions, as nova-compute sees them.

nova-compute asks libvirt's node-device API rather than reading sysfs
itself, the way Nova discovers ``[pci] device_spec`` devices: libvirt reads
sysfs on a real host, and Nova's fake-libvirt fixtures stand in for a host
in functional tests. This module is the Nova side only: it reads
``[nova_acc] device_spec`` and lists the node devices through Nova's
``Host``; parsing their XML and applying the specs is
``os_acc.discover_from_nodedevs``.
"""

from __future__ import annotations

import typing as ty

from nova.virt.libvirt import host as libvirt_host
import os_acc
from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_acc import conf

CONF = conf.CONF
LOG = logging.getLogger(__name__)

#: Kept under this name for its callers; see ``os_acc``.
device_from_nodedev_xml = os_acc.device_from_nodedev_xml


class InvalidDeviceSpecConfig(ValueError):
    """A ``[nova_acc] device_spec`` line is not a JSON object."""


def configured_device_specs() -> list[dict[str, ty.Any]]:
    """The ``[nova_acc] device_spec`` entries, one dict per option line.

    Only the JSON is checked here; the entries themselves are validated by
    os_acc when devices are discovered (``InvalidDeviceSpec``).

    :raises InvalidDeviceSpecConfig: naming the line that is not a JSON
        object.
    """
    specs = []
    for line in CONF.nova_acc.device_spec:
        try:
            spec = jsonutils.loads(line)
        except ValueError as e:
            raise InvalidDeviceSpecConfig(
                '[nova_acc] device_spec %r is not valid JSON: %s' % (line, e))
        if not isinstance(spec, dict):
            raise InvalidDeviceSpecConfig(
                '[nova_acc] device_spec %r must be a JSON object' % line)
        specs.append(spec)
    return specs


def _nodedev_xmls(host: libvirt_host.Host) -> ty.Iterator[str]:
    """The XML of each PCI node device libvirt knows of, listed lazily."""
    # Nova's Host imports libvirt lazily; the module is set by now.
    libvirt = libvirt_host.libvirt
    for dev in host.list_all_devices(
            libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV):
        try:
            yield dev.XMLDesc(0)
        except libvirt.libvirtError as e:
            # A VF can go away between the listing and its description.
            LOG.warning('Ignoring a node device libvirt cannot describe: %s',
                        e)


def discover(host: libvirt_host.Host,
             device_specs: ty.Iterable[ty.Mapping[str, ty.Any]],
             ) -> list[os_acc.Device]:
    """Devices of this host selected by ``device_specs``.

    libvirt is not asked when there are no specs.

    :param host: the libvirt driver's ``nova.virt.libvirt.host.Host``.
    :param device_specs: as :func:`configured_device_specs` returns them.
    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
    """
    return os_acc.discover_from_nodedevs(_nodedev_xmls(host), device_specs)
