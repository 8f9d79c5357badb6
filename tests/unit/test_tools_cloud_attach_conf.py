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

"""tools/run-cloud.sh gives nova-acc-api what attach and detach need.

The file write_configs writes is read by nova-acc-api's own loader
(``nova_acc.api.conf.load``) and handed to ``attachment.from_conf``, as
the service does at start: without ``[nova]`` credentials it gets no
attachments and every ``PUT .../attachment`` answers 409 (the real cloud
could not attach before). No network: the Keystone session and the
RabbitMQ transport are made, not used.
"""

import os

from nova_acc.api import attachment
from nova_acc.api import conf as api_conf
from tests.unit import test_tools_cloud_scripts as scripts


class AttachConfTest(scripts.ScriptTestCase):

    def write_configs(self):
        # The files write_configs copies from the venvs.
        for rel in ('glance/etc/glance/glance-api-paste.ini',
                    'neutron/etc/neutron/api-paste.ini',
                    'nova/etc/nova/api-paste.ini'):
            path = os.path.join(self.dir, 'venv', rel)
            os.makedirs(os.path.dirname(path))
            with open(path, 'w') as f:
                f.write('[pipeline:main]\n')
        result = self.bash('prepare; write_configs')
        self.assertEqual(0, result.returncode, result.stderr)
        with open(os.path.join(self.dir, 'passwords')) as f:
            passwords = dict(line.strip().split('=', 1) for line in f
                             if line.strip() and not line.startswith('#'))
        return os.path.join(self.dir, 'etc', 'nova-acc',
                            'nova-acc-api.conf'), passwords

    def test_api_conf_has_nova_credentials_and_the_bus(self):
        path, passwords = self.write_configs()
        self.assertEqual(0o600, scripts._mode(path))
        conf = api_conf.load(default_config_files=[path])
        self.addCleanup(conf.reset)
        # As the service does at start; it registers the auth plugin's
        # options (auth_url, username ...) read below.
        attachments = attachment.from_conf(conf)
        self.assertIsNotNone(attachments,
                             'nova-acc-api would answer 409 to attaches')
        self.addCleanup(attachments.compute.client.transport.cleanup)

        # Nova's API as the nova-acc-api user, an admin of the service
        # project (tools/cloud_resources.py), in the cloud's one region.
        nova = conf[attachment.NOVA_GROUP]
        self.assertEqual('password', nova.auth_type)
        self.assertEqual('http://127.0.0.1:5000/v3', nova.auth_url)
        self.assertEqual('nova-acc-api', nova.username)
        self.assertEqual(passwords['NOVAACCAPI_PASSWORD'], nova.password)
        self.assertEqual('service', nova.project_name)
        self.assertEqual('RegionOne', nova.region_name)
        self.assertEqual('compute', nova.service_type)
        # The bus nova-compute listens on (nova.conf's, the one cell's).
        self.assertEqual(
            'rabbit://nova_acc:%s@127.0.0.1:5672/'
            % passwords['RABBIT_PASSWORD'], conf.transport_url)
        nova_conf = os.path.join(self.dir, 'etc', 'nova', 'nova.conf')
        with open(nova_conf) as f:
            self.assertIn('transport_url = %s\n' % conf.transport_url,
                          f.read())
