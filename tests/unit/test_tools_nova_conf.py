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

"""tools/lib/nova_conf.py: nova-acc's nova.conf settings from one place.

The tool edits files that oslo.config reads, so every result here is read
back with oslo.config's own parser (``oslo_config.cfg.ConfigParser``), not
with the tool's: a multi-valued ``device_spec`` must keep all its values in
order, a comment or another option must survive, and a value must not be
able to add lines of its own. The tool runs as the scripts run it: a
``python3`` subprocess with arguments.
"""

import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import uuid

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
from oslotest import base

from os_acc.internal import device_spec as os_acc_device_spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, 'tools', 'lib', 'nova_conf.py')
EDU = {'vendor_id': '1234', 'product_id': '11e8',
       'resource_class': 'CUSTOM_EDU'}


def oslo_sections(path):
    """{section: {option: [values]}} as oslo.config reads PATH."""
    sections = {}
    cfg.ConfigParser(path, sections).parse()
    return sections


class NovaConfTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='nova-acc-nova-conf-')
        self.addCleanup(subprocess.call, ['rm', '-rf', self.dir])
        self.conf = os.path.join(self.dir, 'nova.conf')

    def write(self, text, mode=0o600):
        with open(self.conf, 'w') as f:
            f.write(textwrap.dedent(text))
        os.chmod(self.conf, mode)

    def tool(self, *args):
        return subprocess.run([sys.executable, TOOL] + list(args),
                              capture_output=True, text=True, timeout=60)

    def set(self, *args):
        result = self.tool('set', self.conf, *args)
        self.assertEqual(0, result.returncode, result.stderr)
        return oslo_sections(self.conf)


class SetTest(NovaConfTestCase):

    def test_run_cloud_settings(self):
        # What tools/run-cloud.sh asks for, into its generic nova.conf.
        self.write('''\
            [DEFAULT]
            use_stderr = true
            # Nova's own comment stays.
            transport_url = rabbit://u:p@127.0.0.1:5672/
            [oslo_concurrency]
            lock_path = /x/lock
            ''')
        conf = self.set('--compute-driver', '--tcg-compute',
                        '--every-privsep-helper', '/v/privsep-helper -c f',
                        '--edu-device', '--edu-profile')
        self.assertEqual(['nova_acc.LibvirtAccDriver'],
                         conf['DEFAULT']['compute_driver'])
        self.assertEqual(['5'], conf['DEFAULT']['shutdown_timeout'])
        self.assertEqual(['true'], conf['DEFAULT']['use_stderr'])
        self.assertEqual(['qemu'], conf['libvirt']['virt_type'])
        self.assertEqual(['none'], conf['libvirt']['cpu_mode'])
        self.assertEqual(['false'], conf['vnc']['enabled'])
        self.assertEqual(['false'], conf['spice']['enabled'])
        for section in ('nova_sys_admin', 'privsep_osbrick',
                        'vif_plug_ovs_privileged',
                        'vif_plug_linux_bridge_privileged',
                        'nova_acc_sys_admin'):
            self.assertEqual(['/v/privsep-helper -c f'],
                             conf[section]['helper_command'], section)
        [spec] = conf['nova_acc']['device_spec']
        self.assertEqual(EDU, json.loads(spec))
        self.assertEqual(['edu=resources:CUSTOM_EDU=1'],
                         conf['nova_acc']['profile'])
        with open(self.conf) as f:
            self.assertIn("# Nova's own comment stays.", f.read())
        # It holds passwords: the mode stays 0600.
        self.assertEqual(0o600, stat.S_IMODE(os.stat(self.conf).st_mode))

    def test_multi_valued_option_replaced_in_order_others_kept(self):
        # devstack: NOVA_ACC_DEVICE_SPEC holds one entry a line; the first
        # matching entry wins, so the order is kept.
        self.write('''\
            [nova_acc]
            device_spec = {"vendor_id": "aaaa"}
            max_groups_per_server = 4
            device_spec = {"vendor_id": "bbbb"}
            [nova_acc]
            device_spec = {"vendor_id": "cccc"}
            ''')
        lines = '\n  {"vendor_id": "1111"}\n\n{"vendor_id": "2222"}  \n'
        conf = self.set('--device-spec', lines,
                        '--device-spec', '{"vendor_id": "3333"}')
        self.assertEqual(['{"vendor_id": "1111"}', '{"vendor_id": "2222"}',
                          '{"vendor_id": "3333"}'],
                         conf['nova_acc']['device_spec'])
        self.assertEqual(['4'], conf['nova_acc']['max_groups_per_server'])

    def test_empty_value_leaves_option_alone(self):
        # devstack with NOVA_ACC_DEVICE_SPEC unset: a device_spec set
        # another way (local.conf's post-config section) stays.
        self.write('''\
            [nova_acc]
            device_spec = {"vendor_id": "aaaa"}
            profile = a=resources:FPGA=1
            ''')
        conf = self.set('--device-spec', '', '--profile', '\n')
        self.assertEqual(['{"vendor_id": "aaaa"}'],
                         conf['nova_acc']['device_spec'])
        self.assertEqual(['a=resources:FPGA=1'], conf['nova_acc']['profile'])

    def test_continuation_lines_go_with_their_option(self):
        self.write('''\
            [nova_acc_sys_admin]
            helper_command = sudo privsep-helper
              --config-file /etc/nova/nova.conf
            [other]
            keep = me
            ''')
        conf = self.set('--no-privsep-helper')
        self.assertNotIn('helper_command', conf.get('nova_acc_sys_admin', {}))
        self.assertEqual(['me'], conf['other']['keep'])
        with open(self.conf) as f:
            self.assertNotIn('--config-file', f.read())

    def test_missing_file_is_made_0600(self):
        conf = self.set('--compute-driver', 'other.Driver',
                        '--privsep-helper', 'sudo helper',
                        '--reset-on-release', 'false')
        self.assertEqual(['other.Driver'], conf['DEFAULT']['compute_driver'])
        self.assertEqual(['sudo helper'],
                         conf['nova_acc_sys_admin']['helper_command'])
        self.assertNotIn('nova_sys_admin', conf)
        self.assertEqual(['false'], conf['nova_acc']['reset_on_release'])
        self.assertEqual(0o600, stat.S_IMODE(os.stat(self.conf).st_mode))

    def test_refused_values_write_nothing(self):
        original = '[DEFAULT]\ndebug = true\n'
        self.write(original, mode=0o640)
        for args, reason in [
                (['--device-spec', '{"vendor_id": "1234"'], 'is not JSON'),
                (['--device-spec', '["1234"]'], 'not a JSON object'),
                (['--profile', 'no-spec'], 'is not NAME=SPEC'),
                (['--profile', 'bad name=resources:FPGA=1'],
                 'is not NAME=SPEC'),
                # A value that would add a section of its own.
                (['--set', 'DEFAULT', 'host', 'h\n[database]\nconnection=x'],
                 'several lines'),
                (['--every-privsep-helper', 'x\rhelper'], 'several lines'),
                (['--set', 'a]b', 'x', 'y'], 'is not a section or option'),
                (['--unset', 'DEFAULT', 'x = y'],
                 'is not a section or option')]:
            result = self.tool('set', self.conf, *args)
            self.assertEqual(1, result.returncode, args)
            self.assertIn(reason, result.stderr, args)
            with open(self.conf) as f:
                self.assertEqual(original, f.read(), args)
        self.assertEqual(0o640, stat.S_IMODE(os.stat(self.conf).st_mode))
        # No temporary file left.
        self.assertEqual(['nova.conf'], os.listdir(self.dir))

    def test_get(self):
        self.set('--profile', 'a=resources:FPGA=1\nb=resources:GPU=1')
        result = self.tool('get', self.conf, 'nova_acc', 'profile')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual('a=resources:FPGA=1\nb=resources:GPU=1\n',
                         result.stdout)
        result = self.tool('get', self.conf, 'nova_acc', 'device_spec')
        self.assertEqual((1, ''), (result.returncode, result.stdout))


class ContextAPITest(NovaConfTestCase):
    """[device_context_api]: Nova's service user for nova-acc-api."""

    SERVICE_USER = '''\
        [DEFAULT]
        debug = true
        [service_user]
        send_service_user_token = true
        auth_type = password
        auth_url = http://127.0.0.1:5000/v3
        www_authenticate_uri = http://127.0.0.1:5000/v3
        project_domain_name = Default
        user_domain_name = Default
        project_name = service
        username = nova
        password = s3cret
        region_name = RegionOne
        [device_context_api]
        # An old setting of other credentials goes.
        user_id = 0123456789abcdef
        timeout = 30
        '''

    def test_credentials_copied_as_nova_acc_reads_them(self):
        self.write(self.SERVICE_USER)
        self.set('--device-context-api-auth-from', 'service_user')
        # Read as keystoneauth reads a group of Nova's services
        # (nova_acc.conf registers [device_context_api] the same way).
        conf = cfg.ConfigOpts()
        ks_loading.register_session_conf_options(conf, 'device_context_api')
        ks_loading.register_auth_conf_options(conf, 'device_context_api')
        conf(['--config-file', self.conf])
        plugin = ks_loading.load_auth_from_conf_options(
            conf, 'device_context_api')
        group = conf.device_context_api
        self.assertEqual(('password', 30), (group.auth_type, group.timeout))
        self.assertEqual(
            ('nova', 's3cret', 'service', 'Default', 'Default', None),
            (group.username, group.password, group.project_name,
             group.user_domain_name, group.project_domain_name,
             group.user_id))
        self.assertEqual('http://127.0.0.1:5000/v3', plugin.auth_url)
        # Only keystoneauth's options: not the service user's own.
        sections = oslo_sections(self.conf)
        self.assertNotIn('send_service_user_token',
                         sections['device_context_api'])
        self.assertNotIn('www_authenticate_uri',
                         sections['device_context_api'])
        self.assertEqual(['RegionOne'],
                         sections['device_context_api']['region_name'])
        self.assertEqual(['true'],
                         sections['service_user']['send_service_user_token'])

    def test_section_without_credentials_is_refused(self):
        original = '[DEFAULT]\n[service_user]\nusername = nova\n'
        self.write(original)
        for section in ('service_user', 'no_such_section'):
            result = self.tool('set', self.conf,
                               '--device-context-api-auth-from', section)
            self.assertEqual(1, result.returncode, result.stdout)
            self.assertIn('[%s] has no' % section, result.stderr)
            self.assertIn('password', result.stderr)
            with open(self.conf) as f:
                self.assertEqual(original, f.read())

    def test_compute_host_keeps_it(self):
        self.write(self.SERVICE_USER)
        self.set('--device-context-api-auth-from', 'service_user')
        vm_conf = os.path.join(self.dir, 'vm.conf')
        result = self.tool('compute-host', self.conf, vm_conf)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(['s3cret'],
                         oslo_sections(vm_conf)['device_context_api'][
                             'password'])


class ComputeHostTest(NovaConfTestCase):
    """tools/run-vfio-host.sh's compute VM: its nova.conf from the cloud's."""

    CLOUD = '''\
        [DEFAULT]
        use_stderr = true
        my_ip = 127.0.0.1
        state_path = /cloud/data/nova
        transport_url = rabbit://nova_acc:secret@127.0.0.1:5672/
        enabled_apis = osapi_compute
        osapi_compute_listen = 127.0.0.1
        metadata_listen = 127.0.0.1
        compute_driver = nova_acc.LibvirtAccDriver
        [api_database]
        connection = mysql+pymysql://nova_acc:secret@127.0.0.1/nova_api
        [database]
        connection = mysql+pymysql://nova_acc:secret@127.0.0.1/nova
        [placement]
        password = secret
        [keystone_authtoken]
        password = secret
        [nova_acc]
        device_spec = {"vendor_id": "8086"}
        profile = edu=resources:CUSTOM_EDU=1
        [nova_sys_admin]
        helper_command = /cloud/venv/bin/privsep-helper
        '''

    def test_vfio_host_conf_as_run_vfio_host_writes_it(self):
        """nova-compute as nova: no helper_command, every device, resets."""
        self.write(self.CLOUD)
        vm_conf = os.path.join(self.dir, 'vm.conf')
        result = self.tool(
            'compute-host', self.conf, vm_conf,
            '--set', 'DEFAULT', 'rootwrap_config', '/etc/nova/rootwrap.conf',
            '--compute-driver', '--tcg-compute', '--vfio-host-devices',
            '--edu-device', '--reset-on-release', 'true')
        self.assertEqual(0, result.returncode, result.stderr)
        conf = oslo_sections(vm_conf)
        # The privsep daemons start through sudo nova-rootwrap.
        for section in ('nova_sys_admin', 'nova_acc_sys_admin'):
            self.assertNotIn(section, conf)
        self.assertEqual(['/etc/nova/rootwrap.conf'],
                         conf['DEFAULT']['rootwrap_config'])
        specs = [json.loads(s) for s in conf['nova_acc']['device_spec']]
        # The VFs before their PF (same ids: first match wins), edu last.
        self.assertEqual(
            [('1af4', '1044', 'CUSTOM_RNG', None),
             ('1b36', '0010', 'CUSTOM_NVME_VF', '*'),
             ('1b36', '0010', 'CUSTOM_NVME', None),
             ('1234', '11e8', 'CUSTOM_EDU', None)],
            [(s['vendor_id'], s['product_id'], s['resource_class'],
              s.get('physfn')) for s in specs])
        # The virtio-rng pool alone takes config data (the tempest scenario
        # of accel:bitstream_id with the VM's stand-in programming tool).
        self.assertEqual(
            [('fpga_bitstream', {'bitstream_id': 'uuid'}), (None, None),
             (None, None), (None, None)],
            [(s.get('configurator'), s.get('config')) for s in specs])
        # Entries nova-compute and its privsep daemons accept.
        rules = [e.config_rules for e in os_acc_device_spec.parse_device_specs(
            specs)]
        self.assertEqual('fpga_bitstream', rules[0].configurator)
        self.assertEqual(['true'], conf['nova_acc']['reset_on_release'])

    def test_vm_conf_from_cloud_conf(self):
        self.write(self.CLOUD)
        vm_conf = os.path.join(self.dir, 'vm.conf')
        result = self.tool(
            'compute-host', self.conf, vm_conf,
            '--set', 'DEFAULT', 'host', 'nova-acc-vfio',
            '--set', 'DEFAULT', 'state_path', '/var/lib/nova',
            '--compute-driver', '--tcg-compute',
            '--every-privsep-helper', '/opt/v/bin/privsep-helper',
            '--edu-device', '--reset-on-release', 'false')
        self.assertEqual(0, result.returncode, result.stderr)
        conf = oslo_sections(vm_conf)
        default = conf['DEFAULT']
        # The cloud's message queue and service users, not its machine.
        self.assertEqual(['rabbit://nova_acc:secret@127.0.0.1:5672/'],
                         default['transport_url'])
        self.assertEqual(['secret'], conf['placement']['password'])
        self.assertEqual(['secret'], conf['keystone_authtoken']['password'])
        for option in ('my_ip', 'enabled_apis', 'osapi_compute_listen',
                       'metadata_listen'):
            self.assertNotIn(option, default)
        self.assertNotIn('database', conf)
        self.assertNotIn('api_database', conf)
        self.assertEqual(['nova-acc-vfio'], default['host'])
        self.assertEqual(['/var/lib/nova'], default['state_path'])
        # Only the VM's edu device; the cloud's profile is the scheduler's.
        self.assertEqual([EDU], [json.loads(s) for s in
                                 conf['nova_acc']['device_spec']])
        self.assertNotIn('profile', conf['nova_acc'])
        self.assertEqual(['false'], conf['nova_acc']['reset_on_release'])
        self.assertEqual(['/opt/v/bin/privsep-helper'],
                         conf['nova_sys_admin']['helper_command'])
        self.assertEqual(['/opt/v/bin/privsep-helper'],
                         conf['nova_acc_sys_admin']['helper_command'])
        self.assertEqual(['qemu'], conf['libvirt']['virt_type'])
        # It holds the cloud's passwords.
        self.assertEqual(0o600, stat.S_IMODE(os.stat(vm_conf).st_mode))

    def test_node_uuid_is_stable_per_host(self):
        def node_uuid(host):
            return self.tool('node-uuid', host).stdout.strip()

        first = node_uuid('nova-acc-vfio')
        self.assertEqual(first, node_uuid('nova-acc-vfio'))
        self.assertEqual(5, uuid.UUID(first).version)
        self.assertNotEqual(first, node_uuid('other'))
