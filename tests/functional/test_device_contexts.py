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
"""Boot by ID with the local backend: device contexts of nova-acc-api.

nova-acc-api runs in-process on its own sqlite database
(``ContextsAPIFixture``); Nova's services reach it with the credentials of
``[device_context_api]``, as in a deployment. The host picks the devices
from its pools as for an inline spec; the context records the server and
host it is bound to.
"""

import fixtures
from keystoneauth1 import loading as ks_loading
from nova import conf as nova_conf
from nova import context as nova_context
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.virt.libvirt import driver as libvirt_driver
from oslo_utils import uuidutils

from nova_acc import binding
from nova_acc import exception
from nova_acc.tests.fixtures import contexts_api
from tests.functional import base
from tests.functional import test_moves

SPEC = 'resources:FPGA=1,trait:CUSTOM_GZIP=required'
GiB_in_kB = 1024 * 1024


class ContextsAPIMixin:
    """nova-acc-api in-process, and Nova configured to reach it."""

    def setUp(self):
        super().setUp()
        self.contexts_api = self.useFixture(contexts_api.ContextsAPIFixture())
        # A static token instead of a Keystone login; the API resolves it
        # to Nova's service user with the service role only (not admin),
        # so its policy for Nova's calls is the deployment's.
        nova_conf.CONF.register_opts(
            ks_loading.get_auth_plugin_conf_options('admin_token'),
            group='device_context_api')
        self.nova_token(contexts_api.SERVICE_USER, contexts_api.SERVICE_ROLES)
        self.project = self.api.project_id
        self.member = self.contexts_api.client(self.project)

    def nova_token(self, identity, roles):
        """Nova's services call the API as (user, project) with roles."""
        user_id, project_id = identity
        self.flags(auth_type='admin_token',
                   token=self.contexts_api.issue_token(
                       user_id, project_id, roles),
                   endpoint=self.contexts_api.endpoint,
                   group='device_context_api')

    def create(self, spec=SPEC, client=None):
        return (client or self.member).create(spec, name='gzip')['id']

    def context(self, context_id):
        """The context as its owner sees it, read from the API."""
        return self.member.get(context_id)

    def binding_of(self, context_id):
        ctx = self.context(context_id)
        return ctx['state'], ctx['server_id'], ctx['host']

    def assert_unbound(self, context_id):
        self.assertEqual(('unbound', None, None), self.binding_of(context_id))

    def assert_nothing_held(self, server, *hosts):
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        for host in hosts:
            self.assertEqual([], self.held_devices(host, server))


class BootByIdTest(ContextsAPIMixin, base.DeviceContextTestBase):

    def test_boot_binds_delete_unbinds_and_the_context_is_reused(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()
        self.assert_unbound(ctx)

        server = self.boot(ctx)

        self.assertEqual(('bound', server['id'], 'compute1'),
                         self.binding_of(ctx))
        # The host picked the device from its pool, as for an inline spec.
        rp = self.device_rp('compute1', fpga)
        self.assertEqual([rp], self.allocated_device_rps(server))
        self.assertEqual([fpga], self.held_devices('compute1', server))
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self.assertEqual([(rp, 1, None)], [
            (b.rp_uuid, b.amount, b.context_id)
            for b in self.server_bindings(server)])
        # The user sees which device the host picked, in the context.
        self.assertEqual([{'pool': rp, 'address': fpga}],
                         self.context(ctx)['devices'])

        self._delete_server(server)

        self.assert_unbound(ctx)
        self.assertEqual([], self.context(ctx)['devices'])
        self.assertEqual(1, self.reset_count(fpga))
        self.assertEqual({'FPGA': 0}, self.provider_usage(rp))

        # Like a port: the same context boots the next server.
        again = self.boot(ctx)
        self.assertEqual(('bound', again['id'], 'compute1'),
                         self.binding_of(ctx))
        self.assertEqual([fpga], self.domain_hostdevs('compute1', again))
        self.assertEqual([{'pool': rp, 'address': fpga}],
                         self.context(ctx)['devices'])

    def test_context_bound_to_another_server_is_refused(self):
        self.start_fpga_host('compute1', num_fpgas=2)
        ctx = self.create()
        first = self.boot(ctx)

        second = self.boot(ctx, expected_state='ERROR')

        self.assertIn('device context %s is bound to server %s' % (
            ctx, first['id']), self.fault_message(second))
        self.assert_nothing_held(second, 'compute1')
        self.assertEqual(('bound', first['id'], 'compute1'),
                         self.binding_of(ctx))

    def test_two_servers_at_once_exactly_one_gets_the_context(self):
        self.start_fpga_host('compute1', num_fpgas=2)
        ctx = self.create()
        body = {'server': dict(self._build_server(networks='none'),
                               min_count=2),
                'os:scheduler_hints': {'device_context': ctx}}
        self.api.post_server(body)
        servers = [self.wait_for_build_end(s)
                   for s in self.api.get_servers(detail=False)]

        by_status = sorted((s['status'], s['id']) for s in servers)
        self.assertEqual(['ACTIVE', 'ERROR'], [s for s, _ in by_status])
        (_, winner), (_, loser) = by_status
        self.assertEqual(('bound', winner, 'compute1'), self.binding_of(ctx))
        loser = self.api.get_server(loser)
        self.assertIn('device context', self.fault_message(loser))
        self.assertIn(ctx, self.fault_message(loser))
        self.assert_nothing_held(loser, 'compute1')
        self.assertEqual(1, len(self.held_devices('compute1',
                                                  {'id': winner})))

    def test_context_of_another_project_is_refused_as_unknown(self):
        self.start_fpga_host('compute1', num_fpgas=1)
        other = self.contexts_api.client('other-project')
        ctx = self.create(client=other)
        # A member of the server's project, not an admin (the admin may use
        # any project's context: nova_acc:device_context:use_any_project).
        member_api = self.api_fixture.api
        member_api.microversion = 'latest'

        def boot_as_member(value):
            server = member_api.post_server({
                'server': self._build_server(networks='none'),
                'os:scheduler_hints': {'device_context': value}})
            return self._wait_for_state_change(server, 'ERROR')

        foreign = boot_as_member(ctx)
        missing_id = uuidutils.generate_uuid()
        missing = boot_as_member(missing_id)

        self.assertIn('device context %s does not exist in your project'
                      % ctx, self.fault_message(foreign))
        self.assertEqual(
            self.fault_message(missing).replace(missing_id, ctx),
            self.fault_message(foreign))
        self.assert_nothing_held(foreign, 'compute1')
        self.assertEqual('unbound', other.get(ctx)['state'])

    def test_admin_may_boot_with_another_projects_context(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        other = self.contexts_api.client('other-project')
        ctx = self.create(client=other)

        server = self.boot(ctx)  # self.api is the admin

        self.assertEqual(('bound', server['id'], 'compute1'), (
            other.get(ctx)['state'], other.get(ctx)['server_id'],
            other.get(ctx)['host']))
        self.assertEqual('other-project', other.get(ctx)['project_id'])
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))

    def test_nova_without_the_service_role_may_not_bind(self):
        # Nova configured with a plain member (and reader) of the server's
        # project: it may read the context, but binding is the service
        # role's (or admin's), so the API refuses it with a 403.
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()
        self.nova_token(('nova', self.project), contexts_api.MEMBER_ROLES)

        server = self.boot(ctx, expected_state='ERROR')

        # The fault names the context and says the API refused (Nova cuts
        # a fault's message at 255 characters, before the policy's words).
        fault = self.fault_message(server)
        self.assertIn("device context '%s'" % ctx, fault)
        self.assertIn('binding on the host failed: the device-context API '
                      'refused', fault)
        self.assert_nothing_held(server, 'compute1')
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assert_unbound(ctx)

    def test_api_down_during_the_boot_fails_it_cleanly(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()
        real_prebind = binding.prebind

        def api_goes_down_after_scheduling(*args, **kwargs):
            self.contexts_api.stop_serving()
            return real_prebind(*args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.binding.prebind', api_goes_down_after_scheduling))

        server = self.boot(ctx, expected_state='ERROR')

        # The host refused the binding (each host in turn): the fault names
        # the context as the user gave it, and what went wrong.
        fault = self.fault_message(server)
        self.assertIn("device context '%s'" % ctx, fault)
        self.assertIn('binding on the host failed: cannot reach the '
                      'device-context API', fault)
        self.assert_nothing_held(server, 'compute1')
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        # Read from the API's database: the API itself is down.
        self.assertEqual('unbound',
                         self.contexts_api.database.get(ctx)['state'])

    def test_api_down_before_the_boot_refuses_it_naming_the_context(self):
        self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()
        self.contexts_api.stop_serving()

        server = self.boot(ctx, expected_state='ERROR')

        self.assertIn('cannot reach the device-context API: device context '
                      '%s could not be read' % ctx, self.fault_message(server))
        self.assert_nothing_held(server, 'compute1')

    def test_context_left_bound_to_a_deleted_server_is_taken_over(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()
        server = self.boot(ctx)
        # The API cannot be reached while the server is deleted: the host
        # releases the device, but the context stays bound to it.
        self.flags(endpoint='http://127.0.0.1:9/device-context',
                   group='device_context_api')
        self._delete_server(server)
        self.flags(endpoint=self.contexts_api.endpoint,
                   group='device_context_api')
        self.assertEqual(('bound', server['id'], 'compute1'),
                         self.binding_of(ctx))
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))

        again = self.boot(ctx)

        self.assertEqual(('bound', again['id'], 'compute1'),
                         self.binding_of(ctx))
        self.assertEqual([fpga], self.domain_hostdevs('compute1', again))

    def test_without_the_api_configured_an_id_is_refused_as_before(self):
        self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()
        self.flags(auth_type=None, group='device_context_api')

        server = self.boot(ctx, expected_state='ERROR')

        self.assertIn('[device_context_api] is not configured',
                      self.fault_message(server))
        self.assert_unbound(ctx)


class BuildFailureTest(ContextsAPIMixin, base.DeviceContextTestBase):

    def fail_spawns_on(self, *hosts):
        create = libvirt_driver.LibvirtDriver._create_guest_with_network

        def failing(drv, *args, **kwargs):
            if drv._host.get_hostname() in hosts:
                raise RuntimeError('the guest did not start')
            return create(drv, *args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            '_create_guest_with_network', failing))

    def test_failed_build_everywhere_unbinds(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()
        self.fail_spawns_on('compute1')

        server = self.boot(ctx, expected_state='ERROR')

        # Bound at pre-bind, claimed, then the guest failed: let go.
        self.assertEqual(['compute1'], self.hosts_tried(server))
        self.assertEqual(1, self.reset_count(fpga))
        self.assert_unbound(ctx)
        self.assert_nothing_held(server, 'compute1')
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))

    def test_build_refused_before_any_claim_unbinds(self):
        # The host refuses the build before it claims a device (nothing
        # in its ledger to release): the conductor lets the context go
        # when no host is left.
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()

        def refuse(drv, context, instance, *args, **kwargs):
            raise exception.DeviceNotUsable('the host refused the build')

        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.seams.libvirt.LibvirtAccDriver.spawn', refuse))

        server = self.boot(ctx, expected_state='ERROR')

        self.assertEqual(['compute1'], self.hosts_tried(server))
        self.assertIn('the host refused the build',
                      self.fault_message(server))
        self.assert_unbound(ctx)
        self.assert_nothing_held(server, 'compute1')
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))

    def test_reschedule_binds_on_the_next_host(self):
        self.start_fpga_host('compute1', num_fpgas=1, host_info=(
            fakelibvirt.HostInfo(kB_mem=32 * GiB_in_kB)))
        fpga2, = self.start_fpga_host('compute2', num_fpgas=1, host_info=(
            fakelibvirt.HostInfo(kB_mem=16 * GiB_in_kB)))
        ctx = self.create()
        self.fail_spawns_on('compute1')

        server = self.boot(ctx)

        self.assertEqual(['compute1', 'compute2'], self.hosts_tried(server))
        self.assertEqual(('bound', server['id'], 'compute2'),
                         self.binding_of(ctx))
        self.assertEqual([fpga2], self.domain_hostdevs('compute2', server))
        self.assertEqual([], self.held_devices('compute1', server))


class ShelveTest(ContextsAPIMixin, base.DeviceContextTestBase):

    def test_shelve_offload_unbinds_and_unshelve_binds_again(self):
        self.flags(shelved_offload_time=0)
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()
        server = self.boot(ctx)

        server = self._shelve_server(server)

        self.assert_unbound(ctx)
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))

        server = self._unshelve_server(server)

        self.assertEqual(('bound', server['id'], 'compute1'),
                         self.binding_of(ctx))
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))


class LocalDeleteTest(ContextsAPIMixin, base.DeviceContextTestBase):

    def test_deleted_while_the_compute_was_down_is_unbound_at_reap(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()
        server = self.boot(ctx)
        self.computes['compute1'].stop()
        self.api.put_service_force_down(self.service_id('compute1'), True)
        self._delete_server(server)
        # Its guest still runs on the host: the context stays bound until
        # the host lets the device go.
        self.assertEqual(('bound', server['id'], 'compute1'),
                         self.binding_of(ctx))

        self.api.put_service_force_down(self.service_id('compute1'), False)
        self.restart_compute_service('compute1')
        self.computes['compute1'].manager._cleanup_running_deleted_instances(
            nova_context.get_admin_context())
        self._run_periodics()

        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assert_unbound(ctx)

    def service_id(self, host):
        return self.api.get_services(host=host,
                                     binary='nova-compute')[0]['id']


class MoveTest(ContextsAPIMixin, test_moves.MoveTestMixin,
               base.DeviceContextTestBase):

    def assert_devices_recorded(self, ctx, host, server):
        """The context lists the devices the host gives the server."""
        held = self.held(host, server)
        self.assertEqual(1, len(held))
        self.assertEqual(
            [{'pool': self.device_rp(host, a), 'address': a} for a in held],
            self.context(ctx)['devices'])

    def test_resize_keeps_it_bound_to_the_server_on_its_new_host(self):
        self.start_hosts(num_fpgas=1)
        ctx = self.create()
        server = self.boot_on('compute1', ctx)

        server = self._resize_server(server, self.bigger)
        self.assertEqual('compute2', self.host_of(server))
        # Its guest runs on the new host: so does its context, with the
        # device that host picked.
        self.assertEqual(('bound', server['id'], 'compute2'),
                         self.binding_of(ctx))
        self.assert_devices_recorded(ctx, 'compute2', server)
        server = self._confirm_resize(server)

        self.assertEqual(('bound', server['id'], 'compute2'),
                         self.binding_of(ctx))
        self.assertEqual(1, len(self.domain_hostdevs('compute2', server)))
        self.assertEqual([], self.held('compute1', server))
        self.assert_devices_recorded(ctx, 'compute2', server)

    def test_cold_migration_keeps_it_bound_to_the_server(self):
        self.start_hosts(num_fpgas=1)
        ctx = self.create()
        server = self.boot_on('compute1', ctx)

        server = self._migrate_server(server)
        server = self._confirm_resize(server)

        self.assertEqual('compute2', self.host_of(server))
        self.assertEqual(('bound', server['id'], 'compute2'),
                         self.binding_of(ctx))
        self.assert_devices_recorded(ctx, 'compute2', server)

    def test_revert_keeps_it_bound_on_the_source(self):
        self.start_hosts(num_fpgas=1)
        ctx = self.create()
        server = self.boot_on('compute1', ctx)
        server = self._resize_server(server, self.bigger)

        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self._wait_for_state_change(server, 'ACTIVE')

        self.assertEqual('compute1', self.host_of(server))
        self.assertEqual(('bound', server['id'], 'compute1'),
                         self.binding_of(ctx))
        self.assert_devices_recorded(ctx, 'compute1', server)
