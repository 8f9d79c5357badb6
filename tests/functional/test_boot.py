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

import os

from tests.functional import base


class BootWithDeviceContextTest(base.DeviceContextTestBase):

    def test_boot_attaches_allocated_device_and_delete_frees_it(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=1)

        server = self.boot('resources:FPGA=1,trait:CUSTOM_GZIP=required')

        device_rp = self.device_rp('compute1', fpgas[0])
        self.assertEqual([device_rp], self.allocated_device_rps(server))
        self.assertEqual({'FPGA': 1}, self.provider_usage(device_rp))
        self.assertEqual(fpgas, self.domain_hostdevs('compute1', server))

        self._delete_server(server)

        self.assertEqual({'FPGA': 0}, self.provider_usage(device_rp))
        self.assertEqual({}, self.domain_hostdevs('compute1'))
        self.assertEqual(1, self.reset_count(fpgas[0]))
        # Free again: the next server gets the same device.
        again = self.boot('resources:FPGA=1')
        self.assertEqual(fpgas, self.domain_hostdevs('compute1', again))

    def test_two_contexts_get_two_distinct_devices(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=3)

        server = self.boot('resources:FPGA=1', 'resources:FPGA=1')

        attached = self.domain_hostdevs('compute1', server)
        self.assertEqual(2, len(set(attached)))
        self.assertTrue(set(attached) <= set(fpgas))
        self.assertEqual(
            sorted(self.device_rp('compute1', a) for a in attached),
            self.allocated_device_rps(server))

    def test_one_context_with_two_groups_gets_two_devices(self):
        self.start_fpga_host('compute1', num_fpgas=2)

        server = self.boot('resources:FPGA=1;resources:FPGA=1')

        attached = self.domain_hostdevs('compute1', server)
        self.assertEqual(2, len(set(attached)))
        self.assertEqual(2, len(self.allocated_device_rps(server)))

    def test_hard_reboot_and_stop_start_keep_the_device(self):
        fpgas = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot('resources:FPGA=1')

        self._reboot_server(server, hard=True)
        self.assertEqual(fpgas, self.domain_hostdevs('compute1', server))

        self._stop_server(server)
        self._start_server(server)
        self.assertEqual(fpgas, self.domain_hostdevs('compute1', server))
        self.assertEqual([self.device_rp('compute1', fpgas[0])],
                         self.allocated_device_rps(server))
        # Nothing was released on the way.
        self.assertEqual(0, self.reset_count(fpgas[0]))

    def test_host_without_devices_never_writes_a_ledger(self):
        # Servers without device contexts on a host nova-acc has nothing
        # on: the ledger is not touched (no file, no lock taken).
        self.start_fpga_host('compute1', num_fpgas=0)
        server = self.boot()
        self._reboot_server(server, hard=True)
        self._delete_server(server)
        self._run_periodics()
        self.assertEqual([], os.listdir(self.ledger_dir))

    def test_server_without_context_gets_no_device(self):
        self.start_fpga_host('compute1', num_fpgas=1)

        server = self.boot()

        self.assertEqual([], self.domain_hostdevs('compute1', server))
        self.assertEqual([], self.allocated_device_rps(server))


class InvalidContextTest(base.DeviceContextTestBase):
    """Each bad request fails with a fault that says why; nothing leaks."""

    def setUp(self):
        self.flags(profile=[
            'gzip=resources:FPGA=1,trait:CUSTOM_GZIP=required'],
                   group='nova_acc')
        super().setUp()
        self.fpgas = self.start_fpga_host('compute1', num_fpgas=1)

    def assert_fails_cleanly(self, context, *expected_in_fault):
        server = self.boot(context, expected_state='ERROR')
        fault = self.fault_message(server)
        for text in expected_in_fault:
            self.assertIn(text, fault)
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.assertEqual({}, self.domain_hostdevs('compute1'))
        rp = self.device_rp('compute1', self.fpgas[0])
        self.assertEqual({'FPGA': 0}, self.provider_usage(rp))
        return fault

    def assert_no_chained_traceback(self):
        # The NoValidHost the scheduler raises while handling Nova's own
        # (or the filter's error) says everything in its message; the
        # conductor's log must not show the exceptions it replaced.
        output = self.stdlog.logger.output
        at = output.find('During handling of the above exception')
        if at != -1:
            self.fail('chained traceback in the log:\n%s'
                      % output[max(0, at - 1500):at + 1500])

    def test_invalid_spec(self):
        self.assert_fails_cleanly(
            'resources:FPGA=0', "device_context 'resources:FPGA=0' is "
            "invalid", 'must be at least 1')
        self.assert_no_chained_traceback()

    def test_unknown_key_prefix(self):
        self.assert_fails_cleanly('resource:FPGA=1', 'resource:FPGA')

    def test_unknown_profile(self):
        fault = self.assert_fails_cleanly('profile:nope',
                                          "unknown profile 'nope'")
        # The operator's other profiles are not the user's to learn.
        self.assertNotIn('gzip', fault)

    def test_unsatisfiable_spec(self):
        self.assert_fails_cleanly(
            'resources:FPGA=1,trait:CUSTOM_MISSING=required',
            'No host has enough free accelerators',
            'CUSTOM_MISSING')
        self.assert_no_chained_traceback()

    def test_too_many_groups(self):
        self.flags(max_groups_per_server=2, group='nova_acc')
        self.assert_fails_cleanly(
            'resources:FPGA=1;resources:FPGA=1;resources:FPGA=1',
            'ask for 3 device groups', 'max_groups_per_server')

    def test_profile_boots(self):
        server = self.boot('profile:gzip')
        self.assertEqual(self.fpgas, self.domain_hostdevs('compute1', server))


class ShelveTest(base.DeviceContextTestBase):

    def test_shelve_offload_frees_the_device_and_unshelve_binds_again(self):
        self.flags(shelved_offload_time=0)
        fpgas = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot('resources:FPGA=1')
        rp = self.device_rp('compute1', fpgas[0])

        server = self._shelve_server(server)

        self.assertEqual({'FPGA': 0}, self.provider_usage(rp))
        self.assertEqual({}, self.domain_hostdevs('compute1'))
        self.assertEqual(1, self.reset_count(fpgas[0]))
        # The host's ledger no longer gives the device to the server (its
        # bindings only say what the last pre-bind chose).
        self.assertEqual(('free', None),
                         self.ledger_state('compute1', fpgas[0]))

        server = self._unshelve_server(server)

        self.assertEqual(fpgas, self.domain_hostdevs('compute1', server))
        self.assertEqual([rp], self.allocated_device_rps(server))
        # Bound to the pool again; the host picked the device.
        self.assertEqual([(rp, 1, None)],
                         [(b.rp_uuid, b.amount, b.address)
                          for b in self.server_bindings(server)])
        self.assertEqual(fpgas, self.held_devices('compute1', server))
