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
"""Live migration by unplug and replug of devices the operator allows.

Nova's fake libvirt cannot migrate a guest: as in Nova's own PCI live
migration tests, ``migrateToURI3`` is replaced by what libvirt does on
success (the guest appears on the destination with the XML Nova sent, the
source's job completes); left alone, it fails as a migration that failed.
Casts stay casts. After every scenario, on both hosts: no device in two
domains, placement = ledger = domain hostdevs, released devices reset once.
"""

import os
import threading
import time
from urllib import parse as urlparse
from xml.etree import ElementTree

import fixtures
from lxml import etree
from nova.conductor.tasks import live_migrate as live_migrate_task
from nova import context as nova_context
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_serialization import jsonutils

from nova_acc.compute import ledger
from nova_acc.tests.fixtures import mdev_host
from tests.functional import base
from tests.functional import test_moves
from tests.functional import test_vgpu

REPLUG_SPEC = dict(base.FPGA_SPEC, live_migration='replug')


def update_after_pre_check(test, hostname):
    """Run hostname's periodic resource update right after the conductor
    found it as the destination (its pre-checks done, its claim made) and
    before the conductor records it."""
    find = live_migrate_task.LiveMigrationTask._find_destination

    def find_then_update(task):
        found = find(task)
        test.computes[hostname].manager.update_available_resource(
            nova_context.get_admin_context())
        return found

    test.useFixture(fixtures.MonkeyPatch(
        'nova.conductor.tasks.live_migrate.LiveMigrationTask.'
        '_find_destination', find_then_update))


class LiveMigrationTestBase(test_moves.MoveTestMixin,
                            base.DeviceContextTestBase):
    device_spec = [REPLUG_SPEC]
    CAST_AS_CALL = False

    def setUp(self):
        super().setUp()
        self.start_hosts()
        self.server = self.boot_on('compute1')
        self.source = self.domain_hostdevs('compute1', self.server)
        self.assertEqual(1, len(self.source))

    def migrate_for_real(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3',
            self._migrate_stub))

    def _migrate_stub(self, domain, destination, params, flags):
        # As Nova's test_pci_sriov_servers: the guest appears on the
        # destination with the XML Nova sent; then the job completes.
        dst_hostname = urlparse.urlparse(destination).netloc
        self.computes[dst_hostname].driver._host.get_connection().createXML(
            params['destination_xml'],
            'fake-createXML-doesnt-care-about-flags')
        uuid = ElementTree.fromstring(
            params['destination_xml']).find('./uuid').text
        domain._connection.lookupByUUIDString(uuid).complete_job()

    def live_migrate(self, expected_migration='completed', host=None):
        return self._live_migrate(
            self.server, migration_expected_state=expected_migration,
            host=host)


class LiveMigrationTest(LiveMigrationTestBase):

    def test_replug_moves_the_server_with_devices_of_the_destination(self):
        self.migrate_for_real()

        server = self.live_migrate()

        self.assertEqual('compute2', self.host_of(server))
        dest = self.domain_hostdevs('compute2', server)
        self.assertEqual(1, len(dest))
        self.assertEqual(dest, self.held('compute2', server))
        self.assertEqual((ledger.ATTACHED, server['id']),
                         self.ledger_state('compute2', dest[0]))
        self.assertEqual([], self.domain_hostdevs('compute1', server))
        self.assertEqual([self.device_rp('compute2', dest[0])],
                         self.allocated_device_rps(server))
        # The source's device is released at its next resource update.
        self._run_periodics()
        self.assert_released('compute1', self.source)
        # (Hosts with the same addresses share their reset files.)
        self.assertEqual(1 if dest == self.source else 0,
                         self.reset_count(dest[0]))
        self.assert_consistent()
        # The server is bound to the destination: a hard reboot there
        # gives it the same device.
        self._reboot_server(server, hard=True)
        self.assertEqual(dest, self.domain_hostdevs('compute2', server))
        self.assert_consistent()
        self._delete_server(server)
        self.assert_released('compute2', dest,
                             resets=2 if dest == self.source else 1)
        self.assert_consistent()

    def assert_rolled_back(self, status='ACTIVE'):
        server = self.api.get_server(self.server['id'])
        self.assertEqual((status, 'compute1'),
                         (server['status'], self.host_of(server)))
        self.assertEqual(self.source,
                         self.domain_hostdevs('compute1', server))
        self.assertEqual(self.source, self.held('compute1', server))
        self.assertEqual([self.device_rp('compute1', self.source[0])],
                         self.allocated_device_rps(server))
        # What the destination claimed is released, nothing held there.
        self._run_periodics()
        self.assertEqual([], self.held('compute2', server))
        self.assertEqual({}, {u: a for u, a in self.domain_hostdevs(
            'compute2').items() if a})
        for address in self.host_devices['compute2']:
            self.assertEqual(('free', None),
                             self.ledger_state('compute2', address))
        resets = {a: self.reset_count(a) for a in
                  self.host_devices['compute1'] +
                  self.host_devices['compute2']}
        # One device of compute2 was claimed and released: reset once
        # (with the same addresses, compute1's file is that one's).
        self.assertEqual(1, sum(resets.values()), resets)
        self.assert_consistent()

    def test_a_migration_job_that_fails_gives_the_source_its_device(self):
        def fail(domain, destination, params, flags):
            domain.fail_job()

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3', fail))

        self.live_migrate(expected_migration='failed')

        self.assert_rolled_back()

    def test_a_migration_libvirt_refuses_gives_the_source_its_device(self):
        # Nova's fake libvirt's migrateToURI3 raises: Nova rolls back,
        # then puts the server in ERROR (as with a real libvirt), with its
        # devices; a hard reboot makes it ACTIVE.
        self.api.post_server_action(
            self.server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        # Nova records no fault for it.
        self._wait_for_state_change(self.server, 'ERROR',
                                    wait_for_fault_key=False)
        self._wait_for_migration_status(self.server, ['error', 'failed'])

        self.assert_rolled_back(status='ERROR')
        self._reboot_server(self.server, hard=True)
        self.assertEqual(self.source,
                         self.domain_hostdevs('compute1', self.server))

    def test_no_free_device_elsewhere_keeps_the_server(self):
        # The three other devices of the cloud are taken.
        others = [self.boot(test_moves.CONTEXT, flavor_id=self.small)
                  for _ in range(3)]
        self.migrate_for_real()

        self.live_migrate(expected_migration='error')

        server = self.api.get_server(self.server['id'])
        self.assertEqual(('ACTIVE', 'compute1'),
                         (server['status'], self.host_of(server)))
        self.assertEqual(self.source,
                         self.domain_hostdevs('compute1', server))
        for other in others:
            self.assertEqual(1, len(self.domain_hostdevs(
                self.host_of(other), other)))
        self.assert_consistent()

    def test_a_destination_that_cannot_claim_fails_before_anything_moved(
            self):
        # Guests Nova does not know took compute2's devices; placement
        # learns it only at compute2's next resource update, so the
        # scheduler still picks compute2, whose pre_live_migration cannot
        # claim.
        for i, address in enumerate(self.host_devices['compute2']):
            self.define_foreign_guest(
                'compute2', address,
                uuid='%d1111111-2222-3333-4444-555555555555' % i)
        self.migrate_for_real()

        self.live_migrate(expected_migration='failed')

        server = self.api.get_server(self.server['id'])
        self.assertEqual(('ACTIVE', 'compute1'),
                         (server['status'], self.host_of(server)))
        self.assertEqual(self.source,
                         self.domain_hostdevs('compute1', server))
        self.assertEqual(self.source, self.held('compute1', server))
        self.assertEqual([], self.held('compute2', server))
        event = self._wait_for_action_fail_completion(
            self.server, 'live-migration', 'compute_pre_live_migration')
        self.assertIn('only 0 free', event.get('details') or '')
        self.assertEqual([self.device_rp('compute1', self.source[0])],
                         self.allocated_device_rps(server))
        self.assertEqual(0, self.reset_count(self.source[0]))


class LiveMigrationSameAddressesTest(LiveMigrationTest):
    SAME_ADDRESSES = True


class LiveMigrationRefusedTest(LiveMigrationTestBase):
    """Devices whose device_spec entry does not say replug."""
    device_spec = [base.FPGA_SPEC]

    def test_refused_naming_the_group(self):
        self.migrate_for_real()
        self.api.post_server_action(
            self.server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        self._wait_for_migration_status(self.server, ['error'])
        event = self._wait_for_action_fail_completion(
            self.server, 'live-migration', 'conductor_live_migrate_instance')
        self.assertIn('device group(s) nova_acc_0_0: their devices cannot '
                      'move with a running guest', event.get('details'))
        self.assertEqual(self.source,
                         self.domain_hostdevs('compute1', self.server))
        self.assertEqual([], self.held('compute2', self.server))
        self.assert_consistent()


class LiveMigrationDestinationRefusesTest(LiveMigrationTestBase):
    """compute1's devices allow replug, compute2's do not."""

    def start_hosts(self, num_fpgas=2, hosts=('compute1', 'compute2')):
        # Each nova-compute reads [nova_acc] device_spec when it starts.
        started = super().start_hosts(num_fpgas=num_fpgas,
                                      hosts=hosts[:1])
        self.flags(device_spec=[jsonutils.dumps(base.FPGA_SPEC)],
                   group='nova_acc')
        started.update(super().start_hosts(num_fpgas=num_fpgas,
                                           hosts=hosts[1:]))
        return started

    def test_the_destination_pre_check_refuses_its_pools(self):
        self.migrate_for_real()

        self.live_migrate(expected_migration='error')

        server = self.api.get_server(self.server['id'])
        self.assertEqual(('ACTIVE', 'compute1'),
                         (server['status'], self.host_of(server)))
        self.assertEqual(self.source,
                         self.domain_hostdevs('compute1', server))
        # Nothing was claimed on compute2; its pool has no such trait.
        for address in self.host_devices['compute2']:
            self.assertEqual(('free', None),
                             self.ledger_state('compute2', address))
            self.assertEqual(0, self.reset_count(address))
        pool = self.device_rp('compute2', self.host_devices['compute2'][0])
        self.assertNotIn('CUSTOM_ACC_LIVE_MIGRATION_REPLUG',
                         self.provider_traits(pool))
        self.assertIn('CUSTOM_ACC_LIVE_MIGRATION_REPLUG',
                      self.provider_traits(self.device_rp(
                          'compute1', self.source[0])))
        self.assertEqual([self.device_rp('compute1', self.source[0])],
                         self.allocated_device_rps(server))
        self.assert_consistent()


class VgpuLiveMigrationRefusedTest(test_vgpu.VgpuTestBase):
    """vGPUs of entries not marked "live_migration": "migrate"."""
    CAST_AS_CALL = False

    def test_refused_naming_the_group_and_nothing_changes(self):
        self.start_gpu_host('compute1')
        self.start_gpu_host('compute2')
        server = self.boot('resources:VGPU=1')
        host = self.api.get_server(server['id'])['OS-EXT-SRV-ATTR:host']
        uuids = self.domain_mdevs(host, server)

        self.api.post_server_action(
            server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        self._wait_for_migration_status(server, ['error'])
        event = self._wait_for_action_fail_completion(
            server, 'live-migration', 'conductor_live_migrate_instance')

        self.assertIn('device group(s) nova_acc_0_0: their devices cannot '
                      'move with a running guest', event.get('details'))
        server = self.api.get_server(server['id'])
        self.assertEqual(('ACTIVE', host),
                         (server['status'],
                          server['OS-EXT-SRV-ATTR:host']))
        self.assertEqual(uuids, self.domain_mdevs(host, server))
        self.assertEqual(uuids, sorted(self.host_mdevs(host)))


class LiveMigrationRacingDeleteTest(LiveMigrationTestBase):

    def test_delete_while_the_guest_migrates_leaves_nothing(self):
        started, go_on = threading.Event(), threading.Event()

        def held(domain, destination, params, flags):
            # libvirt migrates; the server is deleted meanwhile, its
            # source guest with it; the job then fails.
            started.set()
            go_on.wait(30)
            domain.fail_job()

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3', held))
        self.api.post_server_action(
            self.server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        self.assertTrue(started.wait(30))
        # compute2 claimed a device for the move.
        self.assertEqual(1, len(self.held('compute2', self.server,
                                          tagged=True)))

        self.api.delete_server(self.server['id'])
        go_on.set()
        self._wait_until_deleted(self.server)
        # Nova marks the migration failed once its rollback ends (which
        # fails saving the deleted server, Nova's own); compute2's next
        # resource update then releases what it claimed for it.
        for _ in range(50):
            self._run_periodics()
            if not self.held('compute2', self.server):
                break
            time.sleep(0.1)

        for host in ('compute1', 'compute2'):
            self.assertEqual([], self.held(host, self.server), host)
            for address in self.host_devices[host]:
                self.assertEqual(('free', None),
                                 self.ledger_state(host, address))
        resets = {a: self.reset_count(a) for h in ('compute1', 'compute2')
                  for a in self.host_devices[h]}
        # The source's device and the one compute2 claimed, once each
        # (with the same addresses on both hosts, possibly one file).
        self.assertEqual(2, sum(resets.values()), resets)
        self.assertTrue(all(n <= 2 for n in resets.values()), resets)
        self.assert_consistent()


DOMAIN_SCHEMA = '/usr/share/libvirt/schemas/domain.rng'
MIGRATE_VGPU_SPEC = dict(test_vgpu.VGPU_SPEC, live_migration='migrate')
#: Nova's minimums for live migrating mdevs (libvirt 8.6.0, QEMU 8.1.0).
MDEV_LIVEMIG_VERSIONS = {'libvirt_version': 8006000,
                         'qemu_version': 8001000}


class VgpuLiveMigrationTestBase(test_moves.MoveTestMixin,
                                test_vgpu.VgpuTestBase):
    """vGPUs of entries marked "live_migration": "migrate"."""
    device_spec = [MIGRATE_VGPU_SPEC]
    CAST_AS_CALL = False
    #: hostname -> the versions its fake libvirt reports.
    versions: dict = {}

    def start_compute(self, hostname='compute1', **kwargs):
        for key, value in self.versions.get(
                hostname, MDEV_LIVEMIG_VERSIONS).items():
            kwargs.setdefault(key, value)
        return super().start_compute(hostname=hostname, **kwargs)

    def setUp(self):
        super().setUp()
        # compute1 has more RAM: Nova's weigher puts the boot there (the
        # hypervisor version weigher would prefer the newer host).
        self.flags(hypervisor_version_weight_multiplier=0,
                   group='filter_scheduler')
        self.gpus = {h: self.start_gpu_host(h, num_gpus=1, host_info=(
            fakelibvirt.HostInfo(kB_mem=gib * test_moves.GiB_in_kB)))
            for h, gib in (('compute1', 32), ('compute2', 16))}
        self.server = self.boot('resources:VGPU=1', flavor_id=self.small)
        self.assertEqual('compute1', self.host_of(self.server))
        [self.source] = self.domain_mdevs('compute1', self.server)

    def migrate_for_real(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3',
            self._migrate_stub))

    _migrate_stub = LiveMigrationTestBase._migrate_stub

    def live_migrate(self, expected_migration='completed'):
        self.api.post_server_action(
            self.server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        self._wait_for_migration_status(self.server, [expected_migration])
        return self.api.get_server(self.server['id'])

    def assert_vgpus_consistent(self):
        """No mdev in two guests; ledger = placement = domains, per host."""
        used: dict = {}
        for host in ('compute1', 'compute2'):
            conn = self.computes[host].driver._host.get_connection()
            in_domains = {}
            for dom in conn._vms.values():
                for a in ElementTree.fromstring(dom.XMLDesc(0)).findall(
                        "./devices/hostdev[@type='mdev']/source/address"):
                    used.setdefault(a.get('uuid'), []).append(host)
                    in_domains[a.get('uuid')] = dom.UUIDString()
            records = self.mdev_records(host)
            held = {u: r.instance_uuid for u, r in records.items()
                    if r.state == ledger.ATTACHED}
            self.assertEqual(in_domains, held, host)
            self.assertEqual(set(records), set(self.host_mdevs(host)), host)
            self._run_periodics()
            self.assertEqual({'VGPU': len(records)}, self.provider_usage(
                self.vgpu_pool(host)), host)
        for uuid, hosts in used.items():
            self.assertEqual(1, len(hosts), (uuid, hosts))

    def assert_stayed(self, server):
        """ACTIVE on compute1 with its vGPU; nothing left on compute2."""
        self.assertEqual(('ACTIVE', 'compute1'),
                         (server['status'], self.host_of(server)))
        self.assertEqual([self.source],
                         self.domain_mdevs('compute1', server))
        self.assertEqual({self.source: (self.gpus['compute1'][0],
                                        test_vgpu.NV11)},
                         self.host_mdevs('compute1'))
        self.assertEqual([self.vgpu_pool('compute1')],
                         self.allocated_device_rps(server))
        self._run_periodics()
        self.assertEqual({}, self.host_mdevs('compute2'))
        self.assertEqual({}, self.mdev_records('compute2'))
        self.assert_vgpus_consistent()


class VgpuLiveMigrationTest(VgpuLiveMigrationTestBase):

    def assert_libvirt_schema_accepts(self, xml):
        """The XML sent to the destination is a domain libvirt accepts."""
        if not os.path.exists(DOMAIN_SCHEMA):
            self.skipTest('%s not found (Debian package libvirt-clients)'
                          % DOMAIN_SCHEMA)
        schema = etree.RelaxNG(etree.parse(DOMAIN_SCHEMA))
        self.assertTrue(schema.validate(etree.fromstring(xml)),
                        str(schema.error_log))
        # ... and the check can fail: an mdev address that is no UUID.
        bad = etree.fromstring(xml)
        for address in bad.findall(
                "./devices/hostdev[@type='mdev']/source/address"):
            address.set('uuid', 'not-a-uuid')
        self.assertFalse(schema.validate(bad))

    def _migrate_stub(self, domain, destination, params, flags):
        # What Nova sent the destination, for the schema check below.
        self.sent_xml = params['destination_xml']
        return LiveMigrationTestBase._migrate_stub(
            self, domain, destination, params, flags)

    def test_the_vgpu_moves_to_an_mdev_the_destination_creates(self):
        self.migrate_for_real()
        self.assertIn('CUSTOM_ACC_LIVE_MIGRATION_MIGRATE',
                      self.provider_traits(self.vgpu_pool('compute1')))

        server = self.live_migrate()

        self.assertEqual('compute2', self.host_of(server))
        [dest] = self.domain_mdevs('compute2', server)
        self.assertNotEqual(self.source, dest)
        self.assertEqual({dest: (self.gpus['compute2'][0], test_vgpu.NV11)},
                         self.host_mdevs('compute2'))
        # Nova rewrote the guest's XML from target_mdevs.
        self.assertIn('uuid="%s"' % dest, self.sent_xml)
        self.assertNotIn(self.source, self.sent_xml)
        self.assert_libvirt_schema_accepts(self.sent_xml)
        rec = self.ledger('compute2')[dest]
        self.assertEqual((ledger.ATTACHED, server['id']),
                         (rec.state, rec.instance_uuid))
        self.assertEqual([self.vgpu_pool('compute2')],
                         self.allocated_device_rps(server))
        # The source's mdev is removed at its next resource update.
        self._run_periodics()
        self.assert_nothing_left('compute1')
        self.assert_vgpus_consistent()
        # Bound to the destination: a hard reboot keeps that mdev.
        self._reboot_server(server, hard=True)
        self.assertEqual([dest], self.domain_mdevs('compute2', server))
        self._delete_server(server)
        self.assert_nothing_left('compute2', server)

    def test_a_resource_update_after_the_pre_check_keeps_the_claim(self):
        # compute2's periodic resource update runs between its pre-check
        # (which claimed the mdev) and the conductor's recording of the
        # destination: its reconcile must not release the claim.
        update_after_pre_check(self, 'compute2')
        self.migrate_for_real()

        server = self.live_migrate()

        self.assertEqual('compute2', self.host_of(server))
        [dest] = self.domain_mdevs('compute2', server)
        self.assertEqual({dest: (self.gpus['compute2'][0], test_vgpu.NV11)},
                         self.host_mdevs('compute2'))
        self.assertEqual(ledger.ATTACHED,
                         self.ledger('compute2')[dest].state)
        self._run_periodics()
        self.assert_nothing_left('compute1')
        self.assert_vgpus_consistent()

    def test_a_migration_job_that_fails_leaves_the_source_as_it_was(self):
        def fail(domain, destination, params, flags):
            domain.fail_job()

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3', fail))

        server = self.live_migrate(expected_migration='failed')

        self.assert_stayed(server)

    def test_a_destination_that_cannot_create_the_mdev_rolls_back(self):
        self.mdev_hosts['compute2'].fail_create = 'vendor driver refused'
        self.migrate_for_real()

        server = self.live_migrate(expected_migration='failed')

        event = self._wait_for_action_fail_completion(
            server, 'live-migration', 'compute_pre_live_migration')
        self.assertIn('vendor driver refused', event.get('details') or '')
        self.assert_stayed(server)

    def test_post_copy_is_refused(self):
        self.flags(live_migration_permit_post_copy=True, group='libvirt')
        self.migrate_for_real()

        server = self.live_migrate(expected_migration='error')

        self.assertIn('QEMU refuses post-copy with VFIO devices',
                      self.stdlog.logger.output)
        self.assert_stayed(server)


class VgpuLiveMigrationNoFreeMdevTest(VgpuLiveMigrationTestBase):

    def test_a_destination_without_a_free_mdev_refuses_and_another_wins(
            self):
        # compute3 (least RAM) is the scheduler's second choice.
        self.gpus['compute3'] = self.start_gpu_host(
            'compute3', num_gpus=1, host_info=fakelibvirt.HostInfo(
                kB_mem=8 * test_moves.GiB_in_kB))
        # A vGPU of another type nova-acc does not know takes compute2's
        # GPU; placement learns it only at compute2's next update.
        host2 = self.mdev_hosts['compute2']
        [parent] = host2.capacity
        foreign = mdev_host.FakeMdev(
            host2, 'f0000000-0000-4000-8000-000000000001', parent,
            test_vgpu.NV12, 99)
        host2.start(foreign)
        self.migrate_for_real()

        server = self.live_migrate()

        self.assertEqual('compute3', self.host_of(server))
        self.assertIn('on node compute2', self.stdlog.logger.output)
        self.assertEqual({}, self.mdev_records('compute2'))
        self.assertEqual({foreign.uuid}, set(self.host_mdevs('compute2')))
        [dest] = self.domain_mdevs('compute3', server)
        self.assertEqual({dest: (self.gpus['compute3'][0], test_vgpu.NV11)},
                         self.host_mdevs('compute3'))
        self.assertEqual([self.vgpu_pool('compute3')],
                         self.allocated_device_rps(server))
        self._run_periodics()
        self.assert_nothing_left('compute1')
        self.assertEqual({}, self.mdev_records('compute2'))
        self.assertEqual({'VGPU': 1}, self.provider_usage(
            self.vgpu_pool('compute3')))


class VgpuLiveMigrationOldSourceTest(VgpuLiveMigrationTestBase):
    versions = {'compute1': {'libvirt_version': 8005000,
                             'qemu_version': 8000000}}

    def test_refused_naming_the_versions(self):
        self.migrate_for_real()

        server = self.live_migrate(expected_migration='error')

        self.assertIn('Either libvirt or QEMU version for compute service '
                      'source are too old than the supported ones : '
                      '(QEMU: 8.1.0, libvirt: 8.6.0)',
                      self.stdlog.logger.output)
        self.assert_stayed(server)


class VgpuLiveMigrationOldDestinationTest(VgpuLiveMigrationTestBase):
    versions = {'compute2': {'libvirt_version': 8005000,
                             'qemu_version': 8000000}}

    def test_refused_naming_the_versions(self):
        # Nova's own check of the hypervisor versions would refuse first.
        self.flags(skip_hypervisor_version_check_on_lm=True,
                   group='workarounds')
        self.migrate_for_real()

        server = self.live_migrate(expected_migration='error')

        self.assertIn('Either libvirt or QEMU version for compute service '
                      'target are too old', self.stdlog.logger.output)
        self.assert_stayed(server)


#: libvirt's error for a job cancelled by abortJob (Nova's fake libvirt has
#: no name for it).
VIR_ERR_OPERATION_ABORTED = 78


class AbortMixin:
    """An admin aborts the running migration (``DELETE
    /servers/{id}/migrations/{migration}``), and libvirt cancels the job as
    it does: the job ends CANCELLED and ``migrateToURI3`` fails with
    "operation aborted".

    Nova 34's monitor then rolls the move back (migration ``cancelled``),
    and afterwards re-raises the failure of ``migrateToURI3``
    (``_live_migration``'s ``future.result()``), which marks the migration
    ``error`` and the server ERROR - Nova's own behaviour, with or without
    devices. What nova-acc owes: the rollback gives the source its devices
    once, the destination keeps nothing, and a hard reboot brings the
    server back ACTIVE with the same devices.
    """

    def migrate_until_aborted(self):
        self.migration_running = threading.Event()
        self.aborted = threading.Event()

        def migrate(domain, destination, params, flags):
            domain._job_type = fakelibvirt.VIR_DOMAIN_JOB_UNBOUNDED
            self.migration_running.set()
            if not self.aborted.wait(60):
                domain.fail_job()
                raise AssertionError('the migration was never aborted')
            domain._job_type = fakelibvirt.VIR_DOMAIN_JOB_CANCELLED
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError,
                'operation aborted: migration out job: canceled by client',
                error_code=VIR_ERR_OPERATION_ABORTED,
                error_domain=fakelibvirt.VIR_FROM_QEMU)

        def abort_job(domain):
            self.aborted.set()

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3', migrate))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.abortJob', abort_job))

    def abort_running_migration(self):
        self.api.post_server_action(
            self.server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        self.assertTrue(self.migration_running.wait(30))
        migration = self._wait_for_migration_status(self.server, ['running'])
        self.api.api_delete('/servers/%s/migrations/%s' % (
            self.server['id'], migration['id']))
        self.assertTrue(self.aborted.wait(30))
        self._wait_for_migration_status(self.server, ['error'])
        # Nova records no fault for it.
        return self._wait_for_state_change(self.server, 'ERROR',
                                           wait_for_fault_key=False)


class LiveMigrationAbortTest(AbortMixin, LiveMigrationTestBase):
    """The replug migration aborted by an admin while libvirt migrates."""

    assert_rolled_back = LiveMigrationTest.assert_rolled_back

    def test_an_aborted_migration_gives_the_source_its_device(self):
        self.migrate_until_aborted()

        self.abort_running_migration()

        # On compute1 with the device it had, re-plugged; the device
        # compute2 claimed is released and reset once.
        self.assert_rolled_back(status='ERROR')
        self._reboot_server(self.server, hard=True)
        self.assertEqual(self.source,
                         self.domain_hostdevs('compute1', self.server))
        self.assert_consistent()


class VgpuLiveMigrationAbortTest(AbortMixin, VgpuLiveMigrationTestBase):
    """A vGPU migration aborted by an admin while libvirt migrates."""

    def test_an_aborted_migration_leaves_the_source_as_it_was(self):
        self.migrate_until_aborted()

        self.abort_running_migration()

        # compute2's mdev, created for the move, is removed; after a hard
        # reboot the server has its vGPU on compute1, nothing on compute2.
        server = self._reboot_server(self.server, hard=True)
        self.assert_stayed(server)


class LiveMigrationTimeoutTest(AbortMixin, LiveMigrationTestBase):
    """The replug migration outlives its completion timeout, whose action
    is abort (Nova's default): Nova's monitor aborts the job itself, and
    the move rolls back as after an admin's abort."""

    assert_rolled_back = LiveMigrationTest.assert_rolled_back

    def test_a_timed_out_migration_gives_the_source_its_device(self):
        # 1 s per GiB (at least 2 GiB of RAM counted): aborted after 2 s.
        self.flags(live_migration_completion_timeout=1,
                   live_migration_timeout_action='abort', group='libvirt')
        self.migrate_until_aborted()

        self.api.post_server_action(
            self.server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        self.assertTrue(self.migration_running.wait(30))
        # Nobody calls the API: Nova's monitor aborts the job.
        self.assertTrue(self.aborted.wait(60))
        self._wait_for_migration_status(self.server, ['error'])
        self._wait_for_state_change(self.server, 'ERROR',
                                    wait_for_fault_key=False)

        self.assert_rolled_back(status='ERROR')
        self._reboot_server(self.server, hard=True)
        self.assertEqual(self.source,
                         self.domain_hostdevs('compute1', self.server))
        self.assert_consistent()
