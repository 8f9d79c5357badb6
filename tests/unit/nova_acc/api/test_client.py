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
"""The client against the API in-process (ContextsAPIFixture).

The calls Nova's side makes (get, bind, unbind, record_devices,
set_fault) and how each refusal reaches it as an exception.
"""

from oslo_utils import uuidutils
from oslotest import base

from nova_acc.api import client as api_client
from nova_acc.tests.fixtures import contexts_api

SPEC = 'resources:FPGA=1,trait:CUSTOM_GZIP=required'


class ClientTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.api = self.useFixture(contexts_api.ContextsAPIFixture())
        self.user = self.api.client('project-a')
        self.nova = self.api.service_client()
        self.context = self.user.create(
            SPEC, name='gzip', config={'accel:bitstream_id': 'b1'})
        self.server = uuidutils.generate_uuid()

    def test_create_and_get(self):
        self.assertEqual('unbound', self.context['state'])
        self.assertEqual('project-a', self.context['project_id'])
        self.assertEqual(SPEC, self.context['spec'])
        self.assertEqual({'accel:bitstream_id': 'b1'},
                         self.context['config'])
        self.assertEqual(self.context, self.user.get(self.context['id']))
        self.assertEqual(self.context, self.nova.get(
            self.context['id'], project_id='project-a'))

    def test_get_as_service_for_another_project_is_not_found(self):
        self.assertRaises(api_client.ContextNotFound, self.nova.get,
                          self.context['id'], project_id='project-b')

    def test_bind_record_fault_unbind(self):
        bound = self.nova.bind(self.context['id'], self.server, 'host1',
                               'project-a')
        self.assertEqual(('bound', self.server, 'host1'),
                         (bound['state'], bound['server_id'],
                          bound['host']))
        devices = [{'pool': 'fpga', 'address': '0000:81:00.1'},
                   {'pool': 'vgpu', 'mdev_uuid': uuidutils.generate_uuid()}]
        recorded = self.nova.record_devices(self.context['id'], self.server,
                                            'host1', devices)
        self.assertEqual(devices, recorded['devices'])
        faulted = self.nova.set_fault(self.context['id'], self.server,
                                      'programming failed')
        self.assertEqual(('error', 'programming failed'),
                         (faulted['state'], faulted['fault']))
        self.assertIsNone(self.nova.unbind(self.context['id'], self.server))
        unbound = self.user.get(self.context['id'])
        self.assertEqual(('unbound', None, None, [], None),
                         (unbound['state'], unbound['server_id'],
                          unbound['host'], unbound['devices'],
                          unbound['fault']))

    def test_bind_elsewhere_is_a_conflict_naming_the_server(self):
        self.nova.bind(self.context['id'], self.server, 'host1', 'project-a')
        error = self.assertRaises(
            api_client.ContextConflict, self.nova.bind, self.context['id'],
            uuidutils.generate_uuid(), 'host2', 'project-a')
        self.assertIn(self.context['id'], error.message)
        self.assertIn(self.server, error.message)

    def test_bind_again_by_the_same_server_moves_it(self):
        self.nova.bind(self.context['id'], self.server, 'host1', 'project-a')
        self.nova.record_devices(self.context['id'], self.server, 'host1',
                                 [{'pool': 'p', 'address': '0000:81:00.1'}])
        moved = self.nova.bind(self.context['id'], self.server, 'host2',
                               'project-a')
        self.assertEqual(('host2', []), (moved['host'], moved['devices']))

    def test_bind_for_another_project_is_not_found(self):
        self.assertRaises(api_client.ContextNotFound, self.nova.bind,
                          self.context['id'], self.server, 'host1',
                          'project-b')
        self.assertEqual('unbound', self.user.get(self.context['id'])['state'])

    def test_unbind_of_another_server_changes_nothing(self):
        self.nova.bind(self.context['id'], self.server, 'host1', 'project-a')
        self.nova.unbind(self.context['id'], uuidutils.generate_uuid())
        self.nova.unbind(self.context['id'], self.server, host='host2')
        self.assertEqual('bound', self.user.get(self.context['id'])['state'])

    def test_record_devices_when_not_bound_there_is_a_conflict(self):
        self.assertRaises(api_client.ContextConflict,
                          self.nova.record_devices, self.context['id'],
                          self.server, 'host1', [])
        self.nova.bind(self.context['id'], self.server, 'host1', 'project-a')
        self.assertRaises(api_client.ContextConflict,
                          self.nova.record_devices, self.context['id'],
                          self.server, 'host2', [])

    def test_a_user_may_not_bind(self):
        error = self.assertRaises(
            api_client.ContextAPIError, self.user.bind, self.context['id'],
            self.server, 'host1', 'project-a')
        self.assertEqual(403, error.status)

    def test_list_update_delete(self):
        self.assertEqual([self.context['id']],
                         [c['id'] for c in self.user.list()])
        self.assertEqual([], self.user.list(state='bound'))
        renamed = self.user.update(self.context['id'], name='other')
        self.assertEqual('other', renamed['name'])
        self.user.delete(self.context['id'])
        self.assertRaises(api_client.ContextNotFound, self.user.get,
                          self.context['id'])

    def test_api_down_is_unavailable(self):
        self.api.stop_serving()
        self.assertRaises(api_client.ContextAPIUnavailable, self.nova.get,
                          self.context['id'])

    def test_bad_request_is_an_api_error_with_the_message(self):
        error = self.assertRaises(api_client.ContextAPIError,
                                  self.user.create, 'resources:FPGA=x')
        self.assertEqual(400, error.status)
        self.assertIn('FPGA=x', error.message)

    def test_an_id_cannot_change_the_path(self):
        # '../..' would reach the collection if the ID were not quoted.
        self.assertRaises(api_client.ContextNotFound, self.user.get,
                          '..%2F..')
        self.assertRaises(api_client.ContextNotFound, self.user.get, '../')
        self.assertRaises(api_client.ContextNotFound, self.user.get,
                          'x?all_projects=1')
