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

See nova_acc.tests.fixtures.cyborg.cloud for how Nova and Cyborg are wired.
"""

import threading

import fixtures
from nova import context as nova_context
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_utils import uuidutils

from nova_acc.backends import cyborg as cyborg_backend
from nova_acc import binding
from nova_acc.tests.fixtures.cyborg import cloud as cyborg_cloud
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

    def _rebind_before_the_compute_waits(self, ctx, target):
        """Rebind the ARQ between the pre-bind and the compute, once.

        What a concurrent bind or an operator does to an ARQ bound for the
        server: Cyborg then holds it for the same server on another host
        and provider than the pre-bind bound and placement allocated.

        :param target: (node, provider the pre-bind bound) -> (host,
            provider) to rebind to.
        """
        nova_view = self.cyborg.client('member:%s' % self.project,
                                       service_token='service')
        real = cyborg_backend.CyborgBackend.wait_bound
        moved = []

        def rebind_first(backend, context, instance, virtapi, device_rps,
                         **kwargs):
            if not moved:
                host, rp = target(instance.node, device_rps[ctx])
                nova_view.unbind(ctx)
                nova_view.bind(ctx, host, rp, instance.uuid)
                moved.append(instance.node)
            return real(backend, context, instance, virtapi, device_rps,
                        **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.backends.cyborg.CyborgBackend.wait_bound',
            rebind_first))
        return moved

    def test_context_bound_elsewhere_is_refused_at_the_compute(self):
        # No alternate host: the server fails with what did not match.
        self.flags(max_attempts=1, group='scheduler')
        rp1 = self.start_cyborg_host('compute1', '0000:90:00.0')
        rp2 = self.start_cyborg_host('compute2', '0000:91:00.0')
        ctx = self.create_context()
        others = {'compute1': ('compute2', rp2),
                  'compute2': ('compute1', rp1)}
        moved = self._rebind_before_the_compute_waits(
            ctx, lambda node, rp: others[node])

        server = self.boot(ctx, expected_state='ERROR')

        built_on, = moved
        other = 'compute2' if built_on == 'compute1' else 'compute1'
        self.assertIn('device context %s is bound on host %s, not on %s '
                      'where this server is built' % (ctx, other, built_on),
                      self.fault_message(server))
        # Nothing stays bound to the server that failed.
        arq = self.member.get_arq(ctx)
        self.assertEqual(('Unbound', None),
                         (arq['state'], arq['instance_uuid']))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.assertEqual({'FPGA': 0}, self.provider_usage(rp1))
        self.assertEqual({'FPGA': 0}, self.provider_usage(rp2))
        self.assertEqual({}, self.all_domain_hostdevs())

        again = self.boot(ctx)
        arq = self.member.get_arq(ctx)
        self.assertEqual(('Bound', again['id']),
                         (arq['state'], arq['instance_uuid']))

    def test_provider_mismatch_at_the_compute_reschedules(self):
        # Bound to the other device of the same host: the host matches,
        # the provider does not; the alternate host builds the server.
        first = {self.start_cyborg_host(
            'compute1', '0000:90:00.0',
            host_info=fakelibvirt.HostInfo(kB_mem=32 * GiB_in_kB)): None,
            self.add_cyborg_device('compute1', '0000:90:01.0'): None}
        rp2 = self.start_cyborg_host(
            'compute2', '0000:91:00.0',
            host_info=fakelibvirt.HostInfo(kB_mem=16 * GiB_in_kB))
        ctx = self.create_context()
        prebound = []

        def the_other_device(node, rp):
            prebound.append(rp)
            return node, next(r for r in first if r != rp)
        self._rebind_before_the_compute_waits(ctx, the_other_device)

        server = self.boot(ctx)

        self.assertEqual(['compute1', 'compute2'], self.hosts_tried(server))
        allocated, = prebound
        self.assertIn(allocated, first)
        self.assertIn('device context %s is bound to resource provider %s, '
                      'not to %s allocated to this server' % (
                          ctx, next(r for r in first if r != allocated),
                          allocated), self.stdlog.logger.output)
        arq = self.member.get_arq(ctx)
        self.assertEqual(('Bound', server['id'], 'compute2', rp2),
                         (arq['state'], arq['instance_uuid'],
                          arq['hostname'], arq['device_rp_uuid']))
        self.assertEqual({'0000:91:00.0': [server['id']]},
                         self.all_domain_hostdevs())
        for rp in first:
            self.assertEqual({'FPGA': 0}, self.provider_usage(rp))

    def test_local_delete_while_the_compute_is_down(self):
        rp = self.start_cyborg_host('compute1', '0000:90:00.0')
        ctx = self.create_context()
        server = self.boot(ctx)
        service_id = self.api.get_services(
            host='compute1', binary='nova-compute')[0]['id']
        self.computes['compute1'].stop()
        self.api.put_service_force_down(service_id, True)

        # The API deletes the server by itself; Nova's local delete only
        # cleans up ARQs of flavors with accel:device_profile.
        self._delete_server(server)
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.assertEqual(('Bound', server['id']), tuple(
            self.member.get_arq(ctx)[k] for k in ('state', 'instance_uuid')))

        self.api.put_service_force_down(service_id, False)
        self.restart_compute_service('compute1')
        # Its guest is still defined on the host with the device: the ARQ
        # is not unbound under it.
        self.assertEqual(['0000:90:00.0'],
                         self.domain_hostdevs('compute1', server))
        self.assertEqual('Bound', self.member.get_arq(ctx)['state'])

        # Nova reaps the guest of the deleted server; nova-compute unbinds
        # the ARQ with Nova's own credentials ([cyborg]): it has no token
        # of the user.
        self.computes['compute1'].manager._cleanup_running_deleted_instances(
            nova_context.get_admin_context())
        self._run_periodics()

        arq = self.member.get_arq(ctx)
        self.assertEqual(('Unbound', None, self.project),
                         (arq['state'], arq['instance_uuid'],
                          arq['project_id']))
        self.assertEqual({'FPGA': 0}, self.provider_usage(rp))
        self.assertEqual({}, self.all_domain_hostdevs())
        self.assertNotIn('0000:90:00.0', self.ledger('compute1'))
        # At the first try: the reap's context has no user token either.
        self.assertNotIn('Could not unbind', self.stdlog.logger.output)

        again = self.boot(ctx)
        self.assertEqual(['0000:90:00.0'],
                         self.domain_hostdevs('compute1', again))
        self.assertEqual(again['id'],
                         self.member.get_arq(ctx)['instance_uuid'])


class CyborgRaceTest(cyborg_cloud.CyborgCloudMixin,
                     base.DeviceContextTestBase):
    """Two builds at the same time, as in a real cloud."""

    CAST_AS_CALL = False

    def test_two_servers_bind_one_context_at_the_same_time(self):
        # No alternate host, so the loser's fault says why it lost.
        self.flags(max_attempts=1, group='scheduler')
        rps = {self.start_cyborg_host('compute1', '0000:90:00.0'):
               '0000:90:00.0',
               self.add_cyborg_device('compute1', '0000:90:01.0'):
               '0000:90:01.0'}
        ctx = self.create_context()
        barrier = threading.Barrier(2, timeout=60)
        seen = []
        real = binding.prebind

        def together(report_client, context, instance, *args, **kwargs):
            # Both got past the scheduler's check of the ARQ; neither binds
            # before the other is as far.
            seen.append(self.cyborg.client('member:%s' % self.project)
                        .get_arq(ctx)['state'])
            barrier.wait()
            return real(report_client, context, instance, *args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.binding.prebind', together))

        servers = [self.boot(ctx, wait=False) for _ in range(2)]
        servers = [self.wait_for_build_end(s) for s in servers]

        self.assertEqual(['Initial', 'Initial'], seen)
        by_status = {}
        for s in servers:
            by_status.setdefault(s['status'], []).append(s)
        self.assertEqual(['ACTIVE', 'ERROR'], sorted(by_status),
                         [(s['id'], s['status'], s.get('fault'))
                          for s in servers])
        winner, = by_status['ACTIVE']
        loser, = by_status['ERROR']
        arq = self.member.get_arq(ctx)
        self.assertEqual(('Bound', winner['id'], 'compute1'),
                         (arq['state'], arq['instance_uuid'],
                          arq['hostname']))
        self.assertEqual(
            [arq['device_rp_uuid']],
            [rp for rp in self._get_allocations_by_server_uuid(winner['id'])
             if rp in rps])
        # The hostdev is the ARQ's attach handle, in the winner's domain
        # only. (Cyborg 17 can give the ARQ the attach handle of the
        # loser's device when it accepts both binds; that is Cyborg's
        # bookkeeping, not checked here.)
        handle = '%(domain)s:%(bus)s:%(device)s.%(function)s' % (
            arq['attach_handle_info'])
        self.assertIn(handle, rps.values())
        self.assertEqual({handle: [winner['id']]}, self.all_domain_hostdevs())
        fault = self.fault_message(loser)
        self.assertTrue(
            'device context %s is in use by server %s' % (
                ctx, winner['id']) in fault or
            'Cyborg refused to bind device contexts %s' % ctx in fault,
            fault)
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            loser['id']))
        for rp in rps:
            self.assertEqual(
                {'FPGA': 1 if rp == arq['device_rp_uuid'] else 0},
                self.provider_usage(rp))
