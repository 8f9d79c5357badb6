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
"""Each call of /v1/device-contexts: results, states, validation."""

from oslo_utils import uuidutils

from tests.unit.nova_acc.api import base

PATH = base.PATH


class CreateTestCase(base.APITestCase):

    def test_create_returns_the_context_and_its_location(self):
        response = self.request('POST', PATH, {'device_context': {
            'spec': base.SPEC, 'name': 'gzip', 'description': 'd',
            'config': {'accel:bitstream_id': 'b1'}}})
        self.assertEqual(201, response.status_int, response.text)
        ctx = response.json['device_context']
        self.assertEqual(
            {'name': 'gzip', 'description': 'd', 'project_id': 'project-a',
             'user_id': 'user', 'spec': base.SPEC,
             'config': {'accel:bitstream_id': 'b1'}, 'state': 'unbound',
             'server_id': None, 'host': None, 'devices': [], 'fault': None,
             'updated_at': None},
            {k: v for k, v in ctx.items() if k not in ('id', 'created_at')})
        self.assertTrue(uuidutils.is_uuid_like(ctx['id']))
        self.assertTrue(response.location.endswith(PATH + '/' + ctx['id']))
        self.assertEqual(ctx, self.request(
            'GET', PATH + '/' + ctx['id']).json['device_context'])

    def test_profile_spec(self):
        self.assertEqual('profile:gzip-1',
                         self.create(spec='profile:gzip-1')['spec'])

    def test_bad_spec_names_the_token(self):
        for spec, word in (('resources:FPGA=x', 'FPGA=x'),
                           ('resources:FPGA=1,bogus:X=1', 'bogus:X'),
                           ('resources:VCPU=1', 'VCPU'),
                           ('trait:CUSTOM_A=required', 'no resources'),
                           ('profile:a b', 'a b'),
                           (uuidutils.generate_uuid(), 'UUID'),
                           ('', 'empty'),
                           ('x' * 5000, '4096'),
                           (42, 'string')):
            response = self.request('POST', PATH, {
                'device_context': {'spec': spec}})
            self.assertError(400, response, word)

    def test_bad_config_names_the_key(self):
        for config, word in (({'bitstream_id': 'b'}, 'bitstream_id'),
                             ({'accel:': 'b'}, 'accel:'),
                             ({'accel:a b': 'b'}, 'a b'),
                             ({'accel:x': 1}, 'accel:x'),
                             ({'accel:x': ''}, 'accel:x'),
                             ({'accel:x': 'a,b'}, 'accel:x'),
                             ({'accel:x': 'v' * 256}, '255'),
                             ({'accel:k%d' % i: 'v' for i in range(65)},
                              '64'),
                             (['accel:x'], 'JSON object')):
            response = self.request('POST', PATH, {
                'device_context': {'spec': base.SPEC, 'config': config}})
            self.assertError(400, response, word)

    def test_bad_fields(self):
        for fields, word in (({'spec': base.SPEC, 'name': 'n' * 256},
                              '255'),
                             ({'spec': base.SPEC, 'name': 'a\nb'},
                              'printable'),
                             ({'spec': base.SPEC, 'description': 3},
                              'description'),
                             ({'spec': base.SPEC, 'state': 'bound'},
                              'state'),
                             ({'name': 'x'}, 'spec')):
            response = self.request('POST', PATH, {'device_context': fields})
            self.assertError(400, response, word)

    def test_bad_bodies(self):
        for raw in (b'', b'{', b'[]', b'{"device_context": []}',
                    b'{"device_context": {}, "x": 1}', b'\xff',
                    b'[' * 100000):
            response = self.request('POST', PATH, raw=raw)
            self.assertEqual(400, response.status_int, raw[:20])
        self.assertEqual('unbound', self.create()['state'])
        self.assertEqual(1, len(self.request('GET', PATH).json[
            'device_contexts']))


class ListTestCase(base.APITestCase):

    def setUp(self):
        super().setUp()
        self.mine = self.create()
        self.bound = self.create()
        self.server, _ = self.bind(self.bound['id'])
        self.theirs = self.create(project='project-b')

    def ids(self, query='', **kwargs):
        response = self.request('GET', PATH + query, **kwargs)
        self.assertEqual(200, response.status_int, response.text)
        return {c['id'] for c in response.json['device_contexts']}

    def test_own_project_only(self):
        self.assertEqual({self.mine['id'], self.bound['id']}, self.ids())
        self.assertEqual({self.theirs['id']}, self.ids(project='project-b'))

    def test_filters(self):
        self.assertEqual({self.bound['id']},
                         self.ids('?server_id=%s' % self.server))
        self.assertEqual({self.bound['id']}, self.ids('?state=bound'))
        self.assertEqual({self.mine['id']}, self.ids('?state=unbound'))
        self.assertEqual(set(), self.ids('?state=error'))

    def test_all_projects_for_admins_and_nova(self):
        every = {self.mine['id'], self.bound['id'], self.theirs['id']}
        self.assertEqual(every, self.ids('?all_projects=True',
                                         project='admin', roles=base.ADMIN))
        self.assertEqual(every, self.ids('?all_projects=1',
                                         project='service',
                                         roles=base.SERVICE))
        self.assertEqual(set(), self.ids('?all_projects=True',
                                         project='admin', roles=base.ADMIN) -
                         every)
        self.assertError(403, self.request('GET', PATH + '?all_projects=1'))

    def test_pages(self):
        more = [self.create() for _ in range(3)]
        every = [self.mine['id'], self.bound['id']] + [c['id'] for c in more]
        response = self.request('GET', PATH + '?limit=2')
        self.assertEqual(every[:2], [c['id'] for c in response.json[
            'device_contexts']])
        seen = []
        url = PATH + '?limit=2'
        while url:
            body = self.request('GET', url).json
            seen += [c['id'] for c in body['device_contexts']]
            links = body.get('device_contexts_links', [])
            url = links[0]['href'].split('localhost', 1)[1] if links else None
        self.assertEqual(every, seen)
        self.assertEqual(every[3:], [c['id'] for c in self.request(
            'GET', PATH + '?marker=' + every[2]).json['device_contexts']])

    def test_a_marker_of_another_project_is_refused(self):
        self.assertError(400, self.request(
            'GET', PATH + '?marker=' + self.theirs['id']), 'Marker')
        self.assertError(400, self.request(
            'GET', PATH + '?marker=' + uuidutils.generate_uuid()), 'Marker')

    def test_bad_filters(self):
        for query, word in (('?limit=0', 'limit'), ('?limit=1001', 'limit'),
                            ('?limit=' + '9' * 5000, 'limit'),
                            ('?limit=%C2%B2', 'limit'),
                            ('?marker=x', 'marker'),
                            ('?state=gone', 'state'),
                            ('?server_id=x', 'server_id'),
                            ('?all_projects=maybe', 'all_projects'),
                            ('?project_id=project-b', 'project_id'),
                            ('?state=bound&state=unbound', 'state')):
            self.assertError(400, self.request('GET', PATH + query), word)


class UpdateDeleteTestCase(base.APITestCase):

    def setUp(self):
        super().setUp()
        self.ctx = self.create(config={'accel:a': '1'})
        self.url = '%s/%s' % (PATH, self.ctx['id'])

    def patch(self, **fields):
        return self.request('PATCH', self.url, {'device_context': fields})

    def test_update_name_description_config(self):
        response = self.patch(name='n', description=None,
                              config={'accel:b': '2'})
        self.assertEqual(200, response.status_int, response.text)
        ctx = response.json['device_context']
        self.assertEqual(('n', None, {'accel:b': '2'}),
                         (ctx['name'], ctx['description'], ctx['config']))
        self.assertIsNotNone(ctx['updated_at'])

    def test_spec_cannot_change(self):
        self.assertError(400, self.patch(spec='resources:FPGA=2'), 'spec')

    def test_config_cannot_change_while_bound(self):
        server, _ = self.bind(self.ctx['id'])
        self.assertError(409, self.patch(config={'accel:b': '2'}),
                         self.ctx['id'], server)
        self.assertEqual({'accel:a': '1'}, self.request(
            'GET', self.url).json['device_context']['config'])
        self.assertEqual('n', self.patch(name='n').json[
            'device_context']['name'])

    def test_delete(self):
        self.assertEqual(204, self.request('DELETE', self.url).status_int)
        self.assertError(404, self.request('GET', self.url))
        self.assertError(404, self.request('DELETE', self.url))

    def test_delete_refused_while_bound_names_the_server(self):
        server, _ = self.bind(self.ctx['id'])
        message = self.assertError(409, self.request('DELETE', self.url))
        self.assertEqual(
            'device context %s is bound to server %s; delete or detach the '
            'server first' % (self.ctx['id'], server), message)

    def test_delete_refused_in_error_state(self):
        server, _ = self.bind(self.ctx['id'])
        self.request('PUT', self.url + '/fault',
                     {'fault': 'f', 'server_id': server},
                     project='service', roles=base.SERVICE)
        self.assertError(409, self.request('DELETE', self.url), server)

    def test_not_a_uuid_is_not_found(self):
        for path in (PATH + '/x', PATH + '/%s0' % self.ctx['id']):
            self.assertError(404, self.request('GET', path))
            self.assertError(404, self.request('DELETE', path))


class BindingTestCase(base.APITestCase):
    """The calls of Nova's side, with the service role."""

    def setUp(self):
        super().setUp()
        self.ctx = self.create()
        self.url = '%s/%s' % (PATH, self.ctx['id'])

    def nova(self, method, suffix, body=None):
        return self.request(method, self.url + suffix, body,
                            project='service', roles=base.SERVICE)

    def test_bind_then_another_server_conflicts(self):
        server, response = self.bind(self.ctx['id'])
        self.assertEqual(200, response.status_int, response.text)
        other, response = self.bind(self.ctx['id'])
        self.assertError(409, response, self.ctx['id'], server)
        self.assertEqual(server, self.request('GET', self.url).json[
            'device_context']['server_id'])

    def test_same_server_rebinds_on_a_new_host(self):
        server, _ = self.bind(self.ctx['id'])
        self.nova('PUT', '/devices', {'devices': [
            {'pool': 'p', 'address': '0000:81:00.1'}],
            'server_id': server, 'host': 'host1'})
        _, response = self.bind(self.ctx['id'], server, host='host2')
        ctx = response.json['device_context']
        self.assertEqual(('bound', 'host2', []),
                         (ctx['state'], ctx['host'], ctx['devices']))

    def test_error_state_rebinds_for_its_server_only(self):
        server, _ = self.bind(self.ctx['id'])
        response = self.nova('PUT', '/fault',
                             {'fault': 'it broke', 'server_id': server})
        self.assertEqual('error', response.json['device_context']['state'])
        _, response = self.bind(self.ctx['id'])
        self.assertError(409, response, server)
        _, response = self.bind(self.ctx['id'], server, host='host2')
        ctx = response.json['device_context']
        self.assertEqual(('bound', None), (ctx['state'], ctx['fault']))

    def test_bind_of_another_project_or_missing_is_not_found(self):
        _, response = self.bind(self.ctx['id'], project='project-b')
        self.assertError(404, response)
        _, response = self.bind(uuidutils.generate_uuid())
        self.assertError(404, response)

    def test_bind_validates_its_body(self):
        server = uuidutils.generate_uuid()
        for binding, word in (({'server_id': 'x', 'host': 'h',
                                'project_id': 'p'}, 'server_id'),
                              ({'server_id': server, 'host': ' h',
                                'project_id': 'p'}, 'host'),
                              ({'server_id': server, 'host': 'h'},
                               'project_id'),
                              ({'server_id': server, 'host': 'h',
                                'project_id': 'p', 'x': 1}, 'x')):
            self.assertError(400, self.nova('PUT', '/binding',
                                            {'binding': binding}), word)

    def test_unbind_only_its_own_binding(self):
        server, _ = self.bind(self.ctx['id'])
        for query in ('?server_id=%s' % uuidutils.generate_uuid(),
                      '?server_id=%s&host=host2' % server):
            self.assertEqual(204, self.nova('DELETE',
                                            '/binding' + query).status_int)
            self.assertEqual('bound', self.request('GET', self.url).json[
                'device_context']['state'])
        self.assertEqual(204, self.nova(
            'DELETE', '/binding?server_id=%s&host=host1' % server
        ).status_int)
        self.assertEqual('unbound', self.request('GET', self.url).json[
            'device_context']['state'])

    def test_unbind_of_missing_is_done(self):
        self.request('DELETE', self.url)
        self.assertEqual(204, self.nova(
            'DELETE', '/binding?server_id=%s' % uuidutils.generate_uuid()
        ).status_int)

    def test_unbind_needs_a_server(self):
        self.assertError(400, self.nova('DELETE', '/binding'), 'server_id')

    def test_devices_only_for_the_bound_server_and_host(self):
        devices = [{'pool': 'p', 'address': '0000:81:00.1'}]
        server = uuidutils.generate_uuid()
        body = {'devices': devices, 'server_id': server, 'host': 'host1'}
        self.assertError(409, self.nova('PUT', '/devices', body),
                         'not bound')
        self.bind(self.ctx['id'], server)
        self.assertError(409, self.nova('PUT', '/devices',
                                        dict(body, host='host2')),
                         'not bound on host host2')
        # Another server is told whose it is, wherever it asks for.
        self.assertError(409, self.nova(
            'PUT', '/devices',
            dict(body, server_id=uuidutils.generate_uuid(), host='host2')),
            'is bound to server %s' % server)
        response = self.nova('PUT', '/devices', body)
        self.assertEqual(devices, response.json['device_context']['devices'])
        # In error, the devices stay what they were until a new binding.
        self.nova('PUT', '/fault', {'fault': 'f', 'server_id': server})
        self.assertError(409, self.nova('PUT', '/devices',
                                        dict(body, devices=[])),
                         'in state error')

    def test_devices_are_validated(self):
        server, _ = self.bind(self.ctx['id'])
        for devices, word in (('x', 'list'),
                              ([{'pool': 'p'}], 'address'),
                              ([{'pool': 'p', 'address': '81:00.1'}],
                               '81:00.1'),
                              ([{'pool': 'p', 'mdev_uuid': 'x'}],
                               'mdev_uuid'),
                              ([{'pool': '', 'address': '0000:81:00.1'}],
                               'pool'),
                              ([{'pool': 'p', 'address': '0000:81:00.1',
                                 'mdev_uuid': server}], 'keys')):
            self.assertError(400, self.nova('PUT', '/devices', {
                'devices': devices, 'server_id': server, 'host': 'host1'}),
                word)

    def test_fault_only_when_bound_to_that_server(self):
        body = {'fault': 'f', 'server_id': uuidutils.generate_uuid()}
        self.assertError(409, self.nova('PUT', '/fault', body), 'not bound')
        server, _ = self.bind(self.ctx['id'])
        self.assertError(409, self.nova('PUT', '/fault', body), server)
        for fault in ('', 'f' * 2049, '\ud800', 3):
            self.assertError(400, self.nova('PUT', '/fault', {
                'fault': fault, 'server_id': server}), 'fault')
        self.assertEqual('bound', self.request('GET', self.url).json[
            'device_context']['state'])


class ServiceTestCase(base.APITestCase):
    """The version document, health check, errors of the service."""

    def test_version_document_needs_no_token(self):
        response = self.request('GET', '/', project=None)
        self.assertEqual(200, response.status_int)
        version, = response.json['versions']
        self.assertEqual(('v1.0', 'CURRENT'),
                         (version['id'], version['status']))
        self.assertTrue(version['links'][0]['href'].endswith('/v1/'))
        self.assertEqual('v1.0', self.request('GET', '/v1', project=None)
                         .json['version']['id'])

    def test_healthcheck_needs_no_token(self):
        response = self.request('GET', '/healthcheck', project=None)
        self.assertEqual(200, response.status_int, response.text)

    def test_no_token_is_401(self):
        self.assertError(401, self.request('GET', PATH, project=None))

    def test_request_id_on_every_response(self):
        for response in (self.request('GET', PATH),
                         self.request('GET', PATH + '/x'),
                         self.request('GET', '/', project=None)):
            self.assertTrue(response.headers['X-Openstack-Request-Id']
                            .startswith('req-'))
        response = self.request('GET', PATH + '/x')
        self.assertEqual(response.headers['X-Openstack-Request-Id'],
                         response.json['error']['request_id'])

    def test_unknown_path_and_method(self):
        self.assertError(404, self.request('GET', '/v2/device-contexts'))
        response = self.request('PUT', PATH)
        self.assertError(405, response, 'GET, POST')
        self.assertEqual('GET, POST', response.headers['Allow'])

    def test_body_too_large(self):
        response = self.request('POST', PATH, raw=b' ' * 200000)
        self.assertError(413, response)
