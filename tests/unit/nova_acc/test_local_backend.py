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
"""The local backend's decisions, against an in-memory stand-in of the API.

The flow through Nova with the real API in-process is in
tests/functional/test_device_contexts.py; these pin the rules one by one.
"""

from unittest import mock

import fixtures
from nova.compute import task_states
from nova.compute import vm_states
from nova import context as nova_context
from nova import exception as nova_exc
from nova import objects
from oslo_config import fixture as config_fixture
from oslo_policy import policy as oslo_policy
from oslotest import base

from nova_acc.api import client as api_client
from nova_acc.backends import contexts_api
from nova_acc.backends import local
from nova_acc import conf
from nova_acc import exception
from nova_acc import policy

CTX = '4c1a2b3c-0000-4000-8000-000000000001'
CTX2 = '4c1a2b3c-0000-4000-8000-000000000002'
SERVER = '5e000000-0000-4000-8000-000000000001'
OTHER_SERVER = '5e000000-0000-4000-8000-000000000002'


class FakeAPI:
    """The binding rules of the contract (issue 21), in memory."""

    def __init__(self):
        self.contexts = {}
        self.calls = []
        self.down = False

    def add(self, ctx_id, project='p1', spec='resources:FPGA=1', **kw):
        self.contexts[ctx_id] = dict(
            id=ctx_id, project_id=project, spec=spec, state='unbound',
            server_id=None, host=None, devices=[], fault=None, **kw)

    def _find(self, ctx_id, project_id=None):
        if self.down:
            raise api_client.ContextAPIUnavailable('connection refused')
        ctx = self.contexts.get(ctx_id)
        if ctx is None or project_id not in (None, ctx['project_id']):
            raise api_client.ContextNotFound(ctx_id)
        return ctx

    def get(self, ctx_id, project_id=None):
        self.calls.append(('get', ctx_id))
        return dict(self._find(ctx_id, project_id))

    def bind(self, ctx_id, server_id, host, project_id):
        self.calls.append(('bind', ctx_id, server_id, host, project_id))
        ctx = self._find(ctx_id, project_id)
        if ctx['server_id'] not in (None, server_id):
            raise api_client.ContextConflict(
                'device context %s is bound to server %s' % (
                    ctx_id, ctx['server_id']))
        ctx.update(state='bound', server_id=server_id, host=host)
        return dict(ctx)

    def record_devices(self, ctx_id, server_id, host, devices):
        self.calls.append(('record_devices', ctx_id, server_id, host))
        ctx = self._find(ctx_id)
        if (ctx['server_id'], ctx['host']) != (server_id, host):
            raise api_client.ContextConflict(
                'device context %s is not bound to server %s on %s' % (
                    ctx_id, server_id, host))
        ctx['devices'] = list(devices)
        return dict(ctx)

    def unbind(self, ctx_id, server_id, host=None):
        self.calls.append(('unbind', ctx_id, server_id, host))
        ctx = self._find(ctx_id)
        if ctx['server_id'] == server_id and host in (None, ctx['host']):
            ctx.update(state='unbound', server_id=None, host=None)


class LocalBackendTestBase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))
        self.conf.config(group='device_context_api', auth_type='password')
        self.api = FakeAPI()
        self.useFixture(fixtures.MockPatchObject(
            contexts_api, 'client', return_value=self.api))
        self.backend = local.LocalBackend()
        # The policy defaults, without a policy file.
        enforcer = oslo_policy.Enforcer(conf.CONF, use_conf=False)
        enforcer.register_defaults(policy.list_rules())
        enforcer.set_rules(oslo_policy.Rules(
            {rule.name: rule.check for rule in policy.list_rules()}),
            use_conf=False)
        self.useFixture(fixtures.MockPatchObject(policy, '_ENFORCER',
                                                 enforcer))
        self.ctxt = nova_context.RequestContext('u1', 'p1', is_admin=False)

    def spec(self, project='p1', instance=SERVER):
        return mock.Mock(project_id=project, instance_uuid=instance)


class ResolveTest(LocalBackendTestBase):

    def test_not_configured_refuses_as_before(self):
        self.conf.config(group='device_context_api', auth_type=None)
        self.api.add(CTX)
        e = self.assertRaises(exception.ContextRefused, self.backend.resolve,
                              self.ctxt, self.spec(), CTX)
        self.assertIn('[device_context_api] is not configured', str(e))
        self.assertEqual([], self.api.calls)

    def test_spec_becomes_the_device_context(self):
        self.api.add(CTX, spec='resources:FPGA=2,trait:CUSTOM_GZIP=required')
        resolved = self.backend.resolve(self.ctxt, self.spec(), CTX)
        group = resolved.device_context.groups[0]
        self.assertEqual({'FPGA': 2}, dict(group.resources))
        self.assertIn('CUSTOM_GZIP', group.required_traits)

    def test_config_data_applies_to_every_group(self):
        self.api.add(CTX, spec='resources:FPGA=1;resources:FPGA=1,'
                               'accel:mode=own',
                     config={'accel:bitstream_id': 'img', 'accel:mode': 'x'})
        groups = self.backend.resolve(self.ctxt, self.spec(),
                                      CTX).device_context.groups
        # A key the spec sets itself wins over the context's config.
        self.assertEqual([{'bitstream_id': 'img', 'mode': 'x'},
                          {'bitstream_id': 'img', 'mode': 'own'}],
                         [g.config for g in groups])

    def test_config_keys_become_required_traits_of_its_groups(self):
        from nova_acc import request_groups
        self.conf.config(group='nova_acc', capability_trait='CUSTOM_X')
        self.api.add(CTX, config={'accel:bitstream_id': 'img'})
        group = self.backend.resolve(self.ctxt, self.spec(),
                                     CTX).device_context.groups[0]
        self.useFixture(fixtures.MockPatchObject(
            request_groups.backends, 'get_backend',
            return_value=self.backend))
        rg = request_groups.to_request_group(request_groups.ContextGroup(
            context_index=0, group_index=0, group=group, hint_value=CTX,
            context_id=CTX))
        self.assertEqual({'CUSTOM_X', 'CUSTOM_ACC_CONFIG_BITSTREAM_ID'},
                         rg.required_traits)

    def test_groups_go_to_nova_acc_pools(self):
        self.conf.config(group='nova_acc', capability_trait='CUSTOM_X')
        self.assertFalse(self.backend.picks_devices)
        self.assertEqual({'CUSTOM_X'}, self.backend.required_traits)

    def test_another_projects_context_reads_as_missing(self):
        self.api.add(CTX, project='p2')
        missing = self.assertRaises(
            exception.ContextRefused, self.backend.resolve, self.ctxt,
            self.spec(), CTX2)
        foreign = self.assertRaises(
            exception.ContextRefused, self.backend.resolve, self.ctxt,
            self.spec(), CTX)
        self.assertEqual(str(missing).replace(CTX2, CTX), str(foreign))

    def test_admin_may_use_another_projects_context(self):
        self.api.add(CTX, project='p2')
        admin = nova_context.RequestContext(
            'a', 'p1', is_admin=True, roles=['admin'])
        self.backend.resolve(admin, self.spec(), CTX)

    def test_bound_to_another_server_is_refused(self):
        self.api.add(CTX)
        self.api.contexts[CTX].update(state='bound', server_id=OTHER_SERVER)
        e = self.assertRaises(exception.ContextRefused, self.backend.resolve,
                              self.ctxt, self.spec(), CTX)
        self.assertIn('device context %s is bound to server %s' % (
            CTX, OTHER_SERVER), str(e))

    def test_bound_to_this_server_is_a_move(self):
        self.api.add(CTX)
        self.api.contexts[CTX].update(state='bound', server_id=SERVER)
        self.backend.resolve(self.ctxt, self.spec(), CTX)

    def test_error_state_only_for_its_own_server(self):
        self.api.add(CTX)
        self.api.contexts[CTX].update(state='error', fault='bitstream')
        e = self.assertRaises(exception.ContextRefused, self.backend.resolve,
                              self.ctxt, self.spec(), CTX)
        self.assertIn('device context %s is in error (bitstream)' % CTX,
                      str(e))

    def test_api_down_names_the_context(self):
        self.api.add(CTX)
        self.api.down = True
        e = self.assertRaises(exception.BackendUnavailable,
                              self.backend.resolve, self.ctxt, self.spec(),
                              CTX)
        self.assertIn('cannot reach the device-context API: device context '
                      '%s could not be read' % CTX, str(e))

    def test_a_spec_that_is_an_id_is_refused(self):
        self.api.add(CTX, spec=CTX2)
        e = self.assertRaises(exception.ContextRefused, self.backend.resolve,
                              self.ctxt, self.spec(), CTX)
        self.assertIn('has no usable spec', str(e))


class BindTest(LocalBackendTestBase):

    def instance(self, project='p1'):
        return objects.Instance(uuid=SERVER, project_id=project)

    def test_bind_marks_server_and_host(self):
        self.api.add(CTX)
        self.backend.bind(self.ctxt, self.instance(), 'node1', {CTX: 'rp'})
        ctx = self.api.contexts[CTX]
        self.assertEqual(('bound', SERVER, 'node1'),
                         (ctx['state'], ctx['server_id'], ctx['host']))

    def test_conflict_names_the_context_and_undoes_the_others(self):
        self.api.add(CTX)
        self.api.add(CTX2)
        self.api.contexts[CTX2].update(state='bound', server_id=OTHER_SERVER)
        e = self.assertRaises(exception.BackendUnavailable, self.backend.bind,
                              self.ctxt, self.instance(), 'node1',
                              {CTX: 'rp', CTX2: 'rp'})
        self.assertIn('device context %s could not be bound to this server: '
                      'device context %s is bound to server %s' % (
                          CTX2, CTX2, OTHER_SERVER), str(e))
        # All or nothing: the first one is unbound again.
        self.assertEqual('unbound', self.api.contexts[CTX]['state'])
        self.assertEqual(OTHER_SERVER, self.api.contexts[CTX2]['server_id'])

    def test_admin_binds_with_the_contexts_project(self):
        self.api.add(CTX, project='p2')
        admin = nova_context.RequestContext(
            'a', 'p1', is_admin=True, roles=['admin'])
        self.backend.bind(admin, self.instance(), 'node1', {CTX: 'rp'})
        self.assertEqual(('bind', CTX, SERVER, 'node1', 'p2'),
                         self.api.calls[-1])

    def test_member_cannot_bind_another_projects_context(self):
        self.api.add(CTX, project='p2')
        e = self.assertRaises(exception.BackendUnavailable, self.backend.bind,
                              self.ctxt, self.instance(), 'node1',
                              {CTX: 'rp'})
        self.assertIn('device context %s no longer exists' % CTX, str(e))
        self.assertEqual('unbound', self.api.contexts[CTX]['state'])

    def test_nothing_to_attach_on_the_compute(self):
        self.assertEqual({}, self.backend.wait_bound(
            self.ctxt, self.instance(), None, {CTX: 'rp'}))


class ReleaseTest(LocalBackendTestBase):
    """unbind with a hostname: the compute let the devices go there."""

    def setUp(self):
        super().setUp()
        self.api.add(CTX)
        self.api.contexts[CTX].update(state='bound', server_id=SERVER,
                                      host='node1')
        self.found = None
        self.useFixture(fixtures.MockPatchObject(
            objects.Instance, 'get_by_uuid', side_effect=self._get))

    def _get(self, context, uuid, expected_attrs=None):
        if self.found is None:
            raise nova_exc.InstanceNotFound(instance_id=uuid)
        return self.found

    def server(self, node, vm_state=vm_states.ACTIVE, task_state=None,
               deleted=False):
        self.found = objects.Instance(
            uuid=SERVER, project_id='p1', node=node, vm_state=vm_state,
            task_state=task_state, deleted=deleted)

    def release(self):
        self.backend.unbind_orphaned(None, SERVER, [CTX], hostname='node1')
        return self.api.contexts[CTX]

    def test_server_gone_unbinds(self):
        self.assertEqual('unbound', self.release()['state'])

    def test_server_deleted_unbinds(self):
        self.server('node1', task_state=task_states.DELETING)
        self.assertEqual('unbound', self.release()['state'])

    def test_shelve_offload_unbinds(self):
        self.server('node1', task_state=task_states.SHELVING_OFFLOADING)
        self.assertEqual('unbound', self.release()['state'])

    def test_failed_build_unbinds(self):
        self.server('node1', vm_state=vm_states.BUILDING)
        self.assertEqual('unbound', self.release()['state'])

    def test_moved_server_keeps_it_on_its_new_node(self):
        self.server('node2', vm_state=vm_states.RESIZED)
        ctx = self.release()
        self.assertEqual(('bound', SERVER, 'node2'),
                         (ctx['state'], ctx['server_id'], ctx['host']))

    def test_server_still_here_keeps_it(self):
        self.server('node1')
        ctx = self.release()
        self.assertEqual(('bound', 'node1'), (ctx['state'], ctx['host']))

    def test_bound_on_another_node_is_left_alone(self):
        self.api.contexts[CTX]['host'] = 'node3'
        self.assertEqual(('bound', 'node3'), (
            self.release()['state'], self.api.contexts[CTX]['host']))

    def test_without_hostname_unbinds_without_asking_nova(self):
        self.server('node1')
        self.backend.unbind(self.ctxt, objects.Instance(uuid=SERVER), [CTX])
        self.assertEqual('unbound', self.api.contexts[CTX]['state'])

    def test_api_down_raises_naming_the_context(self):
        self.api.down = True
        e = self.assertRaises(exception.BackendUnavailable, self.release)
        self.assertIn('device context %s could not be unbound' % CTX,
                      str(e))


class RepairTest(LocalBackendTestBase):
    """A context still bound to a server that is gone is taken over."""

    def setUp(self):
        super().setUp()
        self.api.add(CTX)
        self.api.contexts[CTX].update(state='bound', server_id=OTHER_SERVER,
                                      host='node1')
        self.gone = self.useFixture(fixtures.MockPatchObject(
            local, '_server_is_gone', return_value=True)).mock

    def test_resolve_accepts_it(self):
        self.backend.resolve(self.ctxt, self.spec(), CTX)
        self.gone.assert_called_once_with(OTHER_SERVER)

    def test_bind_takes_it_over(self):
        self.backend.bind(self.ctxt, objects.Instance(
            uuid=SERVER, project_id='p1'), 'node2', {CTX: 'rp'})
        ctx = self.api.contexts[CTX]
        self.assertEqual((SERVER, 'node2'), (ctx['server_id'], ctx['host']))

    def test_a_server_that_may_exist_keeps_it(self):
        self.gone.return_value = False
        self.assertRaises(exception.ContextRefused, self.backend.resolve,
                          self.ctxt, self.spec(), CTX)
        self.assertRaises(exception.BackendUnavailable, self.backend.bind,
                          self.ctxt, objects.Instance(
                              uuid=SERVER, project_id='p1'), 'node2',
                          {CTX: 'rp'})
        self.assertEqual(OTHER_SERVER, self.api.contexts[CTX]['server_id'])


class ServerIsGoneTest(base.BaseTestCase):

    def test_archived_server_is_gone(self):
        self.useFixture(fixtures.MockPatchObject(
            objects.InstanceMapping, 'get_by_instance_uuid',
            side_effect=nova_exc.InstanceMappingNotFound(uuid=SERVER)))
        self.assertTrue(local._server_is_gone(SERVER))

    def test_unknown_is_not_gone(self):
        self.useFixture(fixtures.MockPatchObject(
            objects.InstanceMapping, 'get_by_instance_uuid',
            side_effect=RuntimeError('no API database')))
        self.assertFalse(local._server_is_gone(SERVER))

    def test_not_scheduled_yet_is_not_gone(self):
        self.useFixture(fixtures.MockPatchObject(
            objects.InstanceMapping, 'get_by_instance_uuid',
            return_value=objects.InstanceMapping(cell_mapping=None)))
        self.assertFalse(local._server_is_gone(SERVER))


class RecordDevicesTest(LocalBackendTestBase):
    """What the compute would send once it calls record_devices."""

    def record(self, address, requester, is_mdev=False, context_id=None):
        return mock.Mock(address=address, requester_id=requester,
                         rp_uuid='pool-1', is_mdev=is_mdev,
                         backend_owned=context_id is not None)

    def test_devices_grouped_by_context_inline_ones_left_out(self):
        from nova_acc import request_groups
        ours = request_groups.RequesterId(0, 0, CTX).encode()
        inline = request_groups.RequesterId(1, 0).encode()
        held = [self.record('0000:81:00.1', ours),
                self.record('9e3c7a52-0000-4000-8000-000000000001', ours,
                            is_mdev=True),
                self.record('0000:81:00.2', inline),
                self.record('0000:81:00.3', ours, context_id=CTX)]
        self.assertEqual({CTX: [
            {'pool': 'pool-1', 'address': '0000:81:00.1'},
            {'pool': 'pool-1',
             'mdev_uuid': '9e3c7a52-0000-4000-8000-000000000001'}]},
            local.devices_by_context(held))

    def test_a_move_binds_the_context_where_the_guest_runs(self):
        # The destination of a resize before its confirm (or the source of
        # a revert): bound to the server on the other host until now.
        from nova_acc import request_groups
        self.api.add(CTX)
        self.api.contexts[CTX].update(state='bound', server_id=SERVER,
                                      host='node1')
        ours = request_groups.RequesterId(0, 0, CTX).encode()
        self.backend.record_devices(
            SERVER, 'node2', [self.record('0000:82:00.1', ours)])
        ctx = self.api.contexts[CTX]
        self.assertEqual(('bound', SERVER, 'node2'),
                         (ctx['state'], ctx['server_id'], ctx['host']))
        self.assertEqual([{'pool': 'pool-1', 'address': '0000:82:00.1'}],
                         ctx['devices'])
        self.assertIn(('bind', CTX, SERVER, 'node2', 'p1'), self.api.calls)

    def test_another_servers_context_is_not_taken(self):
        from nova_acc import request_groups
        self.api.add(CTX)
        self.api.contexts[CTX].update(state='bound', server_id=OTHER_SERVER,
                                      host='node1')
        ours = request_groups.RequesterId(0, 0, CTX).encode()
        e = self.assertRaises(
            exception.BackendUnavailable, self.backend.record_devices,
            SERVER, 'node1', [self.record('0000:81:00.1', ours)])
        self.assertIn('device context %s could not be given its devices'
                      % CTX, str(e))
        self.assertEqual((OTHER_SERVER, []),
                         (self.api.contexts[CTX]['server_id'],
                          self.api.contexts[CTX]['devices']))
        self.assertNotIn('bind', [c[0] for c in self.api.calls])

    def test_api_refusal_names_the_context(self):
        from nova_acc import request_groups
        calls = []

        def refuse(*args):
            calls.append(args)
            raise api_client.ContextConflict('not bound to this server')
        self.api.record_devices = refuse
        ours = request_groups.RequesterId(0, 0, CTX).encode()
        e = self.assertRaises(
            exception.BackendUnavailable, self.backend.record_devices,
            SERVER, 'node1', [self.record('0000:81:00.1', ours)])
        self.assertIn('device context %s could not be given its devices: '
                      'not bound to this server' % CTX, str(e))
        self.assertEqual([(CTX, SERVER, 'node1', [
            {'pool': 'pool-1', 'address': '0000:81:00.1'}])], calls)
