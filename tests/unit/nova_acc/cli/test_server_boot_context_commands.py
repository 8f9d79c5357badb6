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
"""``openstack server device context list`` and ``openstack server remove
device context --boot-index``: the cliff commands.

As test_server_device_context_commands: the real DeviceContextClient
against nova-acc-api in-process. The server's compute (its RPC answers:
the listing, the check, the cast) is :class:`BootCompute`, and Nova's
instance actions as the compute API shows them are :class:`Actions`
(real openstacksdk ``ServerAction`` objects); what the compute does is
done between the polls of ``--wait``.
"""

import types

import fixtures
from openstack.compute.v2 import server_action
from osc_lib import exceptions
from oslo_utils import uuidutils

from nova_acc.api import attachment
from nova_acc.tests.fixtures import contexts_api
from nova_acc_client.osc.v1 import boot_contexts
from nova_acc_client.osc.v1 import server_device_context as commands
from tests.unit.nova_acc.api import test_attachment
from tests.unit.nova_acc.cli import test_device_context_commands as base
from tests.unit.nova_acc.cli import test_server_device_context_commands \
    as attach_base

INLINE = 'resources:FPGA=1'
PROFILE = 'profile:gzip'


class BootCompute:
    """The compute's RPC answers of boot-time contexts (per server)."""

    def __init__(self):
        self.contexts = {}
        self.refusals = {}
        self.casts = []

    def list_boot(self, context, host, server_id):
        return {'contexts': [dict(c) for c in self.contexts[server_id]]}

    def check_boot_detach(self, context, host, server_id, index):
        return self.refusals.get((server_id, index))

    def cast_boot_detach(self, context, host, server_id, index):
        self.casts.append((host, server_id, index, context.request_id))


class Actions:
    """The compute API's instance actions of the servers, by request ID."""

    def __init__(self):
        self.actions = {}

    def record(self, server_id, request_id, result, details=None):
        event = {'event': boot_contexts.EVENT, 'result': result}
        if details is not None:
            event['details'] = details
        self.actions[(server_id, request_id)] = server_action.ServerAction(
            request_id=request_id, action=boot_contexts.ACTION,
            message='Error' if result == 'Error' else None, events=[event])

    def get_server_action(self, request_id, server_id, ignore_missing=True):
        return self.actions.get((server_id, request_id))


class BootContextCommandTestCase(attach_base.AttachCommandTestCase):

    def setUp(self):
        super(base.CommandTestCase, self).setUp()
        self.servers = test_attachment.KnownServers()
        self.compute = BootCompute()
        self.api = self.useFixture(contexts_api.ContextsAPIFixture(
            attachments=attachment.Attachments(servers=self.servers,
                                               compute=self.compute)))
        self.client = self.api.client('project-a')
        self.server_id = uuidutils.generate_uuid()
        self.servers.servers[self.server_id] = attachment.Server(
            self.server_id, 'project-a', 'ACTIVE', None, 'host1')
        self.compute.contexts[self.server_id] = [
            {'index': 0, 'kind': 'spec', 'value': INLINE, 'groups': 1},
            {'index': 1, 'kind': 'profile', 'value': PROFILE, 'groups': 2}]
        self.actions = Actions()
        self.compute_steps = []

    def run_remove(self, *argv):
        return self.run_attach(commands.RemoveServerDeviceContext, *argv,
                               compute=self.actions)

    def detached_by_compute(self, index):
        """The compute's work: the place kept, the groups released."""
        host, server_id, cast_index, request_id = self.compute.casts[-1]
        self.assertEqual((self.server_id, index), (server_id, cast_index))
        self.compute.contexts[server_id][index] = {
            'index': index, 'kind': 'detached', 'value': None, 'groups': 0}
        self.actions.record(server_id, request_id, 'Success')

    def failed_by_compute(self, details=None):
        _host, server_id, _index, request_id = self.compute.casts[-1]
        self.actions.record(server_id, request_id, 'Error', details)


class ListTest(BootContextCommandTestCase):

    def run_list(self, server):
        self.compute_client = attach_base.NamedServers(
            {'vm1': self.server_id})
        return self.run_command(commands.ListServerDeviceContext, server)

    def test_list_shows_the_contexts_by_index(self):
        headings, rows = self.run_list(self.server_id)
        self.assertEqual(['Index', 'Kind', 'Value', 'Groups'], headings)
        self.assertEqual([(0, 'spec', INLINE, 1), (1, 'profile', PROFILE, 2)],
                         list(rows))

    def test_list_by_server_name(self):
        _headings, rows = self.run_list('vm1')
        self.assertEqual([0, 1], [row[0] for row in rows])

    def test_another_projects_server_is_not_found(self):
        theirs = uuidutils.generate_uuid()
        self.servers.servers[theirs] = attachment.Server(
            theirs, 'project-b', 'ACTIVE', None, 'host1')
        self.compute.contexts[theirs] = [
            {'index': 0, 'kind': 'spec', 'value': 'secret', 'groups': 1}]
        e = self.assertRaises(exceptions.CommandError, self.run_list, theirs)
        self.assertEqual('Server %s could not be found.' % theirs, str(e))


class RemoveByIndexTest(BootContextCommandTestCase):

    def test_remove_starts_the_detach_of_that_index(self):
        shown = self.run_remove(self.server_id, '--boot-index', '1')
        [(host, server_id, index, request_id)] = self.compute.casts
        self.assertEqual(('host1', self.server_id, 1),
                         (host, server_id, index))
        # The request ID the compute's instance action will carry.
        self.assertTrue(request_id.startswith('req-'), request_id)
        self.assertEqual({'index': 1, 'kind': 'profile', 'value': PROFILE,
                          'groups': 2, 'request_id': request_id}, shown)

    def test_remove_wait_until_the_compute_detached_it(self):
        # Not started at the first poll; done at the second.
        self.compute_steps = [lambda: None,
                              lambda: self.detached_by_compute(0)]
        shown = self.run_remove(self.server_id, '--boot-index', '0',
                                '--wait')
        self.assertEqual(('detached', 0), (shown['kind'], shown['groups']))
        self.assertEqual(self.compute.casts[-1][3], shown['request_id'])
        self.assertEqual([], self.compute_steps)

    def test_remove_wait_detached_last_place_dropped_from_the_list(self):
        def dropped():
            self.detached_by_compute(1)
            del self.compute.contexts[self.server_id][1]
        self.compute_steps = [dropped]
        shown = self.run_remove(self.server_id, '--boot-index', '1',
                                '--wait')
        self.assertEqual({'index': 1, 'kind': 'detached', 'value': None,
                          'groups': 0,
                          'request_id': self.compute.casts[-1][3]}, shown)

    def test_remove_wait_failure_is_the_events_details(self):
        # The compute put the context back: the list alone looks as if
        # the detach had not started; the event says it failed.
        self.compute_steps = [lambda: self.failed_by_compute(
            'the guest of server S did not release device 0000:81:00.1')]
        e = self.assertRaises(exceptions.CommandError, self.run_remove,
                              self.server_id, '--boot-index', '0', '--wait')
        self.assertEqual(
            'device context #0 was not detached from server %s: the guest '
            'of server S did not release device 0000:81:00.1'
            % self.server_id, str(e))

    def test_remove_wait_failure_without_details_says_where_they_are(self):
        self.compute_steps = [self.failed_by_compute]
        e = self.assertRaises(exceptions.CommandError, self.run_remove,
                              self.server_id, '--boot-index', '0', '--wait')
        request_id = self.compute.casts[-1][3]
        self.assertIn('device context #0 was not detached from server %s'
                      % self.server_id, str(e))
        self.assertIn("instance action detach_boot_context (request %s)"
                      % request_id, str(e))
        self.assertIn('openstack server event show %s %s'
                      % (self.server_id, request_id), str(e))

    def test_remove_wait_gives_up_after_the_time(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc_client.osc.v1.server_device_context.WAIT_SECONDS',
            0))
        # At most a poll or two before the deadline is seen as past.
        self.compute_steps = [lambda: None] * 3
        e = self.assertRaises(exceptions.CommandError, self.run_remove,
                              self.server_id, '--boot-index', '0', '--wait')
        self.assertIn('device context #0 of server %s is not detached '
                      'after 0 s' % self.server_id, str(e))
        self.assertIn('request %s' % self.compute.casts[-1][3], str(e))

    def test_refusal_of_the_api_is_its_message(self):
        self.compute.refusals[(self.server_id, 3)] = (
            404, 'server %s has no device context #3' % self.server_id)
        e = self.assertRaises(exceptions.CommandError, self.run_remove,
                              self.server_id, '--boot-index', '3', '--wait')
        self.assertEqual('server %s has no device context #3'
                         % self.server_id, str(e))
        self.assertEqual([], self.compute.casts)

    def test_context_id_or_boot_index_not_both_nor_neither(self):
        context_id = uuidutils.generate_uuid()
        for argv in ((self.server_id,),
                     (self.server_id, context_id, '--boot-index', '0')):
            e = self.assertRaises(exceptions.CommandError, self.run_remove,
                                  *argv)
            self.assertEqual(
                'give either <context-id> or --boot-index <index>', str(e))
        self.assertEqual([], self.compute.casts)

    def test_boot_index_is_a_context_index(self):
        parser = commands.RemoveServerDeviceContext(
            None, None).get_parser('openstack server remove device context')
        for bad in ('-1', 'x', '1.0', '\u0661'):
            self.assertRaises(SystemExit, parser.parse_args,
                              [self.server_id, '--boot-index', bad])
        self.assertEqual(12, parser.parse_args(
            [self.server_id, '--boot-index', '12']).boot_index)


class WaitWithoutRequestIdTest(BootContextCommandTestCase):
    """A proxy that drops ``x-openstack-request-id``: the list only."""

    def test_done_when_listed_detached_with_no_groups(self):
        listed = self.compute.contexts[self.server_id]
        steps = [
            # The place kept while its devices leave the guest: not done.
            lambda: listed.__setitem__(0, {'index': 0, 'kind': 'detached',
                                           'value': None, 'groups': 1}),
            lambda: listed.__setitem__(0, {'index': 0, 'kind': 'detached',
                                           'value': None, 'groups': 0})]
        cmd = commands.RemoveServerDeviceContext(self.app(), None)
        entry = boot_contexts.wait_detached(
            cmd, self.server_id, 0, None, 60, 0,
            lambda seconds: steps.pop(0)())
        self.assertEqual([], steps)
        self.assertEqual(('detached', 0), (entry['kind'], entry['groups']))

    def app(self):
        return types.SimpleNamespace(
            client_manager=types.SimpleNamespace(
                device_context=self.client, compute=None))


class ListFailsAfterTheDetachTest(BootContextCommandTestCase):

    def test_the_detach_is_said_to_be_sent(self):
        def unreachable(context, host, server_id):
            raise TimeoutError('host1 did not answer')
        self.compute.list_boot = unreachable
        e = self.assertRaises(exceptions.CommandError, self.run_remove,
                              self.server_id, '--boot-index', '0')
        [(_host, _server, _index, request_id)] = self.compute.casts
        self.assertIn('device context #0 of server %s: the detach was sent '
                      '(request %s) but the list could not be read: host '
                      'host1 did not answer' % (self.server_id, request_id),
                      str(e))
