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
"""Live migration of whole PCI devices that migrate with the guest.

Devices of a ``device_spec`` entry marked ``"live_migration": "migrate"``
(VFIO variant drivers): the guest keeps them during the move, the
destination claims devices of the same pool, and the XML Nova sends it
names the destination's addresses. Nova's fake libvirt migrates as in
``test_live_migration`` (``migrateToURI3`` replaced by what libvirt does on
success). The fake libvirt of each compute reports the versions set here:
Nova's minimums (libvirt 10.0.0, QEMU 8.2.2) unless a test says otherwise.
Casts stay casts. After every scenario, on both hosts: no device in two
domains, placement = ledger = domain hostdevs, released devices reset once.
"""

import os
from xml.etree import ElementTree

import fixtures
from lxml import etree

from nova_acc.compute import ledger
from tests.functional import base
from tests.functional import test_live_migration

MIGRATE_PCI_SPEC = dict(base.FPGA_SPEC, live_migration='migrate')
#: Nova's minimums for VFIO variant devices (libvirt 10.0.0, QEMU 8.2.2).
VFIO_VARIANT_VERSIONS = {'libvirt_version': 10000000,
                         'qemu_version': 8002002}
OLD_VERSIONS = {'libvirt_version': 9010000, 'qemu_version': 8002001}
TRAIT = 'CUSTOM_ACC_LIVE_MIGRATION_MIGRATE'
FOREIGN_GUEST = '11111111-2222-3333-4444-555555555555'


class PciLiveMigrationTestBase(test_live_migration.LiveMigrationTestBase):
    device_spec = [MIGRATE_PCI_SPEC]
    source_host = 'compute1'
    #: hostname -> the versions its fake libvirt reports.
    versions: dict = {}

    def start_compute(self, hostname='compute1', **kwargs):
        for key, value in self.versions.get(
                hostname, VFIO_VARIANT_VERSIONS).items():
            kwargs.setdefault(key, value)
        return super().start_compute(hostname=hostname, **kwargs)

    def setUp(self):
        # Nova's weigher would prefer the newer host for the boot.
        self.flags(hypervisor_version_weight_multiplier=0,
                   group='filter_scheduler')
        super().setUp()

    def _migrate_stub(self, domain, destination, params, flags):
        # What Nova sent, and the source guest's devices while libvirt
        # migrates (they stay in it: nothing is unplugged).
        self.sent_xml = params['destination_xml']
        self.source_while_migrating = self.domain_hostdevs(
            self.source_host, self.server)
        return super()._migrate_stub(domain, destination, params, flags)

    def sent_hostdevs(self):
        return [
            '%04x:%02x:%02x.%x' % tuple(int(a.get(f), 16) for f in (
                'domain', 'bus', 'slot', 'function'))
            for a in ElementTree.fromstring(self.sent_xml).findall(
                "./devices/hostdev[@type='pci']/source/address")]

    def assert_stayed(self, status='ACTIVE'):
        """On compute1 with its device; nothing held or reset elsewhere."""
        server = self.api.get_server(self.server['id'])
        self.assertEqual((status, 'compute1'),
                         (server['status'], self.host_of(server)))
        self.assertEqual(self.source,
                         self.domain_hostdevs('compute1', server))
        self.assertEqual(self.source, self.held('compute1', server))
        self.assertEqual([self.device_rp('compute1', self.source[0])],
                         self.allocated_device_rps(server))
        self._run_periodics()
        for host in self.computes:
            if host != 'compute1':
                self.assertEqual([], self.held(host, server))
        self.assert_consistent()

    def assert_libvirt_schema_accepts(self, xml):
        """The XML sent to the destination is a domain libvirt accepts."""
        schema_file = test_live_migration.DOMAIN_SCHEMA
        if not os.path.exists(schema_file):
            self.skipTest('%s not found (Debian package libvirt-clients)'
                          % schema_file)
        schema = etree.RelaxNG(etree.parse(schema_file))
        self.assertTrue(schema.validate(etree.fromstring(xml)),
                        str(schema.error_log))
        # ... and the check can fail: a hostdev slot out of PCI's range.
        bad = etree.fromstring(xml)
        for address in bad.findall(
                "./devices/hostdev[@type='pci']/source/address"):
            address.set('slot', 'not-a-slot')
        self.assertFalse(schema.validate(bad))


class PciLiveMigrationTest(PciLiveMigrationTestBase):

    def test_the_device_migrates_with_the_guest(self):
        self.migrate_for_real()
        self.assertIn(TRAIT, self.provider_traits(
            self.device_rp('compute1', self.source[0])))

        server = self.live_migrate()

        self.assertEqual('compute2', self.host_of(server))
        dest = self.domain_hostdevs('compute2', server)
        self.assertEqual(1, len(dest))
        self.assertIn(dest[0], self.host_devices['compute2'])
        # Not unplugged for the move; the XML names the destination's.
        self.assertEqual(self.source, self.source_while_migrating)
        self.assertEqual(dest, self.sent_hostdevs())
        self.assert_libvirt_schema_accepts(self.sent_xml)
        self.assertEqual(dest, self.held('compute2', server))
        self.assertEqual((ledger.ATTACHED, server['id']),
                         self.ledger_state('compute2', dest[0]))
        self.assertEqual([self.device_rp('compute2', dest[0])],
                         self.allocated_device_rps(server))
        # The source's device is released at its next resource update.
        self._run_periodics()
        self.assert_released('compute1', self.source)
        # (Hosts with the same addresses share their reset files.)
        self.assertEqual(1 if dest == self.source else 0,
                         self.reset_count(dest[0]))
        self.assert_consistent()
        # Bound to the destination: a hard reboot gives it that device.
        self._reboot_server(server, hard=True)
        self.assertEqual(dest, self.domain_hostdevs('compute2', server))
        self.assert_consistent()
        self._delete_server(server)
        self.assert_released('compute2', dest,
                             resets=2 if dest == self.source else 1)
        self.assert_consistent()

    def test_the_destination_device_at_another_address(self):
        # compute2's first device is taken by a guest Nova does not know:
        # the destination claims its second one, at another address than
        # the source's even on identical hosts.
        self.define_foreign_guest('compute2',
                                  self.host_devices['compute2'][0],
                                  uuid=FOREIGN_GUEST)
        self._run_periodics()
        self.migrate_for_real()

        server = self.live_migrate()

        expected = [self.host_devices['compute2'][1]]
        self.assertNotEqual(self.source, expected)
        self.assertEqual(expected, self.domain_hostdevs('compute2', server))
        self.assertEqual(expected, self.sent_hostdevs())
        self.assertEqual(expected, self.held('compute2', server))
        self._run_periodics()
        self.assert_released('compute1', self.source)
        # The foreign guest keeps its device, recorded as its.
        foreign = self.host_devices['compute2'][0]
        self.assertEqual(('foreign', FOREIGN_GUEST),
                         self.ledger_state('compute2', foreign))

    def test_a_resource_update_after_the_pre_check_keeps_the_claim(self):
        # compute2's periodic resource update runs between its pre-check
        # (which claimed the device) and the conductor's recording of the
        # destination: its reconcile must not release the claim.
        test_live_migration.update_after_pre_check(self, 'compute2')
        self.migrate_for_real()

        server = self.live_migrate()

        self.assertEqual('compute2', self.host_of(server))
        dest = self.domain_hostdevs('compute2', server)
        self.assertEqual(dest, self.sent_hostdevs())
        self.assertEqual(dest, self.held('compute2', server))
        self._run_periodics()
        self.assert_released('compute1', self.source)
        self.assert_consistent()

    def test_a_migration_job_that_fails_leaves_the_source_as_it_was(self):
        def fail(domain, destination, params, flags):
            domain.fail_job()

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3', fail))

        self.live_migrate(expected_migration='failed')

        self.assert_stayed()
        # compute2's claim was released and reset once (with the same
        # addresses, compute1's reset file is that device's).
        resets = {a: self.reset_count(a) for a in
                  self.host_devices['compute1'] +
                  self.host_devices['compute2']}
        self.assertEqual(1, sum(resets.values()), resets)
        for address in self.host_devices['compute2']:
            self.assertEqual(('free', None),
                             self.ledger_state('compute2', address))

    def test_post_copy_is_refused(self):
        self.flags(live_migration_permit_post_copy=True, group='libvirt')
        self.migrate_for_real()

        self.live_migrate(expected_migration='error')

        self.assertIn('QEMU refuses post-copy with VFIO devices',
                      self.stdlog.logger.output)
        self.assert_stayed()
        self.assertEqual(0, self.reset_count(self.source[0]))


class PciLiveMigrationSameAddressesTest(PciLiveMigrationTest):
    SAME_ADDRESSES = True


class PciLiveMigrationNoFreeDeviceTest(PciLiveMigrationTestBase):

    def test_a_destination_without_a_free_device_refuses_and_another_wins(
            self):
        # compute3 (least RAM) is the scheduler's second choice.
        self.start_hosts(hosts=('compute3',))
        # Guests Nova does not know took compute2's devices; placement
        # learns it only at compute2's next update.
        for i, address in enumerate(self.host_devices['compute2']):
            self.define_foreign_guest(
                'compute2', address,
                uuid='%d1111111-2222-3333-4444-555555555555' % i)
        self.migrate_for_real()

        server = self.live_migrate()

        self.assertEqual('compute3', self.host_of(server))
        self.assertIn('on node compute2', self.stdlog.logger.output)
        dest = self.domain_hostdevs('compute3', server)
        self.assertEqual(dest, self.held('compute3', server))
        self.assertEqual(dest, self.sent_hostdevs())
        self.assertEqual([], self.held('compute2', server))
        self._run_periodics()
        self.assert_released('compute1', self.source)
        self.assertEqual([self.device_rp('compute3', dest[0])],
                         self.allocated_device_rps(server))


class PciLiveMigrationOldSourceTest(PciLiveMigrationTestBase):
    versions = {'compute1': OLD_VERSIONS}

    def test_refused_naming_the_host_and_versions(self):
        self.migrate_for_real()

        self.live_migrate(expected_migration='error')

        self.assertIn('needs libvirt >= 10.0.0 and QEMU >= 8.2.2 on both '
                      'hosts: node compute1 has libvirt 9.10.0 and QEMU '
                      '8.2.1', self.stdlog.logger.output)
        self.assert_stayed()


class PciLiveMigrationOldDestinationTest(PciLiveMigrationTestBase):
    versions = {'compute2': OLD_VERSIONS}

    def test_refused_naming_the_host_and_versions(self):
        # Nova's own check of the hypervisor versions would refuse first.
        self.flags(skip_hypervisor_version_check_on_lm=True,
                   group='workarounds')
        self.migrate_for_real()

        self.live_migrate(expected_migration='error')

        self.assertIn('needs libvirt >= 10.0.0 and QEMU >= 8.2.2 on both '
                      'hosts: node compute2 has libvirt 9.10.0 and QEMU '
                      '8.2.1', self.stdlog.logger.output)
        self.assert_stayed()
        for address in self.host_devices['compute2']:
            self.assertEqual(('free', None),
                             self.ledger_state('compute2', address))
            self.assertEqual(0, self.reset_count(address))


class PciLiveMigrationAbortTest(test_live_migration.AbortMixin,
                                PciLiveMigrationTestBase):
    """The migration aborted by an admin while libvirt migrates."""

    def test_an_aborted_migration_leaves_the_source_as_it_was(self):
        self.migrate_until_aborted()

        self.abort_running_migration()

        # Nova 34 leaves the server ERROR (see AbortMixin); on compute1
        # with its device, compute2's claim released and reset once; a
        # hard reboot makes it ACTIVE with the same device.
        self.assert_stayed(status='ERROR')
        self.assertEqual(0, self.reset_count(self.source[0]))
        self.assertEqual(1, sum(self.reset_count(a)
                                for a in self.host_devices['compute2']))
        self._reboot_server(self.server, hard=True)
        self.assert_stayed()


class PciLiveMigrationTwoGroupsTest(PciLiveMigrationTestBase):
    """A server with two groups: each device goes to its group's."""

    def start_hosts(self, num_fpgas=3, hosts=('compute1', 'compute2')):
        return super().start_hosts(num_fpgas=num_fpgas, hosts=hosts)

    def groups(self, host, addresses):
        records = self.ledger(host)
        return [records[a].requester_id for a in addresses]

    def test_each_hostdev_gets_a_device_of_its_group(self):
        # Wherever it lands, the other host has 2 free FPGAs for it.
        self.server = self.boot(
            'resources:FPGA=1', 'resources:FPGA=1', flavor_id=self.small)
        self.source_host = self.host_of(self.server)
        [target] = {'compute1', 'compute2'} - {self.source_host}
        self.source = self.domain_hostdevs(self.source_host, self.server)
        source_groups = self.groups(self.source_host, self.source)
        self.assertEqual(['nova_acc_0_0', 'nova_acc_1_0'],
                         sorted(source_groups))
        self.migrate_for_real()

        server = self.live_migrate()

        self.assertEqual(target, self.host_of(server))
        dest = self.domain_hostdevs(target, server)
        self.assertEqual(dest, self.sent_hostdevs())
        self.assertEqual(self.source, self.source_while_migrating)
        # Hostdev by hostdev (XML order), the same group on both hosts.
        self.assertEqual(source_groups, self.groups(target, dest))
        self.assertEqual(sorted(dest), self.held(target, server))
        self._run_periodics()
        self.assert_released(self.source_host, self.source)
        self.assert_consistent()


class PciLiveMigrationRacingDeleteTest(PciLiveMigrationTestBase):
    """The server deleted while its devices migrate with it."""

    test_delete_while_the_guest_migrates_leaves_nothing = (
        test_live_migration.LiveMigrationRacingDeleteTest.
        test_delete_while_the_guest_migrates_leaves_nothing)
