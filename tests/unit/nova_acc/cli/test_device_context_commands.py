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
"""``openstack device context ...``: the cliff commands, not mocked.

Each command class is built as python-openstackclient builds it (an app
whose client manager has the plugin's client) and run with arguments
parsed by its own parser; the client is the real
:class:`nova_acc_client.contexts.DeviceContextClient` against nova-acc-api
in-process (ContextsAPIFixture), as a member of project-a.
"""

import io
import logging
import types

import fixtures
from osc_lib import exceptions
from oslo_utils import uuidutils
from oslotest import base

from nova_acc.tests.fixtures import contexts_api
from nova_acc_client import contexts
from nova_acc_client.osc.v1 import device_context as commands

SPEC = 'resources:FPGA=1,trait:CUSTOM_GZIP=required'


class CommandTestCase(base.BaseTestCase):

    #: The compute client (``find_server``) of commands that name servers.
    compute_client = None

    def setUp(self):
        super().setUp()
        self.api = self.useFixture(contexts_api.ContextsAPIFixture())
        self.client = self.api.client('project-a')
        self.log = self.useFixture(
            fixtures.FakeLogger(level=logging.ERROR))

    def run_command(self, cls, *argv, client=None):
        app = types.SimpleNamespace(
            client_manager=types.SimpleNamespace(
                device_context=client or self.client,
                compute=self.compute_client),
            stdout=io.StringIO(), stderr=io.StringIO(), options=None)
        cmd = cls(app, None)
        parsed = cmd.get_parser('openstack device context').parse_args(
            list(argv))
        return cmd.take_action(parsed)

    def show(self, *argv, **kwargs):
        columns, values = self.run_command(commands.ShowDeviceContext,
                                           *argv, **kwargs)
        return dict(zip(columns, values))

    def create(self, *argv):
        columns, values = self.run_command(commands.CreateDeviceContext,
                                           *argv)
        return dict(zip(columns, values))


class CreateTest(CommandTestCase):

    def test_resources_traits_config_name(self):
        shown = self.create(
            '--resources', 'FPGA=1', '--trait', 'CUSTOM_GZIP',
            '--trait', 'CUSTOM_SLOW=forbidden', '--config',
            'bitstream_id=b1', '--config', 'accel:mode=fast',
            '--name', 'gzip', '--description', 'for the batch')
        stored = self.client.get(shown['id'])
        self.assertEqual('resources:FPGA=1,trait:CUSTOM_GZIP=required,'
                         'trait:CUSTOM_SLOW=forbidden', stored['spec'])
        self.assertEqual({'accel:bitstream_id': 'b1', 'accel:mode': 'fast'},
                         stored['config'])
        self.assertEqual(('gzip', 'for the batch', 'unbound', 'project-a'),
                         (shown['name'], shown['description'],
                          shown['state'], shown['project_id']))
        self.assertEqual(stored['config'], shown['config'].machine_readable())

    def test_profile_and_raw_spec(self):
        shown = self.create('--profile', 'gzip')
        self.assertEqual('profile:gzip', self.client.get(shown['id'])['spec'])
        shown = self.create('--spec', SPEC)
        self.assertEqual(SPEC, self.client.get(shown['id'])['spec'])

    def test_bad_spec_is_the_api_message_naming_the_token(self):
        e = self.assertRaises(exceptions.CommandError, self.create,
                              '--resources', 'FPGA=1', '--trait',
                              'NOT_CUSTOM')
        self.assertIn('NOT_CUSTOM', str(e))
        self.assertEqual([], self.client.list())

    def test_bad_config_key_is_the_api_message(self):
        e = self.assertRaises(exceptions.CommandError, self.create,
                              '--spec', SPEC, '--config', 'bad key=1')
        self.assertIn('bad key', str(e))

    def test_option_shapes(self):
        for argv, expected in (
                ((), 'give one of'),
                (('--profile', 'p', '--spec', SPEC), 'give one of'),
                (('--resources', 'FPGA'), "invalid --resources 'FPGA'"),
                (('--resources', 'FPGA=1', '--trait', 'CUSTOM_A=maybe'),
                 "invalid --trait 'CUSTOM_A=maybe'"),
                (('--spec', SPEC, '--config', 'novalue'),
                 "invalid --config 'novalue'")):
            e = self.assertRaises(exceptions.CommandError, self.create,
                                  *argv)
            self.assertIn(expected, str(e))
        self.assertEqual([], self.client.list())


class ListShowSetDeleteTest(CommandTestCase):

    def setUp(self):
        super().setUp()
        self.first = self.client.create(SPEC, name='one')
        self.second = self.client.create(SPEC, name='two',
                                         config={'accel:a': '1'})
        self.others = self.api.client('project-b').create(SPEC, name='b')
        self.server = uuidutils.generate_uuid()
        self.api.service_client().bind(self.second['id'], self.server,
                                       'host1', 'project-a')

    def list(self, *argv, client=None):
        headings, rows = self.run_command(commands.ListDeviceContext,
                                          *argv, client=client)
        return [dict(zip(headings, row)) for row in rows]

    def test_list_own_project_and_filters(self):
        self.assertEqual({self.first['id'], self.second['id']},
                         {row['ID'] for row in self.list()})
        bound = self.list('--server', self.server)
        self.assertEqual([(self.second['id'], 'bound', self.server,
                           'host1')],
                         [(r['ID'], r['State'], r['Server'], r['Host'])
                          for r in bound])
        self.assertEqual([self.first['id']],
                         [r['ID'] for r in self.list('--state', 'unbound')])
        self.assertEqual(1, len(self.list('--limit', '1')))

    def test_list_all_projects(self):
        e = self.assertRaises(exceptions.CommandError, self.list,
                              '--all-projects')
        self.assertNotIn(self.others['id'], str(e))
        rows = self.list('--all-projects', '--long',
                         client=self.api.admin_client())
        self.assertIn(('project-b', self.others['id']),
                      [(r['Project'], r['ID']) for r in rows])

    def test_show(self):
        shown = self.show(self.second['id'])
        self.assertEqual(('bound', self.server, 'host1', {'accel:a': '1'}),
                         (shown['state'], shown['server_id'],
                          shown['host'], shown['config'].machine_readable()))

    def test_show_another_projects_is_not_found(self):
        e = self.assertRaises(exceptions.CommandError, self.show,
                              self.others['id'])
        self.assertIn('could not be found', str(e))

    def test_set_name_description_config(self):
        self.run_command(commands.SetDeviceContext, self.first['id'],
                         '--name', 'renamed', '--description', 'd',
                         '--config', 'k=v')
        self.run_command(commands.SetDeviceContext, self.first['id'],
                         '--config', 'accel:j=w')
        stored = self.client.get(self.first['id'])
        self.assertEqual(('renamed', 'd',
                          {'accel:k': 'v', 'accel:j': 'w'}),
                         (stored['name'], stored['description'],
                          stored['config']))
        self.run_command(commands.SetDeviceContext, self.first['id'],
                         '--no-config')
        self.assertEqual({}, self.client.get(self.first['id'])['config'])

    def test_set_config_while_bound_is_refused(self):
        e = self.assertRaises(exceptions.CommandError, self.run_command,
                              commands.SetDeviceContext, self.second['id'],
                              '--config', 'a=2')
        self.assertIn(self.server, str(e))
        self.assertEqual({'accel:a': '1'},
                         self.client.get(self.second['id'])['config'])

    def test_set_nothing(self):
        e = self.assertRaises(exceptions.CommandError, self.run_command,
                              commands.SetDeviceContext, self.first['id'])
        self.assertIn('nothing to set', str(e))

    def test_delete_several_with_failures(self):
        missing = uuidutils.generate_uuid()
        e = self.assertRaises(
            exceptions.CommandError, self.run_command,
            commands.DeleteDeviceContext, self.first['id'],
            self.second['id'], missing, self.others['id'])
        self.assertEqual('3 of 4 device contexts failed to delete', str(e))
        self.assertIn('is bound to server %s' % self.server,
                      self.log.output)
        self.assertIn(missing, self.log.output)
        self.assertEqual([self.second['id']],
                         [c['id'] for c in self.client.list()])
        # Another project's context is not deleted, and not revealed.
        self.assertEqual('b', self.api.admin_client().get(
            self.others['id'])['name'])

    def test_delete_all_given(self):
        self.assertIsNone(self.run_command(commands.DeleteDeviceContext,
                                           self.first['id']))
        self.assertRaises(contexts.ContextNotFound, self.client.get,
                          self.first['id'])
