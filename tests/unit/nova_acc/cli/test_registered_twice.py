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
"""nova-acc and nova-acc-client both installed in one environment.

Both distributions declare the same entry points (test_packaging checks
they stay the same), so python-openstackclient, cliff and novaclient load
each hook and the plugin module twice. The guide says to install one; a
user who installs both still gets working commands, each value sent once.
"""

import argparse
import uuid

from oslotest import base

from nova_acc_client import novaclient_ext
from nova_acc_client.osc import plugin
from nova_acc_client.osc import server_create


class RegisteredTwiceTest(base.BaseTestCase):

    def test_server_create_hook_twice(self):
        parser = argparse.ArgumentParser()
        parser.add_argument('--hint', dest='hints', default={})
        hooks = [server_create.ServerCreateDeviceContextHook(None)
                 for _ in range(2)]
        for hook in hooks:
            hook.get_parser(parser)
        context_id = str(uuid.uuid4())
        args = parser.parse_args(['--device-context', context_id,
                                  '--device-context', 'profile:gzip'])
        for hook in hooks:
            args = hook.before(args)
        self.assertEqual({'device_context': [context_id, 'profile:gzip']},
                         args.hints)

    def test_novaclient_extension_twice(self):
        context_id = str(uuid.uuid4())
        args = argparse.Namespace(
            scheduler_hints=[('group', 'g')],
            nova_acc_device_context_ids=[context_id],
            nova_acc_device_contexts=['profile:gzip'])
        novaclient_ext.__post_parse_args__(args)
        novaclient_ext.__post_parse_args__(args)
        self.assertEqual([('group', 'g'), ('device_context', context_id),
                          ('device_context', 'profile:gzip')],
                         args.scheduler_hints)

    def test_plugin_options_twice(self):
        parser = argparse.ArgumentParser()
        plugin.build_option_parser(parser)
        plugin.build_option_parser(parser)
        self.assertEqual('1', parser.parse_args(
            ['--os-device-context-api-version', '1']
        ).os_device_context_api_version)
