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

"""The real Cyborg 17 service in a child process (its fixture:
``nova_acc.tests.fixtures.cyborg``).

These tests pin down what the real Cyborg v2 API does in the flows nova-acc's
Cyborg backend relies on: ARQ ownership, the service-token rules for
bind/unbind, the ``accelerator-request-bound`` event, and what happens when
a bind names a resource provider Cyborg does not know.
"""

import importlib.util
import os
import sys
import uuid

import fixtures
import testtools

from nova_acc.tests.fixtures.cyborg import fake_nova
from nova_acc.tests.fixtures.cyborg import fixture as cyborg_fixture

PROFILE = {'name': 'fpga1',
           'groups': [{'resources:FPGA': '1',
                       'trait:CUSTOM_GZIP': 'required'}]}
PCI = '0000:81:00.0'


def _device(rp_uuid, pci=PCI):
    return {'pci_address': pci, 'rp_uuid': rp_uuid,
            'resource_class': 'FPGA', 'vendor': '1172',
            'model': 'PAC-A10', 'type': 'FPGA', 'attach_type': 'PCI'}


class CyborgServiceTestBase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        if importlib.util.find_spec('cyborg') is None:
            self.fail('openstack-cyborg is not installed: pip install -c '
                      'constraints.txt openstack-cyborg==17.0.0')
        self.nova = self.useFixture(fake_nova.FakeNovaEventsServer())
        self.cyborg = self.useFixture(
            cyborg_fixture.CyborgServiceFixture(nova_url=self.nova.url))

        self.project = uuid.uuid4().hex
        self.other_project = uuid.uuid4().hex
        self.admin = self.cyborg.client('admin')
        self.member = self.cyborg.client('member:' + self.project)
        self.other = self.cyborg.client('member:' + self.other_project)
        # What Nova sends: the user's token plus its own service token.
        self.nova_as_user = self.cyborg.client('member:' + self.project,
                                               service_token='service')
        self.nova_as_other = self.cyborg.client(
            'member:' + self.other_project, service_token='service')

        self.rp_uuid = str(uuid.uuid4())
        self.admin.create_device_profile(PROFILE['name'], PROFILE['groups'])
        self.cyborg.seed_devices('compute1', [_device(self.rp_uuid)])

    def _create_arq(self):
        arqs = self.member.create_arq(PROFILE['name'])
        self.assertEqual(1, len(arqs))
        return arqs[0]

    def _bind_raw(self, client, arq_uuid, rp_uuid, instance_uuid):
        return client.request('PATCH', '/v2/accelerator_requests',
                              json=client.bind_patch({arq_uuid: {
                                  'hostname': 'compute1',
                                  'device_rp_uuid': rp_uuid,
                                  'instance_uuid': instance_uuid}}))

    def _fault(self, resp):
        # Cyborg/WSME error body: {"error_message": "<json with faultstring>"}
        return resp.json()['error_message']


class CyborgServiceTest(CyborgServiceTestBase):

    def test_parent_process_never_imports_cyborg(self):
        # Cyborg lives only in the child: the test process may have Nova
        # loaded, and the two cannot share oslo.config.
        self.assertNotIn('cyborg', sys.modules)
        self.assertTrue(os.path.exists(self.cyborg.log_path))
        root = self.cyborg.client(None).request('GET', '/')
        self.assertEqual(200, root.status_code)
        self.assertEqual('v2', root.json()['default_version']['id'])

    def test_bind_unbind_rebind(self):
        arq = self._create_arq()
        self.assertEqual('Initial', arq['state'])
        # Cyborg 17 records the creating project on the ARQ.
        self.assertEqual(self.project, arq['project_id'])
        self.assertEqual('fpga1', arq['device_profile_name'])
        self.assertEqual(0, arq['device_profile_group_id'])

        instance = str(uuid.uuid4())
        self.nova_as_user.bind(arq['uuid'], 'compute1', self.rp_uuid,
                               instance)
        bound = self.member.get_arq(arq['uuid'])
        self.assertEqual('Bound', bound['state'])
        self.assertEqual('compute1', bound['hostname'])
        self.assertEqual(self.rp_uuid, bound['device_rp_uuid'])
        self.assertEqual(instance, bound['instance_uuid'])
        self.assertEqual(self.project, bound['project_id'])
        self.assertEqual('PCI', bound['attach_handle_type'])
        self.assertEqual({'domain': '0000', 'bus': '81', 'device': '00',
                          'function': '0'}, bound['attach_handle_info'])
        handles = self.cyborg.attach_handles()
        self.assertEqual([True], [h['in_use'] for h in handles])
        self.assertEqual(handles[0]['uuid'], bound['attach_handle_uuid'])

        # The bind is instant (no FPGA programming): the event was sent
        # before the PATCH returned.
        self.assertEqual([{'name': 'accelerator-request-bound',
                           'server_uuid': instance,
                           'tag': arq['uuid'],
                           'status': 'completed'}], self.nova.events)
        self.assertEqual([bound], self.nova_as_user.list_arqs(
            instance=instance))

        self.nova_as_user.unbind(arq['uuid'])
        unbound = self.member.get_arq(arq['uuid'])
        self.assertEqual('Unbound', unbound['state'])
        self.assertIsNone(unbound['hostname'])
        self.assertIsNone(unbound['device_rp_uuid'])
        self.assertIsNone(unbound['instance_uuid'])
        self.assertEqual({}, unbound['attach_handle_info'])
        self.assertEqual(self.project, unbound['project_id'])
        self.assertEqual([False],
                         [h['in_use'] for h in self.cyborg.attach_handles()])
        self.assertEqual(1, len(self.nova.events))  # unbind sends nothing

        instance2 = str(uuid.uuid4())
        self.nova_as_user.bind(arq['uuid'], 'compute1', self.rp_uuid,
                               instance2)
        self.assertEqual('Bound', self.member.get_arq(arq['uuid'])['state'])
        self.assertEqual(2, len(self.nova.events))
        self.assertEqual((instance2, arq['uuid'], 'completed'),
                         (self.nova.events[1]['server_uuid'],
                          self.nova.events[1]['tag'],
                          self.nova.events[1]['status']))

        self.nova_as_user.delete_arqs_for_instance(instance2)
        self.assertEqual(404, self.member.request(
            'GET', '/v2/accelerator_requests/' + arq['uuid']).status_code)
        self.assertEqual([False],
                         [h['in_use'] for h in self.cyborg.attach_handles()])

    def test_project_isolation_and_service_token_rules(self):
        arq = self._create_arq()
        path = '/v2/accelerator_requests/' + arq['uuid']
        instance = str(uuid.uuid4())

        # Another project cannot see it ...
        self.assertEqual(404, self.other.request('GET', path).status_code)
        self.assertEqual([], self.other.list_arqs())
        # ... nor bind it, even through Nova (service token): the ARQ
        # lookup is scoped to the caller's project -> 404, ARQ untouched.
        resp = self._bind_raw(self.nova_as_other, arq['uuid'], self.rp_uuid,
                              instance)
        self.assertEqual(404, resp.status_code, resp.text)
        resp = self.nova_as_other.request(
            'PATCH', '/v2/accelerator_requests',
            json=self.nova_as_other.unbind_patch([arq['uuid']]))
        self.assertEqual(404, resp.status_code, resp.text)
        resp = self.other.request('DELETE', '/v2/accelerator_requests',
                                  params={'arqs': arq['uuid']})
        self.assertEqual(404, resp.status_code, resp.text)
        self.assertEqual('Initial', self.member.get_arq(arq['uuid'])['state'])
        # Admin sees every project's ARQs.
        self.assertEqual(200, self.admin.request('GET', path).status_code)

        # The owner cannot bind or unbind without a service token ...
        resp = self._bind_raw(self.member, arq['uuid'], self.rp_uuid,
                              instance)
        self.assertEqual(403, resp.status_code)
        self.assertIn('requires a service token', self._fault(resp))
        # ... and the service role in the *user* token is not a service
        # token (X-Service-Roles come only from X-Service-Token).
        resp = self._bind_raw(self.cyborg.client('service'), arq['uuid'],
                              self.rp_uuid, instance)
        self.assertEqual(403, resp.status_code)
        # Only a token with the service role is a valid service token.
        resp = self.cyborg.client('member:' + self.project,
                                  service_token='admin').request(
            'GET', path)
        self.assertEqual(401, resp.status_code)
        self.assertEqual(401, self.cyborg.client(None).request(
            'GET', path).status_code)
        self.assertEqual(401, self.cyborg.client('member:not-a-uuid').request(
            'GET', '/v2/accelerator_requests').status_code)

        # Profiles are admin-only to create, readable by members.
        resp = self.member.request(
            'POST', '/v2/device_profiles',
            json=[{'name': 'x', 'groups': [{'resources:FPGA': '1'}]}])
        self.assertEqual(403, resp.status_code)
        self.assertEqual(['fpga1'], [dp['name'] for dp in
                                     self.member.get_device_profiles()])

        # Once bound, the owner alone can neither unbind nor delete it.
        self.nova_as_user.bind(arq['uuid'], 'compute1', self.rp_uuid,
                               instance)
        resp = self.member.request(
            'PATCH', '/v2/accelerator_requests',
            json=self.member.unbind_patch([arq['uuid']]))
        self.assertEqual(403, resp.status_code)
        resp = self.member.request('DELETE', '/v2/accelerator_requests',
                                   params={'arqs': arq['uuid']})
        self.assertEqual(403, resp.status_code)
        self.assertIn('is bound to instance', self._fault(resp))
        # Another project's delete-by-instance (with a service token) is a
        # silent no-op.
        self.nova_as_other.delete_arqs_for_instance(instance)
        self.assertEqual('Bound', self.member.get_arq(arq['uuid'])['state'])

    def test_bind_by_service_user_token_steals_the_arq(self):
        # Binding with the service user's own token as X-Auth-Token (instead
        # of the user's token) re-owns the ARQ: Cyborg 17 sets project_id
        # from the request context on every bind.
        arq = self._create_arq()
        service = self.cyborg.client('service', service_token='service')
        service.bind(arq['uuid'], 'compute1', self.rp_uuid,
                     str(uuid.uuid4()))
        self.assertEqual(cyborg_fixture.SERVICE_PROJECT_ID,
                         self.admin.get_arq(arq['uuid'])['project_id'])
        self.assertEqual(404, self.member.request(
            'GET', '/v2/accelerator_requests/' + arq['uuid']).status_code)

    def test_bind_to_unknown_rp_sticks_in_bind_started(self):
        arq = self._create_arq()
        instance = str(uuid.uuid4())
        unknown_rp = str(uuid.uuid4())

        resp = self._bind_raw(self.nova_as_user, arq['uuid'], unknown_rp,
                              instance)
        self.assertEqual(404, resp.status_code)
        self.assertIn('Deployable not found', self._fault(resp))
        stuck = self.member.get_arq(arq['uuid'])
        self.assertEqual('BindStarted', stuck['state'])
        self.assertEqual(unknown_rp, stuck['device_rp_uuid'])
        self.assertEqual(instance, stuck['instance_uuid'])
        self.assertEqual('compute1', stuck['hostname'])
        self.assertEqual([], self.nova.events)  # Nova is never told

        # No way forward by re-binding: BindStarted is not a bindable state
        # (500), and the same instance "already has accelerator requests".
        resp = self._bind_raw(self.nova_as_user, arq['uuid'], self.rp_uuid,
                              str(uuid.uuid4()))
        self.assertEqual(500, resp.status_code)
        self.assertIn('Bad state: BindStarted', self._fault(resp))
        resp = self._bind_raw(self.nova_as_user, arq['uuid'], self.rp_uuid,
                              instance)
        self.assertEqual(400, resp.status_code)
        # The owner cannot delete it without a service token (instance set).
        resp = self.member.request('DELETE', '/v2/accelerator_requests',
                                   params={'arqs': arq['uuid']})
        self.assertEqual(403, resp.status_code)

        # Recovery: an unbind (PATCH op=remove, service token) -> Unbound.
        self.nova_as_user.unbind(arq['uuid'])
        self.assertEqual('Unbound', self.member.get_arq(arq['uuid'])['state'])
        self.nova_as_user.bind(arq['uuid'], 'compute1', self.rp_uuid,
                               instance)
        self.assertEqual('Bound', self.member.get_arq(arq['uuid'])['state'])
        self.assertEqual([(instance, arq['uuid'], 'completed')],
                         [(e['server_uuid'], e['tag'], e['status'])
                          for e in self.nova.events])

        # Deleting (with a service token) also clears a stuck ARQ.
        arq2 = self._create_arq()
        resp = self._bind_raw(self.nova_as_user, arq2['uuid'], unknown_rp,
                              str(uuid.uuid4()))
        self.assertEqual(404, resp.status_code)
        self.nova_as_user.delete_arq(arq2['uuid'])
        self.assertEqual(404, self.member.request(
            'GET', '/v2/accelerator_requests/' + arq2['uuid']).status_code)

    def test_no_free_attach_handle_fails_the_bind(self):
        first, second = self._create_arq(), self._create_arq()
        self.nova_as_user.bind(first['uuid'], 'compute1', self.rp_uuid,
                               str(uuid.uuid4()))
        resp = self._bind_raw(self.nova_as_user, second['uuid'],
                              self.rp_uuid, str(uuid.uuid4()))
        self.assertEqual(404, resp.status_code)
        self.assertIn('AttachHandle not found', self._fault(resp))
        self.assertEqual('BindFailed',
                         self.member.get_arq(second['uuid'])['state'])
        self.assertEqual(1, len(self.nova.events))  # none for the failure


class CyborgServiceLifecycleTest(testtools.TestCase):

    def test_mdev_bind_with_builtin_stubs(self):
        # No nova_url/placement_url: the child's own stubs answer.
        cyborg = self.useFixture(cyborg_fixture.CyborgServiceFixture())
        admin = cyborg.client('admin')
        admin.create_device_profile('vgpu', [{'resources:VGPU': '1'}])
        rp_uuid = str(uuid.uuid4())
        seeded = cyborg.seed_devices('compute2', [{
            'pci_address': '0000:3b:00.0', 'rp_uuid': rp_uuid,
            'type': 'GPU', 'resource_class': 'VGPU', 'attach_type': 'MDEV',
            'asked_type': 'nvidia-223', 'num_mdevs': 2}])
        self.assertEqual(2, len(seeded[0]['attach_handles']))

        project = uuid.uuid4().hex
        nova = cyborg.client('member:' + project, service_token='service')
        arq = nova.create_arq('vgpu')[0]
        instance = str(uuid.uuid4())
        nova.bind(arq['uuid'], 'compute2', rp_uuid, instance)
        bound = nova.get_arq(arq['uuid'])
        self.assertEqual('MDEV', bound['attach_handle_type'])
        self.assertEqual('nvidia-223',
                         bound['attach_handle_info']['asked_type'])
        self.assertEqual(['create_vgpu_mdev'],
                         [c['method'] for c in cyborg.agent_calls()])
        self.assertEqual([(instance, arq['uuid'], 'completed')],
                         [(e['server_uuid'], e['tag'], e['status'])
                          for e in cyborg.stub_nova_events()])

    def test_child_is_killed_on_cleanup(self):
        cyborg = cyborg_fixture.CyborgServiceFixture()
        cyborg.setUp()
        pid = cyborg.pid
        os.kill(pid, 0)  # alive
        cyborg.cleanUp()
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)
        self.assertFalse(os.path.exists(cyborg.state_dir))

    def test_start_failure_reports_the_log(self):
        cyborg = cyborg_fixture.CyborgServiceFixture(
            conf={'database': {'connection': 'nosuchdialect://'}},
            start_timeout=30)
        try:
            cyborg.setUp()
        except fixtures.MultipleExceptions as e:
            error = e.args[0][1]
        else:
            self.fail('CyborgServiceFixture started with a broken DB URL')
        self.assertIsInstance(error, cyborg_fixture.CyborgStartError)
        self.assertIn('exited with', str(error))
        self.assertIn('nosuchdialect', str(error))
        self.assertRaises(ProcessLookupError, os.kill, cyborg.pid, 0)
