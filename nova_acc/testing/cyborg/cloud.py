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
"""The in-process cloud with the real Cyborg as device-context backend.

Nova runs in-process (Nova's functional harness with nova-acc's services);
Cyborg's API and conductor run in a child process on 127.0.0.1, and their
``accelerator-request-bound`` events are forwarded into the in-process
Nova API. Nova talks to Cyborg with the user's token plus its service
token, as a real deployment with ``[service_user]`` does, and nova-compute's
cleanup of servers that are gone with Nova's own credentials from
``[cyborg]`` plus the service token. Used by the functional tests and by
``nova-acc demo --backend cyborg``.
"""

import functools

import fixtures
from keystoneauth1 import loading as ks_loading
import nova.conf as nova_conf
from nova import context as nova_context
from oslo_utils import uuidutils

from nova_acc.backends import cyborg as cyborg_backend
from nova_acc.testing.cyborg import fake_nova
from nova_acc.testing.cyborg import fixture as cyborg_fixture

PROFILE = 'fpga-gzip'


class CyborgCloudMixin:
    """Mix into a DeviceContextTestBase: real Cyborg as the backend."""

    # Devices are Cyborg's here: nova-acc reports none itself.
    device_spec = []

    def setUp(self):
        self.nova_events = self.useFixture(
            fake_nova.FakeNovaEventsServer(handler=self._forward_events))
        self.cyborg = self.useFixture(cyborg_fixture.CyborgServiceFixture(
            nova_url=self.nova_events.url))
        self.flags(backend='cyborg', group='nova_acc')
        self.flags(bind_timeout=20, group='nova_acc_cyborg')
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
        # nova-compute unbinds the ARQs of servers that are gone without a
        # user token, with Nova's credentials in [cyborg]: here the static
        # token of Nova's service user (the service project, with the admin
        # and service roles, as in Keystone), instead of a password login.
        cyborg_backend.register_opts(nova_conf.CONF)
        nova_conf.CONF.register_opts(
            ks_loading.get_auth_plugin_conf_options('admin_token'),
            group='cyborg')
        self.flags(auth_type='admin_token', token='service', group='cyborg')
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
        """A compute whose FPGA is managed by Cyborg; its provider UUID."""
        self.start_fpga_host(hostname, num_fpgas=0, host_info=host_info)
        return self.add_cyborg_device(hostname, address, known_to_cyborg)

    def add_cyborg_device(self, hostname, address, known_to_cyborg=True):
        """What cyborg-agent reports for one FPGA of a running compute.

        The provider: a child of the compute node with Cyborg's traits and
        no OWNER_NOVA; Cyborg's own rows: Device, Deployable (with the
        provider's UUID), ControlpathID and AttachHandle.
        """
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
