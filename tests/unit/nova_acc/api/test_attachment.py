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
"""PUT/DELETE /v1/device-contexts/{id}/attachment: what the API decides
itself (the compute's side is tested in Nova's harness,
tests/functional/test_attach.py). Nova's API and the computes are
replaced by recording stand-ins here: these tests are of the handler's
checks and state changes, not of the cast."""

from oslo_utils import uuidutils

from nova_acc.api import attachment
from nova_acc.tests.fixtures import contexts_api
from tests.unit.nova_acc.api import base


class RecordingCompute:
    """Records casts; ``fail`` makes the next cast raise."""

    def __init__(self):
        self.casts = []
        self.fail = False

    def cast(self, context, host, method, context_id, server_id):
        if self.fail:
            raise OSError('transport down')
        self.casts.append((host, method, context_id, server_id,
                           context.project_id))


class KnownServers:
    """Nova's servers by ID; ``down`` makes every read fail."""

    def __init__(self):
        self.servers = {}
        self.down = False

    def get(self, server_id):
        if self.down:
            raise attachment.NovaUnavailable('connection refused')
        return self.servers.get(server_id)


class AttachmentTestCase(base.APITestCase):

    def setUp(self):
        super(base.APITestCase, self).setUp()
        self.servers = KnownServers()
        self.compute = RecordingCompute()
        self.api = self.useFixture(contexts_api.ContextsAPIFixture(
            attachments=attachment.Attachments(
                servers=self.servers, compute=self.compute)))

    def server(self, project='project-a', status='ACTIVE', task_state=None,
               host='host1'):
        server_id = uuidutils.generate_uuid()
        self.servers.servers[server_id] = attachment.Server(
            server_id, project, status, task_state, host)
        return server_id

    def attach(self, context_id, server_id, project='project-a',
               roles=base.MEMBER):
        return self.request(
            'PUT', '%s/%s/attachment' % (base.PATH, context_id),
            {'attachment': {'server_id': server_id}}, project=project,
            roles=roles)

    def detach(self, context_id, project='project-a', roles=base.MEMBER):
        return self.request('DELETE', '%s/%s/attachment' % (
            base.PATH, context_id), project=project, roles=roles)

    def state(self, context_id):
        return self.api.database.get(context_id)['state']

    def test_attach_starts_and_casts_to_the_servers_host(self):
        ctx = self.create()['id']
        server = self.server()

        response = self.attach(ctx, server)

        self.assertEqual(202, response.status_int, response.text)
        body = response.json['device_context']
        self.assertEqual(('attaching', server, 'host1'),
                         (body['state'], body['server_id'], body['host']))
        self.assertEqual([('host1', 'attach_device_context', ctx, server,
                           'project-a')], self.compute.casts)

    def test_the_second_attach_of_one_context_is_refused(self):
        ctx = self.create()['id']
        first, second = self.server(), self.server()
        self.assertEqual(202, self.attach(ctx, first).status_int)

        self.assertError(409, self.attach(ctx, second),
                         'device context %s is bound to server %s'
                         % (ctx, first))
        self.assertEqual(1, len(self.compute.casts))

    def test_server_of_another_project_or_unknown_is_not_found(self):
        ctx = self.create()['id']
        for server in (self.server(project='project-b'),
                       uuidutils.generate_uuid()):
            self.assertError(404, self.attach(ctx, server),
                             'Server %s could not be found' % server)
        self.assertEqual('unbound', self.state(ctx))
        self.assertEqual([], self.compute.casts)

    def test_context_of_another_project_is_not_found(self):
        ctx = self.create(project='project-b')['id']
        self.assertError(404, self.attach(ctx, self.server()),
                         'Device context %s could not be found' % ctx)

    def test_server_busy_or_not_running_is_a_conflict(self):
        ctx = self.create()['id']
        for server, words in (
                (self.server(status='PAUSED'), 'is PAUSED'),
                (self.server(task_state='resize_migrating'),
                 'task resize_migrating')):
            self.assertError(409, self.attach(ctx, server), words)
        self.assertEqual('unbound', self.state(ctx))

    def test_nova_down_is_a_conflict_and_changes_nothing(self):
        ctx = self.create()['id']
        server = self.server()
        self.servers.down = True
        self.assertError(409, self.attach(ctx, server),
                         'cannot be checked with Nova now')
        self.assertEqual('unbound', self.state(ctx))

    def test_a_cast_that_fails_leaves_the_context_unbound_with_a_fault(self):
        ctx = self.create()['id']
        server = self.server()
        self.compute.fail = True

        self.assertError(409, self.attach(ctx, server), 'could not be sent')

        found = self.api.database.get(ctx)
        self.assertEqual(('unbound', None), (found['state'],
                                             found['server_id']))
        self.assertIn('could not be sent to host host1', found['fault'])

    def test_reader_may_not_attach(self):
        ctx = self.create()['id']
        self.assertError(403, self.attach(ctx, self.server(),
                                          roles=base.READER))

    def test_bad_bodies(self):
        ctx = self.create()['id']
        for body in ({}, {'attachment': {}},
                     {'attachment': {'server_id': 'not-a-uuid'}},
                     {'attachment': {'server_id': self.server(),
                                     'host': 'x'}}):
            response = self.request(
                'PUT', '%s/%s/attachment' % (base.PATH, ctx), body)
            self.assertError(400, response)

    def test_detach_of_a_bound_context_casts(self):
        ctx = self.create()['id']
        server = self.server()
        self.bind(ctx, server_id=server)

        response = self.detach(ctx)

        self.assertEqual(202, response.status_int, response.text)
        self.assertEqual('detaching', response.json['device_context']['state'])
        self.assertEqual([('host1', 'detach_device_context', ctx, server,
                           'project-a')], self.compute.casts)

    def test_detach_that_cannot_be_sent_is_an_error_a_retry_resolves(self):
        ctx = self.create()['id']
        server = self.server()
        self.bind(ctx, server_id=server)
        self.compute.fail = True

        self.assertError(409, self.detach(ctx), 'retry the detach')

        found = self.api.database.get(ctx)
        # Still the server's (its devices untouched), in error with the
        # reason, and a retry detaches it.
        self.assertEqual(('error', server),
                         (found['state'], found['server_id']))
        self.assertIn('could not be sent to host host1', found['fault'])
        self.compute.fail = False
        self.assertEqual(202, self.detach(ctx).status_int)
        self.assertEqual([('host1', 'detach_device_context', ctx, server,
                           'project-a')], self.compute.casts)

    def test_detach_of_an_unbound_or_attaching_context_is_a_conflict(self):
        ctx = self.create()['id']
        self.assertError(409, self.detach(ctx), 'is unbound')
        self.attach(ctx, self.server())
        self.assertError(409, self.detach(ctx), 'is attaching')

    def test_detach_while_the_server_moved_elsewhere_is_a_conflict(self):
        ctx = self.create()['id']
        server = self.server(host='host2')
        self.bind(ctx, server_id=server, host='host1')
        self.assertError(409, self.detach(ctx), 'another host')
        self.assertEqual('bound', self.state(ctx))

    def test_unbind_may_keep_a_fault(self):
        ctx = self.create()['id']
        server, _resp = self.bind(ctx)
        response = self.request(
            'DELETE', '%s/%s/binding?server_id=%s&fault=no+device'
            % (base.PATH, ctx, server), project='service',
            roles=base.SERVICE)
        self.assertEqual(204, response.status_int, response.text)
        found = self.api.database.get(ctx)
        self.assertEqual(('unbound', 'no device'),
                         (found['state'], found['fault']))


class NotConfiguredTestCase(base.APITestCase):

    def test_attach_without_nova_credentials_is_a_conflict(self):
        ctx = self.create()['id']
        response = self.request(
            'PUT', '%s/%s/attachment' % (base.PATH, ctx),
            {'attachment': {'server_id': uuidutils.generate_uuid()}})
        self.assertError(409, response, 'no [nova] credentials')


class TimeoutTestCase(AttachmentTestCase):

    def test_an_attach_not_finished_in_time_shows_in_error(self):
        ctx = self.create()['id']
        server = self.server()
        self.attach(ctx, server)
        self.assertEqual('attaching', self.state(ctx))
        self.api.conf.set_override('attachment_timeout', 0, group='api')

        shown = self.request('GET', '%s/%s' % (base.PATH, ctx)).json[
            'device_context']

        self.assertEqual('error', shown['state'])
        self.assertIn('the attach to server %s of device context %s did not '
                      'finish within 0 seconds' % (server, ctx),
                      shown['fault'])
        # The user cleans up with a detach, cast to the compute.
        self.assertEqual(202, self.detach(ctx).status_int)
        self.assertEqual('detach_device_context', self.compute.casts[-1][1])

    def test_within_the_timeout_it_stays_attaching(self):
        ctx = self.create()['id']
        self.attach(ctx, self.server())
        listed = self.request('GET', base.PATH).json['device_contexts']
        self.assertEqual(['attaching'], [c['state'] for c in listed])
