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
"""The address map and XML rewrite of PCI devices migrating with a guest."""

from unittest import mock
from xml.etree import ElementTree

from lxml import etree
from nova import exception as nova_exc
from nova.virt.libvirt import migration as nova_migration
from oslotest import base

from nova_acc import exception
from nova_acc.compute import live_migration
from nova_acc.compute import live_migration_pci as pci_lm
from nova_acc.compute import records

HOSTDEV = ("<hostdev mode='subsystem' type='pci' managed='yes'><source>"
           "<address domain='0x0000' bus='0x%02x' slot='0x%02x' "
           "function='0x0'/></source><alias name='hostdev%d'/></hostdev>")
MDEV = ("<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source>"
        "<address uuid='b38a3f43-4be2-4046-897f-b67c2f5e0140'/></source>"
        "</hostdev>")


def domain(*hostdevs):
    return '<domain><devices>%s</devices></domain>' % ''.join(hostdevs)


def pci_hostdevs(xml):
    """(alias, address) of each PCI hostdev, in XML order."""
    result = []
    for dev in ElementTree.fromstring(xml).findall(
            "./devices/hostdev[@type='pci']"):
        a = dev.find('source/address')
        result.append((dev.find('alias').get('name'), '%04x:%02x:%02x.%x' % (
            tuple(int(a.get(f), 16)
                  for f in ('domain', 'bus', 'slot', 'function')))))
    return result


class RewriteHostdevsTest(base.BaseTestCase):

    def test_swapped_addresses_are_rewritten_at_once(self):
        # Identical hosts: the destination gave the device at slot 0 to
        # the hostdev at slot 1 and conversely.
        xml = domain(HOSTDEV % (0x81, 0, 0), HOSTDEV % (0x81, 1, 1))
        swap = {'0000:81:00.0': '0000:81:01.0',
                '0000:81:01.0': '0000:81:00.0'}

        rewritten = pci_lm.rewrite_hostdevs(xml, swap)

        self.assertEqual([('hostdev0', '0000:81:01.0'),
                          ('hostdev1', '0000:81:00.0')],
                         pci_hostdevs(rewritten))

    def test_nova_rewrites_one_after_the_other(self):
        # Why nova-acc does not hand its map to Nova: Nova's rewrite of
        # the same swap moves hostdev0 to 81:01.0 and then back (the first
        # hostdev at 81:01.0 is that one): the guest's devices are paired
        # with the wrong destination devices (another group's, another
        # pool's state).
        xml = domain(HOSTDEV % (0x81, 0, 0), HOSTDEV % (0x81, 1, 1))
        doc = nova_migration._update_pci_dev_xml(
            etree.fromstring(xml), {'0000:81:00.0': '0000:81:01.0',
                                    '0000:81:01.0': '0000:81:00.0'})
        self.assertEqual([('hostdev0', '0000:81:00.0'),
                          ('hostdev1', '0000:81:01.0')],
                         pci_hostdevs(etree.tostring(doc, encoding='unicode')))

    def test_other_hostdevs_are_left_as_they_are(self):
        xml = domain(HOSTDEV % (0x81, 0, 0), HOSTDEV % (0x05, 3, 1), MDEV)

        rewritten = pci_lm.rewrite_hostdevs(
            xml, {'0000:81:00.0': '0000:82:01.0'})

        self.assertEqual([('hostdev0', '0000:82:01.0'),
                          ('hostdev1', '0000:05:03.0')],
                         pci_hostdevs(rewritten))
        self.assertIn('b38a3f43-4be2-4046-897f-b67c2f5e0140', rewritten)

    def test_a_mapped_device_not_in_the_guest_is_refused(self):
        e = self.assertRaises(
            exception.DeviceNotUsable, pci_lm.rewrite_hostdevs,
            domain(HOSTDEV % (0x81, 0, 0)),
            {'0000:81:00.0': '0000:82:00.0',
             '0000:81:01.0': '0000:82:01.0'})
        self.assertIn('0000:81:01.0', str(e))

    def test_the_guest_gives_nova_the_rewritten_migratable_xml(self):
        guest = mock.Mock()
        guest.get_xml_desc.return_value = domain(HOSTDEV % (0x81, 0, 0))
        migrating = pci_lm.MigratingGuest(
            guest, {'0000:81:00.0': '0000:82:00.0'})

        self.assertEqual(
            [('hostdev0', '0000:82:00.0')],
            pci_hostdevs(migrating.get_xml_desc(dump_migratable=True)))
        # Not the live description, and the rest is the guest's.
        self.assertEqual([('hostdev0', '0000:81:00.0')],
                         pci_hostdevs(migrating.get_xml_desc()))
        self.assertIs(guest.migrate, migrating.migrate)


class AddressMapTest(base.BaseTestCase):

    def test_destination_entries_per_group_in_address_order(self):
        self.assertEqual(
            {'nova-acc:g0:0': '0000:82:00.0',
             'nova-acc:g0:1': '0000:82:03.0',
             'nova-acc:g1:0': '0000:82:01.0'},
            pci_lm.destination_entries({'0000:82:03.0': 'g0',
                                        '0000:82:00.0': 'g0',
                                        '0000:82:01.0': 'g1'}))

    def test_source_map_pairs_each_group(self):
        entries = pci_lm.destination_entries({
            '0000:81:00.0': 'g1', '0000:81:01.0': 'g0',
            '0000:81:02.0': 'g0'})
        held = {'0000:81:02.0': 'g1', '0000:81:00.0': 'g0',
                '0000:81:01.0': 'g0'}

        self.assertEqual({'0000:81:02.0': '0000:81:00.0',
                          '0000:81:00.0': '0000:81:01.0',
                          '0000:81:01.0': '0000:81:02.0'},
                         pci_lm.source_map(entries, held))

    def test_source_map_refuses_groups_that_do_not_pair(self):
        entries = pci_lm.destination_entries({'0000:82:00.0': 'g0'})
        e = self.assertRaises(
            exception.DeviceNotUsable, pci_lm.source_map, entries,
            {'0000:81:00.0': 'g0', '0000:81:01.0': 'g0'})
        self.assertIn('group g0 has 2 device(s) here and 1 claimed', str(e))
        self.assertRaises(exception.DeviceNotUsable, pci_lm.source_map,
                          entries, {'0000:81:00.0': 'g1'})

    def test_split_keeps_novas_own_entries_apart(self):
        ours = pci_lm.destination_entries({'0000:82:00.0': 'g0'})
        nova = {'0000:05:00.1': '0000:06:00.1'}
        self.assertEqual((ours, nova),
                         pci_lm.split_entries({**ours, **nova}))

    def test_held_pci_is_the_servers_whole_devices(self):
        recs = [
            records.DeviceRecord('0000:81:00.0', instance_uuid='s',
                                 requester_id='g0'),
            records.DeviceRecord('0000:81:01.0', instance_uuid='other',
                                 requester_id='g0'),
            records.DeviceRecord('b38a3f43-4be2-4046-897f-b67c2f5e0140',
                                 instance_uuid='s', mdev_type='nvidia-11',
                                 parent='0000:3b:00.0'),
            records.DeviceRecord('0000:81:02.0', instance_uuid='s',
                                 context_id='arq'),
        ]
        self.assertEqual({'0000:81:00.0': 'g0'},
                         pci_lm.held_pci(recs, 's'))


class CheckVersionsTest(base.BaseTestCase):

    def host(self, libvirt, qemu):
        host = mock.Mock()
        host.has_min_version.side_effect = lambda lv_ver, hv_ver: (
            libvirt >= 10000000 and qemu >= 8002002)
        host.get_connection.return_value.getLibVersion.return_value = libvirt
        host.get_connection.return_value.getVersion.return_value = qemu
        return host

    def test_nova_minimums_pass(self):
        host = self.host(10000000, 8002002)
        pci_lm.check_versions(host, 'node1')
        host.has_min_version.assert_called_once_with(
            lv_ver=(10, 0, 0), hv_ver=(8, 2, 2))

    def test_older_refused_naming_the_node_and_versions(self):
        e = self.assertRaises(
            nova_exc.MigrationPreCheckError, pci_lm.check_versions,
            self.host(10000000, 8002001), 'node1')
        self.assertIn('libvirt >= 10.0.0 and QEMU >= 8.2.2 on both hosts: '
                      'node node1 has libvirt 10.0.0 and QEMU 8.2.1', str(e))


class PreLiveMigrationTest(base.BaseTestCase):
    """The destination's PCI claims must still be held for the move."""

    def setUp(self):
        super().setUp()
        self.host = mock.Mock(nodename='n1')
        self.moves = live_migration.LiveMigrations(
            self.host, mock.Mock(), mock.Mock())
        self.server = mock.Mock(uuid='server-1')

    def claimed(self, migration_id):
        rec = records.DeviceRecord(
            '0000:82:00.0', state=records.CLAIMED, instance_uuid='server-1',
            requester_id='g0', migration_id=migration_id)
        self.host.ledger.records.return_value = {rec.address: rec}

    def test_held_for_the_move_passes(self):
        self.claimed(7)
        self.moves.create_mdevs(self.server, 7, {}, ('0000:82:00.0',))
        self.host.create_mdev.assert_not_called()

    def test_released_since_the_pre_check_fails_the_move(self):
        # Tagged with another move: not this one's.
        self.claimed(8)
        e = self.assertRaises(
            exception.DeviceNotUsable, self.moves.create_mdevs, self.server,
            7, {}, ('0000:82:00.0',))
        self.assertIn('devices 0000:82:00.0 claimed for the live migration '
                      'are not held for it on node n1', str(e))
