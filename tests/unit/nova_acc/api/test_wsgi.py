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
"""The entry points: init_application, nova-acc-api-manage, packaging."""

import os
import subprocess
import sys
import textwrap

import fixtures
from oslotest import base
import webob

from nova_acc.api import conf as api_conf
from nova_acc.api import deploy
from nova_acc.api import manage
from nova_acc.api import wsgi


class NoNovaTestCase(base.BaseTestCase):

    def test_the_service_and_client_import_no_nova(self):
        code = ('import sys, nova_acc.api.wsgi, nova_acc.api.manage, '
                'nova_acc.api.client, nova_acc.tests.fixtures.contexts_api; '
                'bad = sorted(m for m in sys.modules if m == "nova" or '
                'm.startswith("nova.")); assert not bad, bad')
        result = subprocess.run([sys.executable, '-c', code],
                                capture_output=True, text=True)
        self.assertEqual(0, result.returncode, result.stderr)


class DeployedTestCase(base.BaseTestCase):
    """A config file, ``db sync``, then the app uwsgi would load."""

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.db = os.path.join(self.dir, 'api.db')
        self.write_conf('noauth2')
        self.useFixture(fixtures.EnvironmentVariable(
            api_conf.CONFIG_DIR_ENV, self.dir))

    def write_conf(self, strategy):
        with open(os.path.join(self.dir, api_conf.CONFIG_FILE), 'w') as f:
            f.write(textwrap.dedent('''\
                [api]
                auth_strategy = %s
                [database]
                connection = sqlite:///%s
                [keystone_authtoken]
                www_authenticate_uri = http://127.0.0.1:1/identity
                ''' % (strategy, self.db)))

    def get(self, app, path, **headers):
        req = webob.Request.blank(path)
        for key, value in headers.items():
            req.headers[key] = value
        return req.get_response(app)

    def test_manage_db_sync_then_version(self):
        stdout = self.useFixture(fixtures.StringStream('stdout'))
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', stdout.stream))
        self.assertEqual(0, manage.main(['db', 'version']))
        self.assertEqual(0, manage.main(['db', 'sync']))
        self.assertEqual(0, manage.main(['db', 'version']))
        stdout.stream.flush()
        lines = stdout.getDetails()['stdout'].as_text().splitlines()
        self.assertEqual(['None (empty database)',
                          'Database at revision b7c1d2e3f4a5',
                          'b7c1d2e3f4a5'], lines)

    def test_init_application_serves_after_db_sync(self):
        manage.main(['db', 'sync'])
        app = wsgi.init_application()
        response = self.get(app, '/v1/device-contexts',
                            **{'X-Auth-Token': 'u:p', 'X-Roles': 'reader'})
        self.assertEqual(200, response.status_int, response.text)
        self.assertEqual({'device_contexts': []}, response.json)

    def test_uwsgi_module_has_the_application(self):
        manage.main(['db', 'sync'])
        self.addCleanup(sys.modules.pop, 'nova_acc.api.wsgi_app', None)
        from nova_acc.api import wsgi_app
        self.assertEqual(200, self.get(wsgi_app.application, '/v1').status_int)

    def test_keystone_strategy_refuses_no_token_without_keystone(self):
        self.write_conf('keystone')
        manage.main(['db', 'sync'])
        app = wsgi.init_application()
        self.assertEqual(200, self.get(app, '/').status_int)
        self.assertEqual(200, self.get(app, '/healthcheck').status_int)
        response = self.get(app, '/v1/device-contexts')
        self.assertEqual(401, response.status_int)
        self.assertEqual(401, response.json['error']['code'])
        # A forged identity header is not an identity.
        response = self.get(app, '/v1/device-contexts',
                            **{'X-User-Id': 'u', 'X-Project-Id': 'p',
                               'X-Roles': 'admin',
                               'X-Identity-Status': 'Confirmed'})
        self.assertEqual(401, response.status_int)
        self.assertIsInstance(app, deploy.request_id.RequestId)

    def test_manage_without_a_database_fails_clearly(self):
        with open(os.path.join(self.dir, api_conf.CONFIG_FILE), 'w') as f:
            f.write('[api]\nauth_strategy = noauth2\n')
        stderr = self.useFixture(fixtures.StringStream('stderr'))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', stderr.stream))
        self.assertEqual(1, manage.main(['db', 'sync']))
        stderr.stream.flush()
        self.assertIn('[database] connection',
                      stderr.getDetails()['stderr'].as_text())


class EntryPointsTestCase(base.BaseTestCase):

    def test_setup_cfg_declares_the_service(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
        with open(os.path.join(root, 'setup.cfg')) as f:
            text = f.read()
        for line in ('nova-acc-api = nova_acc.api.wsgi:init_application',
                     'nova-acc-api-manage = nova_acc.api.manage:main',
                     'nova_acc.api = nova_acc.api.conf:list_opts',
                     'nova_acc.api = nova_acc.api.policy:list_rules'):
            self.assertIn(line, text)
        self.assertIn('wsgi_scripts =', text)

    def test_list_opts_has_quota_and_auth(self):
        names = {(group.name, opt.name)
                 for group, opts in api_conf.list_opts() for opt in opts}
        self.assertEqual({('api', 'auth_strategy'),
                          ('api', 'attachment_timeout'),
                          ('quota', 'device_contexts')},
                         {n for n in names if n[0] != 'nova'})
        # [nova]: keystoneauth's options for reading servers (attach).
        self.assertTrue({('nova', 'auth_type'), ('nova', 'endpoint-override'),
                         ('nova', 'region-name')} <= names)


class ConfigIsolationTestCase(base.BaseTestCase):

    def test_an_override_on_one_config_is_not_seen_by_another(self):
        # Each nova-acc-api (and each test fixture) has a ConfigOpts of its
        # own; a quota set on one must not become another's.
        first = api_conf.load(default_config_files=[])
        second = api_conf.load(default_config_files=[])
        first.set_override('device_contexts', 0, group='quota')
        first.set_override('auth_strategy', 'noauth2', group='api')
        self.assertEqual(0, first.quota.device_contexts)
        self.assertEqual(100, second.quota.device_contexts)
        self.assertEqual('keystone', second.api.auth_strategy)
