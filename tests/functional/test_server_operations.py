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
"""The server operations that keep the devices, for PCI devices and vGPUs.

Soft reboot, rebuild, rescue and unrescue, stop and start, pause: each
gives the guest Nova defines (or restarts) the very same devices. After
each, on the host: the domain's hostdevs are the devices the ledger gives
the server (``attached``), placement's allocation is unchanged, nothing
was reset or removed, and a resource update releases nothing. Casts stay
casts.
"""

import fixtures
from nova import conf as nova_conf

from nova_acc.compute import ledger
from tests.functional import base
from tests.functional import test_vgpu

CONTEXT = 'resources:FPGA=1'
NOVA_CONF = nova_conf.CONF


def _resources(allocations):
    return {rp: a['resources'] for rp, a in allocations.items()}


class OperationsMixin:
    """The scenarios; a subclass boots ``self.server`` and checks."""

    CAST_AS_CALL = False

    def setUp(self):
        super().setUp()
        # Rescue: Nova's stable rescue writes the rescue disk (whose utime
        # it touches as root through privsep) and unrescue.xml in the
        # instance's directory, as in Nova's own rescue functional test.
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.imagebackend._update_utime_ignore_eacces'))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.utils.get_instance_path',
            lambda *args, **kwargs: NOVA_CONF.instances_path))

    def kept(self):
        """What the server holds now; equal before and after."""
        raise NotImplementedError

    def assert_kept(self, before):
        self.assertEqual(before, self.kept())
        self._run_periodics()
        self.assertEqual(before, self.kept())

    def test_soft_reboot(self):
        before = self.kept()
        self._reboot_server(self.server, hard=False)
        self.assert_kept(before)

    def test_hard_reboot(self):
        before = self.kept()
        self._reboot_server(self.server, hard=True)
        self.assert_kept(before)

    def test_rebuild(self):
        before = self.kept()
        self._rebuild_server(self.server, self.server['image']['id'])
        self.assert_kept(before)

    def test_rescue_and_unrescue(self):
        before = self.kept()
        self._rescue_server(self.server)
        # The rescue guest has the server's devices.
        self.assert_kept(before)
        self._unrescue_server(self.server)
        self.assert_kept(before)

    def test_stop_and_start(self):
        before = self.kept()
        self._stop_server(self.server)
        self._start_server(self.server)
        self._wait_for_state_change(self.server, 'ACTIVE')
        self.assert_kept(before)

    def test_pause_and_unpause(self):
        before = self.kept()
        self.api.post_server_action(self.server['id'], {'pause': {}})
        self._wait_for_state_change(self.server, 'PAUSED')
        self.api.post_server_action(self.server['id'], {'unpause': {}})
        self._wait_for_state_change(self.server, 'ACTIVE')
        self.assert_kept(before)


class PciOperationsTest(OperationsMixin, base.DeviceContextTestBase):

    def setUp(self):
        super().setUp()
        self.devices = self.start_fpga_host('compute1', num_fpgas=2)
        self.server = self.boot(CONTEXT)

    def kept(self):
        hostdevs = self.domain_hostdevs('compute1')
        held = self.held_devices('compute1', self.server)
        self.assertEqual(1, len(held))
        # No device in two domains, and none in a domain of another.
        self.assertEqual({self.server['id']: held},
                         {u: a for u, a in hostdevs.items() if a})
        self.assertEqual([(ledger.ATTACHED, self.server['id'])],
                         [self.ledger_state('compute1', a) for a in held])
        return (held,
                _resources(self._get_allocations_by_server_uuid(
                    self.server['id'])),
                [self.reset_count(a) for a in self.devices])


class VgpuOperationsTest(OperationsMixin, test_vgpu.VgpuTestBase):

    def setUp(self):
        super().setUp()
        self.start_gpu_host('compute1', num_gpus=1)
        self.server = self.boot('resources:VGPU=1')

    def kept(self):
        mdevs = self.domain_mdevs('compute1', self.server)
        self.assertEqual(1, len(mdevs))
        rec = self.ledger('compute1')[mdevs[0]]
        self.assertEqual((ledger.ATTACHED, self.server['id']),
                         (rec.state, rec.instance_uuid))
        host = self.mdev_hosts['compute1']
        return (mdevs, sorted(self.host_mdevs('compute1')),
                _resources(self._get_allocations_by_server_uuid(
                    self.server['id'])),
                (host.created, host.removed))
