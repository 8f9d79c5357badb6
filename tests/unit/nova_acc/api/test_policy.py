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
"""Policy per persona: who may call what, and no existence leak."""

from oslo_utils import uuidutils

from nova_acc.api import policy
from tests.unit.nova_acc.api import base

PATH = base.PATH
#: persona -> (project, roles)
PERSONAS = {
    'reader': ('project-a', base.READER),
    'member': ('project-a', base.MEMBER),
    'no_role': ('project-a', ()),
    'other_member': ('project-b', base.MEMBER),
    'other_reader': ('project-b', base.READER),
    'admin': ('admin', base.ADMIN),
    'service': ('service', base.SERVICE),
}


class PolicyTestCase(base.APITestCase):

    def setUp(self):
        super().setUp()
        self.ctx = self.create()
        self.url = '%s/%s' % (PATH, self.ctx['id'])
        self.server = uuidutils.generate_uuid()

    def call(self, persona, method, path, body=None):
        project, roles = PERSONAS[persona]
        return self.request(method, path, body, project=project,
                            roles=roles).status_int

    def expect(self, method, path, body, expected):
        for persona, code in expected.items():
            self.assertEqual(code, self.call(persona, method, path, body),
                             '%s %s as %s' % (method, path, persona))

    def test_show(self):
        self.expect('GET', self.url, None, {
            'reader': 200, 'member': 200, 'admin': 200, 'service': 200,
            # A context the caller may not see is as missing as a missing
            # one: another project's, or with no role at all.
            'no_role': 404, 'other_member': 404, 'other_reader': 404})

    def test_list(self):
        self.expect('GET', PATH, None, {
            'reader': 200, 'member': 200, 'admin': 200, 'service': 200,
            'no_role': 403, 'other_member': 200})
        self.expect('GET', PATH + '?all_projects=True', None, {
            'reader': 403, 'member': 403, 'other_member': 403,
            'admin': 200, 'service': 200})

    def test_create(self):
        body = {'device_context': {'spec': base.SPEC}}
        self.expect('POST', PATH, body, {
            'reader': 403, 'no_role': 403, 'service': 403,
            'member': 201, 'admin': 201})

    def test_update(self):
        body = {'device_context': {'name': 'n'}}
        self.expect('PATCH', self.url, body, {
            'reader': 403, 'no_role': 404, 'other_member': 404,
            'service': 403, 'member': 200, 'admin': 200})

    def test_delete(self):
        self.expect('DELETE', self.url, None, {
            'reader': 403, 'no_role': 404, 'other_member': 404,
            'service': 403})
        self.assertEqual(204, self.call('admin', 'DELETE', self.url))
        ctx = self.create()
        self.assertEqual(204, self.call('member', 'DELETE',
                                        PATH + '/' + ctx['id']))

    def test_calls_of_novas_side_need_service_or_admin(self):
        binding = {'binding': {'server_id': self.server, 'host': 'h',
                               'project_id': 'project-a'}}
        self.expect('PUT', self.url + '/binding', binding, {
            'reader': 403, 'member': 403, 'no_role': 403,
            'other_member': 403, 'service': 200, 'admin': 200})
        devices = {'devices': [], 'server_id': self.server, 'host': 'h'}
        self.expect('PUT', self.url + '/devices', devices, {
            'member': 403, 'other_member': 403, 'service': 200})
        fault = {'fault': 'f', 'server_id': self.server}
        self.expect('PUT', self.url + '/fault', fault, {
            'member': 403, 'other_member': 403, 'service': 200})
        unbind = self.url + '/binding?server_id=' + self.server
        self.expect('DELETE', unbind, None, {
            'member': 403, 'other_member': 403})
        self.assertEqual('error', self.request('GET', self.url).json[
            'device_context']['state'])
        self.expect('DELETE', unbind, None, {'service': 204})
        self.assertEqual('unbound', self.request('GET', self.url).json[
            'device_context']['state'])

    def test_another_projects_context_reads_as_missing(self):
        missing = '%s/%s' % (PATH, uuidutils.generate_uuid())
        theirs = self.request('GET', self.url, project='project-b').json
        absent = self.request('GET', missing, project='project-b').json
        self.assertEqual(
            absent['error']['message'].replace(missing.rsplit('/')[-1], 'X'),
            theirs['error']['message'].replace(self.ctx['id'], 'X'))

    def test_a_system_scoped_token_is_refused(self):
        response = self.request('GET', PATH, headers={
            'OpenStack-System-Scope': 'all', 'X-Project-Id': ''},
            project='', roles=base.ADMIN, user='admin')
        self.assertEqual(403, response.status_int, response.text)

    def test_every_rule_is_project_scoped_and_documented(self):
        for rule in policy.list_rules():
            self.assertEqual(['project'], rule.scope_types, rule.name)
            self.assertTrue(rule.description and rule.operations, rule.name)
