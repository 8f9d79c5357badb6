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
"""The fault of a server whose host refused its devices, no host left.

Placement allocated the devices but the host's ledger refused the claim (a
PF/VF race lost, a device held by a server placement lost track of):
nova-compute asks for a reschedule, and with one host there is none left.
The user must learn which device context was refused and why, not only
Nova's "Exhausted all hosts available for retrying build failures"; what
is not theirs (another server's UUID, the host's name) stays out of it.
Nothing may be left behind: no allocation, no claim in the ledger.
"""

import fixtures
from nova import exception as nova_exc
from nova.tests.fixtures import libvirt as fakelibvirt

from nova_acc.compute import ledger
from tests.functional import base

NOVA_ALONE = 'Exhausted all hosts available for retrying build failures'


class RefusedClaimTestMixin:

    def assert_fault(self, server, *expected, absent=()):
        message = self.fault_message(server)
        self.assertIn('Exceeded maximum number of retries.', message)
        self.assertNotIn(NOVA_ALONE, message)
        for text in expected:
            self.assertIn(text, message)
        for text in absent:
            self.assertNotIn(text, message)
        self.assertLessEqual(len(message), 255)
        return message

    def assert_nothing_left(self, server, hostname):
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.assertEqual([], [a for a, r in self.ledger(hostname).items()
                              if r.instance_uuid == server['id']])
        self.assertEqual([], self.domain_hostdevs(hostname, server))


class PfVfRaceTest(RefusedClaimTestMixin, base.DeviceContextTestBase):
    """A VF asked for while its PF is in use, before placement knows."""

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
        pci_info = fakelibvirt.HostPCIDevicesInfo(
            num_pci=0, num_pfs=0, num_vfs=0)
        self.vfs = base.add_pf_with_vfs(pci_info, 0x81, pf_slot=0,
                                        num_vfs=2, iommu_group=100)
        self.pf = next(d.address for d in pci_info.devices.values()
                       if d.address not in self.vfs)
        for address in [self.pf] + self.vfs:
            self._make_sysfs_device(address)
        self.host_devices['compute1'] = [self.pf] + self.vfs
        self.start_compute('compute1', pci_info=pci_info)

    def test_the_fault_names_the_context_and_the_blocked_vfs(self):
        pf_server = self.boot('resources:CUSTOM_NIC_PF=1')
        # No periodic update between the boots: placement still offers the
        # VFs; the host's ledger refuses them.
        refused = self.boot('resources:CUSTOM_NIC_VF=1',
                            expected_state='ERROR')
        self.assertEqual(['compute1'], self.hosts_tried(refused))
        self.assert_fault(
            refused,
            "device context 'resources:CUSTOM_NIC_VF=1' needs 1 device(s)",
            'only 0 free',
            'its PF or one of its VFs is in use',
            absent=['compute1', 'nova_acc_0_0', self.vf_pool_uuid()])
        self.assert_nothing_left(refused, 'compute1')
        self.assertEqual(('attached', pf_server['id']),
                         self.ledger_state('compute1', self.pf))

    def vf_pool_uuid(self):
        return self.device_rp('compute1', self.vfs[0])


class DeviceHeldWithoutAllocationTest(RefusedClaimTestMixin,
                                      base.DeviceContextTestBase):
    """The ledger gives a device to a server placement lost track of."""

    def setUp(self):
        super().setUp()
        self.flags(profile=['one-fpga=resources:FPGA=1'], group='nova_acc')

    def hold_without_allocation(self, num_fpgas):
        """One FPGA held by a server placement no longer counts."""
        fpgas = self.start_fpga_host('compute1', num_fpgas=num_fpgas)
        holder = self.boot('resources:FPGA=1')
        # An operator's "resource provider allocation delete", a bug: no
        # periodic update has reserved the device since.
        self._delete_server_allocations(holder['id'])
        held, = self.domain_hostdevs('compute1', holder)
        return holder, held, fpgas

    def test_the_fault_names_the_profile_and_not_the_other_server(self):
        holder, held, _fpgas = self.hold_without_allocation(1)

        refused = self.boot('profile:one-fpga', expected_state='ERROR')

        self.assertEqual(['compute1'], self.hosts_tried(refused))
        self.assert_fault(
            refused,
            "device context 'profile:one-fpga' needs 1 device(s)",
            'only 0 free',
            'device %s is attached by another server' % held,
            absent=['compute1', holder['id']])
        self.assert_nothing_left(refused, 'compute1')
        self.assertEqual(('attached', holder['id']),
                         self.ledger_state('compute1', held))

    def test_the_fault_names_the_context_that_was_refused(self):
        # Two contexts; the host has a device for the first only.
        _holder, _held, _fpgas = self.hold_without_allocation(2)

        refused = self.boot('resources:FPGA=1', 'profile:one-fpga',
                            expected_state='ERROR')

        message = self.assert_fault(
            refused, "device context 'profile:one-fpga' needs 1 device(s)")
        self.assertNotIn("'resources:FPGA=1'", message)
        self.assert_nothing_left(refused, 'compute1')
        # The device the first context got on the host is free again.
        self.assertEqual(
            [], [a for a, r in self.ledger('compute1').items()
                 if r.state in (ledger.CLAIMED, ledger.ATTACHED) and
                 r.instance_uuid == refused['id']])

    def test_a_server_without_device_contexts_keeps_novas_fault(self):
        # nova-acc only words the fault of servers with device contexts.
        self.start_fpga_host('compute1', num_fpgas=1)
        self.useFixture(_FailSpawnWithoutContexts())
        server = self.boot(expected_state='ERROR')
        self.assertIn(NOVA_ALONE, self.fault_message(server))


class _FailSpawnWithoutContexts(fixtures.Fixture):
    """The host refuses every server's resources (Nova's own claim)."""

    def _setUp(self):
        def refuse(*args, **kwargs):
            raise nova_exc.ComputeResourcesUnavailable(reason='no room')

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.spawn', refuse))
