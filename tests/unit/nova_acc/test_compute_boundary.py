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
"""The compute package's boundary, and the size of what nova-acc ships.

Only nova-compute runs ``nova_acc.compute`` (libvirt, the ledger file,
privsep): nothing else imports it but the driver seam that composes its
rooms and ``nova-acc-manage``, which runs on the compute host and reads
its ledger. Test, benchmark and demo code may. Read with ``ast`` (imports
inside functions count), as tests/unit/nova_acc/test_control_plane_imports.py
reads the control plane's.

And one job per class and function, so that a name can say what each
does: no class over 300 lines and no function over 70 in nova_acc (its
tests excepted), except the algorithms listed below with why they are
read as one.
"""

import ast
import os

from oslotest import base

from tests.unit.nova_acc import test_control_plane_imports as imports

ROOT = imports.ROOT

#: Files outside nova_acc/compute/ allowed to import it, and why.
MAY_IMPORT_COMPUTE = {
    'nova_acc/seams/libvirt.py': 'the driver seam composes the rooms',
    'nova_acc/seams/live_migration.py': 'the driver seam\'s live-migration '
                                        'overrides (a mixin of it)',
    'nova_acc/cmd/manage.py': 'nova-acc-manage runs on the compute host '
                              'and reads its ledger',
}
#: Trees whose code is tests, benchmarks or the demo (which drives Nova's
#: functional harness, as the tests do): they may import it.
TEST_TREES = ('tests/', 'benchmarks/', 'nova_acc/tests/', 'nova_acc/demo/')
#: Where to look for importers.
SHIPPED_TREES = ('nova_acc', 'os_acc', 'nova_acc_tempest_plugin', 'tools',
                 'devstack', 'tests', 'benchmarks')

MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 70
#: "path:qualified name" -> why it is read as one piece.
DOCUMENTED_ALGORITHMS: dict[str, str] = {}


def _python_files(top):
    for root, dirs, files in os.walk(os.path.join(ROOT, top)):
        dirs[:] = sorted(d for d in dirs if d not in ('__pycache__',))
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(root, name)
                yield os.path.relpath(path, ROOT).replace(os.sep, '/')


def _module_of(path):
    return path[:-len('.py')].replace('/', '.').removesuffix('.__init__')


def compute_importers():
    """Files outside the package that import nova_acc.compute, not allowed."""
    found = []
    for top in SHIPPED_TREES:
        for path in _python_files(top):
            if (path.startswith('nova_acc/compute/') or
                    path in MAY_IMPORT_COMPUTE or
                    path.startswith(TEST_TREES)):
                continue
            module = _module_of(path)
            package = module if path.endswith('__init__.py') else \
                module.rpartition('.')[0]
            with open(os.path.join(ROOT, path), encoding='utf-8') as f:
                names = imports.imports_in(f.read(), package)
            if any(n == 'nova_acc.compute' or
                   n.startswith('nova_acc.compute.') for n in names):
                found.append(path)
    return found


def oversized(source, path):
    """["path:name (N lines)"] of classes and functions over the limits."""
    result = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                limit = MAX_CLASS_LINES
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = MAX_FUNCTION_LINES
            else:
                visit(child, prefix)
                continue
            name = prefix + child.name
            lines = child.end_lineno - child.lineno + 1
            key = '%s:%s' % (path, name)
            if lines > limit and key not in DOCUMENTED_ALGORITHMS:
                result.append('%s (%d lines)' % (key, lines))
            visit(child, name + '.')

    visit(ast.parse(source), '')
    return result


class ComputeBoundaryTest(base.BaseTestCase):

    def test_only_the_seam_and_manage_import_the_compute_package(self):
        self.assertEqual([], compute_importers())

    def test_the_allowed_importers_exist(self):
        # A renamed file must not make the check pass silently.
        for path in MAY_IMPORT_COMPUTE:
            self.assertTrue(os.path.isfile(os.path.join(ROOT, path)), path)

    def test_an_importer_is_found(self):
        source = 'def f():\n    from nova_acc.compute import ledger\n'
        self.assertIn('nova_acc.compute.ledger',
                      imports.imports_in(source, 'nova_acc'))

    def test_no_class_or_function_over_the_limits(self):
        found = []
        for path in _python_files('nova_acc'):
            if path.startswith('nova_acc/tests/'):
                continue
            with open(os.path.join(ROOT, path), encoding='utf-8') as f:
                found += oversized(f.read(), path)
        self.assertEqual([], found)

    def test_documented_algorithms_exist(self):
        for key in DOCUMENTED_ALGORITHMS:
            path, name = key.split(':')
            with open(os.path.join(ROOT, path), encoding='utf-8') as f:
                tree = ast.parse(f.read())
            names = {n.name for n in ast.walk(tree)
                     if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
            self.assertIn(name.split('.')[-1], names, key)

    def test_oversized_code_is_found(self):
        long_function = 'def f():\n' + '    x = 1\n' * 80
        self.assertEqual(['p.py:f (81 lines)'],
                         oversized(long_function, 'p.py'))
        nested = 'class C:\n    ' + long_function.replace('\n', '\n    ')
        self.assertEqual(['p.py:C.f (81 lines)'], oversized(nested, 'p.py'))
