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
"""The device ledger on every path by which a server stops holding a device.

Each test ends with what a user or operator would check: the device is in
no guest, placement shows it free (or reserved, when it must not be handed
out), the ledger says who holds it, and the next server on the device sees
exactly one reset since the previous holder.
"""

import datetime
import json
import os
import threading

import fixtures
from nova import context as nova_context
from nova.virt.libvirt import driver as libvirt_driver
from oslo_utils import timeutils
from oslo_utils import uuidutils

from nova_acc.cmd import manage
from nova_acc import binding
from nova_acc.compute import ledger
from tests.functional import base

CONTEXT = 'resources:FPGA=1'


class LedgerTestMixin:

    def inventory(self, hostname, address):
        return self.provider_inventory(self.device_rp(hostname, address))

    def assert_free(self, hostname, address, resets):
        """Free everywhere a user or operator looks, reset ``resets`` times."""
        self.assertEqual(('free', None), self.ledger_state(hostname, address))
        self.assertNotIn(address, self.all_domain_hostdevs())
        # Placement counts exactly the devices of the pool servers hold.
        rp = self.device_rp(hostname, address)
        held = sum(1 for r in self.ledger(hostname).values()
                   if r.rp_uuid == rp and
                   r.state in (ledger.CLAIMED, ledger.ATTACHED))
        self.assertEqual({'FPGA': held}, self.provider_usage(rp))
        self.assertEqual(resets, self.reset_count(address))

    def assert_next_server_gets(self, hostname, address, resets):
        """The next server gets the device; no reset since the release."""
        server = self.boot(CONTEXT)
        self.assertEqual([address], self.domain_hostdevs(hostname, server))
        self.assertEqual(('attached', server['id']),
                         self.ledger_state(hostname, address))
        self.assertEqual(resets, self.reset_count(address))
        return server

    def service_id(self, hostname):
        return self.api.get_services(host=hostname,
                                     binary='nova-compute')[0]['id']


class ReleasePathTest(LedgerTestMixin, base.DeviceContextTestBase):

    def test_delete(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)
        self.assertEqual(('attached', server['id']),
                         self.ledger_state('compute1', fpga))
        record = self.ledger('compute1')[fpga]
        self.assertEqual((self.device_rp('compute1', fpga), 'FPGA'),
                         (record.rp_uuid, record.resource_class))

        self._delete_server(server)

        self.assert_free('compute1', fpga, resets=1)
        self.assertIsNotNone(self.ledger('compute1')[fpga].last_reset)
        self.assert_next_server_gets('compute1', fpga, resets=1)

    def test_soft_delete_keeps_the_device_until_reclaimed(self):
        self.flags(reclaim_instance_interval=3600)
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)

        self.api.delete_server(server['id'])
        server = self._wait_for_state_change(server, 'SOFT_DELETED')
        # Restorable, so it still holds the device.
        self.assertEqual(('attached', server['id']),
                         self.ledger_state('compute1', fpga))
        self.assertEqual({'FPGA': 1}, self.provider_usage(
            self.device_rp('compute1', fpga)))
        self.assertEqual(0, self.reset_count(fpga))

        self.api.post_server_action(server['id'], {'restore': {}})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self.assertEqual(0, self.reset_count(fpga))

        self.api.delete_server(server['id'])
        server = self._wait_for_state_change(server, 'SOFT_DELETED')
        the_future = timeutils.utcnow() + datetime.timedelta(hours=2)
        timeutils.set_time_override(override_time=the_future)
        self.addCleanup(timeutils.clear_time_override)
        self.computes['compute1'].manager._reclaim_queued_deletes(
            nova_context.get_admin_context())
        timeutils.clear_time_override()
        self._wait_until_deleted(server)

        self.assert_free('compute1', fpga, resets=1)
        self.assert_next_server_gets('compute1', fpga, resets=1)

    def test_local_delete_while_the_compute_is_down_then_reap(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)
        self.computes['compute1'].stop()
        self.api.put_service_force_down(self.service_id('compute1'), True)

        # The API deletes the server and its allocation by itself.
        self._delete_server(server)
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))

        self.api.put_service_force_down(self.service_id('compute1'), False)
        self.restart_compute_service('compute1')

        # The deleted server's guest still runs on the host with the
        # device: it must not be handed out, nor reset under the guest.
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self.assertEqual(('orphaned', server['id']),
                         self.ledger_state('compute1', fpga))
        self.assertEqual(1, self.inventory('compute1', fpga)['FPGA'][
            'reserved'])
        self.assertEqual(0, self.reset_count(fpga))
        refused = self.boot(CONTEXT, expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(refused))
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))

        # Nova reaps the guest of the deleted server.
        self.computes['compute1'].manager._cleanup_running_deleted_instances(
            nova_context.get_admin_context())
        self._run_periodics()

        self.assert_free('compute1', fpga, resets=1)
        self.assertEqual(0, self.inventory('compute1', fpga)['FPGA'][
            'reserved'])
        self.assert_next_server_gets('compute1', fpga, resets=1)

    def test_failed_spawn_is_rescheduled_and_the_device_released(self):
        fpgas = {'compute1': self.start_fpga_host('compute1', num_fpgas=1)[0],
                 'compute2': self.start_fpga_host('compute2', num_fpgas=1)[0]}
        failed_on = []
        real = libvirt_driver.LibvirtDriver._create_guest_with_network

        def fail_first(drv, *args, **kwargs):
            if not failed_on:
                failed_on.append(drv._host.get_hostname())
                raise RuntimeError('the guest did not start')
            return real(drv, *args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            '_create_guest_with_network', fail_first))

        server = self.boot(CONTEXT)

        first, = failed_on
        second = 'compute2' if first == 'compute1' else 'compute1'
        self.assertEqual(second, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([fpgas[second]],
                         self.domain_hostdevs(second, server))
        # The device claimed on the first host is released and reset.
        self.assert_free(first, fpgas[first], resets=1)
        self.assertEqual(0, self.reset_count(fpgas[second]))

    def test_failed_build_without_alternate_releases_the_device(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)

        def fail(drv, *args, **kwargs):
            raise RuntimeError('the guest did not start')

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            '_create_guest_with_network', fail))
        server = self.boot(CONTEXT, expected_state='ERROR')

        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.assert_free('compute1', fpga, resets=1)

    def test_device_without_working_reset_stays_dirty_until_cleared(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        reset_file = os.path.join(self.sysfs_root, 'bus', 'pci', 'devices',
                                  fpga, 'reset')
        os.unlink(reset_file)  # this function offers no reset method
        server = self.boot(CONTEXT)

        self._delete_server(server)

        record = self.ledger('compute1')[fpga]
        self.assertEqual(ledger.DIRTY, record.state)
        self.assertIn('no reset method', record.reason)
        self.assertIn(server['id'], record.reason)
        self.assertEqual({'FPGA': 0}, self.provider_usage(
            self.device_rp('compute1', fpga)))
        self.assertEqual(1, self.inventory('compute1', fpga)['FPGA'][
            'reserved'])
        refused = self.boot(CONTEXT, expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(refused))
        self.assertEqual({}, self.all_domain_hostdevs())
        # Still dirty after the periodic run: only an operator clears it.
        self._run_periodics()
        self.assertEqual(ledger.DIRTY,
                         self.ledger('compute1')[fpga].state)

        # The operator fixes the device, then clears it.
        open(reset_file, 'w').close()
        self.assertEqual(0, manage.devices_clear_dirty(
            self.ledger_dir, 'compute1', fpga, force=False))
        self.assertEqual(1, self.reset_count(fpga))
        self._run_periodics()
        self.assertEqual(0, self.inventory('compute1', fpga)['FPGA'][
            'reserved'])
        self.assert_next_server_gets('compute1', fpga, resets=1)

    def test_device_held_without_allocation_is_reserved(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)
        # Placement loses the server's allocation (an operator's
        # "openstack resource provider allocation delete", a bug).
        self._delete_server_allocations(server['id'])

        self._run_periodics()

        # The host still gives the device to the server, so placement must
        # not offer it to anyone else.
        self.assertEqual(('attached', server['id']),
                         self.ledger_state('compute1', fpga))
        self.assertEqual(1, self.inventory('compute1', fpga)['FPGA'][
            'reserved'])
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self._delete_server(server)
        self._run_periodics()
        self.assert_free('compute1', fpga, resets=1)
        self.assertEqual(0, self.inventory('compute1', fpga)['FPGA'][
            'reserved'])

    def test_reset_disabled_frees_without_reset(self):
        self.flags(reset_on_release=False, group='nova_acc')
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)

        self._delete_server(server)

        self.assert_free('compute1', fpga, resets=0)
        self.assertIn('reset_on_release',
                      self.ledger('compute1')[fpga].reason)

    def test_device_used_by_an_unknown_guest_is_reserved(self):
        fpga, other = self.start_fpga_host('compute1', num_fpgas=2)
        guest = self.define_foreign_guest('compute1', fpga)

        self._run_periodics()

        self.assertEqual(('foreign', guest),
                         self.ledger_state('compute1', fpga))
        self.assertEqual(1, self.inventory('compute1', fpga)['FPGA'][
            'reserved'])
        server = self.boot(CONTEXT)
        self.assertEqual([other], self.domain_hostdevs('compute1', server))

        # The guest goes away: the device is reset before anyone gets it.
        conn = self.computes['compute1'].driver._host.get_connection()
        conn.lookupByUUIDString(guest).undefine()
        self._run_periodics()
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assertEqual(1, self.reset_count(fpga))
        self.assertEqual(0, self.inventory('compute1', fpga)['FPGA'][
            'reserved'])


class RestartTest(LedgerTestMixin, base.DeviceContextTestBase):

    def boot_one_of_two(self):
        """A server on one of two FPGAs: (server, its FPGA, the other)."""
        fpgas = self.start_fpga_host('compute1', num_fpgas=2)
        server = self.boot(CONTEXT)
        used, = self.domain_hostdevs('compute1', server)
        return server, used, (set(fpgas) - {used}).pop()

    def test_restart_with_a_claim_of_a_server_that_never_came(self):
        server, used, claimed = self.boot_one_of_two()
        self.computes['compute1'].stop()
        # nova-compute died right after claiming ``claimed`` for a build
        # that never went further (its server is gone by now), while
        # writing the ledger once more.
        book = ledger.DeviceLedger('compute1', self.ledger_dir)
        with book.transaction() as records:
            ledger.claim(records, uuidutils.generate_uuid(),
                         [{'address': claimed}])
        torn = os.path.join(self.ledger_dir, '.compute1.crash.tmp')
        with open(torn, 'w') as f:
            f.write('{"version": 1, "dev')

        self.restart_compute_service('compute1')

        self.assertEqual(('attached', server['id']),
                         self.ledger_state('compute1', used))
        self.assertEqual([used], self.domain_hostdevs('compute1', server))
        self.assertEqual(0, self.reset_count(used))
        self.assert_free('compute1', claimed, resets=1)
        self.assert_next_server_gets('compute1', claimed, resets=1)

    def test_lost_ledger_is_rebuilt_and_unheld_devices_reset(self):
        server, used, unused = self.boot_one_of_two()
        self.computes['compute1'].stop()
        path = os.path.join(self.ledger_dir, 'compute1.json')
        with open(path, 'w') as f:
            f.write('not json at all')

        self.restart_compute_service('compute1')

        self.assertEqual(('attached', server['id']),
                         self.ledger_state('compute1', used))
        self.assertEqual(0, self.reset_count(used))
        # Nobody knows who had it last: reset before it is handed out.
        self.assert_free('compute1', unused, resets=1)
        self.assertEqual(1, len([n for n in os.listdir(self.ledger_dir)
                                 if '.corrupt-' in n]))

    def test_server_booted_before_the_ledger_is_adopted(self):
        server, used, unused = self.boot_one_of_two()
        self.computes['compute1'].stop()
        # As after an upgrade from a nova-acc without a ledger.
        os.unlink(os.path.join(self.ledger_dir, 'compute1.json'))

        self.restart_compute_service('compute1')

        self.assertEqual(('attached', server['id']),
                         self.ledger_state('compute1', used))
        self.assertEqual(0, self.reset_count(unused))
        self._delete_server(server)
        self.assert_free('compute1', used, resets=1)


class DeviceSpecChangeTest(LedgerTestMixin, base.DeviceContextTestBase):

    def test_resource_class_change_waits_until_the_server_leaves(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)
        rp = self.device_rp('compute1', fpga)
        self.flags(device_spec=[json.dumps(dict(
            base.FPGA_SPEC, resource_class='CUSTOM_ACCEL'))],
            group='nova_acc')

        # nova-compute starts, keeping the device in its old pool (class
        # and traits) for the server: its allocation is there.
        self.restart_compute_service('compute1')
        self._run_periodics()

        self.assertEqual({'total': 1, 'reserved': 0},
                         {k: self.provider_inventory(rp)['FPGA'][k]
                          for k in ('total', 'reserved')})
        self.assertNotIn('CUSTOM_ACCEL', self.provider_inventory(rp))
        self.assertEqual({'FPGA': 1}, self.provider_usage(rp))
        # The new class is not offered while the device is held.
        refused = self.boot('resources:CUSTOM_ACCEL=1',
                            expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(refused))
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self._reboot_server(server, hard=True)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))

        self._delete_server(server)
        self._run_periodics()

        self.assertNotIn(rp, self.pool_rps())
        new_rp = self.device_rp('compute1', fpga)
        self.assertEqual(['CUSTOM_ACCEL'],
                         list(self.provider_inventory(new_rp)))
        self.assertEqual(0, self.provider_inventory(new_rp)['CUSTOM_ACCEL'][
            'reserved'])
        again = self.boot('resources:CUSTOM_ACCEL=1')
        self.assertEqual([fpga], self.domain_hostdevs('compute1', again))
        self.assertEqual(1, self.reset_count(fpga))

    def test_removed_device_spec_keeps_the_held_device_in_its_pool(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)
        rp = self.device_rp('compute1', fpga)
        self.flags(device_spec=[json.dumps(dict(
            base.FPGA_SPEC, product_id='ffff'))], group='nova_acc')

        self.restart_compute_service('compute1')
        self._run_periodics()

        # Still counted in its pool for the server's allocation; nothing
        # else can land on it.
        self.assertEqual((1, 0), (
            self.provider_inventory(rp)['FPGA']['total'],
            self.provider_inventory(rp)['FPGA']['reserved']))
        self.assertEqual({'FPGA': 1}, self.provider_usage(rp))
        refused = self.boot(CONTEXT, expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(refused))
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self._delete_server(server)
        self._run_periodics()
        self.assertNotIn(rp, self.host_device_providers('compute1'))


class ConcurrentReleaseTest(LedgerTestMixin, base.DeviceContextTestBase):
    """Where the outcome depends on the API answering before the compute."""

    CAST_AS_CALL = False

    def test_delete_while_spawning(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        real = libvirt_driver.LibvirtDriver._create_guest_with_network
        spawning, go_on = self.hold_spawns()
        server = self.boot(CONTEXT, wait=False)
        self.assertTrue(spawning.wait(30))
        self.assertEqual(('claimed', server['id']),
                         self.ledger_state('compute1', fpga))

        self.api.delete_server(server['id'])
        go_on.set()
        self._wait_until_deleted(server)

        self.assert_free('compute1', fpga, resets=1)
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            '_create_guest_with_network', real))
        again = self.boot(CONTEXT)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', again))
        self.assertEqual(1, self.reset_count(fpga))

    def test_multi_create_with_one_server_deleted_while_binding(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=3)
        real = binding.prebind
        deleted = []

        def delete_the_second(report_client, context, instance, *args):
            if len(deleted) == 0 and getattr(self, '_seen', 0) == 1:
                # The user deletes it between host selection and binding.
                self.api.delete_server(instance.uuid)
                deleted.append(instance.uuid)
            self._seen = getattr(self, '_seen', 0) + 1
            return real(report_client, context, instance, *args)

        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.binding.prebind', delete_the_second))
        body = {'server': dict(self._build_server(networks='none'),
                               min_count=3, max_count=3),
                'os:scheduler_hints': {'device_context': CONTEXT}}
        self.api.post_server(body)

        servers = []
        for _ in range(300):
            servers = self.api.get_servers(detail=True)
            if deleted and len(servers) == 2 and all(
                    s['status'] in ('ACTIVE', 'ERROR') for s in servers):
                break
            threading.Event().wait(0.1)
        self.assertEqual(1, len(deleted))
        self.assertEqual(['ACTIVE', 'ACTIVE'],
                         [s['status'] for s in servers])
        self.assertNotIn(deleted[0], [s['id'] for s in servers])
        attached = self.all_domain_hostdevs()
        self.assertEqual(2, len(attached))
        self.assertTrue(all(len(owners) == 1 for owners in attached.values()))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            deleted[0]))
        free = set(fpgas) - set(attached)
        self.assertEqual(1, len(free))
        self.assertEqual(('free', None),
                         self.ledger_state('compute1', free.pop()))
