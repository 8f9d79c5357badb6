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
"""A test case with nova-acc-api in-process and a request helper."""

import json

from oslo_utils import uuidutils
from oslotest import base
import webob

from nova_acc.tests.fixtures import contexts_api

MEMBER = ('member', 'reader')
READER = ('reader',)
ADMIN = ('admin', 'member', 'reader')
SERVICE = ('service',)
SPEC = 'resources:FPGA=1,trait:CUSTOM_GZIP=required'
PATH = '/v1/device-contexts'


class APITestCase(base.BaseTestCase):

    quota = None

    def setUp(self):
        super().setUp()
        self.api = self.useFixture(
            contexts_api.ContextsAPIFixture(quota=self.quota))

    def request(self, method, path, body=None, project='project-a',
                roles=MEMBER, user='user', raw=None, headers=None):
        """The app's response to one request (webob, no HTTP)."""
        req = webob.Request.blank(path, method=method)
        if project is not None:
            req.headers['X-Auth-Token'] = '%s:%s' % (user, project)
            req.headers['X-Roles'] = ','.join(roles)
        if raw is not None:
            req.body = raw
        elif body is not None:
            req.body = json.dumps(body).encode('utf-8')
            req.content_type = 'application/json'
        for key, value in (headers or {}).items():
            req.headers[key] = value
        return req.get_response(self.api.app)

    def create(self, project='project-a', **fields):
        fields.setdefault('spec', SPEC)
        response = self.request('POST', PATH, {'device_context': fields},
                                project=project)
        self.assertEqual(201, response.status_int, response.text)
        return response.json['device_context']

    def bind(self, context_id, server_id=None, host='host1',
             project='project-a'):
        server_id = server_id or uuidutils.generate_uuid()
        response = self.request(
            'PUT', '%s/%s/binding' % (PATH, context_id),
            {'binding': {'server_id': server_id, 'host': host,
                         'project_id': project}},
            project='service', roles=SERVICE)
        return server_id, response

    def assertError(self, code, response, *words):
        """A JSON error of the one shape, with ``words`` in its message."""
        self.assertEqual(code, response.status_int, response.text)
        error = response.json['error']
        self.assertEqual(code, error['code'])
        self.assertEqual(response.status.split(' ', 1)[1], error['title'])
        for word in words:
            self.assertIn(word, error['message'])
        return error['message']
