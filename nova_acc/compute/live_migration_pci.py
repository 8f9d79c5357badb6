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
"""Whole PCI devices that migrate with the guest (VFIO variant drivers).

Devices of ``device_spec`` entries marked ``"live_migration": "migrate"``
without ``mdev_type`` stay in the guest during a live migration and libvirt
migrates their state, as Nova's own ``live_migratable`` devices do (Nova 31):

* both hosts must have libvirt >= 10.0.0 and QEMU >= 8.2.2 (Nova's
  ``MIN_VFIO_PCI_VARIANT_*``), each checked by its own pre-check
  (``check_versions``);
* the destination claims devices of the same pools 1:1 in its last
  pre-check, tagged with the migration (``nova_acc.compute.live_migration``),
  and tells the source which addresses it claimed per request group:
  ``pci_dev_map_src_dst`` entries keyed ``nova-acc:<requester id>:<n>``
  (``destination_entries``). The destination cannot name the source's
  addresses (the source's ledger holds them), and ``LibvirtLiveMigrateData``
  has no field of nova-acc's own; that field is the one Nova's destination
  fills before the driver's last check, and only Nova's own source reads;
* the source, in its migration thread, turns those entries into a source
  -> destination address map from its ledger (``source_map``: the
  server's devices of each group, in address order, as Nova pairs the
  devices of one PCI request), takes them out of the field, and rewrites
  every PCI hostdev address of the migration XML in one pass
  (``rewrite_hostdevs``) - Nova's ``_update_pci_dev_xml`` rewrites one
  address after the other, which gives two hostdevs the same address when
  the maps swap addresses (a -> b, b -> a), as identical hosts do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lxml import etree
from nova import exception as nova_exc
from nova.virt.libvirt import driver as libvirt_driver
from oslo_log import log as logging
from oslo_utils import versionutils

import os_acc

from nova_acc import exception

LOG = logging.getLogger(__name__)

#: Nova's minimums for migrating VFIO variant devices with their state.
MIN_LIBVIRT_VERSION = libvirt_driver.MIN_VFIO_PCI_VARIANT_LIBVIRT_VERSION
MIN_QEMU_VERSION = libvirt_driver.MIN_VFIO_PCI_VARIANT_QEMU_VERSION
#: Keys of nova-acc's entries in ``pci_dev_map_src_dst``: never a PCI
#: address, so Nova's own entries cannot be mistaken for them.
ENTRY_PREFIX = 'nova-acc:'


def _version(number: int) -> str:
    return versionutils.convert_version_to_str(number)


def check_versions(host, nodename: str) -> None:
    """This host can migrate VFIO variant devices with their state.

    :param host: the driver's ``nova.virt.libvirt.host.Host``.
    :raises MigrationPreCheckError: naming the node, the versions it has
        and the minimums.
    """
    if host.has_min_version(lv_ver=MIN_LIBVIRT_VERSION,
                            hv_ver=MIN_QEMU_VERSION):
        return
    conn = host.get_connection()
    raise nova_exc.MigrationPreCheckError(
        reason='the server\'s PCI devices migrate with it, which needs '
               'libvirt >= %s and QEMU >= %s on both hosts: node %s has '
               'libvirt %s and QEMU %s' % (
                   '.'.join(map(str, MIN_LIBVIRT_VERSION)),
                   '.'.join(map(str, MIN_QEMU_VERSION)), nodename,
                   _version(conn.getLibVersion()),
                   _version(conn.getVersion())))


def destination_entries(claimed: Mapping[str, str | None]
                        ) -> dict[str, str]:
    """The destination's claimed devices, for the source to pair.

    :param claimed: destination address -> requester id of its group.
    :returns: ``nova-acc:<requester id>:<n>`` -> destination address, n
        counting each group's devices in address order.
    """
    entries = {}
    for requester_id in sorted({r or '' for r in claimed.values()}):
        addresses = sorted(a for a, r in claimed.items()
                           if (r or '') == requester_id)
        for n, address in enumerate(addresses):
            entries['%s%s:%d' % (ENTRY_PREFIX, requester_id, n)] = address
    return entries


def split_entries(pci_map: Mapping[str, str]
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """``pci_dev_map_src_dst`` -> (nova-acc's entries, Nova's own)."""
    ours = {k: v for k, v in pci_map.items() if k.startswith(ENTRY_PREFIX)}
    return ours, {k: v for k, v in pci_map.items() if k not in ours}


def source_map(entries: Mapping[str, str],
               held: Mapping[str, str | None]) -> dict[str, str]:
    """Source address -> destination address, group by group.

    :param entries: the destination's (``destination_entries``).
    :param held: the server's PCI devices on the source: address ->
        requester id.
    :raises DeviceNotUsable: a group has not as many devices on both hosts.
    """
    result = {}
    groups = {r or '' for r in held.values()} | {
        k[len(ENTRY_PREFIX):].rsplit(':', 1)[0] for k in entries}
    for requester_id in sorted(groups):
        source = sorted(a for a, r in held.items()
                        if (r or '') == requester_id)
        prefix = '%s%s:' % (ENTRY_PREFIX, requester_id)
        dest = [entries[k] for k in sorted(
            (k for k in entries if k.startswith(prefix) and
             k[len(prefix):].isdigit()), key=lambda k: int(k[len(prefix):]))]
        if len(source) != len(dest):
            raise exception.DeviceNotUsable(
                'group %s has %d device(s) here and %d claimed on the '
                'destination' % (requester_id, len(source), len(dest)))
        result.update(zip(source, dest))
    return result


def _address_of(element) -> os_acc.PciAddress | None:
    try:
        return os_acc.PciAddress.from_libvirt_attrs(element.attrib)
    except ValueError:
        # Not a host address nova-acc could have mapped.
        return None


def rewrite_hostdevs(xml: str, address_map: Mapping[str, str]) -> str:
    """The domain XML with its PCI hostdevs at the mapped addresses.

    All at once: each hostdev's new address comes from its address in
    ``xml``, never from one rewritten before.

    :raises DeviceNotUsable: a source address of the map is not a PCI
        hostdev of the domain (the guest would land with a device nobody
        mapped).
    """
    wanted = {os_acc.PciAddress.parse(s): os_acc.PciAddress.parse(d)
              for s, d in address_map.items()}
    doc = etree.fromstring(xml)
    found = set()
    for element in doc.findall(
            "./devices/hostdev[@type='pci']/source/address"):
        source = _address_of(element)
        target = wanted.get(source) if source is not None else None
        if target is None:
            continue
        found.add(source)
        for name, value in zip(('domain', 'bus', 'slot', 'function'),
                               target.hex_fields()):
            element.set(name, '0x' + value)
    missing = sorted(str(a) for a in set(wanted) - found)
    if missing:
        raise exception.DeviceNotUsable(
            'PCI device(s) %s to migrate are not in the guest'
            % ', '.join(missing))
    return etree.tostring(doc, encoding='unicode')


class MigratingGuest:
    """The source guest, whose migratable XML has the mapped addresses.

    Given to Nova's ``_live_migration_operation`` in place of the guest:
    Nova builds the XML it sends the destination from
    ``get_xml_desc(dump_migratable=True)``; everything else is the guest's.
    """

    def __init__(self, guest, address_map: Mapping[str, str]):
        self._guest = guest
        self._address_map = dict(address_map)

    def get_xml_desc(self, dump_inactive: bool = False,
                     dump_sensitive: bool = False,
                     dump_migratable: bool = False) -> str:
        xml = self._guest.get_xml_desc(dump_inactive=dump_inactive,
                                       dump_sensitive=dump_sensitive,
                                       dump_migratable=dump_migratable)
        if not dump_migratable:
            return xml
        return rewrite_hostdevs(xml, self._address_map)

    def __getattr__(self, name: str):
        return getattr(self._guest, name)


def held_pci(records: Iterable, instance_uuid: str) -> dict[str, str | None]:
    """The server's PCI devices in a ledger: address -> requester id.

    :param records: ``DeviceRecord`` of the ledger, active ones only.
    """
    return {r.address: r.requester_id for r in records
            if r.instance_uuid == instance_uuid and not r.is_mdev and
            not r.backend_owned}
