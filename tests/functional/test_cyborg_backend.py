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
"""ID-based device contexts: Cyborg ARQs, against the real Cyborg 17.

See nova_acc.testing.cyborg.cloud for how Nova and Cyborg are wired.
"""

from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_utils import uuidutils

from nova_acc.testing.cyborg import cloud as cyborg_cloud
from tests.functional import base

GiB_in_kB = 1024 * 1024
PROFILE = cyborg_cloud.PROFILE


class CyborgBackendTest(cyborg_cloud.CyborgCloudMixin,
                        base.DeviceContextTestBase):

    def test_boot_binds_attaches_and_delete_unbinds(self):
        rp = self.start_cyborg_host('compute1', '0000:90:00.0')
        ctx = self.create_context()
        self.assertEqual('Initial', self.member.get_arq(ctx)['state'])

        server = self.boot(ctx)

        arq = self.member.get_arq(ctx)
        self.assertEqual('Bound', arq['state'])
        self.assertEqual(server['id'], arq['instance_uuid'])
        self.assertEqual(rp, arq['device_rp_uuid'])
        self.assertIn(rp, self._get_allocations_by_server_uuid(server['id']))
        self.assertEqual(['0000:90:00.0'],
                         self.domain_hostdevs('compute1', server))
        # Cyborg told Nova through os-server-external-events.
        self.assertIn(
            ('accelerator-request-bound', ctx, 'completed'),
            [(e['name'], e['tag'], e['status'])
             for e in self.nova_events.events_for(server['id'])])

        self._delete_server(server)

        arq = self.member.get_arq(ctx)
        self.assertEqual('Unbound', arq['state'])
        self.assertIsNone(arq['instance_uuid'])
        self.assertEqual({}, self.domain_hostdevs('compute1'))
        self.assertEqual({'FPGA': 0}, self.provider_usage(rp))

        # Like a port: the same context boots the next server.
        again = self.boot(ctx)
        self.assertEqual(['0000:90:00.0'],
                         self.domain_hostdevs('compute1', again))
        self.assertEqual(again['id'],
                         self.member.get_arq(ctx)['instance_uuid'])

    def test_context_of_another_project_is_refused(self):
        self.start_cyborg_host('compute1', '0000:90:00.0')
        other = self.cyborg.client('member:%s' % ('ab' * 16))
        ctx = self.create_context(other)

        server = self.boot(ctx, expected_state='ERROR')

        self.assertIn('device context %s does not exist in your project'
                      % ctx, self.fault_message(server))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.assertEqual('Initial', other.get_arq(ctx)['state'])

    def test_context_bound_to_another_server_is_refused(self):
        self.start_cyborg_host('compute1', '0000:90:00.0')
        self.start_cyborg_host('compute2', '0000:91:00.0')
        ctx = self.create_context()
        first = self.boot(ctx)

        second = self.boot(ctx, expected_state='ERROR')

        self.assertIn('device context %s is Bound to server %s' % (
            ctx, first['id']), self.fault_message(second))
        self.assertEqual(first['id'],
                         self.member.get_arq(ctx)['instance_uuid'])
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            second['id']))

    def test_unknown_context_id(self):
        self.start_cyborg_host('compute1', '0000:90:00.0')
        missing = uuidutils.generate_uuid()
        server = self.boot(missing, expected_state='ERROR')
        self.assertIn('device context %s does not exist' % missing,
                      self.fault_message(server))

    def test_cyborg_unreachable_fails_cleanly(self):
        rp = self.start_cyborg_host('compute1', '0000:90:00.0')
        ctx = self.create_context()
        self.flags(endpoint_override='http://127.0.0.1:9/v2', group='cyborg')

        server = self.boot(ctx, expected_state='ERROR')

        self.assertIn('cannot reach Cyborg', self.fault_message(server))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.assertEqual({'FPGA': 0}, self.provider_usage(rp))
        self.assertEqual('Initial', self.member.get_arq(ctx)['state'])

    def test_bind_failure_reschedules_and_leaves_nothing_bound(self):
        # compute1 is the first choice, but Cyborg does not know its device
        # (a bind there leaves the ARQ in BindStarted); compute2 works.
        rp1 = self.start_cyborg_host(
            'compute1', '0000:90:00.0', known_to_cyborg=False,
            host_info=fakelibvirt.HostInfo(kB_mem=32 * GiB_in_kB))
        rp2 = self.start_cyborg_host(
            'compute2', '0000:91:00.0',
            host_info=fakelibvirt.HostInfo(kB_mem=16 * GiB_in_kB))
        ctx = self.create_context()

        server = self.boot(ctx)

        self.assertEqual('compute2', server['OS-EXT-SRV-ATTR:host'])
        arq = self.member.get_arq(ctx)
        self.assertEqual(('Bound', rp2), (arq['state'],
                                          arq['device_rp_uuid']))
        self.assertEqual(['0000:91:00.0'],
                         self.domain_hostdevs('compute2', server))
        self.assertEqual({'FPGA': 0}, self.provider_usage(rp1))
        self.assertEqual([], self.domain_hostdevs('compute1', server))
        # Tried on compute1 first.
        self.assertEqual(['compute1', 'compute2'], self.hosts_tried(server))

    def test_shelve_offload_unbinds_and_unshelve_binds_again(self):
        self.flags(shelved_offload_time=0)
        rp = self.start_cyborg_host('compute1', '0000:90:00.0')
        ctx = self.create_context()
        server = self.boot(ctx)

        server = self._shelve_server(server)

        self.assertEqual('Unbound', self.member.get_arq(ctx)['state'])
        self.assertEqual({'FPGA': 0}, self.provider_usage(rp))
        self.assertEqual({}, self.domain_hostdevs('compute1'))

        server = self._unshelve_server(server)

        arq = self.member.get_arq(ctx)
        self.assertEqual(('Bound', server['id'], rp),
                         (arq['state'], arq['instance_uuid'],
                          arq['device_rp_uuid']))
        self.assertEqual(['0000:90:00.0'],
                         self.domain_hostdevs('compute1', server))

    def test_no_free_device_fault_says_what_the_context_asks_for(self):
        self.start_cyborg_host('compute1', '0000:90:00.0')
        self.boot(self.create_context())
        ctx = self.create_context()

        server = self.boot(ctx, expected_state='ERROR')

        self.assertIn("No host has enough free accelerators for the device "
                      "context(s) '%s' (resources:FPGA=1,"
                      "trait:CUSTOM_FPGA_GZIP=required)" % ctx,
                      self.fault_message(server))
        self.assertEqual('Initial', self.member.get_arq(ctx)['state'])
