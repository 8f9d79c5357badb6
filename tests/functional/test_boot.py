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
