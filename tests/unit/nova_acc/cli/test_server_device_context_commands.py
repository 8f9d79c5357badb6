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
"""``openstack server add|remove device context``: the cliff commands.

As test_device_context_commands: the real DeviceContextClient against
nova-acc-api in-process. Nova's side of the attachment (the server read
from Nova, the cast to its compute) is the API unit tests' recording
stand-ins; what the compute then does to the context is done here with
the API's own database calls, between the polls of ``--wait``.
"""

from openstack import exceptions as sdk_exceptions
from osc_lib import exceptions
from oslo_utils import uuidutils

from nova_acc.api import attachment
from nova_acc.tests.fixtures import contexts_api
from nova_acc_client.osc.v1 import server_device_context as commands
from tests.unit.nova_acc.api import test_attachment
from tests.unit.nova_acc.cli import test_device_context_commands as base

SPEC = base.SPEC


class NamedServers:
    """The compute client's ``find_server``, for servers given by name."""

    def __init__(self, names):
        self.names = names

    def find_server(self, name, ignore_missing=True):
        if name not in self.names:
            raise sdk_exceptions.ResourceNotFound(
                'No Server found for %s' % name)
        return type('Server', (), {'id': self.names[name]})


class AttachCommandTestCase(base.CommandTestCase):

    def setUp(self):
        super(base.CommandTestCase, self).setUp()
        self.servers = test_attachment.KnownServers()
        self.compute = test_attachment.RecordingCompute()
        self.api = self.useFixture(contexts_api.ContextsAPIFixture(
            attachments=attachment.Attachments(servers=self.servers,
                                               compute=self.compute)))
        self.client = self.api.client('project-a')
        self.server_id = uuidutils.generate_uuid()
        self.servers.servers[self.server_id] = attachment.Server(
            self.server_id, 'project-a', 'ACTIVE', None, 'host1')
        self.context = self.client.create(SPEC)
        #: What "the compute" does at each poll of --wait.
        self.compute_steps = []

    def command(self, cls):
        test = self

        class Polled(cls):
            def sleep(self, seconds):
                test.compute_steps.pop(0)()
        return Polled

    def run_attach(self, cls, *argv, compute=None):
        self.compute_client = compute or NamedServers({})
        columns, values = self.run_command(self.command(cls), *argv)
        return dict(zip(columns, values))

    def bound_by_compute(self):
        self.api.service_client().bind(self.context['id'], self.server_id,
                                       'host1', 'project-a')

    def given_up_by_compute(self, why):
        self.api.database.unbind(self.context['id'], self.server_id,
                                 fault=why)


class AddTest(AttachCommandTestCase):

    def test_add_starts_the_attach(self):
        shown = self.run_attach(commands.AddServerDeviceContext,
                                self.server_id, self.context['id'])
        self.assertEqual(('attaching', self.server_id),
                         (shown['state'], shown['server_id']))
        self.assertEqual([('host1', 'attach_device_context',
                           self.context['id'], self.server_id,
                           'project-a')], self.compute.casts)

    def test_add_wait_until_bound(self):
        self.compute_steps = [lambda: None, self.bound_by_compute]
        shown = self.run_attach(commands.AddServerDeviceContext,
                                self.server_id, self.context['id'],
                                '--wait')
        self.assertEqual('bound', shown['state'])
        self.assertEqual([], self.compute_steps)

    def test_add_wait_compute_gave_up_is_its_fault(self):
        self.compute_steps = [
            lambda: self.given_up_by_compute('no free device on host1')]
        e = self.assertRaises(
            exceptions.CommandError, self.run_attach,
            commands.AddServerDeviceContext, self.server_id,
            self.context['id'], '--wait')
        self.assertEqual('device context %s was not attached to server %s: '
                         'no free device on host1'
                         % (self.context['id'], self.server_id), str(e))

    def test_add_by_server_name(self):
        shown = self.run_attach(
            commands.AddServerDeviceContext, 'vm1', self.context['id'],
            compute=NamedServers({'vm1': self.server_id}))
        self.assertEqual(self.server_id, shown['server_id'])

    def test_add_unknown_server_name(self):
        e = self.assertRaises(exceptions.CommandError, self.run_attach,
                              commands.AddServerDeviceContext, 'nope',
                              self.context['id'])
        self.assertIn('server nope: No Server found for nope', str(e))
        self.assertEqual('unbound',
                         self.client.get(self.context['id'])['state'])

    def test_add_another_projects_server_is_refused(self):
        theirs = uuidutils.generate_uuid()
        self.servers.servers[theirs] = attachment.Server(
            theirs, 'project-b', 'ACTIVE', None, 'host1')
        e = self.assertRaises(exceptions.CommandError, self.run_attach,
                              commands.AddServerDeviceContext, theirs,
                              self.context['id'])
        self.assertIn(theirs, str(e))
        self.assertEqual([], self.compute.casts)

    def test_add_another_projects_context_is_not_found(self):
        theirs = self.api.client('project-b').create(SPEC)
        e = self.assertRaises(exceptions.CommandError, self.run_attach,
                              commands.AddServerDeviceContext,
                              self.server_id, theirs['id'])
        self.assertIn('could not be found', str(e))


class RemoveTest(AttachCommandTestCase):

    def setUp(self):
        super().setUp()
        self.client.attach(self.context['id'], self.server_id)
        self.bound_by_compute()

    def test_remove_wait_until_unbound(self):
        self.compute_steps = [lambda: self.api.database.unbind(
            self.context['id'], self.server_id)]
        shown = self.run_attach(commands.RemoveServerDeviceContext,
                                self.server_id, self.context['id'],
                                '--wait')
        self.assertEqual(('unbound', None),
                         (shown['state'], shown['server_id']))
        self.assertEqual('detach_device_context', self.compute.casts[-1][1])

    def test_remove_from_another_server_is_refused(self):
        other = uuidutils.generate_uuid()
        e = self.assertRaises(exceptions.CommandError, self.run_attach,
                              commands.RemoveServerDeviceContext, other,
                              self.context['id'])
        self.assertEqual('device context %s is not attached to server %s'
                         % (self.context['id'], other), str(e))
        self.assertEqual('bound',
                         self.client.get(self.context['id'])['state'])
        self.assertEqual(['attach_device_context'],
                         [cast[1] for cast in self.compute.casts])

    def test_remove_wait_compute_failed_is_its_fault(self):
        self.compute_steps = [lambda: self.api.database.set_fault(
            self.context['id'], self.server_id, 'the guest kept it')]
        e = self.assertRaises(
            exceptions.CommandError, self.run_attach,
            commands.RemoveServerDeviceContext, self.server_id,
            self.context['id'], '--wait')
        self.assertIn('was not detached from server %s: the guest kept it'
                      % self.server_id, str(e))
