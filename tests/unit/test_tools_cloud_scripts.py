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

"""tools/run-cloud.sh, run-tempest.sh and run-vfio-host.sh as root.

These scripts run as root with their state in a directory under /var/tmp
(issue 19, item 11). The tests run the real scripts (or source them for
their functions) against temporary state directories: a directory another
uid owns is refused before anything in it runs, passwords are random,
0600 and reused, configuration and openrc files are 0600, and a pidfile
naming an unrelated process never gets that process killed.

They need root (chown to another uid, signals) and Linux's /proc; they
start nothing but ``sleep`` and shell loops, and stop what they start.
"""

import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import textwrap
import time
import unittest

from oslo_config import cfg
from oslotest import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, 'tools')
RUN_CLOUD = os.path.join(TOOLS, 'run-cloud.sh')
RUN_TEMPEST = os.path.join(TOOLS, 'run-tempest.sh')
RUN_VFIO = os.path.join(TOOLS, 'run-vfio-host.sh')
NOBODY = 65534


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@unittest.skipUnless(os.geteuid() == 0 and os.path.isdir('/proc/self'),
                     'needs root and /proc, as the scripts do')
class ScriptTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        # Under /tmp (root's, sticky): a parent the checks accept.
        self.top = tempfile.mkdtemp(prefix='nova-acc-tools-')
        self.addCleanup(shutil.rmtree, self.top, ignore_errors=True)
        self.dir = os.path.join(self.top, 'cloud')

    def run_script(self, *args, env=None, timeout=120):
        full_env = dict(os.environ)
        full_env.pop('NOVA_ACC_CLOUD_PASSWORD', None)
        full_env.update({'NOVA_ACC_CLOUD_DIR': self.dir,
                         'NOVA_ACC_VFIO_DIR': self.dir})
        full_env.update(env or {})
        return subprocess.run(list(args), env=full_env, capture_output=True,
                              text=True, timeout=timeout)

    def bash(self, script, env=None):
        """SCRIPT in bash, with tools/run-cloud.sh sourced (functions only).

        ``prepare`` does what the script's start-up does first: check the
        state directory, make its subdirectories, read the passwords. A
        version of the script without the check and the passwords (before
        issue 19) is driven all the same, with its own start-up (mkdir -p),
        so that the tests see what it does.
        """
        prologue = textwrap.dedent('''\
            set -euo pipefail
            source "$RUN_CLOUD"
            prepare() {
                if declare -F set_dirs >/dev/null; then
                    set_dirs create
                    mkdir -p "$LOGS" "$RUN" "$ETC" "$DATA"
                    load_passwords
                else
                    mkdir -p "$LOGS" "$RUN" "$ETC" "$DATA"
                fi
            }
            ''')
        return self.run_script('bash', '-c', prologue + script,
                               env=dict(env or {}, RUN_CLOUD=RUN_CLOUD))

    def sleeper(self, seconds=300, new_session=True):
        """An unrelated process: ``sleep``, by default leading a session."""
        proc = subprocess.Popen(['sleep', str(seconds)],
                                start_new_session=new_session)
        self.addCleanup(self._reap, proc)
        return proc

    @staticmethod
    def _reap(proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    @staticmethod
    def alive(proc):
        return proc.poll() is None


class StateDirTest(ScriptTestCase):
    """The state directory: who owns it decides whether it is used."""

    def make_foreign_cloud_dir(self):
        """A state directory uid 65534 made, with a trap in it.

        Its admin-openrc and tempest's venv create MARKER when run: root
        must not run them.
        """
        self.marker = os.path.join(self.top, 'ran-as-root')
        os.makedirs(os.path.join(self.dir, 'venv', 'tempest', 'bin'))
        trap = '#!/bin/sh\ntouch %s\n' % self.marker
        for rel in ('admin-openrc', 'venv/tempest/bin/tempest',
                    'venv/tempest/bin/pip'):
            path = os.path.join(self.dir, rel)
            with open(path, 'w') as f:
                f.write(trap)
            os.chmod(path, 0o755)
        for dirpath, dirnames, filenames in os.walk(self.dir):
            for name in [dirpath] + [os.path.join(dirpath, n)
                                     for n in filenames]:
                os.chown(name, NOBODY, NOBODY)

    def test_tempest_refuses_a_dir_another_uid_owns_before_running_it(self):
        self.make_foreign_cloud_dir()
        result = self.run_script(RUN_TEMPEST)
        self.assertNotEqual(0, result.returncode)
        self.assertFalse(os.path.exists(self.marker),
                         'run-tempest.sh ran a file of uid 65534 as root')
        self.assertIn(self.dir, result.stderr)
        self.assertIn('owned by uid %d' % NOBODY, result.stderr)
        self.assertIn('NOVA_ACC_CLOUD_DIR', result.stderr)

    def test_cloud_stop_and_status_refuse_a_dir_another_uid_owns(self):
        self.make_foreign_cloud_dir()
        for command in ('--stop', '--status'):
            result = self.run_script(RUN_CLOUD, command)
            self.assertEqual(1, result.returncode, result.stderr)
            self.assertIn('owned by uid %d' % NOBODY, result.stderr)
            self.assertIn(self.dir, result.stderr)

    def test_vfio_host_refuses_a_dir_another_uid_owns(self):
        os.mkdir(self.dir)
        os.chown(self.dir, NOBODY, NOBODY)
        result = self.run_script(RUN_VFIO, '--status')
        self.assertEqual(1, result.returncode, result.stderr)
        self.assertIn('owned by uid %d' % NOBODY, result.stderr)
        self.assertIn('NOVA_ACC_VFIO_DIR', result.stderr)

    def test_refuses_a_dir_others_can_write(self):
        os.mkdir(self.dir)
        os.chmod(self.dir, 0o777)
        result = self.run_script(RUN_CLOUD, '--stop')
        self.assertEqual(1, result.returncode, result.stderr)
        self.assertIn('writable by group or others', result.stderr)
        self.assertEqual(0o777, _mode(self.dir))

    def test_refuses_a_symlink(self):
        # Even to a directory root owns: whoever made the link can move it.
        target = os.path.join(self.top, 'elsewhere')
        os.mkdir(target, 0o700)
        os.symlink(target, self.dir)
        result = self.run_script(RUN_CLOUD, '--stop')
        self.assertEqual(1, result.returncode, result.stderr)
        self.assertIn('symbolic link', result.stderr)

    def test_refuses_a_parent_another_uid_owns(self):
        os.chown(self.top, NOBODY, NOBODY)
        os.mkdir(self.dir, 0o700)
        result = self.run_script(RUN_CLOUD, '--stop')
        self.assertEqual(1, result.returncode, result.stderr)
        self.assertIn('above the state directory', result.stderr)

    def test_missing_dir_is_created_0700_and_an_old_one_tightened(self):
        result = self.bash('prepare; echo "$DIR"')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(0o700, _mode(self.dir))
        # A directory an older version made with umask 022.
        os.chmod(self.dir, 0o755)
        result = self.bash('prepare')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(0o700, _mode(self.dir))

    def test_stop_without_a_dir_creates_none(self):
        result = self.run_script(RUN_CLOUD, '--stop')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertFalse(os.path.exists(self.dir))


class PasswordsTest(ScriptTestCase):
    """Random passwords per cloud, 0600, reused; configs and openrc 0600."""

    def passwords(self):
        with open(os.path.join(self.dir, 'passwords')) as f:
            return dict(line.strip().split('=', 1) for line in f
                        if line.strip() and not line.startswith('#'))

    def openrc_password(self, who):
        with open(os.path.join(self.dir, '%s-openrc' % who)) as f:
            for line in f:
                if line.startswith('export OS_PASSWORD='):
                    return line.split('=', 1)[1].strip()

    def test_openrc_has_a_random_password_0600_reused_next_run(self):
        result = self.bash('prepare; write_openrc')
        self.assertEqual(0, result.returncode, result.stderr)
        admin = self.openrc_password('admin')
        self.assertNotEqual('nova-acc-secret', admin)
        self.assertGreaterEqual(len(admin), 32)
        for who in ('admin', 'demo'):
            self.assertEqual(
                0o600, _mode(os.path.join(self.dir, '%s-openrc' % who)))
        passwords = self.passwords()
        self.assertEqual(0o600, _mode(os.path.join(self.dir, 'passwords')))
        self.assertEqual(admin, passwords['ADMIN_PASSWORD'])
        self.assertEqual(passwords['DEMO_PASSWORD'],
                         self.openrc_password('demo'))
        # Distinct per user and service.
        self.assertEqual(len(passwords), len(set(passwords.values())))

        # The next run (the cloud's users and databases exist) reuses them.
        result = self.bash('prepare; write_openrc')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(passwords, self.passwords())
        self.assertEqual(admin, self.openrc_password('admin'))

    def test_a_new_cloud_gets_other_passwords(self):
        self.bash('prepare; write_openrc')
        first = self.passwords()
        shutil.rmtree(self.dir)
        self.bash('prepare; write_openrc')
        self.assertFalse(set(first.values()) & set(self.passwords().values()))

    def test_cloud_password_overrides_and_is_kept(self):
        env = {'NOVA_ACC_CLOUD_PASSWORD': 'my-dev-password'}
        result = self.bash('prepare; write_openrc', env=env)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual({'my-dev-password'}, set(self.passwords().values()))
        result = self.bash('prepare; write_openrc')
        self.assertEqual('my-dev-password', self.openrc_password('admin'))

    def test_cloud_password_with_unsafe_characters_is_refused(self):
        env = {'NOVA_ACC_CLOUD_PASSWORD': 'a b$c@d'}
        result = self.bash('prepare', env=env)
        self.assertEqual(1, result.returncode, result.stderr)
        self.assertIn('NOVA_ACC_CLOUD_PASSWORD may only contain',
                      result.stderr)

    def test_configs_are_0600_with_the_generated_passwords(self):
        # The files write_configs copies from the venvs.
        for rel in ('glance/etc/glance/glance-api-paste.ini',
                    'neutron/etc/neutron/api-paste.ini',
                    'nova/etc/nova/api-paste.ini'):
            path = os.path.join(self.dir, 'venv', rel)
            os.makedirs(os.path.dirname(path))
            with open(path, 'w') as f:
                f.write('[pipeline:main]\n')
            os.chmod(path, 0o644)
        # An older version left a world-readable nova.conf.
        os.makedirs(os.path.join(self.dir, 'etc', 'nova'))
        nova_conf = os.path.join(self.dir, 'etc', 'nova', 'nova.conf')
        with open(nova_conf, 'w') as f:
            f.write('[DEFAULT]\n')
        os.chmod(nova_conf, 0o644)

        result = self.bash('prepare; write_configs')
        self.assertEqual(0, result.returncode, result.stderr)
        files = []
        for dirpath, _, filenames in os.walk(os.path.join(self.dir, 'etc')):
            files += [os.path.join(dirpath, n) for n in filenames]
        self.assertGreaterEqual(len(files), 8)
        for path in files:
            self.assertEqual(0o600, _mode(path), path)
        passwords = self.passwords()
        with open(nova_conf) as f:
            conf = f.read()
        self.assertNotIn('nova-acc-secret', conf)
        self.assertIn('password = %s' % passwords['NOVA_PASSWORD'], conf)
        self.assertIn('nova_acc:%s@' % passwords['DB_PASSWORD'], conf)
        self.assertIn('nova_acc:%s@' % passwords['RABBIT_PASSWORD'], conf)
        # nova-acc-api's file: its own database, its own Keystone user.
        api_conf = os.path.join(self.dir, 'etc', 'nova-acc',
                                'nova-acc-api.conf')
        self.assertIn(api_conf, files)
        sections = {}
        cfg.ConfigParser(api_conf, sections).parse()
        self.assertEqual(['keystone'], sections['api']['auth_strategy'])
        self.assertEqual(
            ['mysql+pymysql://nova_acc:%s@127.0.0.1:13306/nova_acc_api'
             '?charset=utf8' % passwords['DB_PASSWORD']],
            sections['database']['connection'])
        self.assertEqual(['nova-acc-api'],
                         sections['keystone_authtoken']['username'])
        self.assertEqual([passwords['NOVAACCAPI_PASSWORD']],
                         sections['keystone_authtoken']['password'])


class NovaConfTest(ScriptTestCase):
    """The cloud's nova.conf has nova-acc's settings (tools/lib/nova_conf.py).

    Read back as oslo.config reads it: the settings the tool merges into
    the file write_configs writes, next to Nova's own options.
    """

    def test_nova_conf_has_nova_acc_settings(self):
        for rel in ('glance/etc/glance/glance-api-paste.ini',
                    'neutron/etc/neutron/api-paste.ini',
                    'nova/etc/nova/api-paste.ini'):
            path = os.path.join(self.dir, 'venv', rel)
            os.makedirs(os.path.dirname(path))
            with open(path, 'w') as f:
                f.write('[pipeline:main]\n')
        result = self.bash('prepare; write_configs')
        self.assertEqual(0, result.returncode, result.stderr)
        nova_conf = os.path.join(self.dir, 'etc', 'nova', 'nova.conf')
        sections = {}
        cfg.ConfigParser(nova_conf, sections).parse()
        helper = '%s/venv/nova/bin/privsep-helper --config-file %s' % (
            self.dir, nova_conf)
        self.assertEqual(['nova_acc.LibvirtAccDriver'],
                         sections['DEFAULT']['compute_driver'])
        self.assertEqual(['5'], sections['DEFAULT']['shutdown_timeout'])
        self.assertEqual(['qemu'], sections['libvirt']['virt_type'])
        for section in ('nova_sys_admin', 'privsep_osbrick',
                        'vif_plug_ovs_privileged',
                        'vif_plug_linux_bridge_privileged',
                        'nova_acc_sys_admin'):
            self.assertEqual([helper], sections[section]['helper_command'])
        self.assertEqual(
            ['{"vendor_id": "1234", "product_id": "11e8", '
             '"resource_class": "CUSTOM_EDU"}'],
            sections['nova_acc']['device_spec'])
        self.assertEqual(['edu=resources:CUSTOM_EDU=1'],
                         sections['nova_acc']['profile'])
        # nova-acc-api as Nova's service user (the service role).
        api = sections['device_context_api']
        self.assertEqual(sections['service_user']['username'],
                         api['username'])
        self.assertEqual(sections['service_user']['password'],
                         api['password'])
        self.assertEqual(['nova'], api['username'])
        self.assertEqual(['service'], api['project_name'])
        # Nova's own options stay.
        self.assertEqual(['1'], sections['scheduler']['workers'])
        self.assertEqual(0o600, _mode(nova_conf))


class ContextAPIServiceTest(ScriptTestCase):
    """nova-acc-api in the cloud: under uwsgi, waited for at /healthcheck."""

    def test_api_service_and_its_health_url(self):
        result = self.bash(
            'prepare; for line in "${API_SERVICES[@]}"; do echo "$line"; done;'
            ' health_url nova-acc-api 8790; health_url placement 8778;'
            ' service_matches nova-acc-api')
        self.assertEqual(0, result.returncode, result.stderr)
        lines = result.stdout.splitlines()
        self.assertIn('nova-acc-api 8790 nova_acc.api.wsgi_app:application '
                      'nova', lines)
        self.assertIn('http://127.0.0.1:8790/healthcheck', lines)
        self.assertIn('http://127.0.0.1:8778/', lines)
        self.assertIn('%s/venv/nova/bin/uwsgi --http-socket 127.0.0.1:8790'
                      % self.dir, lines)

    def test_catalog_users_have_passwords(self):
        # tools/cloud_resources.py's service users, each with a password
        # key that tools/lib/common.sh makes.
        result = self.bash('echo "${NOVA_ACC_PASSWORD_KEYS[*]}"')
        keys = result.stdout.split()
        spec = importlib.util.spec_from_file_location(
            'cloud_resources', os.path.join(TOOLS, 'cloud_resources.py'))
        cloud_resources = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(cloud_resources)
        except ImportError as e:
            self.skipTest('cloud_resources.py needs openstacksdk: %s' % e)
        types = {stype for _, stype, _, _ in cloud_resources.SERVICES}
        self.assertIn('device-context', types)
        for user, _, _, _ in cloud_resources.SERVICES:
            self.assertIn(cloud_resources.password_key(user).upper(), keys)


class PidfileTest(ScriptTestCase):
    """--stop signals only the process a pidfile is for."""

    def write_pidfile(self, path, pid):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write('%d\n' % pid)

    def make_cloud_dir(self):
        os.mkdir(self.dir, 0o700)
        for sub in ('run', 'logs', 'etc', 'data'):
            os.mkdir(os.path.join(self.dir, sub), 0o700)

    def test_stop_leaves_an_unrelated_process_group_alone(self):
        self.make_cloud_dir()
        # A pidfile left by a crash; the pid now leads an unrelated group.
        unrelated = self.sleeper()
        pidfile = os.path.join(self.dir, 'run', 'nova-compute.pid')
        self.write_pidfile(pidfile, unrelated.pid)

        result = self.run_script(RUN_CLOUD, '--stop')
        self.assertEqual(0, result.returncode, result.stderr)
        time.sleep(0.5)
        self.assertTrue(self.alive(unrelated),
                        '--stop killed pid %d, which is not nova-compute'
                        % unrelated.pid)
        self.assertFalse(os.path.exists(pidfile))
        self.assertIn('stale pidfile %s' % pidfile, result.stderr)

    def test_stop_stops_the_service_and_its_process_group(self):
        self.make_cloud_dir()
        # A stand-in for nova-compute: the command line the script starts,
        # leading a group with a worker in it.
        program = os.path.join(self.dir, 'venv', 'nova', 'bin',
                               'nova-compute')
        os.makedirs(os.path.dirname(program))
        with open(program, 'w') as f:
            f.write('#!/bin/bash\nsleep 300 &\necho $! > "$WORKER"\n'
                    'while :; do sleep 1; done\n')
        os.chmod(program, 0o700)
        worker_file = os.path.join(self.top, 'worker')
        conf = os.path.join(self.dir, 'etc', 'nova', 'nova.conf')
        service = subprocess.Popen(
            [program, '--config-file', conf], start_new_session=True,
            env=dict(os.environ, WORKER=worker_file))
        self.addCleanup(self._reap, service)
        for _ in range(100):
            if os.path.exists(worker_file) and os.path.getsize(worker_file):
                break
            time.sleep(0.1)
        with open(worker_file) as f:
            worker = int(f.read())
        self.addCleanup(self._kill_quietly, worker)
        self.write_pidfile(os.path.join(self.dir, 'run', 'nova-compute.pid'),
                           service.pid)

        result = self.run_script(RUN_CLOUD, '--stop')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIsNotNone(service.wait(timeout=30))
        for _ in range(50):
            if not self.pid_alive(worker):
                break
            time.sleep(0.1)
        self.assertFalse(self.pid_alive(worker),
                         "the service's worker was left running")

    @staticmethod
    def pid_alive(pid):
        """PID runs (a zombie, whose command line is empty, does not)."""
        try:
            with open('/proc/%d/cmdline' % pid) as f:
                return bool(f.read())
        except FileNotFoundError:
            return False

    @staticmethod
    def _kill_quietly(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def test_running_does_not_take_an_unrelated_process_for_the_service(self):
        self.make_cloud_dir()
        unrelated = self.sleeper()
        self.write_pidfile(os.path.join(self.dir, 'run', 'keystone.pid'),
                           unrelated.pid)
        result = self.bash('prepare; running keystone')
        # Not running: start-up would start keystone instead of trusting
        # the pidfile.
        self.assertEqual(1, result.returncode, result.stderr)
        self.assertTrue(self.alive(unrelated))

    def test_vfio_stop_leaves_an_unrelated_process_alone(self):
        os.mkdir(self.dir, 0o700)
        unrelated = self.sleeper()
        pidfile = os.path.join(self.dir, 'qemu.pid')
        self.write_pidfile(pidfile, unrelated.pid)
        result = self.run_script(RUN_VFIO, '--stop', timeout=60)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertTrue(self.alive(unrelated))
        self.assertIn('VM not running', result.stderr)
        self.assertFalse(os.path.exists(pidfile))
