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
"""No input makes nova-acc-api answer 5xx (hypothesis fuzz).

Random methods, paths, IDs, query strings, headers and bodies (JSON of
any shape, or bytes) on every route, as every persona: each answer is
below 500 and, when it is an error, in the one JSON error shape.
"""

import json
import urllib.parse

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from oslo_utils import uuidutils
import webob

from tests.unit.nova_acc.api import base

ROLES = st.lists(st.sampled_from(['reader', 'member', 'admin', 'service',
                                  'x', '']), max_size=3)
TEXT = st.text(max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        TEXT, inner, max_size=4),
    max_leaves=12)
KEYS = st.sampled_from(['device_context', 'binding', 'devices', 'fault',
                        'server_id', 'host', 'project_id', 'spec', 'name',
                        'description', 'config', 'address', 'pool',
                        'mdev_uuid', 'accel:x'])
#: Bodies that look like the real ones, with fields of random shape.
SHAPED = st.recursive(
    JSON, lambda inner: st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=16)
SUFFIXES = st.sampled_from(['', '/', '/binding', '/devices', '/fault',
                            '/x', '/binding/x'])
METHODS = st.sampled_from(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD',
                           'OPTIONS', 'TRACE', 'BREW'])


class FuzzTestCase(base.APITestCase):

    def setUp(self):
        super().setUp()
        self.ctx = self.create()
        self.server, _ = self.bind(self.ctx['id'])

    def send(self, method, path, query, roles, project, body):
        req = webob.Request.blank('/')
        req.method = method
        # As a server hands it over: bytes decoded as latin-1.
        req.environ['PATH_INFO'] = path.encode(
            'utf-8', 'surrogatepass').decode('latin-1')
        req.environ['QUERY_STRING'] = query
        req.headers['X-Auth-Token'] = 'user:%s' % project
        req.headers['X-Roles'] = ','.join(roles)
        if isinstance(body, bytes):
            req.body = body
        elif body is not None:
            req.body = json.dumps(body).encode('utf-8', 'surrogatepass')
        response = req.get_response(self.api.app)
        self.assertLess(response.status_int, 500, (method, path, query,
                                                   body, response.text))
        if response.status_int >= 400 and method != 'HEAD':
            error = response.json['error']
            self.assertEqual(response.status_int, error['code'])
            self.assertIsInstance(error['message'], str)

    def ids(self):
        return st.sampled_from([self.ctx['id'], self.ctx['id'].upper(),
                                uuidutils.generate_uuid()]) | TEXT

    @settings(max_examples=400, deadline=None)
    @given(data=st.data())
    def test_no_5xx(self, data):
        context_id = data.draw(self.ids())
        path = data.draw(st.sampled_from([
            base.PATH, '/', '/v1', '/healthcheck', base.PATH + '/' +
            context_id + data.draw(SUFFIXES)]) | TEXT.map(lambda t: '/' + t))
        params = data.draw(st.dictionaries(
            st.sampled_from(['server_id', 'state', 'all_projects', 'host',
                             'project_id', 'limit', 'marker']) | TEXT,
            st.sampled_from([self.server, self.ctx['id'], 'bound', 'True',
                             'host1', '1', '1000', '9' * 5000]) | TEXT,
            max_size=3))
        query = data.draw(st.sampled_from(
            [urllib.parse.urlencode(params), '%ff%fe=1', 'a=%ff', '&&=']))
        body = data.draw(st.none() | SHAPED | st.binary(max_size=64))
        self.send(data.draw(METHODS), path, query, data.draw(ROLES),
                  data.draw(st.sampled_from(['project-a', 'project-b',
                                             'admin', 'service'])), body)

    @settings(max_examples=200, deadline=None)
    @given(body=SHAPED, suffix=st.sampled_from(['/binding', '/devices',
                                                '/fault']))
    def test_no_5xx_on_novas_calls(self, body, suffix):
        self.send('PUT', base.PATH + '/' + self.ctx['id'] + suffix, '',
                  ['service'], 'service', body)

    @settings(max_examples=200, deadline=None)
    @given(fields=st.dictionaries(
        st.sampled_from(['spec', 'name', 'description', 'config']),
        JSON | st.dictionaries(TEXT, JSON, max_size=3), max_size=4))
    def test_no_5xx_on_create_and_update(self, fields):
        body = {'device_context': fields}
        self.send('POST', base.PATH, '', ['member'], 'project-a', body)
        self.send('PATCH', base.PATH + '/' + self.ctx['id'], '',
                  ['member'], 'project-a', body)

    def test_nasty_inputs(self):
        long_text = 'x' * 100000
        for method, path, query, body in (
                ('GET', base.PATH + '/\udcff', '', None),
                ('GET', '/\xff\xfe', '', None),
                ('GET', base.PATH, 'state=%ff', None),
                ('GET', base.PATH, 'server_id=' + long_text, None),
                ('POST', base.PATH, '', b'\x00' * 100),
                ('POST', base.PATH, '', {'device_context': {
                    'spec': base.SPEC, 'name': '\ud800'}}),
                ('POST', base.PATH, '', {'device_context': {
                    'spec': 'resources:FPGA=1', 'config': {
                        'accel:x': '\ud800'}}}),
                ('POST', base.PATH, '', {'device_context': {
                    'spec': 'resources:FPGA=1e999'}}),
                ('PUT', base.PATH + '/' + self.ctx['id'] + '/fault', '',
                 {'fault': '\ud800', 'server_id': self.server}),
                ('PUT', base.PATH + '/' + self.ctx['id'] + '/binding', '',
                 {'binding': {'server_id': self.server, 'host': 'h' * 300,
                              'project_id': 'project-a'}})):
            self.send(method, path, query, ['member', 'service'],
                      'project-a', body)
