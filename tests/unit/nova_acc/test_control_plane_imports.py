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
"""The control plane does not import code that runs only in nova-compute.

The scheduler and the conductor need pool identity (``nova_acc.pools``),
not the host's ledger, devices or libvirt: importing those would load
``nova.virt.libvirt`` into services that have no hypervisor, and tie the
conductor's release to the compute's. This reads the sources with ``ast``
instead of importing them, so the check sees imports inside functions too
and does not depend on what happens to be loaded in the test process. The
nova_acc modules a control-plane module imports are followed, so an import
through another module (the conductor -> binding -> inventory) is caught.
"""

import ast
import os

from oslotest import base

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..',
                                    '..'))

#: The modules of the scheduler's and conductor's flow, and what they share
#: with the compute.
CONTROL_PLANE = (
    'nova_acc.hint',
    'nova_acc.request_groups',
    'nova_acc.allocation',
    'nova_acc.pools',
    'nova_acc.binding',
    'nova_acc.matching',
    'nova_acc.moves',
    'nova_acc.seams.scheduler',
    'nova_acc.seams.conductor',
)

#: Modules (and their submodules) that run only in nova-compute.
COMPUTE_ONLY = (
    'nova.virt',
    'libvirt',
    'nova_acc.compute',
)


def _source_path(module: str) -> str | None:
    """The file of a module of this repository, or None if it has none."""
    base_path = os.path.join(ROOT, *module.split('.'))
    for path in (base_path + '.py', os.path.join(base_path, '__init__.py')):
        if os.path.isfile(path):
            return path
    return None


def _package_of(module: str, path: str) -> str:
    if path.endswith('__init__.py'):
        return module
    return module.rpartition('.')[0]


def imports_in(source: str, package: str) -> set[str]:
    """Every module ``source`` imports, at any level of nesting.

    ``from a import b`` counts as importing ``a`` and ``a.b`` (``b`` may be
    a module); relative imports are resolved against ``package``.
    """
    result = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            result.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split('.')
                parts = parts[:len(parts) - (node.level - 1)]
                base_name = '.'.join(parts + (
                    [node.module] if node.module else []))
            else:
                base_name = node.module or ''
            result.add(base_name)
            result.update('%s.%s' % (base_name, alias.name)
                          for alias in node.names)
    return result


def imported_modules(module: str) -> set[str]:
    """Every module the source of ``module`` (of this repository) imports."""
    path = _source_path(module)
    if path is None:
        return set()
    with open(path, encoding='utf-8') as f:
        return imports_in(f.read(), _package_of(module, path))


def _is_compute_only(module: str) -> bool:
    return any(module == banned or module.startswith(banned + '.')
               for banned in COMPUTE_ONLY)


def _parents(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``: importing a module runs its packages."""
    parts = module.split('.')
    return ['.'.join(parts[:i]) for i in range(1, len(parts))]


def compute_only_imports(start: str) -> list[list[str]]:
    """Import chains from ``start`` that reach a compute-only module.

    nova_acc modules are followed (each once); each chain ends with the
    compute-only module.
    """
    chains = []
    seen = {start}
    todo = [[start]]
    while todo:
        chain = todo.pop()
        for name in sorted(imported_modules(chain[-1])):
            for module in _parents(name) + [name]:
                if _is_compute_only(module):
                    chains.append(chain + [module])
                elif (module.split('.')[0] == 'nova_acc' and
                      module not in seen and _source_path(module)):
                    seen.add(module)
                    todo.append(chain + [module])
    return chains


class ControlPlaneImportsTest(base.BaseTestCase):

    def test_control_plane_modules_exist(self):
        # A renamed module must not make the check below pass silently.
        for module in CONTROL_PLANE:
            self.assertIsNotNone(_source_path(module), module)

    def test_control_plane_imports_no_compute_only_module(self):
        found = {' -> '.join(chain) for module in CONTROL_PLANE
                 for chain in compute_only_imports(module)}
        self.assertEqual(set(), found,
                         'the control plane imports code that runs only in '
                         'nova-compute')

    def test_the_check_sees_imports_inside_functions(self):
        found = imports_in(
            'import os\n'
            'def f():\n'
            '    from nova_acc.compute import ledger\n'
            '    if True:\n'
            '        from nova.virt.libvirt import host\n'
            'class C:\n'
            '    def g(self):\n'
            '        from . import release\n', 'nova_acc.compute')
        self.assertEqual(['nova.virt.libvirt', 'nova.virt.libvirt.host',
                          'nova_acc.compute', 'nova_acc.compute.ledger',
                          'nova_acc.compute.release'],
                         sorted(m for m in found
                                if any(_is_compute_only(p)
                                       for p in _parents(m) + [m])))
        self.assertFalse(_is_compute_only('nova_acc.computer'))
