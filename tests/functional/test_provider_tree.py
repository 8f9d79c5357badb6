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
"""What nova-compute reports to placement, and what survives a restart."""

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt

from nova_acc.compute import inventory
from tests.functional import base


class ProviderTreeTest(base.DeviceContextTestBase):

    def test_interchangeable_devices_are_one_pool_provider(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=2, extra_nics=2)

        providers = self.host_device_providers('compute1')
        self.assertEqual(1, len(providers))
        (name, rp), = providers.items()
        self.assertTrue(name.startswith('compute1_FPGA_'), name)
        self.assertEqual(self.compute_rp_uuids['compute1'],
                         rp['parent_provider_uuid'])
        for address in fpgas:
            self.assertEqual(self.device_rp('compute1', address), rp['uuid'])
        inv = self.provider_inventory(rp['uuid'])
        self.assertEqual({'FPGA'}, set(inv))
        self.assertEqual((2, 0, 2), (inv['FPGA']['total'],
                                     inv['FPGA']['reserved'],
                                     inv['FPGA']['max_unit']))
        self.assertEqual({'CUSTOM_GZIP', 'OWNER_NOVA', 'CUSTOM_NOVA_ACC'},
                         self.provider_traits(rp['uuid']))
        self.assertIn('CUSTOM_NOVA_ACC', self.provider_traits(
            self.compute_rp_uuids['compute1']))

    def test_host_without_nova_acc_devices_is_not_a_candidate(self):
        self.start_fpga_host('compute1', num_fpgas=0, extra_nics=1)
        server = self.boot('resources:FPGA=1', expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(server))

    def test_periodic_update_without_change_writes_nothing(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=2)
        self.boot('resources:FPGA=1')
        before = {n: rp['generation'] for n, rp in
                  self.host_device_providers('compute1').items()}

        self._run_periodics()
        self._run_periodics()

        after = {n: rp['generation'] for n, rp in
                 self.host_device_providers('compute1').items()}
        self.assertEqual(before, after)
        self.assertEqual(2, len(fpgas))

    def test_periodic_update_lists_the_devices_once_before_the_lock(self):
        # The listing and the reconcile run in get_available_resource,
        # before the resource tracker takes the lock a build's claim
        # waits for; the tree update under the lock lists nothing again.
        fpgas = self.start_fpga_host('compute1', num_fpgas=2)
        server = self.boot('resources:FPGA=1')
        driver = self.computes['compute1'].driver
        looking, listed = [], []
        get_available_resource = driver.get_available_resource
        discover = inventory.discover

        def wrapped_get_available_resource(nodename):
            looking.append(nodename)
            try:
                return get_available_resource(nodename)
            finally:
                looking.pop()

        def wrapped_discover(*args, **kwargs):
            listed.append(list(looking))
            return discover(*args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.compute.inventory.discover', wrapped_discover))
        self.useFixture(fixtures.MockPatchObject(
            driver, 'get_available_resource',
            side_effect=wrapped_get_available_resource))

        self._run_periodics()

        self.assertEqual([['compute1']], listed)
        # What it reports is what the ledger holds: one device in use.
        (rp,) = {self.device_rp('compute1', a) for a in fpgas}
        self.assertEqual({'FPGA': 1}, self.provider_usage(rp))
        self.assertEqual(0, self.provider_inventory(rp)['FPGA']['reserved'])
        self.assertEqual(1, len(self.domain_hostdevs('compute1', server)))

    def test_an_unchanged_host_is_not_described_again(self):
        # Each listing asks libvirt for the devices' names; only a change in
        # them has every device described again (compute/listing.py).
        fpgas = self.start_fpga_host('compute1', num_fpgas=2)
        rp = self.device_rp('compute1', fpgas[1])
        conn = self.computes['compute1'].driver._host.get_connection()
        described = self.useFixture(fixtures.MockPatchObject(
            conn, 'listAllDevices', wraps=conn.listAllDevices)).mock

        self._run_periodics()
        server = self.boot('resources:FPGA=1')
        self._run_periodics()
        self.assertEqual(0, described.call_count)

        free, = set(fpgas) - set(self.held_devices('compute1', server))
        self.remove_host_device('compute1', free)
        self._run_periodics()
        self.assertEqual(1, described.call_count)
        self.assertEqual(1, self.provider_inventory(rp)['FPGA']['total'])

    def test_vanished_free_device_leaves_its_pool(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=2)
        rp = self.device_rp('compute1', fpgas[1])

        self.remove_host_device('compute1', fpgas[0])
        self._run_periodics()

        self.assertEqual([rp], [p['uuid'] for p in
                                self.host_device_providers(
                                    'compute1').values()])
        self.assertEqual(1, self.provider_inventory(rp)['FPGA']['total'])

    def test_vanished_allocated_device_stays_counted_until_freed(self):
        fpga = self.start_fpga_host('compute1', num_fpgas=1)[0]
        server = self.boot('resources:FPGA=1')
        rp = self.device_rp('compute1', fpga)

        self.remove_host_device('compute1', fpga)
        self._run_periodics()

        # Still there, allocation intact, nothing new can land on it.
        self.assertIn(rp, self.pool_rps())
        self.assertEqual((1, 0), (
            self.provider_inventory(rp)['FPGA']['total'],
            self.provider_inventory(rp)['FPGA']['reserved']))
        self.assertEqual({'FPGA': 1}, self.provider_usage(rp))
        self.assertEqual([rp], self.allocated_device_rps(server))
        other = self.boot('resources:FPGA=1', expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(other))

        self._delete_server(server)
        self._run_periodics()

        self.assertEqual({}, self.host_device_providers('compute1'))

    def test_device_that_comes_back_is_usable_again(self):
        fpga = self.start_fpga_host('compute1', num_fpgas=1)[0]
        device = self.remove_host_device('compute1', fpga)
        self._run_periodics()
        self.assertEqual({}, self.host_device_providers('compute1'))

        conn = self.computes['compute1'].driver._host.get_connection()
        conn.pci_info.devices['pci_' + fpga.replace(':', '_').replace(
            '.', '_')] = device
        self._run_periodics()

        server = self.boot('resources:FPGA=1')
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))


class RestartTest(base.DeviceContextTestBase):

    def test_compute_restart_keeps_inventory_allocation_and_binding(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=2)
        server = self.boot('resources:FPGA=1')
        providers = self.host_device_providers('compute1')
        bindings = self.server_bindings(server)
        allocations = self._get_allocations_by_server_uuid(server['id'])
        hostdevs = self.domain_hostdevs('compute1', server)
        self.assertEqual(1, len(bindings))
        self.assertEqual(hostdevs, self.held_devices('compute1', server))

        self.restart_compute_service('compute1')
        self._run_periodics()

        self.assertEqual(providers, self.host_device_providers('compute1'))
        self.assertEqual(bindings, self.server_bindings(server))
        self.assertEqual(hostdevs, self.held_devices('compute1', server))
        self.assertEqual(allocations,
                         self._get_allocations_by_server_uuid(server['id']))
        self.assertEqual(hostdevs, self.domain_hostdevs('compute1', server))

        # And the restarted compute still releases it properly.
        self._reboot_server(server, hard=True)
        self.assertEqual(hostdevs, self.domain_hostdevs('compute1', server))
        self._delete_server(server)
        self.assertEqual(1, self.reset_count(hostdevs[0]))
        free = self.boot('resources:FPGA=1', 'resources:FPGA=1')
        self.assertEqual(sorted(fpgas),
                         sorted(self.domain_hostdevs('compute1', free)))


class SharedDeviceConfigTest(base.DeviceContextTestBase):

    def test_device_in_both_device_specs_refuses_to_start(self):
        self.flags(device_spec=['{"vendor_id": "%s", "product_id": "%s"}' % (
            base.FPGA_VENDOR, base.FPGA_PRODUCT)], group='pci')
        pci_info = fakelibvirt.HostPCIDevicesInfo(
            num_pci=0, num_pfs=0, num_vfs=0)
        pci_info.add_device(dev_type='PCI', bus=0x81, slot=0, function=0,
                            iommu_group=40, numa_node=0,
                            vend_id=base.FPGA_VENDOR,
                            prod_id=base.FPGA_PRODUCT)
        ex = self.assertRaises(Exception, self.start_compute, 'compute1',
                               pci_info=pci_info)
        self.assertIn('0000:81:00.0 is selected by both [nova_acc] '
                      'device_spec and [pci] device_spec', str(ex))
