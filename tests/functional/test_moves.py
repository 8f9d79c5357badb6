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
"""Moves of servers with device contexts, as a user does them.

After every scenario, on every host: no device in two domains, placement's
usage of each pool = the devices the ledger says servers hold there = the
hostdevs of the domains, every released device reset once, and the released
devices boot new servers. Each move runs with distinct PCI addresses on the
two hosts and with the same addresses (as identical servers have).
"""

import fixtures
from nova import context as nova_context
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client
from nova.virt.libvirt import driver as libvirt_driver

from nova_acc import binding
from nova_acc.compute import ledger
from tests.functional import base

CONTEXT = 'resources:FPGA=1'
GiB_in_kB = 1024 * 1024


class MoveTestMixin:
    #: Both hosts' devices at the same PCI addresses.
    SAME_ADDRESSES = False

    def setUp(self):
        super().setUp()
        self.flags(instances=40, cores=80, ram=80 * 1024, group='quota')
        self.small = self._create_flavor(memory_mb=512, vcpu=1, disk=1)
        self.bigger = self._create_flavor(memory_mb=1024, vcpu=2, disk=1)

        def migrate_disk_and_power_off(driver, context, instance, dest,
                                       flavor, network_info,
                                       block_device_info=None, timeout=0,
                                       retry_interval=0):
            # As in Nova's own libvirt functional tests, without copying
            # disks (fake libvirt has none); but the source guest is shut
            # off, and stays defined with its devices until confirm, as on
            # a real host.
            driver.power_off(instance, timeout, retry_interval)
            return '[]'

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            'migrate_disk_and_power_off', migrate_disk_and_power_off))

        cleanup_resize = libvirt_driver.LibvirtDriver._cleanup_resize

        def cleanup_resize_on_its_host(driver, context, instance,
                                       network_info):
            # Nova's harness runs every compute with one CONF.host (the
            # last one started); _cleanup_resize tells the source from the
            # destination by comparing it with instance.host. On a real
            # host CONF.host is that host's name: make it so here.
            with nova_fixtures.ConfPatcher(host=driver._host.get_hostname()):
                return cleanup_resize(driver, context, instance,
                                      network_info)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver._cleanup_resize',
            cleanup_resize_on_its_host))

    def start_hosts(self, num_fpgas=2, hosts=('compute1', 'compute2')):
        """Hosts with ``num_fpgas`` FPGAs each: {host: addresses}.

        Nova's RAM weigher makes compute1 (more memory) the first choice.
        """
        bus = 0x81 if self.SAME_ADDRESSES else None
        memory = {'compute1': 32, 'compute2': 16}
        return {h: self.start_fpga_host(
                    h, num_fpgas=num_fpgas, bus=bus,
                    host_info=fakelibvirt.HostInfo(
                        kB_mem=memory.get(h, 8) * GiB_in_kB))
                for h in hosts}

    def host_of(self, server):
        return self.api.get_server(server['id'])['OS-EXT-SRV-ATTR:host']

    def held(self, host, server, tagged=None):
        """Devices the ledger of ``host`` gives the server, sorted."""
        return sorted(a for a, r in self.ledger(host).items()
                      if r.instance_uuid == server['id'] and
                      r.state in (ledger.CLAIMED, ledger.ATTACHED) and
                      (tagged is None or
                       (r.migration_id is not None) == tagged))

    def assert_consistent(self):
        for host in self.computes:
            domains = self.domain_hostdevs(host)
            used = {}
            for uuid, addresses in domains.items():
                for address in addresses:
                    used.setdefault(address, []).append(uuid)
            for address, owners in used.items():
                self.assertEqual(1, len(owners), 'device %s of %s is in the '
                                 'domains %s' % (address, host, owners))
            records = self.ledger(host)
            # Each hostdev is a device the ledger gives that domain's server.
            for address, (owner,) in used.items():
                rec = records.get(address)
                self.assertEqual((ledger.ATTACHED, owner),
                                 (rec.state, rec.instance_uuid) if rec
                                 else None, '%s on %s' % (address, host))
            # Placement counts what the ledger says servers hold.
            for rp in {self.device_rp(host, a)
                       for a in self.host_devices[host]}:
                held = sum(1 for r in records.values()
                           if r.rp_uuid == rp and
                           r.state in (ledger.CLAIMED, ledger.ATTACHED))
                self.assertEqual({'FPGA': held}, self.provider_usage(rp),
                                 'pool %s of %s' % (rp, host))

    def assert_released(self, host, addresses, resets=1):
        for address in addresses:
            self.assertEqual(('free', None), self.ledger_state(host,
                                                               address))
            self.assertEqual(resets, self.reset_count(address), address)

    def boot_on(self, host, context=CONTEXT):
        server = self.boot(context, flavor_id=self.small)
        self.assertEqual(host, self.host_of(server))
        return server


class ResizeTest(MoveTestMixin, base.DeviceContextTestBase):

    def _resize_away(self):
        """A server on compute1 resized to compute2 (VERIFY_RESIZE)."""
        self.start_hosts()
        # The RAM weigher spreads servers: compute1 first, then compute2.
        server = self.boot_on('compute1')
        source = self.domain_hostdevs('compute1', server)
        server = self._resize_server(server, self.bigger)
        self.assertEqual('compute2', self.host_of(server))
        dest = self.domain_hostdevs('compute2', server)
        self.assertEqual(1, len(dest))
        # The destination's device is one claimed for the move; the source
        # keeps its device (its guest is only shut off) until confirm.
        self.assertEqual(dest, self.held('compute2', server, tagged=True))
        self.assertEqual(source, self.held('compute1', server))
        self.assertEqual(source, self.domain_hostdevs('compute1', server))
        self.assert_consistent()
        return server, source, dest

    def test_resize_to_another_host_and_confirm(self):
        server, source, dest = self._resize_away()

        server = self._confirm_resize(server)

        self.assertEqual(dest, self.domain_hostdevs('compute2', server))
        self.assertEqual([], self.domain_hostdevs('compute1', server))
        self.assert_released('compute1', source)
        self.assert_consistent()
        # The released device serves a next server: the 3 free devices of
        # the cloud take 3 servers.
        others = [self.boot(CONTEXT, flavor_id=self.small) for _ in range(3)]
        self.assertIn(source[0], [a for s in others for a in
                                  self.domain_hostdevs('compute1', s)])
        self.assert_consistent()

    def test_resize_to_another_host_and_revert(self):
        server, source, dest = self._resize_away()

        server = self._revert_resize(server)

        self.assertEqual('compute1', self.host_of(server))
        self.assertEqual(source, self.domain_hostdevs('compute1', server))
        self.assertEqual(source, self.held('compute1', server))
        self.assertEqual([], self.domain_hostdevs('compute2', server))
        # (With the same addresses on both hosts the reset files are shared:
        # still one reset, the source device kept its server.)
        self.assert_released('compute2', dest)
        self.assert_consistent()
        # Still the server's device after a hard reboot; the destination's
        # device serves another server.
        self._reboot_server(server, hard=True)
        self.assertEqual(source, self.domain_hostdevs('compute1', server))
        self.boot(CONTEXT)
        self.boot(CONTEXT)
        self.assert_consistent()

    def test_revert_after_a_restart_of_the_destination(self):
        server, source, dest = self._resize_away()
        self.restart_compute_service('compute2')
        self.assertEqual(dest, self.held('compute2', server, tagged=True))

        server = self._revert_resize(server)

        self.assertEqual(source, self.domain_hostdevs('compute1', server))
        self.assertEqual([], self.held('compute2', server))
        self.assert_consistent()

    def test_cold_migration_and_confirm(self):
        self.start_hosts()
        server = self.boot_on('compute1')
        source = self.domain_hostdevs('compute1', server)

        server = self._migrate_server(server)
        self.assertEqual('compute2', self.host_of(server))
        self.assert_consistent()
        server = self._confirm_resize(server)

        self.assertEqual(1, len(self.domain_hostdevs('compute2', server)))
        self.assert_released('compute1', source)
        self.assert_consistent()

    def test_resize_keeps_a_wide_context(self):
        self.start_hosts(num_fpgas=3)
        server = self.boot_on('compute1', 'resources:FPGA=2;resources:FPGA=1')
        server = self._resize_server(server, self.bigger)
        self.assertEqual(3, len(self.domain_hostdevs('compute2', server)))
        self.assert_consistent()
        server = self._confirm_resize(server)
        self.assertEqual(3, len(self.held('compute2', server)))
        self.assert_released('compute1', self.host_devices['compute1'])
        self.assert_consistent()


class ResizeSameAddressesTest(ResizeTest):
    SAME_ADDRESSES = True


class ResizeFailureTest(MoveTestMixin, base.DeviceContextTestBase):
    # The move fails on the destination after the API answered.
    CAST_AS_CALL = False

    def test_destination_that_cannot_claim_fails_the_move_safely(self):
        hosts = self.start_hosts(num_fpgas=1)
        server = self.boot_on('compute1')
        source = self.domain_hostdevs('compute1', server)
        # A guest Nova does not know took compute2's device; placement
        # still offers it (no periodic update yet).
        dest, = hosts['compute2']
        foreign = self.define_foreign_guest('compute2', dest)

        self.api.post_server_action(
            server['id'], {'resize': {'flavorRef': self.bigger}})
        server = self._wait_for_state_change(server, 'ERROR')

        # As Nova fails any finish_resize: ERROR on the destination. The
        # device stayed with the other guest, nobody reset it, and nothing
        # is in two guests; the source device stays out of service while
        # the source's shut-off guest still has it.
        self.assertIn('device group nova_acc_0_0 needs 1 device(s)',
                      self.fault_message(server))
        self.assertEqual({foreign: [dest]}, {
            u: a for u, a in self.domain_hostdevs('compute2').items() if a})
        self.assertEqual(0, self.reset_count(dest))
        self.assertEqual(source, self.domain_hostdevs('compute1', server))
        self._run_periodics()
        self.assertEqual(('orphaned', server['id']),
                         self.ledger_state('compute1', source[0]))
        self.assertEqual(1, self.provider_inventory(self.device_rp(
            'compute1', source[0]))['FPGA']['reserved'])

        # The other guest goes away: as Nova says, a hard reboot recovers
        # the server on its new host, with the device reset first.
        conn = self.computes['compute2'].driver._host.get_connection()
        conn.lookupByUUIDString(foreign).undefine()
        self._run_periodics()
        self._reboot_server(server, hard=True)
        self.assertEqual([dest], self.domain_hostdevs('compute2', server))
        self.assertEqual(1, self.reset_count(dest))


class SameHostResizeTest(MoveTestMixin, base.DeviceContextTestBase):

    def setUp(self):
        super().setUp()
        self.flags(allow_resize_to_same_host=True)
        self.fpgas = self.start_hosts(num_fpgas=4, hosts=('compute1',))[
            'compute1']
        self.server = self.boot_on('compute1', 'resources:FPGA=2')
        self.source = self.domain_hostdevs('compute1', self.server)
        self.server = self._resize_server(self.server, self.bigger)
        self.assertEqual('compute1', self.host_of(self.server))
        # Placement allocated two more devices for the new flavor; the host
        # claimed two others for the move and keeps the first two.
        self.dest = self.domain_hostdevs('compute1', self.server)
        self.assertEqual(2, len(self.dest))
        self.assertFalse(set(self.dest) & set(self.source))
        self.assertEqual(self.dest, self.held('compute1', self.server,
                                              tagged=True))
        self.assertEqual(self.source, self.held('compute1', self.server,
                                                tagged=False))
        self.assert_consistent()

    def test_confirm_releases_the_old_devices(self):
        server = self._confirm_resize(self.server)

        self.assertEqual(self.dest, self.domain_hostdevs('compute1', server))
        self.assertEqual(self.dest, self.held('compute1', server))
        self.assert_released('compute1', self.source)
        self.assert_consistent()
        self._reboot_server(server, hard=True)
        self.assertEqual(self.dest, self.domain_hostdevs('compute1', server))
        again = self.boot('resources:FPGA=2')
        self.assertEqual(self.source, self.domain_hostdevs('compute1', again))

    def test_revert_releases_the_new_devices(self):
        server = self._revert_resize(self.server)

        self.assertEqual(self.source, self.domain_hostdevs('compute1',
                                                           server))
        self.assertEqual(self.source, self.held('compute1', server))
        self.assert_released('compute1', self.dest)
        self.assert_consistent()


class EvacuateTest(MoveTestMixin, base.DeviceContextTestBase):

    def _evacuate_from_compute1(self):
        self.start_hosts()
        server = self.boot_on('compute1')
        source = self.domain_hostdevs('compute1', server)
        self.computes['compute1'].stop()
        self.api.put_service_force_down(self.service_id('compute1'), True)
        # From microversion 2.95 on an evacuated server is stopped on its
        # new host; its guest is defined there with the new host's device.
        server = self._evacuate_server(server, expected_host='compute2',
                                       expected_state='SHUTOFF')
        return server, source

    def service_id(self, host):
        return next(s['id'] for s in self.api.get_services(
            binary='nova-compute', host=host))

    def test_evacuate_then_the_source_comes_back(self):
        server, source = self._evacuate_from_compute1()
        self.assertEqual(1, len(self.domain_hostdevs('compute2', server)))
        self.assertEqual(self.domain_hostdevs('compute2', server),
                         self.held('compute2', server))
        self._start_server(server)
        self.assertEqual(1, len(self.domain_hostdevs('compute2', server)))

        # As Nova asks: restart the source first, then force it up.
        self.restart_compute_service('compute1')
        self.api.put_service_force_down(self.service_id('compute1'), False)

        # Nova destroyed the evacuated guest on compute1: its device is
        # released and reset, and serves the next server.
        self.assertEqual([], self.domain_hostdevs('compute1', server))
        self.assert_released('compute1', source,
                             resets=1)
        self.assert_consistent()
        nxt = self.boot(CONTEXT)
        self.assertEqual('compute1', self.host_of(nxt))
        self.assert_consistent()


class EvacuateSameAddressesTest(EvacuateTest):
    SAME_ADDRESSES = True


class RefusedTest(MoveTestMixin, base.DeviceContextTestBase):
    # The API answers before the conductor and compute act, as in a real
    # cloud: the refusal must be visible all the same.
    CAST_AS_CALL = False

    def setUp(self):
        super().setUp()
        self.start_hosts()
        self.server = self.boot_on('compute1')
        self.devices = self.domain_hostdevs('compute1', self.server)
        self.allocations = self._get_allocations_by_server_uuid(
            self.server['id'])

    def assert_unchanged(self):
        server = self.api.get_server(self.server['id'])
        self.assertEqual(('ACTIVE', 'compute1', None),
                         (server['status'], server['OS-EXT-SRV-ATTR:host'],
                          server['OS-EXT-STS:task_state']))
        self.assertEqual(self.devices, self.domain_hostdevs('compute1',
                                                            server))
        self.assertEqual(self.allocations,
                         self._get_allocations_by_server_uuid(server['id']))
        self.assertEqual({}, self.domain_hostdevs('compute2'))
        self.assert_consistent()

    def event_details(self, action, event):
        ev = self._wait_for_action_fail_completion(self.server, action, event)
        return ev.get('details') or ''

    def test_live_migration_is_refused(self):
        self.api.post_server_action(
            self.server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        self._wait_for_migration_status(self.server, ['error'])
        details = self.event_details('live-migration',
                                     'conductor_live_migrate_instance')
        self.assertIn('live migration of servers with device contexts is '
                      'not supported', details)
        self.assert_unchanged()

    def test_live_migration_to_a_host_is_refused_too(self):
        self.api.post_server_action(
            self.server['id'],
            {'os-migrateLive': {'host': 'compute2',
                                'block_migration': 'auto'}})
        self._wait_for_migration_status(self.server, ['error'])
        self.assert_unchanged()

    def test_live_migration_with_an_old_microversion_is_a_400(self):
        # Before 2.34 the API waits for the conductor's pre-checks.
        self.api.microversion = '2.30'
        e = self.assertRaises(
            client.OpenStackApiException, self.api.post_server_action,
            self.server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        self.assertEqual(400, e.response.status_code)
        self.assertIn('live migration of servers with device contexts is '
                      'not supported', str(e))
        self.api.microversion = 'latest'
        self.assert_unchanged()

    def test_resize_of_a_server_bound_to_single_devices_is_refused(self):
        # A server bound before device pools (one device per group).
        ctxt = nova_context.get_admin_context()
        mapping = objects.InstanceMapping.get_by_instance_uuid(
            ctxt, self.server['id'])
        with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
            instance = objects.Instance.get_by_uuid(
                cctxt, self.server['id'], expected_attrs=['system_metadata'])
            binding.replace(instance, [binding.Binding(
                'nova_acc_0_0', self.device_rp('compute1', self.devices[0]),
                self.devices[0], 'compute1')])
            instance.save()

        self.api.post_server_action(
            self.server['id'], {'resize': {'flavorRef': self.bigger}})
        details = self.event_details('resize', 'conductor_migrate_server')
        self.assertIn('bound to single devices before device pools',
                      details)
        self.assert_unchanged()

    def test_pause_keeps_the_device(self):
        self.api.post_server_action(self.server['id'], {'pause': {}})
        self._wait_for_state_change(self.server, 'PAUSED')
        self.api.post_server_action(self.server['id'], {'unpause': {}})
        self._wait_for_state_change(self.server, 'ACTIVE')
        self.assert_unchanged()

    def test_no_5xx_for_any_refused_move(self):
        for action in ({'os-migrateLive': {'host': None,
                                           'block_migration': 'auto'}},):
            try:
                self.api.post_server_action(self.server['id'], action)
            except client.OpenStackApiException as e:
                self.assertLess(e.response.status_code, 500, action)
            self._wait_for_state_change(self.server, 'ACTIVE')
