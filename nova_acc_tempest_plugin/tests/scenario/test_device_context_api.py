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
"""Scenario tests of nova-acc-api, the device-context API, in a real cloud.

Device contexts with IDs (see the API reference): created by a project's
member, seen by nobody outside the project, bound to a server by Nova's
side (here by the admin, whom the policy lets do what Nova's service user
does), not deletable while bound. They run when ``[service_available]
nova_acc_api`` is set; the boot-by-ID tests also need ``[nova_acc]
device_context``, a context a host of the cloud can satisfy.
"""

import time

from tempest.common import waiters
from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib.common.utils import test_utils
from tempest.lib import decorators
from tempest.lib import exceptions as lib_exc

from nova_acc_tempest_plugin.services import device_context_client
from nova_acc_tempest_plugin.tests.scenario import test_device_context

CONF = config.CONF

SPEC = 'resources:CUSTOM_FPGA_GZIP=1,trait:CUSTOM_NOVA_ACC_TEMPEST=required'
CONFIG = {'accel:bitstream_id': 'bitstream-of-tempest'}
FIELDS = {'id', 'name', 'description', 'project_id', 'user_id', 'spec',
          'config', 'state', 'server_id', 'host', 'devices', 'fault',
          'created_at', 'updated_at'}
message = device_context_client.error_message


class DeviceContextAPIBase(test_device_context.DeviceContextBase):
    """Clients of nova-acc-api for the primary, alt and admin projects."""

    credentials = ['primary', 'alt', 'admin']

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.service_available.nova_acc_api:
            raise cls.skipException(
                'nova-acc-api is not enabled ([service_available] '
                'nova_acc_api)')

    @classmethod
    def setup_clients(cls):
        super().setup_clients()
        cls.contexts = cls.os_primary.device_context.DeviceContextClient()
        cls.alt_contexts = cls.os_alt.device_context.DeviceContextClient()
        cls.admin_contexts = (
            cls.os_admin.device_context.DeviceContextClient())

    def create_context(self, spec=SPEC, **fields):
        """A context of the primary project, deleted at cleanup."""
        fields.setdefault('name', data_utils.rand_name(
            prefix=CONF.resource_name_prefix, name='nova-acc-ctx'))
        context = self.contexts.create_device_context(
            spec=spec, **fields)['device_context']
        self.addCleanup(test_utils.call_and_ignore_notfound_exc,
                        self.contexts.delete_device_context, context['id'])
        return context

    def show(self, context_id):
        return self.contexts.show_device_context(
            context_id)['device_context']

    def wait_for_state(self, context_id, state):
        """The context once it has state (a release is asynchronous)."""
        deadline = time.time() + CONF.device_context.state_timeout
        while True:
            context = self.show(context_id)
            if context['state'] == state:
                return context
            if time.time() > deadline:
                self.fail('device context %s is %s, not %s, after %d s: %s'
                          % (context_id, context['state'], state,
                             CONF.device_context.state_timeout, context))
            time.sleep(CONF.compute.build_interval)


class DeviceContextAPITest(DeviceContextAPIBase):
    """The calls a user makes, and what another project sees of them."""

    @decorators.idempotent_id('c4d5e6f7-0a1b-43c4-9f60-718293a45b01')
    def test_create_show_list_update_delete(self):
        context = self.create_context(config=CONFIG,
                                      description='made by tempest')
        self.assertEqual(FIELDS, set(context))
        creds = self.os_primary.credentials
        self.assertEqual(creds.project_id, context['project_id'])
        self.assertEqual(creds.user_id, context['user_id'])
        self.assertEqual(SPEC, context['spec'])
        self.assertEqual(CONFIG, context['config'])
        self.assertEqual('unbound', context['state'])
        for field in ('server_id', 'host', 'fault'):
            self.assertIsNone(context[field], field)
        self.assertEqual([], context['devices'])

        self.assertEqual(context, self.show(context['id']))
        listed = self.contexts.list_device_contexts()['device_contexts']
        self.assertIn(context['id'], [c['id'] for c in listed])
        unbound = self.contexts.list_device_contexts(
            state='unbound')['device_contexts']
        self.assertIn(context['id'], [c['id'] for c in unbound])
        bound = self.contexts.list_device_contexts(
            state='bound')['device_contexts']
        self.assertNotIn(context['id'], [c['id'] for c in bound])

        updated = self.contexts.update_device_context(
            context['id'], name='renamed', description='changed')[
                'device_context']
        self.assertEqual('renamed', updated['name'])
        self.assertEqual('changed', updated['description'])
        self.assertEqual(SPEC, updated['spec'])
        self.assertIsNotNone(updated['updated_at'])
        self.assertEqual(updated, self.show(context['id']))

        self.contexts.delete_device_context(context['id'])
        self.assertRaises(lib_exc.NotFound, self.contexts.show_device_context,
                          context['id'])
        self.assertRaises(lib_exc.NotFound,
                          self.contexts.delete_device_context, context['id'])

    @decorators.idempotent_id('d5e6f708-1b2c-44d5-8071-8293a4b55b02')
    def test_bad_spec_is_refused_naming_the_token(self):
        before = self.contexts.list_device_contexts()['device_contexts']
        for spec, token in (('resources:FPGA=0', 'resources:FPGA=0'),
                            ('resources:FPGA=1,bogus:thing=1',
                             'bogus:thing=1')):
            error = self.assertRaises(
                lib_exc.BadRequest, self.contexts.create_device_context,
                spec=spec)
            self.assertIn(token, message(error))
        error = self.assertRaises(
            lib_exc.BadRequest, self.contexts.create_device_context,
            spec=SPEC, config={'bitstream_id': 'x'})
        self.assertIn('bitstream_id', message(error))
        # Nothing was created.
        self.assertEqual(
            sorted(c['id'] for c in before),
            sorted(c['id'] for c in self.contexts.list_device_contexts()[
                'device_contexts']))

    @decorators.idempotent_id('e6f70819-2c3d-45e6-9182-93a4b5c65b03')
    def test_another_project_cannot_see_or_change_it(self):
        context = self.create_context()
        # 404, as for a context that does not exist: no existence leak.
        alt = self.alt_contexts
        for call, kwargs in ((alt.show_device_context, {}),
                             (alt.update_device_context, {'name': 'stolen'}),
                             (alt.delete_device_context, {})):
            error = self.assertRaises(lib_exc.NotFound, call,
                                      context['id'], **kwargs)
            self.assertNotIn(self.os_primary.credentials.project_id,
                             message(error))
        listed = self.alt_contexts.list_device_contexts()['device_contexts']
        self.assertNotIn(context['id'], [c['id'] for c in listed])
        # An all-projects listing is the admin's only.
        self.assertRaises(lib_exc.Forbidden,
                          self.alt_contexts.list_device_contexts,
                          all_projects='True')
        everything = self.admin_contexts.list_device_contexts(
            all_projects='True')['device_contexts']
        self.assertIn(context['id'], [c['id'] for c in everything])
        # It is untouched.
        self.assertEqual(context['name'], self.show(context['id'])['name'])

    @decorators.idempotent_id('f708192a-3d4e-46f7-a293-a4b5c6d75b04')
    def test_delete_refused_while_bound(self):
        """Bound to a server: 409 naming it; unbound: deleted."""
        context = self.create_context()
        server = self.boot(wait_until='ACTIVE')
        host = server['OS-EXT-SRV-ATTR:host']
        project_id = self.os_primary.credentials.project_id
        # A project member may not bind: that is Nova's side.
        self.assertRaises(lib_exc.Forbidden,
                          self.contexts.bind_device_context,
                          context['id'], server['id'], host, project_id)
        bound = self.admin_contexts.bind_device_context(
            context['id'], server['id'], host, project_id)['device_context']
        self.addCleanup(self.admin_contexts.unbind_device_context,
                        context['id'], server['id'])
        self.assertEqual('bound', bound['state'])
        self.assertEqual(server['id'], bound['server_id'])
        self.assertEqual(host, bound['host'])
        self.assertEqual(bound, self.show(context['id']))
        listed = self.contexts.list_device_contexts(
            server_id=server['id'])['device_contexts']
        self.assertEqual([context['id']], [c['id'] for c in listed])

        error = self.assertRaises(lib_exc.Conflict,
                                  self.contexts.delete_device_context,
                                  context['id'])
        self.assertIn(context['id'], message(error))
        self.assertIn(server['id'], message(error))
        # Its spec and config cannot change under the server either.
        self.assertRaises(lib_exc.Conflict,
                          self.contexts.update_device_context,
                          context['id'], config=CONFIG)
        self.assertEqual('bound', self.show(context['id'])['state'])

        self.admin_contexts.unbind_device_context(context['id'],
                                                  server['id'])
        unbound = self.show(context['id'])
        self.assertEqual('unbound', unbound['state'])
        self.assertIsNone(unbound['server_id'])
        self.contexts.delete_device_context(context['id'])
        self.assertRaises(lib_exc.NotFound, self.contexts.show_device_context,
                          context['id'])


class DeviceContextBootRefusedTest(DeviceContextAPIBase):
    """Boots by ID that must fail, and leave the context as it was.

    No device is needed: Nova's side reads the context from nova-acc-api
    (as Nova's service user, for the server's project) before any host is
    picked.
    """

    def boot_as(self, servers_client, context_id):
        server = servers_client.create_server(
            name=data_utils.rand_name(prefix=CONF.resource_name_prefix,
                                      name='nova-acc-by-id'),
            imageRef=CONF.compute.image_ref,
            flavorRef=CONF.compute.flavor_ref, networks='none',
            scheduler_hints={'device_context': context_id})['server']
        self.addCleanup(self.delete_server, server['id'])
        waiters.wait_for_server_status(servers_client, server['id'],
                                       'ERROR', raise_on_error=False)
        return self.admin_servers.show_server(server['id'])['server']

    @decorators.idempotent_id('192a3b4c-5f60-4819-a4b5-c6d7e8f95b06')
    def test_another_project_cannot_boot_with_it(self):
        """Refused as unknown, in the words a missing ID gets."""
        context = self.create_context()
        foreign = self.boot_as(self.os_alt.servers_client, context['id'])
        missing_id = data_utils.rand_uuid()
        missing = self.boot_as(self.os_alt.servers_client, missing_id)

        self.assertIn('device context %s does not exist in your project'
                      % context['id'], self.fault(foreign))
        self.assertEqual(
            self.fault(missing).replace(missing_id, context['id']),
            self.fault(foreign))
        self.assert_no_allocation(foreign['id'])
        self.assertEqual('unbound', self.show(context['id'])['state'])

    @decorators.idempotent_id('2a3b4c5d-6071-4a2a-b5c6-d7e8f9a05b07')
    def test_no_host_has_the_devices(self):
        """NoValidHost naming the context; the context stays unbound."""
        context = self.create_context()
        server = self.boot_as(self.servers_client, context['id'])
        message = self.fault(server)
        self.assertIn(test_device_context.NO_VALID_HOST, message)
        self.assertIn(context['id'], message)
        self.assert_no_allocation(server['id'])
        unbound = self.show(context['id'])
        self.assertEqual(('unbound', None, None, []),
                         (unbound['state'], unbound['server_id'],
                          unbound['host'], unbound['devices']))
        self.delete_server(server['id'])
        self.contexts.delete_device_context(context['id'])


class DeviceContextBootTest(test_device_context.DeviceRequired,
                            DeviceContextAPIBase):
    """Boot by ID: the founding flow, on a host with a device."""

    def assert_bound(self, context_id, server):
        context = self.show(context_id)
        self.assertEqual('bound', context['state'], context)
        self.assertEqual(server['id'], context['server_id'])
        self.assertEqual(server['OS-EXT-SRV-ATTR:host'], context['host'])
        self.assertNotEqual([], context['devices'], context)
        for device in context['devices']:
            self.assertIn('pool', device)
            self.assertTrue({'address', 'mdev_uuid'} & set(device), device)
        return context

    @decorators.idempotent_id('0819a2b3-4e5f-4708-b3a4-b5c6d7e85b05')
    def test_boot_by_id_unbind_and_reuse(self):
        context = self.create_context(spec=CONF.nova_acc.device_context)
        first = self.boot(context['id'], wait_until='ACTIVE')
        bound = self.assert_bound(context['id'], first)
        domain = self.domain_xml(first)
        if domain is not None:
            pci = [d for d in bound['devices'] if 'address' in d]
            self.assertEqual(len(pci), len(self.pci_hostdevs(domain)))
        # Bound: it cannot be deleted under its server.
        error = self.assertRaises(lib_exc.Conflict,
                                  self.contexts.delete_device_context,
                                  context['id'])
        self.assertIn(first['id'], message(error))

        self.delete_server(first['id'])
        unbound = self.wait_for_state(context['id'], 'unbound')
        self.assertIsNone(unbound['server_id'])
        self.assertEqual([], unbound['devices'])
        self.assert_no_allocation(first['id'])

        second = self.boot(context['id'], wait_until='ACTIVE')
        self.assert_bound(context['id'], second)
        self.delete_server(second['id'])
        self.wait_for_state(context['id'], 'unbound')
