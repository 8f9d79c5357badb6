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
behind an extra.
"""

import json
import os
import pkgutil
import subprocess
import sys

from oslotest import base

import nova_acc

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
