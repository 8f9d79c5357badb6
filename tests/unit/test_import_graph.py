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
"""No import cycle among the modules of nova_acc and os_acc.

The graph is read from the source with ``ast``: every ``import`` and
``from ... import`` of a nova_acc or os_acc module is an edge, wherever it
is - at module level, under ``if TYPE_CHECKING``, or in a function. A
function-level import that goes back to its importer is still a cycle (the
two modules cannot be understood, or moved, one without the other), only a
hidden one: ``reconcile.gather_facts`` importing ``hostdev`` back to parse
guest XML was one (issue 20).
"""

import ast
import os

from oslotest import base

import nova_acc
import os_acc

PACKAGES = (nova_acc, os_acc)

#: Cycles known and owned elsewhere, each as the sorted modules of its
#: strongly connected component, with who removes it. Empty: none known.
KNOWN_CYCLES: list[list[str]] = []


def package_modules():
    """{module name: source path} of every module of PACKAGES."""
    modules = {}
    for package in PACKAGES:
        root = os.path.dirname(package.__file__)
        top = os.path.dirname(root)
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(dirpath, name)
                    module = os.path.relpath(path, top)[:-3].replace(
                        os.sep, '.')
                    modules[module.removesuffix('.__init__')] = path
    return modules


def imported_names(tree, module):
    """Every module name an import in ``tree`` may load, absolute."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base_name = node.module or ''
            if node.level:
                # A relative import: from the importer's package upwards.
                parts = module.split('.')[:-node.level]
                base_name = '.'.join(parts + ([base_name] if base_name
                                              else []))
            names.add(base_name)
            # "from pkg import name": name may be a module of pkg.
            names.update('%s.%s' % (base_name, alias.name)
                         for alias in node.names)
    return names


def import_graph():
    """{module: the nova_acc and os_acc modules it imports}."""
    modules = package_modules()
    graph = {}
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        # A module's own packages are not edges: importing a.b.c runs
        # a/__init__.py and a/b/__init__.py first, whatever c imports.
        graph[module] = {
            name for name in imported_names(tree, module)
            if name in modules and name != module and
            not module.startswith(name + '.')}
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan),
    each sorted, sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def path_in(graph, component):
    """One cycle through ``component``, as ``a -> b -> a``, for the
    failure message."""
    members = set(component)
    path = [component[0]]
    while True:
        step = sorted(graph[path[-1]] & members)[0]
        if step in path:
            return ' -> '.join(path[path.index(step):] + [step])
        path.append(step)


class ImportGraphTest(base.BaseTestCase):

    def test_every_kind_of_import_is_read(self):
        source = (
            'import typing\n'
            'import os_acc\n'
            'from nova_acc.compute import ledger\n'
            'if typing.TYPE_CHECKING:\n'
            '    from nova_acc.seams import libvirt\n'
            'def gather():\n'
            '    from nova_acc.compute import guest as g\n'
            '    from . import release\n')
        names = imported_names(ast.parse(source), 'nova_acc.compute.reconcile')
        for name in ('os_acc', 'nova_acc.compute.ledger',
                     'nova_acc.seams.libvirt',
                     'nova_acc.compute.guest', 'nova_acc.compute.release'):
            self.assertIn(name, names)

    def test_the_graph_has_both_packages(self):
        graph = import_graph()
        self.assertIn('os_acc.exception', graph['os_acc'])
        self.assertIn('nova_acc.tests.fixtures.cloud', graph)
        self.assertNotIn('nova_acc', graph['nova_acc.compute.reconcile'])

    def test_a_cycle_is_found(self):
        graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
        self.assertEqual([['a', 'b', 'c']], cycles(graph))
        self.assertEqual('a -> b -> c -> a', path_in(graph, ['a', 'b', 'c']))
        self.assertEqual([], cycles({'a': {'b'}, 'b': set()}))

    def test_no_import_cycle(self):
        graph = import_graph()
        found = [c for c in cycles(graph) if c not in KNOWN_CYCLES]
        self.assertEqual([], found, 'Import cycles: %s' % '; '.join(
            path_in(graph, c) for c in found))
