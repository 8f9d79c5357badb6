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
"""Config data takes effect (issue 21 item 3), in Nova's harness.

The hosts' FPGAs are selected by a ``device_spec`` entry that names the
configurator ``recorder`` and allows ``accel:mode`` = fast or slow. The
recorder (``nova_acc.tests.fixtures.configurators``) is installed as that
configurator for each test and records what nova-compute asks of it; the
ledger, the resets, the guests and placement are the real ones.

``FpgaBitstreamTest`` runs the shipped ``fpga_bitstream`` configurator end
to end instead: an image in Nova's Glance fixture, its checksum verified by
the privsep entrypoint (in-process) and a stand-in programming tool.
"""

import hashlib
import os

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_utils import uuidutils

from nova_acc.compute import fpga
from nova_acc.compute import ledger
from nova_acc.tests.fixtures import cloud
from nova_acc.tests.fixtures import configurators
from tests.functional import base
from tests.functional import test_device_contexts
from tests.functional import test_moves

SPEC = dict(cloud.FPGA_SPEC, configurator='recorder',
            config={'mode': ['fast', 'slow']})
FAST = 'resources:FPGA=1,accel:mode=fast'
GiB_in_kB = 1024 * 1024


class ConfigDataMixin:

    device_spec = [SPEC]

    def setUp(self):
        super().setUp()
        self.recorder = self.useFixture(
            configurators.RecordingConfigurator('recorder')).plugin

    def configured_marks(self, host):
        """{address: configurator} of the host's ledger, marked ones only."""
        return {a: r.configured_by for a, r in self.ledger(host).items()
                if r.configured_by}

    def watch_configure(self, host):
        """At each configure: (mark in the ledger, guests with devices)."""
        seen = []

        def at_configure(request):
            seen.append((self.ledger(host)[request.address].configured_by,
                         self.all_domain_hostdevs().get(request.address)))
        self.recorder.on_configure = at_configure
        return seen

    def watch_unconfigure(self):
        """At each unconfigure: (address, resets of it so far)."""
        seen = []

        def at_unconfigure(address):
            seen.append((address, self.reset_count(address)))
        self.recorder.on_unconfigure = at_unconfigure
        return seen


class BootTest(ConfigDataMixin, base.DeviceContextTestBase):

    def test_configured_before_the_guest_unconfigured_before_the_reset(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        seen = self.watch_configure('compute1')

        server = self.boot(FAST)

        self.assertEqual([('configure', fpga, {'mode': 'fast'},
                           'nova_acc_0_0', server['id'])],
                         self.recorder.calls)
        # Marked before the configurator ran; no guest had the device yet.
        self.assertEqual([('recorder', None)], seen)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self.assertEqual({fpga: 'recorder'},
                         self.configured_marks('compute1'))
        # A new definition of the same guest does not configure again.
        self._reboot_server(server, hard=True)
        self.assertEqual(1, len(self.recorder.calls))

        unconfigured = self.watch_unconfigure()
        self._delete_server(server)

        self.assertEqual([(fpga, 0)], unconfigured)
        self.assertEqual(1, self.reset_count(fpga))
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assertEqual({}, self.configured_marks('compute1'))

    def test_a_group_without_config_data_is_not_configured(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot('resources:FPGA=1')
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self._delete_server(server)
        self.assertEqual([], self.recorder.calls)

    def test_a_key_no_device_allows_finds_no_host(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)

        server = self.boot('resources:FPGA=1,accel:colour=red',
                           expected_state='ERROR')

        fault = self.fault_message(server)
        self.assertIn("No host has enough free accelerators for the device "
                      "context(s) 'resources:FPGA=1,accel:colour=red'", fault)
        self.assertEqual([], self.recorder.calls)
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))

    def test_a_failed_configure_reschedules_and_leaves_nothing(self):
        fpga1, = self.start_fpga_host('compute1', num_fpgas=1, host_info=(
            fakelibvirt.HostInfo(kB_mem=32 * GiB_in_kB)))
        fpga2, = self.start_fpga_host('compute2', num_fpgas=1, host_info=(
            fakelibvirt.HostInfo(kB_mem=16 * GiB_in_kB)))
        self.recorder.fail_on = {fpga1}

        server = self.boot(FAST)

        self.assertEqual(['compute1', 'compute2'], self.hosts_tried(server))
        self.assertEqual([fpga2], self.domain_hostdevs('compute2', server))
        self.assertEqual({fpga2: 'recorder'},
                         self.configured_marks('compute2'))
        # Host 1's device: unconfigured, released, reset and free.
        self.assertEqual({fpga2}, self.recorder.configured())
        self.assertIn(('unconfigure', fpga1), self.recorder.calls)
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga1))
        self.assertEqual(1, self.reset_count(fpga1))
        self.assertEqual({}, self.configured_marks('compute1'))
        self.assertEqual({'FPGA': 0}, self.provider_usage(
            self.device_rp('compute1', fpga1)))

    def test_failing_everywhere_faults_naming_the_context_and_why(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=2)
        self.recorder.fail_on = {'*'}
        self.recorder.reason = 'the bitstream does not fit this board'

        server = self.boot('resources:FPGA=2,accel:mode=slow',
                           expected_state='ERROR')

        fault = self.fault_message(server)
        self.assertIn("device context 'resources:FPGA=2,accel:mode=slow': "
                      "device 0000:81:", fault)
        self.assertIn('could not be configured on the host: the bitstream '
                      'does not fit this board.', fault)
        self.assertEqual(set(), self.recorder.configured())
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        for address in fpgas:
            self.assertEqual(('free', None),
                             self.ledger_state('compute1', address))
        self.assertEqual({}, self.configured_marks('compute1'))
        self.assertEqual({}, self.domain_hostdevs('compute1'))


class MoveTest(ConfigDataMixin, test_moves.MoveTestMixin,
               base.DeviceContextTestBase):

    def test_resize_configures_the_destination_and_confirm_unconfigures(
            self):
        hosts = self.start_hosts(num_fpgas=1)
        src, = hosts['compute1']
        dest, = hosts['compute2']
        server = self.boot_on('compute1', FAST)

        server = self._resize_server(server, self.bigger)

        self.assertEqual('compute2', self.host_of(server))
        self.assertEqual({src, dest}, self.recorder.configured())
        self.assertEqual({dest: 'recorder'},
                         self.configured_marks('compute2'))
        # The source keeps its configured device until the confirm.
        self.assertEqual({src: 'recorder'}, self.configured_marks('compute1'))
        unconfigured = self.watch_unconfigure()

        self._confirm_resize(server)

        self.assertEqual([(src, 0)], unconfigured)
        self.assertEqual({dest}, self.recorder.configured())
        self.assertEqual({}, self.configured_marks('compute1'))
        self.assertEqual(1, self.reset_count(src))
        self.assertEqual([dest], self.domain_hostdevs('compute2', server))

    def test_revert_unconfigures_the_destination_and_keeps_the_source(
            self):
        hosts = self.start_hosts(num_fpgas=1)
        src, = hosts['compute1']
        dest, = hosts['compute2']
        server = self.boot_on('compute1', FAST)
        server = self._resize_server(server, self.bigger)

        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self._wait_for_state_change(server, 'ACTIVE')

        self.assertEqual('compute1', self.host_of(server))
        # Configured once, on the first boot: the source kept its device.
        self.assertEqual({src}, self.recorder.configured())
        self.assertEqual(1, sum(1 for c in self.recorder.calls
                                if c[:2] == ('configure', src)))
        self.assertEqual({src: 'recorder'}, self.configured_marks('compute1'))
        self.assertEqual({}, self.configured_marks('compute2'))
        self.assertEqual(('free', None), self.ledger_state('compute2', dest))

    def test_cold_migration_configures_the_destination(self):
        hosts = self.start_hosts(num_fpgas=1)
        src, = hosts['compute1']
        dest, = hosts['compute2']
        server = self.boot_on('compute1', FAST)

        server = self._migrate_server(server)
        server = self._confirm_resize(server)

        self.assertEqual('compute2', self.host_of(server))
        self.assertEqual({dest}, self.recorder.configured())
        self.assertEqual([('configure', dest, {'mode': 'fast'},
                           'nova_acc_0_0', server['id'])],
                         [c for c in self.recorder.calls
                          if c[:2] == ('configure', dest)])
        self.assertEqual(ledger.FREE,
                         self.ledger('compute1')[src].state)


class DeviceContextByIdTest(ConfigDataMixin,
                            test_device_contexts.ContextsAPIMixin,
                            base.DeviceContextTestBase):

    def test_the_config_of_a_context_is_applied(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.member.create('resources:FPGA=1', name='fast',
                                 config={'accel:mode': 'fast'})['id']

        server = self.boot(ctx)

        self.assertEqual([('configure', fpga, {'mode': 'fast'}, ctx,
                           server['id'])], self.recorder.calls)
        self.assertEqual({fpga: 'recorder'},
                         self.configured_marks('compute1'))

        self._delete_server(server)

        self.assertEqual(('unconfigure', fpga), self.recorder.calls[-1])
        self.assert_unbound(ctx)
        self.assertEqual({}, self.configured_marks('compute1'))

    def test_a_context_whose_config_no_device_allows_finds_no_host(self):
        self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.member.create('resources:FPGA=1', name='odd',
                                 config={'accel:colour': 'red'})['id']

        server = self.boot(ctx, expected_state='ERROR')

        self.assertIn(ctx, self.fault_message(server))
        self.assertEqual([], self.recorder.calls)
        self.assert_unbound(ctx)


class FpgaBitstreamTest(base.DeviceContextTestBase):
    """``fpga_bitstream`` end to end: an image from Glance, programmed.

    The installed configurator (its entry point), Nova's Glance fixture
    with an image that has data and a checksum, the privsep entrypoints run
    in-process (as the harness runs the reset's), and a stand-in
    programming tool that records its arguments and the SHA-256 of the
    image it was given.
    """

    device_spec = [dict(cloud.FPGA_SPEC, configurator='fpga_bitstream',
                        config={'bitstream_id': 'uuid'})]

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatchObject(
            fpga.program_pctxt, 'client_mode', False))
        tmp = self.useFixture(fixtures.TempDir()).path
        self.programmer = self.useFixture(
            configurators.StandInProgrammer())
        tool = self.programmer.tool
        self.flags(staging_dir=os.path.join(tmp, 'staging'),
                   program_command=[tool, '--device', '{address}',
                                    '--image', '{image}'],
                   erase_command=[tool, '--erase', '{address}'],
                   group='fpga_bitstream')

    def image(self, data, checksum):
        image_id = uuidutils.generate_uuid()
        self.glance.create(None, {
            'id': image_id, 'name': 'bitstream', 'disk_format': 'raw',
            'container_format': 'bare', 'os_hash_algo': 'sha256',
            'os_hash_value': checksum})
        self.glance._imagedata[image_id] = data
        return image_id

    def programmed(self):
        return self.programmer.runs()

    def test_the_image_is_verified_programmed_and_erased(self):
        fpga_address, = self.start_fpga_host('compute1', num_fpgas=1)
        data = b'\x00bitstream' * 100
        image_id = self.image(data, hashlib.sha256(data).hexdigest())

        server = self.boot('resources:FPGA=1,accel:bitstream_id=%s'
                           % image_id)

        [run] = self.programmed()
        self.assertEqual(['--device', fpga_address, '--image'],
                         run['args'][:3])
        self.assertEqual(hashlib.sha256(data).hexdigest(), run['image'])
        self.assertEqual('fpga_bitstream', self.ledger('compute1')[
            fpga_address].configured_by)

        self._delete_server(server)

        self.assertEqual(['--erase', fpga_address],
                         self.programmed()[-1]['args'])
        self.assertEqual(1, self.reset_count(fpga_address))
        self.assertIsNone(self.ledger('compute1')[fpga_address]
                          .configured_by)

    def test_an_image_that_fails_its_checksum_is_not_programmed(self):
        fpga_address, = self.start_fpga_host('compute1', num_fpgas=1)
        image_id = self.image(b'tampered', hashlib.sha256(b'x').hexdigest())

        server = self.boot('resources:FPGA=1,accel:bitstream_id=%s'
                           % image_id, expected_state='ERROR')

        # Nova's fault holds 255 characters: the end is cut.
        self.assertIn('could not be configured on the host: the image does '
                      'not match its sha',
                      self.fault_message(server))
        self.assertEqual([], [r for r in self.programmed()
                              if '--image' in r['args']])
        self.assertEqual(('free', None),
                         self.ledger_state('compute1', fpga_address))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
