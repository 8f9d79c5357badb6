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
"""Attach a device context of nova-acc-api to a running server and detach
it (issue 23), in Nova's harness.

nova-acc-api runs in-process (``ContextsAPIFixture``); it reads servers
from Nova's in-process API with admin credentials and casts to the
computes on Nova's fake transport, so the cast is a cast: the API answers
202 while the compute works, and the test waits for the context's state.
"""

import threading
import time

import fixtures
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import plugin as ks_plugin
from keystoneauth1 import session as ks_session
from nova import context as nova_context
from nova import objects
from nova import rpc
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_db import exception as db_exc

from nova_acc.api import attachment
from nova_acc.api import client as api_client
from nova_acc.compute import attach_rpc
from nova_acc.tests.fixtures import contexts_api
from tests.functional import base
from tests.functional import test_config_data
from tests.functional import test_device_contexts
from tests.functional import test_moves


class _NovaAdminAuth(ks_plugin.BaseAuthPlugin):
    """Nova's noauth2 headers of its functional harness, as an admin."""

    def __init__(self, endpoint, project_id):
        super().__init__()
        self.endpoint = endpoint
        self.project_id = project_id

    def get_headers(self, session, **kwargs):
        return {'X-Auth-User': 'admin', 'X-User-Id': 'admin',
                'X-Auth-Project-Id': self.project_id,
                'X-Roles': 'reader,member,admin'}

    def get_endpoint(self, session, **kwargs):
        return self.endpoint


class AttachTestBase(test_device_contexts.ContextsAPIMixin,
                     base.DeviceContextTestBase):

    # The API's cast is a cast: it answers 202 while the compute works
    # (Nova's harness would make it a call, run before the answer).
    CAST_AS_CALL = False

    def setUp(self):
        # Inject Nova's API and Nova's transport into the API fixture the
        # mixin builds.
        real = contexts_api.ContextsAPIFixture

        def with_attachments(*args, **kwargs):
            session = ks_session.Session(auth=_NovaAdminAuth(
                self.admin_api.base_url, self.api.project_id))
            kwargs['attachments'] = attachment.Attachments(
                servers=attachment.NovaServers(ks_adapter.Adapter(
                    session, endpoint_override=self.admin_api.base_url)),
                compute=attachment.ComputeRPC(rpc.TRANSPORT))
            return real(*args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.tests.fixtures.contexts_api.ContextsAPIFixture',
            with_attachments))
        super().setUp()
        # The fake libvirt sends no device-removed event: a detach waits
        # for it, then finds the device gone from the live domain.
        self.flags(device_detach_timeout=1, device_detach_attempts=1,
                   group='libvirt')

    def wait_for_context(self, context_id, *states, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            ctx = self.context(context_id)
            if ctx['state'] in states:
                return ctx
            if time.monotonic() > deadline:
                self.fail('context %s still %s' % (context_id, ctx['state']))
            time.sleep(0.1)

    def attach(self, context_id, server, *final):
        ctx = self.member.attach(context_id, server['id'])
        self.assertEqual(('attaching', server['id']),
                         (ctx['state'], ctx['server_id']))
        return self.wait_for_context(context_id, *(final or ('bound',)))

    def detach(self, context_id, *final):
        ctx = self.member.detach(context_id)
        self.assertEqual('detaching', ctx['state'])
        return self.wait_for_context(context_id, *(final or ('unbound',)))

    def events(self, server):
        actions = self.api.get_instance_actions(server['id'])
        result = {}
        for action in actions:
            details = self.api.get_instance_action_details(
                server['id'], action['request_id'])
            result.setdefault(action['action'], []).extend(
                (e['event'], e['result']) for e in details['events'])
        return result

    def spec_values(self, server):
        """The device_context values of the server's RequestSpec."""
        spec = objects.RequestSpec.get_by_instance_uuid(
            nova_context.get_admin_context(), server['id'])
        return spec.scheduler_hints.get('device_context', [])

    def assert_agree(self, server, host, devices):
        """placement = ledger = domain hostdevs for the server."""
        self.assertEqual(sorted(devices), self.held_devices(host, server))
        self.assertEqual(sorted(devices),
                         sorted(self.domain_hostdevs(host, server)))
        self.assertEqual(sorted(self.device_rp(host, d) for d in devices),
                         sorted(self.allocated_device_rps(server)))


class AttachTest(AttachTestBase):

    def test_attach_to_active_then_detach_and_reuse(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()
        self.assert_agree(server, 'compute1', [])

        bound = self.attach(ctx, server)

        rp = self.device_rp('compute1', fpga)
        self.assertEqual([{'pool': rp, 'address': fpga}], bound['devices'])
        self.assertEqual('compute1', bound['host'])
        self.assert_agree(server, 'compute1', [fpga])
        self.assertEqual(1, len(self.server_bindings(server)))
        self.assertEqual([ctx], self.spec_values(server))
        self.assertEqual([('compute_attach_device_context', 'Success')],
                         self.events(server)['attach_device_context'])

        self.detach(ctx)

        self.assert_agree(server, 'compute1', [])
        self.assertEqual([], self.server_bindings(server))
        self.assertEqual([], self.spec_values(server))
        self.assertEqual(1, self.reset_count(fpga))
        self.assertEqual({'FPGA': 0}, self.provider_usage(rp))
        self.assertEqual([('compute_detach_device_context', 'Success')],
                         self.events(server)['detach_device_context'])
        # Reusable, like a port: boot another server with it.
        other = self.boot(ctx)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', other))

    def test_attach_to_shutoff_then_start(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        server = self._stop_server(server)
        ctx = self.create()

        self.attach(ctx, server)

        self.assertEqual([fpga], self.held_devices('compute1', server))
        server = self._start_server(server)
        self.assert_agree(server, 'compute1', [fpga])

    def test_a_context_given_at_boot_is_detached_the_same_way(self):
        fpga, other = self.start_fpga_host('compute1', num_fpgas=2)
        kept, detached = self.create(), self.create()
        server = self.boot(kept, detached)
        devices = {c: [d['address'] for d in self.context(c)['devices']]
                   for c in (kept, detached)}

        self.detach(detached)

        self.assert_agree(server, 'compute1', devices[kept])
        self.assertEqual(1, self.reset_count(devices[detached][0]))
        self.assertEqual(0, self.reset_count(devices[kept][0]))
        self.assertEqual('bound', self.context(kept)['state'])
        self.assertEqual(1, len(self.server_bindings(server)))

    def test_hard_reboot_keeps_the_attached_device(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()
        self.attach(ctx, server)

        server = self._reboot_server(server, hard=True)

        self.assert_agree(server, 'compute1', [fpga])
        self.assertEqual(0, self.reset_count(fpga))
        self.assertEqual('bound', self.context(ctx)['state'])

    def test_more_attaches_than_devices_exactly_as_many_as_fit(self):
        self.start_fpga_host('compute1', num_fpgas=2)
        servers = [self.boot() for _ in range(3)]
        contexts = [self.create() for _ in servers]

        for ctx, server in zip(contexts, servers):
            self.member.attach(ctx, server['id'])
        final = [self.wait_for_context(ctx, 'bound', 'unbound')
                 for ctx in contexts]

        self.assertEqual(['bound', 'bound', 'unbound'],
                         sorted(c['state'] for c in final))
        held = []
        for ctx, server in zip(final, servers):
            devices = [d['address'] for d in ctx['devices']]
            self.assert_agree(server, 'compute1', devices)
            held += devices
        self.assertEqual(2, len(set(held)))
        self.assertEqual(2, len(held))

    def test_stop_start_and_delete_after_attach(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()
        self.attach(ctx, server)

        server = self._stop_server(server)
        server = self._start_server(server)
        self.assert_agree(server, 'compute1', [fpga])
        self.assertEqual(0, self.reset_count(fpga))

        self._delete_server(server)

        self.assert_unbound(ctx)
        self.assertEqual(1, self.reset_count(fpga))
        self.assertEqual({'FPGA': 0}, self.provider_usage(
            self.device_rp('compute1', fpga)))


class AttachFailureTest(AttachTestBase):

    def test_no_free_device_on_the_host_changes_nothing(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        first = self.boot(self.create())
        server = self.boot()
        ctx = self.create()

        failed = self.attach(ctx, server, 'unbound')

        self.assertIn('device context %s could not be attached to server %s'
                      % (ctx, server['id']), failed['fault'])
        self.assertIn('no free device on host compute1', failed['fault'])
        self.assert_agree(server, 'compute1', [])
        self.assertEqual([fpga], self.held_devices('compute1', first))
        self.assertEqual([], self.server_bindings(server))
        self.assertEqual([('compute_attach_device_context', 'Error')],
                         self.events(server)['attach_device_context'])

    def test_a_failed_attach_leaves_the_request_spec_as_it_was(self):
        self.start_fpga_host('compute1', num_fpgas=1)
        booted = self.create()
        server = self.boot(booted)
        ctx = self.create()

        self.attach(ctx, server, 'unbound')

        self.assertEqual([booted], self.spec_values(server))
        self.assertEqual(1, len(self.server_bindings(server)))

    def test_a_conductor_without_the_api_database_fails_closed(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()

        def no_api_database(*args, **kwargs):
            raise db_exc.CantStartEngineError(
                'No sql_connection parameter is established')

        self.useFixture(fixtures.MonkeyPatch(
            'nova.objects.RequestSpec.get_by_instance_uuid',
            no_api_database))
        failed = self.attach(ctx, server, 'unbound')

        self.assertIn('the request spec of server %s could not be read'
                      % server['id'], failed['fault'])
        self.assert_agree(server, 'compute1', [])
        self.assertEqual([], self.server_bindings(server))
        self.assertEqual(0, self.reset_count(fpga))

    def test_libvirt_attach_failing_leaves_nothing_behind(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()

        def refuse(dom, xml, flags):
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, 'hot-plug refused',
                error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.attachDeviceFlags', refuse))
        failed = self.attach(ctx, server, 'unbound')

        self.assertIn('hot-plug refused', failed['fault'])
        self.assert_agree(server, 'compute1', [])
        self.assertEqual([], self.server_bindings(server))
        self.assertEqual(1, self.reset_count(fpga))
        self.assertEqual({'FPGA': 0}, self.provider_usage(
            self.device_rp('compute1', fpga)))

    def test_server_not_active_or_shutoff_is_refused_at_once(self):
        self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        self.api.post_server_action(server['id'], {'pause': None})
        server = self._wait_for_state_change(server, 'PAUSED')
        ctx = self.create()

        error = self.assertRaises(api_client.ContextConflict,
                                  self.member.attach, ctx, server['id'])

        self.assertIn('server %s is PAUSED' % server['id'], str(error))
        self.assert_unbound(ctx)

    def test_another_projects_server_is_not_found(self):
        self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        other = self.contexts_api.client('other-project')
        ctx = other.create(test_device_contexts.SPEC)['id']

        self.assertRaises(api_client.ContextNotFound, other.attach, ctx,
                          server['id'])
        self.assertEqual('unbound', other.get(ctx)['state'])

    def test_two_attaches_of_one_context_exactly_one_wins(self):
        self.start_fpga_host('compute1', num_fpgas=2)
        first, second = self.boot(), self.boot()
        ctx = self.create()

        self.member.attach(ctx, first['id'])
        error = self.assertRaises(api_client.ContextConflict,
                                  self.member.attach, ctx, second['id'])

        self.assertIn('device context %s is bound to server %s'
                      % (ctx, first['id']), str(error))
        self.wait_for_context(ctx, 'bound')
        self.assertEqual(first['id'], self.context(ctx)['server_id'])
        self.assertEqual([], self.held_devices('compute1', second))

    def _stuck_detach(self, ctx, fpga, server):
        with fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.Domain.detachDeviceFlags',
                lambda dom, xml, flags: None):
            stuck = self.detach(ctx, 'error')
        self.assertIn('did not release device %s' % fpga, stuck['fault'])
        self.assertIn('stays attached and held', stuck['fault'])
        self.assert_agree(server, 'compute1', [fpga])
        self.assertEqual(0, self.reset_count(fpga))

    def test_guest_that_keeps_the_device_then_the_server_is_deleted(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()
        self.attach(ctx, server)
        self._stuck_detach(ctx, fpga, server)

        self._delete_server(server)

        self.assert_unbound(ctx)
        self.assertEqual(1, self.reset_count(fpga))

    def test_guest_that_keeps_the_device_then_the_detach_is_retried(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()
        self.attach(ctx, server)
        self._stuck_detach(ctx, fpga, server)

        self.detach(ctx)

        self.assert_agree(server, 'compute1', [])
        self.assertEqual(1, self.reset_count(fpga))

    def test_guest_that_keeps_the_device_then_stopped_and_detached(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()
        self.attach(ctx, server)
        self._stuck_detach(ctx, fpga, server)

        server = self._stop_server(server)
        self.detach(ctx)

        self.assertEqual([], self.held_devices('compute1', server))
        self.assertEqual([], self.domain_hostdevs('compute1', server))
        self.assertEqual(1, self.reset_count(fpga))
        server = self._start_server(server)
        self.assert_agree(server, 'compute1', [])

    def test_a_lost_attach_shows_in_error_and_a_detach_cleans_up(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()
        # The API process died between its UPDATE and the cast.
        self.contexts_api.database.begin_attach(ctx, self.project,
                                                server['id'], 'compute1')
        self.contexts_api.conf.set_override('attachment_timeout', 0,
                                            group='api')

        lost = self.context(ctx)

        self.assertEqual('error', lost['state'])
        self.assertIn('did not finish within 0 seconds', lost['fault'])
        self.detach(ctx)
        self.assert_agree(server, 'compute1', [])
        self.assertEqual(0, self.reset_count(fpga))

    def test_server_deleted_before_the_compute_attaches(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()
        # The cast waits on the compute until the server is gone.
        received, go_on = threading.Event(), threading.Event()
        real = attach_rpc.AttachEndpoint._run

        def held(endpoint, *args, **kwargs):
            received.set()
            go_on.wait(30)
            return real(endpoint, *args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.compute.attach_rpc.AttachEndpoint._run', held))
        self.member.attach(ctx, server['id'])
        self.assertTrue(received.wait(30))
        self._delete_server(server)
        go_on.set()

        ctx_now = self.wait_for_context(ctx, 'unbound')

        self.assertIn('server %s was deleted' % server['id'],
                      ctx_now['fault'])
        self.assertEqual([], self.held_devices('compute1', server))
        self.assertEqual(0, self.reset_count(fpga))
        self.assertEqual({'FPGA': 0}, self.provider_usage(
            self.device_rp('compute1', fpga)))

    def test_a_compute_dying_mid_attach_gives_the_allocation_back(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        rp = self.device_rp('compute1', fpga)
        server = self.boot()
        ctx = self.create()
        # The allocation grew, then the process died before the bindings
        # were saved: nothing of the attach was undone.
        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.compute.attach.Attacher._undo_attach',
            lambda *args: None))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.binding.add_groups', self._die))
        self.attach(ctx, server, 'unbound')
        self.assertEqual({'FPGA': 1}, self.provider_usage(rp))
        self.assertEqual([], self.server_bindings(server))

        self.restart_compute_service('compute1')

        self.assertEqual({'FPGA': 0}, self.provider_usage(rp))
        self.assertNotIn(rp, self.allocated_device_rps(server))
        self.assert_agree(server, 'compute1', [])
        # The server's own allocation (its flavor) is untouched.
        self.assertTrue(self._get_allocations_by_server_uuid(server['id']))

    @staticmethod
    def _die(*args, **kwargs):
        raise RuntimeError('the compute died here')


class AttachConfigTest(test_config_data.ConfigDataMixin, AttachTestBase):

    def test_config_applied_then_undone_on_detach(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.member.create('resources:FPGA=1', name='fast',
                                 config={'accel:mode': 'fast'})['id']

        self.attach(ctx, server)

        self.assertEqual([('configure', fpga, {'mode': 'fast'}, ctx,
                           server['id'])], self.recorder.calls)
        self.detach(ctx)
        self.assertEqual(('unconfigure', fpga), self.recorder.calls[-1])
        self.assertEqual({}, self.configured_marks('compute1'))

    def test_a_failing_configurator_leaves_nothing_behind(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.member.create('resources:FPGA=1', name='fast',
                                 config={'accel:mode': 'fast'})['id']
        self.recorder.fail_on = {'*'}

        failed = self.attach(ctx, server, 'unbound')

        self.assertIn('device context %s could not be attached' % ctx,
                      failed['fault'])
        self.assert_agree(server, 'compute1', [])
        self.assertEqual([], self.server_bindings(server))
        self.assertEqual({}, self.configured_marks('compute1'))
        self.assertEqual(1, self.reset_count(fpga))


class AttachMoveTest(test_moves.MoveTestMixin, AttachTestBase):
    """An attached context moves with its server as a boot-time one does:
    the device follows, the source releases and resets it once, and
    placement = ledger = domain hostdevs on every host after."""

    def _attached_on_compute1(self, num_fpgas=1):
        hosts = self.start_hosts(num_fpgas=num_fpgas)
        server = self.boot(flavor_id=self.small)
        self.assertEqual('compute1', self.host_of(server))
        ctx = self.create()
        self.attach(ctx, server)
        self.assertEqual([ctx], self.spec_values(server))
        source = self.domain_hostdevs('compute1', server)
        self.assertEqual(1, len(source))
        return server, ctx, source, hosts

    def assert_moved(self, server, ctx, host, source_host, source):
        devices = self.domain_hostdevs(host, server)
        self.assertEqual(1, len(devices))
        self.assertEqual(devices, self.held(host, server))
        self.assertEqual(('bound', server['id'], host),
                         self.binding_of(ctx))
        self.assertEqual([], self.domain_hostdevs(source_host, server))
        self.assert_released(source_host, source)
        self.assert_consistent()

    def test_resize_and_confirm(self):
        server, ctx, source, _ = self._attached_on_compute1()

        server = self._resize_server(server, self.bigger)
        self.assertEqual('compute2', self.host_of(server))
        server = self._confirm_resize(server)

        self.assert_moved(server, ctx, 'compute2', 'compute1', source)

    def test_resize_and_revert(self):
        server, ctx, source, hosts = self._attached_on_compute1()
        server = self._resize_server(server, self.bigger)
        dest = self.domain_hostdevs('compute2', server)
        self.assertEqual(hosts['compute2'], dest)

        server = self._revert_resize(server)

        self.assertEqual(source, self.domain_hostdevs('compute1', server))
        self.assertEqual(source, self.held('compute1', server))
        self.assertEqual(0, self.reset_count(source[0]))
        self.assert_released('compute2', dest)
        self.assertEqual(('bound', server['id'], 'compute1'),
                         self.binding_of(ctx))
        self.assert_consistent()

    def test_cold_migration_and_confirm(self):
        server, ctx, source, _ = self._attached_on_compute1()

        server = self._migrate_server(server)
        server = self._confirm_resize(server)

        self.assert_moved(server, ctx, 'compute2', 'compute1', source)

    def test_evacuate(self):
        server, ctx, source, _ = self._attached_on_compute1()
        self.computes['compute1'].stop()
        service = next(s['id'] for s in self.api.get_services(
            binary='nova-compute', host='compute1'))
        self.api.put_service_force_down(service, True)

        server = self._evacuate_server(server, expected_host='compute2',
                                       expected_state='SHUTOFF')
        self.restart_compute_service('compute1')
        self.api.put_service_force_down(service, False)

        self.assert_moved(server, ctx, 'compute2', 'compute1', source)

    def test_shelve_offload_and_unshelve(self):
        self.flags(shelved_offload_time=0)
        server, ctx, source, _ = self._attached_on_compute1()

        server = self._shelve_server(server)
        self.assert_unbound(ctx)
        self.assert_released('compute1', source)

        server = self._unshelve_server(server)

        host = self.host_of(server)
        self.assertEqual(('bound', server['id'], host),
                         self.binding_of(ctx))
        self.assertEqual(1, len(self.domain_hostdevs(host, server)))
        self.assertEqual(self.domain_hostdevs(host, server),
                         self.held(host, server))
        self.assert_consistent()

    def test_a_detached_boot_time_context_is_not_asked_for_again(self):
        hosts = self.start_hosts(num_fpgas=2)
        detached, kept = self.create(), self.create()
        server = self.boot(detached, kept, flavor_id=self.small)
        self.assertEqual('compute1', self.host_of(server))
        self.detach(detached)
        # The detached context keeps its place: kept's groups keep index 1.
        self.assertEqual(['detached:' + detached, kept],
                         self.spec_values(server))

        server = self._migrate_server(server)
        server = self._confirm_resize(server)

        self.assert_unbound(detached)
        self.assertEqual(('bound', server['id'], 'compute2'),
                         self.binding_of(kept))
        moved = self.domain_hostdevs('compute2', server)
        self.assertEqual(1, len(moved))
        self.assert_released('compute1', hosts['compute1'])
        self.assert_consistent()
        # A context attached now takes the detached one's place.
        again = self.create()
        self.attach(again, server)
        self.assertEqual([again, kept], self.spec_values(server))
        self.assertEqual(sorted(hosts['compute2']),
                         sorted(self.domain_hostdevs('compute2', server)))
        self.assert_consistent()
