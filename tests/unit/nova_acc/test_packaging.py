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
"""What a plain ``pip install nova-acc`` on a compute node loads.

The runtime (every module outside ``nova_acc.tests`` and ``nova_acc.demo``)
must never import a test fixture or a test-only dependency; the demo is
behind an extra. The client package (``nova_acc_client``, also the
client-only distribution built from ``client/``) installs on a laptop: it
never imports Nova, libvirt, nova_acc or os_acc (os_acc only where it is
there, to check a spec's grammar early).
"""

import ast
import configparser
import json
import os
import pkgutil
import subprocess
import sys

from oslotest import base

import nova_acc
import nova_acc_client

TEST_ONLY = ('nova_acc.tests', 'nova.tests', 'fixtures', 'testtools',
             'wsgi_intercept', 'requests_mock', 'placement', 'oslotest')


#: Packages that need the [demo] extra: the harness and ``nova-acc demo``.
DEMO_TREES = ('nova_acc.tests', 'nova_acc.demo')


def runtime_modules():
    root = os.path.dirname(nova_acc.__file__)
    names = []
    for info in pkgutil.walk_packages([root], prefix='nova_acc.'):
        if any(info.name == tree or info.name.startswith(tree + '.')
               for tree in DEMO_TREES):
            continue
        names.append(info.name)
    return names


# Console-script modules that choose Nova's concurrency backend at import,
# as Nova's own nova.cmd modules do: one per interpreter.
PATCHING = ('nova_acc.cmd.conductor', 'nova_acc.cmd.scheduler')


def modules_loaded_by(names):
    """sys.modules of a fresh interpreter after importing ``names``."""
    code = ('import importlib, json, sys\n'
            'for name in %r:\n'
            '    importlib.import_module(name)\n'
            'print(json.dumps(sorted(sys.modules)))\n' % list(names))
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


class RuntimeImportsTest(base.BaseTestCase):

    def test_runtime_modules_import_no_test_code(self):
        modules = runtime_modules()
        self.assertIn('nova_acc.seams.scheduler', modules)
        self.assertNotIn('nova_acc.tests.fixtures.cloud', modules)
        batches = [[m for m in modules if m not in PATCHING]] + [
            [m] for m in PATCHING]
        for batch in batches:
            loaded = modules_loaded_by(batch)
            leaked = [m for m in loaded if any(
                m == t or m.startswith(t + '.') for t in TEST_ONLY)]
            self.assertEqual([], leaked, batch)

    def test_nova_acc_command_without_test_dependencies_says_what_to_do(self):
        # As on a compute node without the [demo] extra: the demo's first
        # test-only import fails.
        code = ('import sys; sys.modules["fixtures"] = None\n'
                'from nova_acc.cmd import demo\n'
                'sys.exit(demo.main(["demo"]))\n')
        proc = subprocess.run([sys.executable, '-c', code],
                              capture_output=True, text=True)
        self.assertEqual(2, proc.returncode, proc.stderr)
        self.assertIn('pip install "nova-acc[demo]"', proc.stderr)
        self.assertNotIn('Traceback', proc.stderr)


CLIENT_ROOT = os.path.realpath(os.path.dirname(nova_acc_client.__file__))
REPO_ROOT = os.path.dirname(CLIENT_ROOT)
#: Top-level packages the client distribution does not have.
NOT_IN_CLIENT = ('nova', 'nova_acc', 'libvirt', 'os_acc', 'placement')
#: Entry point groups the two distributions both declare.
CLIENT_GROUPS = ('openstack.cli.extension', 'openstack.device_context.v1',
                 'openstack.cli.server_create', 'novaclient.extension')


def client_modules():
    return [info.name for info in pkgutil.walk_packages(
        [CLIENT_ROOT], prefix='nova_acc_client.')] + ['nova_acc_client']


def imports_of(path):
    """(top-level name, guarded by ``except ImportError``) of each import."""
    tree = ast.parse(open(path).read(), path)
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id == 'ImportError'
                for h in node.handlers):
            for inner in node.body:
                guarded.update(id(n) for n in ast.walk(inner))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            yield name.split('.')[0], id(node) in guarded


def entry_points(setup_cfg, section):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(setup_cfg)
    return {group: sorted(line.split() for line in
                          parser[section][group].strip().splitlines())
            for group in CLIENT_GROUPS}


class ClientDistributionTest(base.BaseTestCase):

    def test_client_sources_import_no_server_code(self):
        seen = 0
        for folder, _dirs, files in os.walk(CLIENT_ROOT):
            for name in files:
                if not name.endswith('.py'):
                    continue
                path = os.path.join(folder, name)
                for top, guarded in imports_of(path):
                    seen += 1
                    if top == 'os_acc':
                        self.assertTrue(guarded, '%s imports os_acc '
                                        'without "except ImportError"'
                                        % path)
                    else:
                        self.assertNotIn(top, NOT_IN_CLIENT, path)
        self.assertGreater(seen, 20)

    def test_client_modules_load_no_server_code(self):
        # What Python loads, also through the client's dependencies.
        modules = client_modules()
        self.assertIn('nova_acc_client.osc.v1.device_context', modules)
        loaded = modules_loaded_by(modules)
        leaked = [m for m in loaded if m.split('.')[0] in NOT_IN_CLIENT]
        self.assertEqual([], leaked)

    def test_spec_without_os_acc_is_left_to_the_cloud(self):
        code = ('import sys; sys.modules["os_acc"] = None\n'
                'from nova_acc_client import device_context as d\n'
                'print(d.check("resources:NOT_A_CLASS=1"), '
                'd.check("profile:p"))\n')
        out = subprocess.run([sys.executable, '-c', code], check=True,
                             capture_output=True, text=True).stdout
        self.assertEqual('spec profile', out.strip())

    def test_both_distributions_declare_the_same_entry_points(self):
        server = entry_points(os.path.join(REPO_ROOT, 'setup.cfg'),
                              'entry_points')
        client = entry_points(os.path.join(REPO_ROOT, 'client', 'setup.cfg'),
                              'options.entry_points')
        self.assertEqual(server, client)
        self.assertEqual(8, len(server['openstack.device_context.v1']))
