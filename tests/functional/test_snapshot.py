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
"""One listing of the host's devices per build, never under the ledger lock.

Listing and parsing every PCI device of the host is most of what a device
context adds to a build on a host with many VFs (issue 20 item 5: a boot
with a device context should cost about a plain boot). A build takes one
host snapshot (``nova_acc.compute.snapshot``) and passes it on, before it
takes the ledger lock that every build, move, delete and reconcile on the
host waits for. These tests count the calls of the discovery itself
(``inventory.discover``) made by the driver's ``spawn``, in the real
driver and Nova's build flow.
"""

import contextlib
import threading

import fixtures

from nova_acc.compute import inventory
from nova_acc.compute import ledger
from nova_acc.seams import libvirt as libvirt_seam
from tests.functional import base
from tests.functional import test_vgpu


class DiscoveryCounter(fixtures.Fixture):
    """Counts discoveries made inside spawn, and any under the ledger lock.

    The resource tracker's update before and after a build lists the
    devices too (the periodic's path, measured by bench_inventory): only
    the calls made by ``spawn`` itself, in its own thread, count here.
    """

    def _setUp(self):
        self.in_spawn = threading.local()
        self.in_lock = threading.local()
        self.per_spawn: list[int] = []
        self.under_lock = 0
        real_discover = inventory.discover
        real_spawn = libvirt_seam.LibvirtAccDriver.spawn
        real_transaction = ledger.DeviceLedger.transaction
        counter = self

        def discover(*args, **kwargs):
            if getattr(counter.in_lock, 'depth', 0):
                counter.under_lock += 1
            if getattr(counter.in_spawn, 'active', False):
                counter.per_spawn[-1] += 1
            return real_discover(*args, **kwargs)

        def spawn(drv, *args, **kwargs):
            counter.per_spawn.append(0)
            counter.in_spawn.active = True
            try:
                return real_spawn(drv, *args, **kwargs)
            finally:
                counter.in_spawn.active = False

        @contextlib.contextmanager
        def transaction(book, *args, **kwargs):
            with real_transaction(book, *args, **kwargs) as records:
                counter.in_lock.depth = getattr(counter.in_lock, 'depth',
                                                0) + 1
                try:
                    yield records
                finally:
                    counter.in_lock.depth -= 1

        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.compute.inventory.discover', discover))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.seams.libvirt.LibvirtAccDriver.spawn', spawn))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.compute.ledger.DeviceLedger.transaction', transaction))


class OneDiscoveryPerBuildTest(base.DeviceContextTestBase):

    def test_a_build_with_a_device_context_lists_the_devices_once(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=2)
        counter = self.useFixture(DiscoveryCounter())

        server = self.boot('resources:FPGA=1')

        self.assertEqual(1, len(self.domain_hostdevs('compute1', server)))
        self.assertTrue(set(self.domain_hostdevs('compute1', server)) <=
                        set(fpgas))
        self.assertEqual([1], counter.per_spawn)
        self.assertEqual(0, counter.under_lock)

    def test_two_groups_are_one_listing_too(self):
        self.start_fpga_host('compute1', num_fpgas=3)
        counter = self.useFixture(DiscoveryCounter())

        server = self.boot('resources:FPGA=1', 'resources:FPGA=1')

        self.assertEqual(2, len(self.domain_hostdevs('compute1', server)))
        self.assertEqual([1], counter.per_spawn)
        self.assertEqual(0, counter.under_lock)

    def test_a_build_without_device_context_lists_nothing(self):
        self.start_fpga_host('compute1', num_fpgas=1)
        counter = self.useFixture(DiscoveryCounter())

        self.boot()

        self.assertEqual([0], counter.per_spawn)


class OneDiscoveryPerVgpuBuildTest(test_vgpu.VgpuTestBase):

    def test_a_vgpu_build_lists_the_devices_once_before_the_lock(self):
        # mdev capacity is counted under the lock: from the snapshot's
        # parents, not from a listing taken there.
        self.start_gpu_host('compute1')
        counter = self.useFixture(DiscoveryCounter())

        server = self.boot('resources:VGPU=1,trait:CUSTOM_M60_0B=required')

        self.assertEqual(1, len(self.domain_mdevs('compute1', server)))
        self.assertEqual(0, counter.under_lock)
        self.assertEqual([1], counter.per_spawn)
