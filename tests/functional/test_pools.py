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
"""Device pools: placement counts the devices, the host picks them.

Each test checks what a user or operator sees: the server's state and
fault, the hostdevs in its guest, the allocation on the pool, the ledger,
and that a released device was reset before anyone else got it.
"""

from concurrent import futures
import threading
from unittest import mock

import eventlet
import fixtures
from nova import context as nova_context
from nova.tests.fixtures import libvirt as fakelibvirt
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver

from nova_acc import binding
from nova_acc.compute import ledger
from nova_acc import pools
from tests.functional import base


class PoolTestMixin:

    def assert_no_device_in_two_guests(self):
        for address, domains in self.all_domain_hostdevs().items():
            self.assertEqual(1, len(domains), 'device %s is in the guests '
                             '%s' % (address, domains))

    def assert_all_free(self, hostname, addresses, resets=1):
        """Free everywhere; ``resets``: a count, or address -> count."""
        pool = self.device_rp(hostname, addresses[0])
        self.assertEqual(0, sum(self.provider_usage(pool).values()))
        for address in addresses:
            self.assertEqual(('free', None),
                             self.ledger_state(hostname, address))
            expected = resets[address] if isinstance(resets, dict) \
                else resets
            self.assertEqual(expected, self.reset_count(address), address)
        self.assertEqual({}, {a: d for a, d in
                              self.all_domain_hostdevs().items()
                              if a in addresses})


class WideRequestTest(PoolTestMixin, base.DeviceContextTestBase):

    def test_one_group_gets_all_eight_devices_of_a_host(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=8, extra_nics=1)
        pool = self.device_rp('compute1', fpgas[0])
        self.assertEqual(
            {'FPGA': {'total': 8, 'reserved': 0, 'min_unit': 1,
                      'max_unit': 8, 'step_size': 1,
                      'allocation_ratio': 1.0}},
            {rc: {k: v for k, v in inv.items() if k != 'generation'}
             for rc, inv in self.provider_inventory(pool).items()})

        server = self.boot('resources:FPGA=8')

        hostdevs = self.domain_hostdevs('compute1', server)
        self.assertEqual(sorted(fpgas), sorted(hostdevs))
        self.assertEqual(8, len(set(hostdevs)))
        self.assertEqual([pool] * 8, self.allocated_device_rps(server))
        self.assertEqual({'FPGA': 8}, self.provider_usage(pool))
        self.assertEqual(sorted(fpgas), self.held_devices('compute1', server))
        for address in fpgas:
            rec = self.ledger('compute1')[address]
            self.assertEqual((ledger.ATTACHED, pool, 'nova_acc_0_0'),
                             (rec.state, rec.rp_uuid, rec.requester_id))
        self.assertEqual([binding.Binding('nova_acc_0_0', pool, None,
                                          'compute1', amount=8,
                                          resource_class='FPGA')],
                         self.server_bindings(server))

        self._delete_server(server)

        self.assert_all_free('compute1', fpgas)

    def test_four_servers_of_two_fill_the_pool_and_a_fifth_fails(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=8)
        servers = [self.boot('resources:FPGA=2') for _ in range(4)]

        self.assertEqual(sorted(fpgas), sorted(self.all_domain_hostdevs()))
        self.assert_no_device_in_two_guests()
        for server in servers:
            self.assertEqual(2, len(self.domain_hostdevs('compute1',
                                                         server)))
        fifth = self.boot('resources:FPGA=2', expected_state='ERROR')
        fault = self.fault_message(fifth)
        self.assertIn('No host has enough free accelerators', fault)
        self.assertIn("'resources:FPGA=2'", fault)
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            fifth['id']))

        # One server leaves: the next one gets its two devices, reset.
        freed = self.domain_hostdevs('compute1', servers[0])
        self._delete_server(servers[0])
        sixth = self.boot('resources:FPGA=2')
        self.assertEqual(sorted(freed), sorted(self.domain_hostdevs(
            'compute1', sixth)))
        for address in freed:
            self.assertEqual(1, self.reset_count(address))

    def test_several_groups_share_a_pool(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=8)
        server = self.boot('resources:FPGA=3;resources:FPGA=2',
                           'resources:FPGA=1')
        hostdevs = self.domain_hostdevs('compute1', server)
        self.assertEqual(6, len(set(hostdevs)))
        self.assertEqual({'FPGA': 6}, self.provider_usage(
            self.device_rp('compute1', fpgas[0])))
        by_group = {}
        for address in hostdevs:
            rec = self.ledger('compute1')[address]
            by_group[rec.requester_id] = by_group.get(rec.requester_id,
                                                      0) + 1
        self.assertEqual({'nova_acc_0_0': 3, 'nova_acc_0_1': 2,
                          'nova_acc_1_0': 1}, by_group)

    def test_a_group_needs_one_pool_with_enough_devices(self):
        # 2 + 2 devices on two hosts: 4 are free, but no pool has 3.
        self.start_fpga_host('compute1', num_fpgas=2)
        self.start_fpga_host('compute2', num_fpgas=2)
        server = self.boot('resources:FPGA=3', expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(server))
        self.assertEqual({}, self.all_domain_hostdevs())

    def test_dirty_device_shrinks_what_the_pool_offers(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=4)
        with self.ledger_transaction('compute1') as records:
            records[fpgas[1]] = ledger.DeviceRecord(address=fpgas[1])
            records[fpgas[1]].dirty('operator test')
        self._run_periodics()
        pool = self.device_rp('compute1', fpgas[0])
        self.assertEqual(1, self.provider_inventory(pool)['FPGA'][
            'reserved'])

        server = self.boot('resources:FPGA=3')
        self.assertNotIn(fpgas[1], self.domain_hostdevs('compute1', server))
        other = self.boot('resources:FPGA=1', expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(other))


class ConcurrentPoolBootTest(PoolTestMixin, base.DeviceContextTestBase):
    # The API answers before the computes act, as in a real cloud.
    CAST_AS_CALL = False

    def test_twenty_concurrent_boots_into_sixteen_devices(self):
        self.flags(instances=40, cores=40, ram=40 * 1024, group='quota')
        devices = {host: self.start_fpga_host(host, num_fpgas=n)
                   for host, n in (('compute1', 8), ('compute2', 4),
                                   ('compute3', 4))}
        with futures.ThreadPoolExecutor(max_workers=20) as executor:
            posted = list(executor.map(
                lambda _: self.boot('resources:FPGA=1', wait=False),
                range(20)))
        servers = [self.wait_for_build_end(s, timeout=180) for s in posted]

        active = [s for s in servers if s['status'] == 'ACTIVE']
        failed = [s for s in servers if s['status'] == 'ERROR']
        self.assertEqual((16, 4), (len(active), len(failed)), [
            self.fault_message(s) for s in failed])
        for server in failed:
            self.assertIn('No host has enough free accelerators',
                          self.fault_message(server))
            self.assertEqual({}, self._get_allocations_by_server_uuid(
                server['id']))
        owners = self.all_domain_hostdevs()
        self.assertEqual(sorted(a for addrs in devices.values()
                                for a in addrs), sorted(owners))
        self.assert_no_device_in_two_guests()
        # Placement and the ledgers agree: 16 units, 16 held devices.
        for host, addresses in devices.items():
            pool = self.device_rp(host, addresses[0])
            self.assertEqual({'FPGA': len(addresses)},
                             self.provider_usage(pool))
            holders = [r.instance_uuid for r in self.ledger(host).values()
                       if r.state == ledger.ATTACHED]
            self.assertEqual(len(addresses), len(set(holders)))

        # A device a rescheduled build had claimed was reset when it was
        # released; each is reset once more after its last holder leaves.
        resets = {a: self.reset_count(a) + 1 for a in owners}
        for server in servers:
            self.api.delete_server(server['id'])
        for server in servers:
            self._wait_until_deleted(server)
        for host, addresses in devices.items():
            self.assert_all_free(host, addresses, resets)
        # No host records a device as held by any of them.
        self.assertEqual([], [(h, a) for h in devices
                              for a, r in self.ledger(h).items()
                              if r.holder])
        for server in active:
            self.assertEqual({}, self._get_allocations_by_server_uuid(
                server['id']))


class VFPoolTest(PoolTestMixin, base.DeviceContextTestBase):
    """A PF with 64 VFs: the VFs are a pool under it; never PF and VF."""

    device_spec = [
        {'vendor_id': fakelibvirt.PCI_VEND_ID,
         'product_id': fakelibvirt.PF_PROD_ID,
         'resource_class': 'CUSTOM_NIC_PF'},
        {'vendor_id': fakelibvirt.PCI_VEND_ID,
         'product_id': fakelibvirt.VF_PROD_ID,
         'resource_class': 'CUSTOM_NIC_VF'},
    ]

    def setUp(self):
        super().setUp()
        pci_info = self._pf_with_vfs(bus=0x81, num_vfs=64)
        self.pf = self._pf_address(pci_info)
        self.vfs = sorted(
            d.address for d in pci_info.devices.values()
            if d.address != self.pf)
        for address in [self.pf] + self.vfs:
            self._make_sysfs_device(address)
        self.host_devices['compute1'] = [self.pf] + self.vfs
        self.start_compute('compute1', pci_info=pci_info)
        self.vf_pool = self.device_rp('compute1', self.vfs[0])
        self.pf_pool = self.device_rp('compute1', self.pf)

    @staticmethod
    def _pf_with_vfs(bus, num_vfs):
        """One PF at <bus>:00.0 and its VFs (``add_pf_with_vfs``)."""
        pci_info = fakelibvirt.HostPCIDevicesInfo(
            num_pci=0, num_pfs=0, num_vfs=0)
        base.add_pf_with_vfs(pci_info, bus, pf_slot=0, num_vfs=num_vfs,
                             iommu_group=100)
        return pci_info

    @staticmethod
    def _pf_address(pci_info):
        xmls = {d.address: d.XMLDesc(0) for d in pci_info.devices.values()}
        return next(a for a, xml in xmls.items()
                    if "type='virt_functions'" in xml)

    def usable(self, pool, rc):
        inv = self.provider_inventory(pool)[rc]
        return inv['total'] - inv['reserved']

    def test_the_vfs_of_the_pf_are_one_pool_of_64(self):
        self.assertEqual(64, len(self.vfs))
        self.assertEqual(64, self.usable(self.vf_pool, 'CUSTOM_NIC_VF'))
        name = self.pool_rps()[self.vf_pool]
        self.assertIn(self.pf, name)
        server = self.boot('resources:CUSTOM_NIC_VF=4')
        hostdevs = self.domain_hostdevs('compute1', server)
        self.assertEqual(4, len(set(hostdevs)))
        self.assertTrue(set(hostdevs) <= set(self.vfs))
        self.assertEqual({'CUSTOM_NIC_VF': 4},
                         self.provider_usage(self.vf_pool))

    def test_pf_is_not_offered_while_one_of_its_vfs_is_in_use(self):
        vf_server = self.boot('resources:CUSTOM_NIC_VF=1')
        self._run_periodics()
        self.assertEqual(0, self.usable(self.pf_pool, 'CUSTOM_NIC_PF'))
        refused = self.boot('resources:CUSTOM_NIC_PF=1',
                            expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(refused))
        self.assertNotIn(self.pf, self.all_domain_hostdevs())

        self._delete_server(vf_server)
        self._run_periodics()
        self.assertEqual(1, self.usable(self.pf_pool, 'CUSTOM_NIC_PF'))
        pf_server = self.boot('resources:CUSTOM_NIC_PF=1')
        self.assertEqual([self.pf], self.domain_hostdevs('compute1',
                                                         pf_server))

    def test_no_vf_is_offered_while_the_pf_is_in_use(self):
        self.boot('resources:CUSTOM_NIC_PF=1')
        self._run_periodics()
        self.assertEqual(0, self.usable(self.vf_pool, 'CUSTOM_NIC_VF'))
        refused = self.boot('resources:CUSTOM_NIC_VF=1',
                            expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(refused))
        self.assertEqual([], [a for a in self.all_domain_hostdevs()
                              if a in self.vfs])

    def test_one_server_never_gets_a_pf_and_one_of_its_vfs(self):
        # Placement sees a free PF and free VFs; the host refuses to hand
        # out both to one server.
        server = self.boot(
            'resources:CUSTOM_NIC_PF=1;resources:CUSTOM_NIC_VF=1',
            expected_state='ERROR')
        self.assertEqual({}, self.all_domain_hostdevs())
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.assertEqual([], [a for a, r in self.ledger('compute1').items()
                              if r.holder])

    def test_the_host_refuses_a_vf_whose_pf_is_in_use_before_placement_knows(
            self):
        # Both claimed before any periodic update told placement: the
        # ledger's claim refuses the second; it is rescheduled and fails.
        self.boot('resources:CUSTOM_NIC_PF=1')
        refused = self.boot('resources:CUSTOM_NIC_VF=1',
                            expected_state='ERROR')
        self.assertEqual([], [a for a in self.all_domain_hostdevs()
                              if a in self.vfs])
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            refused['id']))


class ReshapeFromPerDeviceProvidersTest(PoolTestMixin,
                                        base.DeviceContextTestBase):
    """Upgrade of a host that reported one provider per device.

    The old layout is what nova-acc reported before pools, rebuilt in
    placement, the ledger and the servers' bindings from a host booted with
    pools: per-device providers ``<node>_<address>`` with inventory 1, each
    server's allocation on its device's provider, and bindings naming the
    device.
    """

    def _to_per_device_layout(self, hostname, servers):
        pool = self.device_rp(hostname, self.host_devices[hostname][0])
        root = self.compute_rp_uuids[hostname]
        legacy = {}
        for address in self.host_devices[hostname]:
            uuid = pools.legacy_provider_uuid(hostname, address)
            legacy[address] = uuid
            self.placement.post('/resource_providers', {
                'uuid': uuid, 'name': pools.legacy_provider_name(
                    hostname, address),
                'parent_provider_uuid': root}, version='1.20')
            self.placement.put('/resource_providers/%s/inventories' % uuid,
                               {'resource_provider_generation': 0,
                                'inventories': {'FPGA': {'total': 1}}})
            self.placement.put('/resource_providers/%s/traits' % uuid, {
                'resource_provider_generation': 1,
                'traits': ['CUSTOM_GZIP', 'OWNER_NOVA', 'CUSTOM_NOVA_ACC']},
                version='1.6')
        ctxt = nova_context.get_admin_context()
        for server in servers:
            held = self.held_devices(hostname, server)
            allocs = self.placement.get(
                '/allocations/%s' % server['id'], version='1.28').body
            body = {'allocations': {
                rp: {'resources': a['resources']}
                for rp, a in allocs['allocations'].items() if rp != pool},
                'project_id': allocs['project_id'],
                'user_id': allocs['user_id'],
                'consumer_generation': allocs['consumer_generation']}
            for address in held:
                body['allocations'][legacy[address]] = {
                    'resources': {'FPGA': 1}}
            self.placement.put('/allocations/%s' % server['id'], body,
                               version='1.28')
            mapping = objects.InstanceMapping.get_by_instance_uuid(
                ctxt, server['id'])
            with nova_context.target_cell(ctxt,
                                          mapping.cell_mapping) as cctxt:
                instance = objects.Instance.get_by_uuid(
                    cctxt, server['id'], expected_attrs=['system_metadata'])
                binding.replace(instance, [
                    binding.Binding('nova_acc_0_%d' % i, legacy[a], a,
                                    hostname)
                    for i, a in enumerate(held)])
                instance.save()
            with self.ledger_transaction(hostname) as records:
                for address in held:
                    records[address].rp_uuid = legacy[address]
                    records[address].requester_id = None
        self.placement.delete('/resource_providers/%s' % pool)
        return legacy

    def test_running_servers_keep_their_devices_through_the_reshape(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=4)
        servers = [self.boot('resources:FPGA=1;resources:FPGA=1'),
                   self.boot('resources:FPGA=1')]
        hostdevs = {s['id']: self.domain_hostdevs('compute1', s)
                    for s in servers}
        legacy = self._to_per_device_layout('compute1', servers)
        self.assertEqual(4, len([n for n in self.pool_rps().values()
                                 if n.startswith('compute1_0000')]))

        # The upgraded compute starts: Nova asks it to reshape.
        self.restart_compute_service('compute1')

        pool = self.device_rp('compute1', fpgas[0])
        self.assertEqual([pool], list(self.pool_rps()))
        self.assertEqual(4, self.provider_inventory(pool)['FPGA']['total'])
        self.assertEqual({'FPGA': 3}, self.provider_usage(pool))
        for uuid in legacy.values():
            self.assertNotIn(uuid, self.pool_rps())
        for server in servers:
            held = hostdevs[server['id']]
            self.assertEqual([pool] * len(held),
                             self.allocated_device_rps(server))
            for address in held:
                self.assertEqual(pool, self.ledger('compute1')[
                    address].rp_uuid)
            # The guest is defined again from the records: same devices.
            self._reboot_server(server, hard=True)
            self.assertEqual(held, self.domain_hostdevs('compute1', server))

        # The one free device is handed out from the pool; then none.
        extra = self.boot('resources:FPGA=1')
        self.assertEqual(sorted(fpgas), sorted(self.all_domain_hostdevs()))
        self.assert_no_device_in_two_guests()
        self.boot('resources:FPGA=1', expected_state='ERROR')

        for server in servers + [extra]:
            self._delete_server(server)
        self.assert_all_free('compute1', fpgas)


class ComputeRestartTest(PoolTestMixin, base.DeviceContextTestBase):
    CAST_AS_CALL = False

    def test_restart_between_claim_and_spawn(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=2)
        claimed = threading.Event()
        builds = []
        real_spawn = libvirt_driver.LibvirtDriver.spawn

        def spawn_then_die(driver, *args, **kwargs):
            # nova-acc's part of spawn (the claim) has run; the process
            # dies before libvirt defines the guest: nothing below runs,
            # no cleanup, no except clause.
            builds.append(eventlet.getcurrent())
            claimed.set()
            eventlet.sleep(3600)
            return real_spawn(driver, *args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.spawn', spawn_then_die))
        server = self.boot('resources:FPGA=2', wait=False)
        self.assertTrue(claimed.wait(60))
        self.assertEqual(sorted(fpgas),
                         self.held_devices('compute1', server))
        # The process dies: its build stops where it is. (Killing the
        # greenthread still runs the exits of the context managers on its
        # stack; of those, only the resource claim's abort would change
        # what a dead process leaves behind, so it is kept from running.)
        with mock.patch('nova.compute.claims.Claim.abort'):
            eventlet.kill(builds[0])
        self.assertEqual('compute1', self.api.get_server(server['id'])[
            'OS-EXT-SRV-ATTR:host'])
        self.restart_compute_service('compute1')
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.spawn', real_spawn))

        # Nova puts the interrupted build in ERROR; it still holds its
        # devices (and its allocation) until it is deleted: neither lost
        # nor handed to anyone else.
        server = self._wait_for_state_change(server, 'ERROR',
                                             wait_for_fault_key=False)
        self._run_periodics()
        self.assertEqual(sorted(fpgas),
                         self.held_devices('compute1', server))
        self.assertEqual({}, self.all_domain_hostdevs())
        refused = self.boot('resources:FPGA=1', expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(refused))

        self._delete_server(server)
        self.assert_all_free('compute1', fpgas)
        again = self.boot('resources:FPGA=2')
        self.assertEqual(sorted(fpgas), sorted(self.domain_hostdevs(
            'compute1', again)))
        for address in fpgas:
            self.assertEqual(1, self.reset_count(address))

    def test_device_vanishing_while_allocated(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=3)
        server = self.boot('resources:FPGA=2')
        held = self.held_devices('compute1', server)
        pool = self.device_rp('compute1', fpgas[0])
        free, = set(fpgas) - set(held)

        self.remove_host_device('compute1', held[0])
        self._run_periodics()

        # Still counted for its server's allocation; nothing lost, and the
        # one free device is still offered.
        self.assertEqual((3, 0), (
            self.provider_inventory(pool)['FPGA']['total'],
            self.provider_inventory(pool)['FPGA']['reserved']))
        self.assertEqual([pool, pool], self.allocated_device_rps(server))
        other = self.boot('resources:FPGA=1')
        self.assertEqual([free], self.domain_hostdevs('compute1', other))

        self._delete_server(server)
        self._run_periodics()
        # The gone device cannot be reset: it is out of the pool now.
        self.assertEqual(2, self.provider_inventory(pool)['FPGA']['total'])
        self.assertEqual(1, self.reset_count(held[1]))
