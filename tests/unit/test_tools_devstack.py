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

"""devstack/plugin.sh in a stubbed run: what it asks devstack to do.

devstack cannot run here. The plugin's phases run in bash with devstack's
functions replaced by stubs that record their arguments (iniset,
recreate_database, get_or_create_service, run_process ...), while
nova-acc's own tool (tools/lib/nova_conf.py) really edits a nova.conf. It
shows what the plugin calls, in which phase and with which values - not
that devstack accepts them (see devstack/README.rst).
"""

import os
import shutil
import subprocess
import tempfile
import textwrap

from oslo_config import cfg
from oslotest import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# devstack's functions the plugin calls, as stubs that append a line to
# $CALLS; get_or_create_service prints an ID, iniget reads the real file.
STUBS = textwrap.dedent('''\
    record() { echo "$*" >> "$CALLS"; }
    define_plugin() { :; }
    enable_service() { :; }
    is_service_enabled() {
        local s
        for s in "$@"; do
            [[ " $ENABLED " == *" $s "* ]] && return 0
        done
        return 1
    }
    for f in iniset inidelete async_wait recreate_database \\
            configure_keystone_authtoken_middleware write_uwsgi_config \\
            create_service_user get_or_create_role \\
            get_or_add_user_project_role get_or_create_endpoint \\
            run_process stop_process wait_for_service remove_uwsgi_config \\
            pip_install sudo warn echo_summary; do
        eval "$f() { record $f \\"\\$@\\"; }"
    done
    die() { record die "$@"; exit 1; }
    get_or_create_service() { record get_or_create_service "$@"; echo svc-id; }
    database_connection_url() { echo "mysql+pymysql://root:pw@10.0.0.5/$1"; }
    conductor_conf() { echo "$NOVA_CONF_DIR/nova_cell$1.conf"; }
    trueorfalse() { echo "${!2:-$1}"; }
    iniget() {
        python3 "$NOVA_ACC_DIR/tools/lib/nova_conf.py" get "$@" | head -n 1
    }
    ''')


class DevstackPluginTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='nova-acc-devstack-')
        self.addCleanup(shutil.rmtree, self.dir)
        self.calls = os.path.join(self.dir, 'calls')
        self.nova_conf = os.path.join(self.dir, 'nova.conf')
        with open(self.nova_conf, 'w') as f:
            f.write(textwrap.dedent('''\
                [DEFAULT]
                debug = True
                transport_url = rabbit://stackrabbit:pw@10.0.0.5:5672/
                [service_user]
                send_service_user_token = True
                auth_type = password
                auth_url = http://10.0.0.5/identity
                username = nova
                password = devstack-pw
                user_domain_name = Default
                project_name = service
                project_domain_name = Default
                '''))
        self.bin = os.path.join(self.dir, 'bin')
        tempest_pip = os.path.join(self.dir, 'tempest', '.tox', 'tempest',
                                   'bin', 'pip')
        for script in [os.path.join(self.bin, name) for name in (
                'nova-acc-api-manage', 'nova-acc-scheduler',
                'nova-acc-conductor')] + [tempest_pip]:
            os.makedirs(os.path.dirname(script), exist_ok=True)
            with open(script, 'w') as f:
                f.write('#!/bin/sh\necho "$(basename "$0") $*" >> "%s"\n'
                        % self.calls)
            os.chmod(script, 0o755)

    def run_phases(self, phases, enabled):
        env = dict(os.environ, CALLS=self.calls, ENABLED=enabled,
                   NOVA_CONF=self.nova_conf, NOVA_CONF_DIR=self.dir,
                   NOVA_CPU_CONF=self.nova_conf,
                   KEYSTONE_SERVICE_URI='http://10.0.0.5/identity',
                   SERVICE_PASSWORD='devstack-pw',
                   NOVA_BIN_DIR=self.bin, NOVA_NUM_CELLS='1',
                   NOVA_ACC_API_CONF_DIR=os.path.join(self.dir, 'nova-acc'),
                   TEMPEST_DIR=os.path.join(self.dir, 'tempest'),
                   TEMPEST_CONFIG=os.path.join(self.dir, 'tempest.conf'),
                   SERVICE_PROTOCOL='http', SERVICE_HOST='10.0.0.5',
                   REGION_NAME='RegionOne', SERVICE_PROJECT_NAME='service',
                   SERVICE_DOMAIN_NAME='Default', SERVICE_TIMEOUT='60',
                   STACK_USER='stack', ENABLE_DEBUG_LOG_LEVEL='True',
                   CELLSV2_SETUP='singleconductor',
                   NOVA_COND_CONF=self.nova_conf,
                   NOVA_DIR=os.path.join(self.dir, 'nova'))
        script = STUBS + 'source "%s/devstack/settings"\n' % ROOT
        for phase in phases:
            script += 'source "%s/devstack/plugin.sh" %s\n' % (ROOT, phase)
        result = subprocess.run(['bash', '-c', 'set -eu\n' + script],
                                env=env, capture_output=True, text=True,
                                timeout=60)
        self.assertEqual(0, result.returncode, result.stderr)
        with open(self.calls) as f:
            return f.read().splitlines()

    def test_api_set_up_deployed_and_given_to_nova_and_tempest(self):
        api_dir = os.path.join(self.dir, 'nova-acc')
        api_conf = os.path.join(api_dir, 'nova-acc-api.conf')
        uwsgi_conf = os.path.join(api_dir, 'nova-acc-api-uwsgi.ini')
        calls = self.run_phases(
            ['stack post-config', 'stack extra', 'stack test-config',
             'unstack', 'clean'],
            enabled='nova-acc nova-acc-api n-sch n-cond tempest')
        expected = [
            # post-config: configuration, database, Keystone.
            'iniset %s api auth_strategy keystone' % api_conf,
            'iniset %s database connection '
            'mysql+pymysql://root:pw@10.0.0.5/nova_acc_api' % api_conf,
            'configure_keystone_authtoken_middleware %s nova-acc-api'
            % api_conf,
            # Attach and detach: Nova's API as this service.
            'iniset %s nova auth_type password' % api_conf,
            'iniset %s nova auth_url http://10.0.0.5/identity' % api_conf,
            'iniset %s nova username nova-acc-api' % api_conf,
            'iniset %s nova password devstack-pw' % api_conf,
            'write_uwsgi_config %s nova_acc.api.wsgi_app:application '
            '/device-context  nova-acc-api' % uwsgi_conf,
            'iniset %s uwsgi module nova_acc.api.wsgi_app:application'
            % uwsgi_conf,
            'recreate_database nova_acc_api',
            'nova-acc-api-manage --config-file %s db sync' % api_conf,
            'create_service_user nova-acc-api admin',
            'get_or_create_role service',
            'get_or_add_user_project_role service nova service Default '
            'Default',
            'get_or_create_service nova-acc-api device-context Device '
            'contexts (nova-acc)',
            'get_or_create_endpoint svc-id RegionOne '
            'http://10.0.0.5/device-context',
            # extra: the computes' bus, then started and waited for before
            # the scheduler.
            'iniset %s DEFAULT transport_url '
            'rabbit://stackrabbit:pw@10.0.0.5:5672/' % api_conf,
            'run_process nova-acc-api %s --procname-prefix nova-acc-api '
            '--ini %s' % (shutil.which('uwsgi') or '', uwsgi_conf),
            'wait_for_service 60 http://10.0.0.5/device-context/healthcheck',
            'run_process n-sch %s/nova-acc-scheduler --config-file %s'
            % (self.bin, self.nova_conf),
            # test-config, unstack, clean.
            'iniset %s service_available nova_acc_api True'
            % os.path.join(self.dir, 'tempest.conf'),
            'stop_process nova-acc-api',
            'remove_uwsgi_config %s nova-acc-api' % uwsgi_conf,
        ]
        positions = []
        for line in expected:
            self.assertIn(line, calls)
            positions.append(calls.index(line))
        self.assertEqual(sorted(positions), positions, calls)
        # Nova's services reach it as Nova's service user.
        sections = {}
        cfg.ConfigParser(self.nova_conf, sections).parse()
        api = sections['device_context_api']
        self.assertEqual((['nova'], ['devstack-pw'], ['service']),
                         (api['username'], api['password'],
                          api['project_name']))

    def test_without_the_api_service_nothing_of_it(self):
        calls = self.run_phases(
            ['stack post-config', 'stack extra', 'stack test-config'],
            enabled='nova-acc n-sch n-cond tempest')
        self.assertEqual([], [c for c in calls if 'nova-acc-api' in c
                              or 'nova_acc_api' in c or 'device-context'
                              in c], calls)
        sections = {}
        cfg.ConfigParser(self.nova_conf, sections).parse()
        self.assertNotIn('device_context_api', sections)
