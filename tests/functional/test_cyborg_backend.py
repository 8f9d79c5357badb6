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

Nova runs in-process (Nova's functional harness with nova-acc's services);
Cyborg's API and conductor run in a child process on 127.0.0.1, and their
``accelerator-request-bound`` events are forwarded into the in-process
Nova API. Nova talks to Cyborg with the user's token plus its service
token, as a real deployment with ``[service_user]`` does.
"""

import functools

import fixtures

from keystoneauth1 import loading as ks_loading
import nova.conf as nova_conf
from nova import context as nova_context
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_utils import uuidutils

from nova_acc.testing.cyborg import fake_nova
from nova_acc.testing.cyborg import fixture as cyborg_fixture
from tests.functional import base

GiB_in_kB = 1024 * 1024
PROFILE = 'fpga-gzip'


class CyborgBackendTest(base.DeviceContextTestBase):

    # Devices are Cyborg's here: nova-acc reports none itself.
    device_spec = []

    def setUp(self):
        self.nova_events = self.useFixture(
            fake_nova.FakeNovaEventsServer(handler=self._forward_events))
        self.cyborg = self.useFixture(cyborg_fixture.CyborgServiceFixture(
            nova_url=self.nova_events.url))
        self.flags(backend='cyborg', cyborg_bind_timeout=20,
                   group='nova_acc')
        self.flags(endpoint_override=self.cyborg.accelerator_url,
                   group='cyborg')
        # Nova's service token: a static token Cyborg's test middleware
        # maps to the service role, instead of a Keystone password login.
        self.flags(send_service_user_token=True, auth_type='admin_token',
                   group='service_user')
        nova_conf.CONF.register_opts(
            ks_loading.get_auth_plugin_conf_options('admin_token'),
            group='service_user')
        self.flags(token='service', group='service_user')
        super().setUp()
        self._keep_user_token()
        self.project = self.api.project_id
        self._send_user_token(self.api, 'member:%s' % self.project)
        self.member = self.cyborg.client('member:%s' % self.project)
        self.cyborg.client('admin').create_device_profile(PROFILE, [{
            'resources:FPGA': '1', 'trait:CUSTOM_FPGA_GZIP': 'required'}])

    def _keep_user_token(self):
        # Nova's OSAPIFixture stubs Keystone's context middleware and drops
        # the token; the real middleware keeps it (RequestContext.
        # from_environ), and Nova passes it on to Cyborg.
        def create_context(env, **kwargs):
            return nova_context.RequestContext(
                env['HTTP_X_AUTH_USER'], env['HTTP_X_AUTH_PROJECT_ID'],
                is_admin=env['HTTP_X_AUTH_USER'] == 'admin',
                roles=env['HTTP_X_ROLES'].split(','),
                auth_token=env.get('HTTP_X_AUTH_TOKEN'), **kwargs)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.api.auth.NovaKeystoneContext._create_context',
            create_context))

    def _send_user_token(self, api, token):
        # Nova's functional API client sends no token; a real client sends
        # the user's Keystone token, which Nova passes on to Cyborg.
        original = api.request

        @functools.wraps(original)
        def request(url, method='GET', body=None, headers=None):
            headers = dict(headers or {})
            headers.setdefault('X-Auth-Token', token)
            return original(url, method=method, body=body, headers=headers)
        api.request = request

    def _forward_events(self, events, headers):
        """Cyborg -> Nova's os-server-external-events (in-process API)."""
        resp = self.admin_api.api_post(
            '/os-server-external-events', {'events': events},
            check_response_status=[200, 207, 404, 422])
        return resp.status, resp.body

    def start_cyborg_host(self, hostname, address, known_to_cyborg=True,
                          host_info=None):
        """A compute whose FPGA is managed by Cyborg.

        The provider is what cyborg-agent reports to placement: a child of
        the compute node, Cyborg's traits, no OWNER_NOVA.
        """
        self.start_fpga_host(hostname, num_fpgas=0, host_info=host_info)
        rp_uuid = uuidutils.generate_uuid()
        self.placement.post('/resource_providers', {
            'name': '%s_cyborg_%s' % (hostname, address), 'uuid': rp_uuid,
            'parent_provider_uuid': self.compute_rp_uuids[hostname]},
            version='1.20')
        self.placement.put('/resource_providers/%s/inventories' % rp_uuid, {
            'resource_provider_generation': 0,
            'inventories': {'FPGA': {'total': 1}}})
        gen = self.placement.get(
            '/resource_providers/%s' % rp_uuid).body['generation']
        self.placement.put('/traits/CUSTOM_FPGA_GZIP', None, version='1.6')
        self.placement.put('/resource_providers/%s/traits' % rp_uuid, {
            'resource_provider_generation': gen,
            'traits': ['CUSTOM_FPGA_GZIP']}, version='1.6')
        if known_to_cyborg:
            self.cyborg.seed_devices(hostname, [{
                'pci_address': address, 'rp_uuid': rp_uuid,
                'resource_class': 'FPGA', 'traits': ['CUSTOM_FPGA_GZIP']}])
        return rp_uuid

    def create_context(self, client=None):
        return (client or self.member).create_arq(PROFILE)[0]['uuid']

    # ------------------------------------------------------------------

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
