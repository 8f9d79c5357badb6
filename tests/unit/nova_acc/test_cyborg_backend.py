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
"""The Cyborg backend against a fake of Cyborg's ARQ API.

The flow is tested against the real Cyborg in
tests/functional/test_cyborg_backend.py; here are the cases the real one
produces only by chance (concurrent binds) or not at all.
"""

import contextlib
import copy
import logging
from unittest import mock

import fixtures
from keystoneauth1 import loading as ks_loading
from nova import context as nova_context
from nova import exception as nova_exc
from nova import objects
from nova import service_auth
import os_acc
from oslo_config import fixture as config_fixture
from oslo_policy import policy as oslo_policy
from oslo_utils import uuidutils
from oslotest import base

from nova_acc import exception
from nova_acc.backends import cyborg
from nova_acc import conf
from nova_acc import policy

objects.register_all()

PROJECT = 'a' * 32
ARQ = 'c9d3b7a8-0a4e-4a5e-9d61-0d3b2f1e7a10'
INSTANCE = '5b0f1b8e-2f5a-4c37-8a0e-3c1f2d4b6a77'
PROFILE = {'device_profiles': [{'name': 'p', 'groups': [
    {'resources:FPGA': '1', 'trait:CUSTOM_GZIP': 'required'}]}]}


class AttachHandleTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        os_acc.initialize()

    def arq(self, handle_type, info):
        return {'uuid': ARQ, 'attach_handle_type': handle_type,
                'attach_handle_info': info}

    def test_pci_handle(self):
        acc = cyborg._accelerator(self.arq('PCI', {
            'domain': '0000', 'bus': '81', 'device': '00', 'function': '1'}))
        self.assertEqual(('pci', '0000:81:00.1'),
                         (acc.interface_type, acc.address))

    def test_mdev_handle(self):
        # As Nova 2026.2 reads Cyborg's vGPU handles: the handle's UUID is
        # the mdev's, its info the GPU and the type.
        arq = self.arq('MDEV', {'domain': '0000', 'bus': '81',
                                'device': '00', 'function': '0',
                                'asked_type': 'nvidia-35',
                                'vgpu_mark': 'nvidia-35_0'})
        arq['attach_handle_uuid'] = INSTANCE
        acc = cyborg._accelerator(arq)
        self.assertEqual(('mdev', INSTANCE, '0000:81:00.0', 'nvidia-35'),
                         (acc.interface_type, acc.mdev_uuid, acc.parent,
                          acc.mdev_type))

    def test_malformed_handles_never_reach_libvirt(self):
        for handle_type, info in (
                ('PCI', {'domain': '0000', 'bus': "81'/><x", 'device': '00',
                         'function': '0'}),
                ('PCI', {'domain': '0000', 'bus': '81'}),
                ('MDEV', {'uuid': 'not-a-uuid'}),
                ('MDEV', {'uuid': INSTANCE, 'domain': '0000', 'bus': '81',
                          'device': '00', 'function': '0',
                          'asked_type': "nvidia-35'/><x"}),
                ('MDEV', {'uuid': INSTANCE, 'asked_type': 'nvidia-35'}),
                ('NVME', {})):
            e = self.assertRaises(exception.BackendUnavailable,
                                  cyborg._accelerator,
                                  self.arq(handle_type, info))
            self.assertIn('unusable attach handle', str(e))


class ResolveTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.backend = cyborg.CyborgBackend()
        self.arq = {'uuid': ARQ, 'project_id': PROJECT, 'state': 'Initial',
                    'instance_uuid': None, 'device_profile_name': 'p',
                    'device_profile_group_id': 0}
        responses = {
            '/accelerator_requests/%s' % ARQ: lambda: (200, self.arq),
            '/device_profiles': lambda: (200, PROFILE),
        }

        def call(context, method, url, what, expected=(200,), **kw):
            status, body = responses[url]()
            return mock.Mock(status_code=status, json=lambda: body)
        self.useFixture(fixtures.MockPatchObject(self.backend, '_call', call))
        # The policy defaults, without a policy file.
        enforcer = oslo_policy.Enforcer(conf.CONF, use_conf=False)
        enforcer.register_defaults(policy.list_rules())
        enforcer.set_rules(oslo_policy.Rules(
            {rule.name: rule.check for rule in policy.list_rules()}),
            use_conf=False)
        self.useFixture(fixtures.MockPatchObject(policy, '_ENFORCER',
                                                 enforcer))
        self.spec = objects.RequestSpec(project_id=PROJECT,
                                        instance_uuid=INSTANCE)
        self.ctx = nova_context.RequestContext('user', PROJECT,
                                               is_admin=False,
                                               roles=['member'])

    def resolve(self):
        return self.backend.resolve(self.ctx, self.spec, ARQ)

    def test_profile_group_becomes_the_context(self):
        group = self.resolve().device_context.groups[0]
        self.assertEqual({'FPGA': 1}, group.resources)
        self.assertEqual({'CUSTOM_GZIP'}, group.required_traits)

    def test_other_project_refused_without_admin(self):
        self.arq['project_id'] = 'b' * 32
        log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        e = self.assertRaises(exception.ContextRefused, self.resolve)
        # Word for word what an ARQ that does not exist gets: whether an
        # ARQ exists in another project is not the user's to learn.
        self.assertEqual(
            'device context %s does not exist in your project' % ARQ, str(e))
        self.assertNotIn('b' * 32, str(e))
        # The operator's log has the real reason.
        self.assertIn('belongs to project %s' % ('b' * 32), log.output)
        self.ctx.roles = ['admin']
        self.resolve()

    def test_missing_arq(self):
        self.arq = None
        e = self.assertRaises(exception.ContextRefused, self.resolve)
        self.assertEqual(
            'device context %s does not exist in your project' % ARQ, str(e))

    def test_profile_group_with_a_compute_node_class_is_refused(self):
        # Cyborg 17 refuses such a device profile itself; another backend,
        # or an older Cyborg, may not: the same rule as inline specs.
        PROFILE['device_profiles'][0]['groups'][0]['resources:VCPU'] = '2'
        self.addCleanup(PROFILE['device_profiles'][0]['groups'][0].pop,
                        'resources:VCPU')
        e = self.assertRaises(exception.ContextRefused, self.resolve)
        self.assertIn("device profile 'p' of device context %s cannot be "
                      "used" % ARQ, str(e))
        self.assertIn("'resources:VCPU=2' is not a device class", str(e))

    def test_bound_elsewhere_refused(self):
        self.arq.update(state='Bound', instance_uuid='other-server')
        e = self.assertRaises(exception.ContextRefused, self.resolve)
        self.assertIn('is Bound to server other-server', str(e))

    def test_bound_to_this_server_is_a_move(self):
        # Resize, cold migration and evacuate schedule the server again
        # with the ARQ it holds; the destination binds it there.
        self.arq.update(state='Bound', instance_uuid=INSTANCE)
        self.assertEqual({'FPGA': 1},
                         self.resolve().device_context.groups[0].resources)

    def test_half_bound_by_a_failed_bind_is_recoverable(self):
        for owner in (None, INSTANCE):
            self.arq.update(state='BindStarted', instance_uuid=owner)
            self.resolve()
        self.arq.update(state='BindStarted', instance_uuid='other-server')
        self.assertRaises(exception.ContextRefused, self.resolve)

    def test_group_amount_is_per_arq(self):
        group = PROFILE['device_profiles'][0]['groups'][0]
        group['resources:FPGA'] = '2'
        self.addCleanup(group.update, {'resources:FPGA': '1'})
        self.assertEqual({'FPGA': 1},
                         self.resolve().device_context.groups[0].resources)


OTHER = '0e6b3f8c-7d2a-4e51-9b3c-6a1f0d2e4c88'
RP = '3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b'
OTHER_RP = '7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d'
NODE = 'compute1'
HANDLE = {'domain': '0000', 'bus': '90', 'device': '00', 'function': '0'}


class FakeResponse:

    def __init__(self, status_code, body=None):
        self.status_code = status_code
        self._body = body
        self.text = '' if body is None else str(body)

    def json(self):
        return copy.deepcopy(self._body)


class FakeCyborg:
    """Cyborg's ARQ API as the backend's adapter sees it.

    ``on_patch(patch)`` may stand in for Cyborg on a PATCH (a concurrent
    bind, a failure) and return the response; returning None lets the
    fake apply the patch as Cyborg does one at a time: a bind of an ARQ
    that is not Initial or Unbound fails with HTTP 500, and a missing ARQ
    fails the whole PATCH with 404.
    """

    def __init__(self):
        self.arqs = {}
        self.patches = []
        self.admin = []
        self.on_patch = None

    def add(self, arq_uuid, state='Initial', instance=None, hostname=None,
            rp=None):
        self.arqs[arq_uuid] = {
            'uuid': arq_uuid, 'state': state, 'instance_uuid': instance,
            'hostname': hostname, 'device_rp_uuid': rp,
            'attach_handle_type': 'PCI' if state == 'Bound' else '',
            'attach_handle_info': dict(HANDLE) if state == 'Bound' else {}}

    def bind(self, arq_uuid, instance, hostname=NODE, rp=RP, state='Bound'):
        self.arqs[arq_uuid].update(
            state=state, instance_uuid=instance, hostname=hostname,
            device_rp_uuid=rp, attach_handle_type='PCI',
            attach_handle_info=dict(HANDLE))

    def client(self, context, admin=False):
        self.admin.append(admin)
        return self

    def get(self, url, raise_exc=False, **kwargs):
        arq = self.arqs.get(url.rsplit('/', 1)[-1])
        return FakeResponse(404, 'not found') if arq is None else \
            FakeResponse(200, arq)

    def patch(self, url, json=None, raise_exc=False, **kwargs):
        self.patches.append(
            {u: ops[0]['op'] for u, ops in sorted(json.items())})
        if self.on_patch:
            resp = self.on_patch(json)
            if resp is not None:
                return resp
        for arq_uuid, ops in json.items():
            arq = self.arqs.get(arq_uuid)
            if arq is None:
                return FakeResponse(404, 'ExtArq not found')
            if ops[0]['op'] == 'add':
                if arq['state'] not in ('Initial', 'Unbound'):
                    return FakeResponse(500, 'Bad state: %s' % arq['state'])
                fields = {op['path'][1:]: op['value'] for op in ops}
                self.bind(arq_uuid, fields['instance_uuid'],
                          fields['hostname'], fields['device_rp_uuid'])
            else:
                arq.update(state='Unbound', instance_uuid=None,
                           hostname=None, device_rp_uuid=None,
                           attach_handle_type='', attach_handle_info={})
        return FakeResponse(202)


class FakeVirtAPI:
    """The compute's event wait; ``on_wait`` runs while it really waits."""

    def __init__(self):
        self.early = []
        self.waited = False
        self.on_wait = None

    @contextlib.contextmanager
    def wait_for_instance_event(self, instance, event_names, timeout=300,
                                error_callback=None):
        early = []
        try:
            yield
        except EarlyExit as e:
            early = e.events
        self.early.extend(early)
        if set(early) != set(event_names):
            self.waited = True
            if self.on_wait:
                self.on_wait(error_callback)

    def exit_wait_early(self, events):
        raise EarlyExit(events)


class EarlyExit(Exception):

    def __init__(self, events):
        self.events = list(events)


class CyborgFlowTestBase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        os_acc.initialize()
        self.cyborg = FakeCyborg()
        self.backend = cyborg.CyborgBackend()
        self.useFixture(fixtures.MockPatchObject(
            self.backend, '_client', self.cyborg.client))
        self.log = self.useFixture(fixtures.FakeLogger(
            name='nova_acc.backends.cyborg', level=logging.INFO))
        self.ctx = nova_context.RequestContext('user', PROJECT,
                                               is_admin=False,
                                               auth_token='token')
        self.instance = objects.Instance(uuid=INSTANCE, node=NODE)

    def state(self, arq_uuid):
        arq = self.cyborg.arqs[arq_uuid]
        return arq['state'], arq['instance_uuid']


class BindTest(CyborgFlowTestBase):

    def bind(self, device_rps=None):
        self.backend.bind(self.ctx, self.instance, NODE,
                          device_rps or {ARQ: RP})

    def test_binds_every_context_in_one_request(self):
        second = uuidutils.generate_uuid()
        self.cyborg.add(ARQ)
        self.cyborg.add(second, state='Unbound')
        self.bind({ARQ: RP, second: OTHER_RP})
        self.assertEqual([{ARQ: 'add', second: 'add'}], self.cyborg.patches)
        self.assertEqual(('Bound', INSTANCE), self.state(ARQ))
        self.assertEqual(OTHER_RP,
                         self.cyborg.arqs[second]['device_rp_uuid'])

    def test_a_move_unbinds_from_the_source_then_binds_here(self):
        self.cyborg.add(ARQ)
        self.cyborg.bind(ARQ, INSTANCE, hostname='compute0', rp=OTHER_RP)
        self.bind()
        self.assertEqual([{ARQ: 'remove'}, {ARQ: 'add'}],
                         self.cyborg.patches)
        arq = self.cyborg.arqs[ARQ]
        self.assertEqual(('Bound', INSTANCE, NODE, RP),
                         (arq['state'], arq['instance_uuid'],
                          arq['hostname'], arq['device_rp_uuid']))

    def test_an_admin_bind_keeps_the_project_of_the_context(self):
        # Cold migration and evacuate are admin operations: Cyborg would
        # give the ARQ to the admin's project unless the bind names its own.
        sent = []
        self.cyborg.on_patch = lambda patch: sent.append(patch)
        self.cyborg.add(ARQ)
        self.cyborg.arqs[ARQ]['project_id'] = PROJECT
        admin = nova_context.RequestContext('admin', 'c' * 32, is_admin=True,
                                            auth_token='token')
        self.backend.bind(admin, self.instance, NODE, {ARQ: RP})
        self.assertIn({'path': '/project_id', 'op': 'add', 'value': PROJECT},
                      sent[0][ARQ])
        # The owner's own bind sends no project: Cyborg would refuse it.
        sent.clear()
        self.cyborg.arqs[ARQ].update(state='Unbound', instance_uuid=None)
        self.bind()
        self.assertEqual(['/hostname', '/device_rp_uuid', '/instance_uuid'],
                         [op['path'] for op in sent[0][ARQ]])

    def test_context_of_another_server_is_refused_untouched(self):
        self.cyborg.add(ARQ)
        self.cyborg.bind(ARQ, OTHER)
        e = self.assertRaises(exception.BackendUnavailable, self.bind)
        self.assertIn('device context %s is in use by server %s (Bound)'
                      % (ARQ, OTHER), str(e))
        self.assertEqual([], self.cyborg.patches)
        self.assertEqual(('Bound', OTHER), self.state(ARQ))

    def test_half_bound_context_of_another_server_is_refused_untouched(self):
        self.cyborg.add(ARQ)
        self.cyborg.bind(ARQ, OTHER, state='BindFailed')
        self.assertRaises(exception.BackendUnavailable, self.bind)
        self.assertEqual([], self.cyborg.patches)

    def test_leftovers_of_this_server_are_unbound_first(self):
        # A failed bind left one half-bound, a build on the host the server
        # was rescheduled from left the other bound: Cyborg binds nothing
        # to a server that still has an ARQ.
        second = uuidutils.generate_uuid()
        self.cyborg.add(ARQ)
        self.cyborg.bind(ARQ, INSTANCE, state='BindStarted')
        self.cyborg.add(second)
        self.cyborg.bind(second, INSTANCE, hostname='compute0',
                         rp=OTHER_RP)
        self.bind({ARQ: RP, second: RP})
        self.assertEqual([{ARQ: 'remove', second: 'remove'},
                          {ARQ: 'add', second: 'add'}], self.cyborg.patches)
        self.assertEqual(NODE, self.cyborg.arqs[second]['hostname'])

    def test_gone_context_is_refused(self):
        e = self.assertRaises(exception.BackendUnavailable, self.bind)
        self.assertIn('device contexts %s no longer exist' % ARQ, str(e))
        self.assertEqual([], self.cyborg.patches)

    def test_bind_lost_to_a_concurrent_one_leaves_the_winner_alone(self):
        # Another conductor binds the ARQ after this one checked it; Cyborg
        # then refuses this bind.
        self.cyborg.add(ARQ)

        def other_first(patch):
            self.cyborg.bind(ARQ, OTHER, rp=OTHER_RP)
            self.cyborg.on_patch = None
        self.cyborg.on_patch = other_first

        e = self.assertRaises(exception.BackendUnavailable, self.bind)

        self.assertIn('device context %s is in use by server %s'
                      % (ARQ, OTHER), str(e))
        self.assertEqual([{ARQ: 'add'}], self.cyborg.patches)
        self.assertEqual(('Bound', OTHER), self.state(ARQ))

    def test_bind_accepted_together_with_a_concurrent_one_is_a_failure(self):
        # Cyborg 17 can accept both of two concurrent binds of one ARQ
        # (HTTP 202 to both) and leave it bound to the other server.
        self.cyborg.add(ARQ)

        def both_accepted(patch):
            self.cyborg.bind(ARQ, OTHER, rp=OTHER_RP)
            return FakeResponse(202)
        self.cyborg.on_patch = both_accepted

        e = self.assertRaises(exception.BackendUnavailable, self.bind)

        self.assertIn('device context %s is in use by server %s'
                      % (ARQ, OTHER), str(e))
        self.assertEqual([{ARQ: 'add'}], self.cyborg.patches)
        self.assertEqual(('Bound', OTHER), self.state(ARQ))
        self.assertIn('a concurrent bind won', self.log.output)

    def test_failed_bind_is_undone_and_tried_once_more(self):
        # Cyborg binds one ARQ after the other: the first made it, the
        # second failed (its provider is unknown to Cyborg, say).
        second = uuidutils.generate_uuid()
        self.cyborg.add(ARQ)
        self.cyborg.add(second)

        def first_only(patch):
            if next(iter(patch.values()))[0]['op'] == 'add':
                self.cyborg.bind(ARQ, INSTANCE)
                return FakeResponse(500, 'no attach handle')
        self.cyborg.on_patch = first_only

        e = self.assertRaises(exception.BackendUnavailable, self.bind,
                              {ARQ: RP, second: OTHER_RP})

        self.assertIn('Cyborg refused to bind device contexts', str(e))
        self.assertEqual([{ARQ: 'add', second: 'add'}, {ARQ: 'remove'}] * 2,
                         self.cyborg.patches)
        self.assertEqual(('Unbound', None), self.state(ARQ))
        self.assertEqual(('Initial', None), self.state(second))

    def test_both_concurrent_binds_failed_this_server_tries_again(self):
        # Both binds failed in Cyborg and the ARQ is left half-bound to
        # this server: it unbinds it and binds once more.
        self.cyborg.add(ARQ)

        def both_failed(patch):
            self.cyborg.bind(ARQ, INSTANCE, state='BindFailed')
            self.cyborg.on_patch = None
            return FakeResponse(500, 'Bad state: BindFailed')
        self.cyborg.on_patch = both_failed

        self.bind()

        self.assertEqual([{ARQ: 'add'}, {ARQ: 'remove'}, {ARQ: 'add'}],
                         self.cyborg.patches)
        self.assertEqual(('Bound', INSTANCE), self.state(ARQ))

    def test_both_concurrent_binds_failed_other_server_gives_up(self):
        # Only the server the ARQ names tries again, so the two do not
        # collide a second time.
        self.cyborg.add(ARQ)

        def both_failed(patch):
            self.cyborg.bind(ARQ, OTHER, state='BindFailed')
            return FakeResponse(500, 'Bad state: BindFailed')
        self.cyborg.on_patch = both_failed

        e = self.assertRaises(exception.BackendUnavailable, self.bind)

        self.assertIn('in use by server %s (BindFailed)' % OTHER, str(e))
        self.assertEqual([{ARQ: 'add'}], self.cyborg.patches)
        self.assertEqual(('BindFailed', OTHER), self.state(ARQ))

    def test_refusal_that_changed_nothing_is_not_retried(self):
        self.cyborg.add(ARQ)
        self.cyborg.on_patch = lambda patch: FakeResponse(
            403, 'This operation requires a service token.')
        e = self.assertRaises(exception.BackendUnavailable, self.bind)
        self.assertIn('HTTP 403', str(e))
        self.assertEqual([{ARQ: 'add'}], self.cyborg.patches)


class UnbindTest(CyborgFlowTestBase):

    def setUp(self):
        super().setUp()
        self.ids = {name: uuidutils.generate_uuid() for name in (
            'mine', 'half', 'other', 'unbound', 'initial', 'gone')}
        for name, arq_uuid in self.ids.items():
            if name != 'gone':
                self.cyborg.add(arq_uuid, state='Unbound'
                                if name == 'unbound' else 'Initial')
        self.cyborg.bind(self.ids['mine'], INSTANCE)
        self.cyborg.bind(self.ids['half'], INSTANCE, state='BindStarted')
        self.cyborg.bind(self.ids['other'], OTHER)

    def test_unbinds_only_what_this_server_holds(self):
        self.backend.unbind(self.ctx, self.instance,
                            sorted(self.ids.values()))

        self.assertEqual([{self.ids['mine']: 'remove',
                           self.ids['half']: 'remove'}],
                         self.cyborg.patches)
        self.assertEqual(('Bound', OTHER), self.state(self.ids['other']))
        self.assertEqual(('Initial', None), self.state(self.ids['initial']))
        self.assertEqual({False}, set(self.cyborg.admin))
        self.assertIn('Not unbinding device context %s from server %s: it '
                      'is Bound to server %s' % (self.ids['other'],
                                                 INSTANCE, OTHER),
                      self.log.output)
        self.assertIn('Device context %s of server %s is gone'
                      % (self.ids['gone'], INSTANCE), self.log.output)

    def test_without_a_user_token_uses_nova_credentials(self):
        # Nova's periodic reap of a deleted server's guest tears it down
        # with an admin context that carries no token.
        self.backend.unbind(nova_context.get_admin_context(), self.instance,
                            [self.ids['mine']])
        self.assertEqual([{self.ids['mine']: 'remove'}], self.cyborg.patches)
        self.assertEqual({True}, set(self.cyborg.admin))

    def test_nothing_to_unbind_sends_nothing(self):
        self.backend.unbind(self.ctx, self.instance,
                            [self.ids['other'], self.ids['unbound']])
        self.assertEqual([], self.cyborg.patches)

    def test_orphaned_uses_nova_credentials_and_only_this_server(self):
        self.cyborg.arqs[self.ids['half']]['instance_uuid'] = None

        self.backend.unbind_orphaned(nova_context.get_admin_context(),
                                     INSTANCE, sorted(self.ids.values()))

        self.assertEqual([{self.ids['mine']: 'remove'}], self.cyborg.patches)
        self.assertEqual({True}, set(self.cyborg.admin))

    def test_cleanup_of_a_node_leaves_contexts_bound_on_another_node(self):
        # The server was rescheduled to compute2 and bound there again
        # before this node's cleanup ran.
        self.cyborg.bind(self.ids['mine'], INSTANCE, hostname='compute2')
        self.backend.unbind_orphaned(nova_context.get_admin_context(),
                                     INSTANCE, [self.ids['mine']],
                                     hostname=NODE)
        self.backend.unbind(self.ctx, self.instance, [self.ids['mine']],
                            hostname=NODE)
        self.assertEqual([], self.cyborg.patches)
        self.assertIn('it is bound on node compute2 now', self.log.output)
        self.backend.unbind_orphaned(nova_context.get_admin_context(),
                                     INSTANCE, [self.ids['mine']],
                                     hostname='compute2')
        self.assertEqual([{self.ids['mine']: 'remove'}], self.cyborg.patches)


class ServiceCredentialsTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))
        self.addCleanup(service_auth.reset_globals)
        service_auth.reset_globals()
        self.adapter = self.useFixture(fixtures.MockPatch(
            'nova.utils.get_sdk_adapter')).mock

    def test_without_credentials_says_what_to_set(self):
        e = self.assertRaises(
            exception.BackendUnavailable,
            cyborg.CyborgBackend()._client,
            nova_context.get_admin_context(), admin=True)
        self.assertIn('[cyborg] auth_type is not set', str(e))

    def test_nova_credentials_plus_service_token(self):
        conf.CONF.register_opts(
            ks_loading.get_auth_plugin_conf_options('admin_token'),
            group='cyborg')
        conf.CONF.register_opts(
            ks_loading.get_auth_plugin_conf_options('admin_token'),
            group='service_user')
        self.conf.config(auth_type='admin_token', token='nova-token',
                         group='cyborg')
        self.conf.config(send_service_user_token=True,
                         auth_type='admin_token', token='service-token',
                         group='service_user')

        cyborg.CyborgBackend()._client(nova_context.get_admin_context(),
                                       admin=True)

        auth = self.adapter.call_args.kwargs['ksa_auth']
        self.assertEqual('nova-token', auth.user_auth.get_token(None))
        self.assertEqual('service-token', auth.service_auth.get_token(None))


class WaitBoundTest(CyborgFlowTestBase):

    def setUp(self):
        super().setUp()
        self.virtapi = FakeVirtAPI()
        self.cyborg.add(ARQ)

    def wait_bound(self, rp=RP):
        return self.backend.wait_bound(self.ctx, self.instance, self.virtapi,
                                       {ARQ: rp})

    def test_bound_as_prebound_gives_the_attach_handle(self):
        self.cyborg.bind(ARQ, INSTANCE)
        acc = self.wait_bound()[ARQ]
        self.assertEqual(('pci', '0000:90:00.0'),
                         (acc.interface_type, acc.address))
        self.assertEqual([('accelerator-request-bound', ARQ)],
                         self.virtapi.early)
        self.assertEqual([], self.cyborg.patches)

    def test_waits_while_cyborg_binds(self):
        self.cyborg.bind(ARQ, INSTANCE, state='BindStarted')
        self.virtapi.on_wait = lambda cb: self.cyborg.bind(ARQ, INSTANCE)
        self.assertIn(ARQ, self.wait_bound())
        self.assertTrue(self.virtapi.waited)

    def assert_refused(self, message, rp=RP, unbound=True):
        e = self.assertRaises(exception.BackendUnavailable,
                              self.wait_bound, rp)
        self.assertIn(message, str(e))
        # Nothing to wait for: the refusal is immediate.
        self.assertFalse(self.virtapi.waited)
        self.assertEqual([{ARQ: 'remove'}] if unbound else [],
                         self.cyborg.patches)

    def test_bound_on_another_host_is_refused_and_unbound(self):
        self.cyborg.bind(ARQ, INSTANCE, hostname='compute2')
        self.assert_refused('device context %s is bound on host compute2, '
                            'not on compute1' % ARQ)
        self.assertEqual(('Unbound', None), self.state(ARQ))

    def test_bound_to_another_provider_is_refused_and_unbound(self):
        self.cyborg.bind(ARQ, INSTANCE, rp=OTHER_RP)
        self.assert_refused('device context %s is bound to resource '
                            'provider %s, not to %s' % (ARQ, OTHER_RP, RP))

    def test_bound_to_another_server_is_refused_and_left_alone(self):
        self.cyborg.bind(ARQ, OTHER)
        self.assert_refused('device context %s is Bound to server %s, not '
                            'Bound to this server' % (ARQ, OTHER),
                            unbound=False)
        self.assertEqual(('Bound', OTHER), self.state(ARQ))

    def test_unbound_context_is_refused_without_waiting(self):
        self.assert_refused('device context %s is Initial, not Bound to '
                            'this server' % ARQ, unbound=False)

    def test_failed_bind_event_unbinds(self):
        self.cyborg.bind(ARQ, INSTANCE, state='BindStarted')

        def bind_failed(error_callback):
            self.cyborg.bind(ARQ, INSTANCE, state='BindFailed')
            error_callback('accelerator-request-bound-%s' % ARQ,
                           self.instance)
        self.virtapi.on_wait = bind_failed

        e = self.assertRaises(exception.BackendUnavailable,
                              self.wait_bound)
        self.assertIn('Cyborg reported that binding', str(e))
        self.assertEqual(('Unbound', None), self.state(ARQ))

    def test_timeout_unbinds(self):
        self.cyborg.bind(ARQ, INSTANCE, state='BindStarted')

        def timeout(error_callback):
            raise nova_exc.InstanceEventTimeout()
        self.virtapi.on_wait = timeout

        self.assertRaises(nova_exc.InstanceEventTimeout, self.wait_bound)
        self.assertEqual(('Unbound', None), self.state(ARQ))
