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

"""tools/lib/: what the scripts share, each fact in one place (issue 20).

* The scripts' shape: no Python program embedded in bash, no copy of a
  helper of tools/lib/common.sh, one probe initramfs builder, nova-acc's
  nova.conf settings only in tools/lib/nova_conf.py.
* The pieces, run for real: common.sh's nova_acc_wait in bash, the probe
  initramfs builder (the archive it makes), the VFIO VM's reaper (signals
  to a real process), install_check.py (imports in a subprocess).
"""

import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from oslotest import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
LIB = os.path.join(ROOT, 'tools', 'lib')
COMMON = os.path.join(LIB, 'common.sh')


def shell_scripts():
    """Every shell file of tools/ and devstack/, by path relative to ROOT."""
    found = []
    for top in ('tools', 'devstack'):
        for dirpath, _, filenames in os.walk(os.path.join(ROOT, top)):
            for name in filenames:
                path = os.path.join(dirpath, name)
                with open(path, 'rb') as f:
                    head = f.read(200)
                shebang = head.split(b'\n')[0]
                if name.endswith('.sh') or name == 'settings' or (
                        shebang.startswith(b'#!') and b'sh' in shebang):
                    found.append(os.path.relpath(path, ROOT))
    return sorted(found)


def read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


class ShapeTest(base.BaseTestCase):
    """Each fact of tools/ in one place."""

    def test_scripts_found(self):
        scripts = shell_scripts()
        for rel in ('tools/run-cloud.sh', 'tools/run-vfio-host.sh',
                    'tools/run-tempest.sh', 'tools/setup.sh',
                    'tools/lib/common.sh', 'devstack/plugin.sh'):
            self.assertIn(rel, scripts)

    def test_no_python_program_embedded_in_bash(self):
        # A heredoc fed to a Python ("python3 - <<EOF", "python <<EOF") or
        # "python -c" with more than one statement: such programs belong in
        # files of their own, linted and tested.
        heredoc = re.compile(r'python[0-9.]*"?(\s+-\s[^\n]*)?\s*<<')
        for rel in shell_scripts():
            text = read(rel)
            self.assertIsNone(heredoc.search(text), rel)
            for match in re.finditer(
                    r'''python[0-9.]*"?\s+-c\s+(['"])(.*?)\1''', text, re.S):
                program = match.group(2)
                self.assertNotIn(';', program, '%s: %s' % (rel, program))
                self.assertNotIn('\n', program, '%s: %s' % (rel, program))

    def test_no_copies_of_the_common_helpers(self):
        defined = re.compile(r'^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)',
                             re.M)
        common = set(defined.findall(read('tools/lib/common.sh')))
        where = {}
        for rel in shell_scripts():
            if rel in ('tools/lib/common.sh', 'devstack/plugin.sh'):
                # devstack's plugin runs inside stack.sh, with devstack's
                # own die; it does not source common.sh.
                continue
            for name in set(defined.findall(read(rel))):
                where.setdefault(name, []).append(rel)
        # A function two scripts define is a copy; so is one of common.sh's.
        # Except set_dirs: each script's own paths under its state
        # directory, which common.sh's nova_acc_state_dir checks.
        copies = {name: rels for name, rels in where.items()
                  if (len(rels) > 1 and name != 'set_dirs')
                  or name in common}
        self.assertEqual({}, copies)
        self.assertTrue({'log', 'die', 'nova_acc_wait',
                         'nova_acc_stop_pid'} <= common)

    def test_one_probe_initramfs_builder(self):
        builders = [rel for rel in shell_scripts()
                    if re.search(r'cpio\s+-o', read(rel))]
        self.assertEqual(['tools/lib/build-probe-initramfs.sh'], builders)
        for rel in ('tools/run-cloud.sh', 'tools/run-vfio-host.sh'):
            self.assertIn('tools/lib/build-probe-initramfs.sh', read(rel))

    def test_nova_acc_settings_written_in_one_place(self):
        # The driver's name, nova-acc's privsep section and the edu
        # device_spec appear in no script: they call tools/lib/nova_conf.py.
        facts = ('LibvirtAccDriver', '[nova_acc_sys_admin]',
                 '"product_id": "11e8"', 'device_spec =', 'helper_command =')
        for rel in shell_scripts():
            for line in read(rel).splitlines():
                if not line.lstrip().startswith('#'):
                    for fact in facts:
                        self.assertNotIn(fact, line, rel)
        for rel in ('tools/run-cloud.sh', 'tools/run-vfio-host.sh',
                    'devstack/plugin.sh'):
            self.assertIn('tools/lib/nova_conf.py', read(rel), rel)


class WaitTest(base.BaseTestCase):
    """common.sh's nova_acc_wait, in bash."""

    def wait(self, script):
        start = time.monotonic()
        result = subprocess.run(
            ['bash', '-c', 'set -euo pipefail; source "$1"; rc=0; ' + script,
             'bash', COMMON], capture_output=True, text=True, timeout=60)
        return result, time.monotonic() - start

    def test_returns_when_the_check_succeeds(self):
        flag = os.path.join(tempfile.mkdtemp(), 'flag')
        self.addCleanup(shutil.rmtree, os.path.dirname(flag))
        result, _ = self.wait(
            '(sleep 1; touch %s) & nova_acc_wait 20 0.2 test -e %s || rc=$?;'
            ' echo "rc=$rc"' % (flag, flag))
        self.assertEqual('rc=0\n', result.stdout, result.stderr)

    def test_limit_is_in_seconds_not_tries(self):
        # Each check takes 2 s; a limit of 3 s ends after two of them, not
        # after 3 tries of 2 s each.
        result, took = self.wait(
            'nova_acc_wait 3 0.1 bash -c "sleep 2; false" || rc=$?;'
            ' echo "rc=$rc"')
        self.assertEqual('rc=1\n', result.stdout, result.stderr)
        self.assertLess(took, 5.5)
        self.assertGreaterEqual(took, 3)

    def test_alive_check_failing_returns_2_at_once(self):
        result, took = self.wait(
            'nova_acc_wait 30 0.1 --alive test -e /nonexistent -- false'
            ' || rc=$?; echo "rc=$rc"')
        self.assertEqual('rc=2\n', result.stdout, result.stderr)
        self.assertLess(took, 10)

    def test_alive_check_passing_keeps_waiting(self):
        result, _ = self.wait(
            'nova_acc_wait 1 0.1 --alive test -d / -- false || rc=$?;'
            ' echo "rc=$rc"')
        self.assertEqual('rc=1\n', result.stdout, result.stderr)


class ProbeInitramfsTest(base.BaseTestCase):
    """tools/lib/build-probe-initramfs.sh: the archive it writes."""

    BUILDER = os.path.join(LIB, 'build-probe-initramfs.sh')

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='nova-acc-probe-')
        self.addCleanup(shutil.rmtree, self.dir)
        # A stand-in busybox: the builder copies it, nothing runs it.
        self.busybox = os.path.join(self.dir, 'busybox')
        with open(self.busybox, 'w') as f:
            f.write('#!/bin/sh\necho not really busybox\n')
        os.chmod(self.busybox, 0o700)

    def build(self, busybox, output):
        return subprocess.run([self.BUILDER, busybox, output],
                              capture_output=True, text=True, timeout=60)

    @staticmethod
    def members(archive):
        """{name: (mode, data)} of a gzipped newc cpio archive."""
        with gzip.open(archive) as f:
            data = f.read()
        members, offset = {}, 0
        while True:
            header = data[offset:offset + 110]
            assert header[:6] == b'070701', header[:6]
            fields = [int(header[6 + 8 * i:14 + 8 * i], 16)
                      for i in range(13)]
            mode, uid, gid, size, namesize = (fields[1], fields[2],
                                              fields[3], fields[6],
                                              fields[11])
            name_end = offset + 110 + namesize
            name = data[offset + 110:name_end - 1].decode()
            start = (name_end + 3) & ~3
            if name == 'TRAILER!!!':
                return members
            members[name] = (mode, uid, gid, data[start:start + size])
            offset = (start + size + 3) & ~3

    def test_archive_has_busybox_and_the_probe_init(self):
        output = os.path.join(self.dir, 'initrd')
        result = self.build(self.busybox, output)
        self.assertEqual(0, result.returncode, result.stderr)
        members = self.members(output)
        self.assertEqual({'.', 'bin', 'bin/busybox', 'dev', 'init', 'proc',
                          'sys'}, set(members))
        mode, uid, gid, data = members['init']
        self.assertEqual((0o100755, 0, 0), (mode, uid, gid))
        with open(os.path.join(LIB, 'probe-init.sh'), 'rb') as f:
            self.assertEqual(f.read(), data)
        for line in (b'nova-acc guest: up after', b'nova-acc guest: pci ',
                     b'nova-acc guest: done', b'/dev/ttyS0'):
            self.assertIn(line, data)
        mode, _, _, data = members['bin/busybox']
        self.assertEqual(0o100755, mode)
        self.assertEqual(b'#!/bin/sh\necho not really busybox\n', data)
        self.assertEqual(0o040755, members['.'][0])

    def test_missing_busybox_writes_nothing(self):
        output = os.path.join(self.dir, 'initrd')
        result = self.build(os.path.join(self.dir, 'nope'), output)
        self.assertEqual(1, result.returncode)
        self.assertIn('busybox-static', result.stderr)
        self.assertEqual(['busybox'], os.listdir(self.dir))


class VmReaperTest(base.BaseTestCase):
    """tools/lib/vm_reaper.py: SIGTERM/SIGPWR run the shutdown command."""

    def start(self, marker):
        proc = subprocess.Popen(
            [sys.executable, os.path.join(LIB, 'vm_reaper.py'),
             'sh', '-c', 'echo down >> %s' % marker])
        self.addCleanup(self._stop, proc)
        return proc

    @staticmethod
    def _stop(proc):
        proc.kill()
        proc.wait()

    @staticmethod
    def wait_for_lines(path, count):
        for _ in range(100):
            if os.path.exists(path):
                with open(path) as f:
                    if len(f.read().splitlines()) >= count:
                        return True
            time.sleep(0.1)
        return False

    def test_signals_run_the_shutdown_command_and_it_keeps_reaping(self):
        marker = os.path.join(tempfile.mkdtemp(), 'marker')
        self.addCleanup(shutil.rmtree, os.path.dirname(marker))
        proc = self.start(marker)
        time.sleep(1)  # its handlers are set
        proc.send_signal(signal.SIGTERM)
        self.assertTrue(self.wait_for_lines(marker, 1))
        proc.send_signal(signal.SIGPWR)
        self.assertTrue(self.wait_for_lines(marker, 2))
        # PID 1 never exits by itself (the kernel would panic).
        self.assertIsNone(proc.poll())

    def test_no_command_is_a_usage_error(self):
        result = subprocess.run(
            [sys.executable, os.path.join(LIB, 'vm_reaper.py')],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(2, result.returncode)


class InstallCheckTest(base.BaseTestCase):
    """tools/lib/install_check.py, with this venv's Python."""

    def check(self, *args, cwd=None, env=None):
        return subprocess.run(
            [sys.executable, os.path.join(LIB, 'install_check.py')]
            + list(args), capture_output=True, text=True, timeout=120,
            cwd=cwd, env=env)

    def test_installed_modules_pass(self):
        result = self.check('check', '--import', 'os_acc', '--find',
                            'nova.virt.nova_acc', '--find', 'nova_acc')
        self.assertEqual(0, result.returncode, result.stderr)

    def test_missing_module_named(self):
        result = self.check('check', '--import', 'os_acc', '--import',
                            'no_such_module_here', '--find', 'nor_this_one')
        self.assertEqual(1, result.returncode)
        self.assertIn('no_such_module_here does not import', result.stderr)
        self.assertIn('nor_this_one is not found', result.stderr)
        self.assertNotIn('os_acc', result.stderr)

    def test_namespace_package_hiding_the_real_one(self):
        # A directory without __init__.py (what pip leaves next to an
        # editable Nova) on the path.
        top = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, top)
        os.makedirs(os.path.join(top, 'hidden_pkg', 'virt'))
        env = dict(os.environ, PYTHONPATH=top)
        result = self.check('check', '--import', 'hidden_pkg', env=env)
        self.assertEqual(1, result.returncode)
        self.assertIn('hidden_pkg is a namespace package', result.stderr)

    def test_locate_and_package_dir(self):
        result = self.check('locate', 'nova-acc', 'nova/virt/nova_acc')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertTrue(os.path.isdir(result.stdout.strip()), result.stdout)
        result = self.check('package-dir', 'os_acc')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertTrue(os.path.isfile(
            os.path.join(result.stdout.strip(), '__init__.py')))
        result = self.check('locate', 'no-such-dist', 'x')
        self.assertEqual(1, result.returncode)
