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
"""libvirt node-device XML -> os_acc.Device, without libvirt or Nova."""

import ast
import os
import subprocess
import sys

import fixtures
from oslotest import base

import os_acc
from os_acc import exception
from os_acc.internal import nodedev

# Shapes as libvirt 9/10 prints them for an SR-IOV PF, one of its VFs and
# an mdev-capable GPU (trimmed to the elements os_acc reads).
PF_XML = """<device><name>pci_0000_3b_00_0</name>
<driver><name>ice</name></driver>
<capability type='pci'><class>0x020000</class>
<domain>0</domain><bus>59</bus><slot>0</slot><function>0</function>
<product id='0x1592'>E810-C</product><vendor id='0x8086'>Intel</vendor>
<capability type='virt_functions' maxCount='128'>
<address domain='0x0000' bus='0x3b' slot='0x01' function='0x0'/>
<address domain='0x0000' bus='0x3b' slot='0x01' function='0x1'/>
</capability>
<iommuGroup number='27'><address domain='0x0000' bus='0x3b' slot='0x00'
 function='0x0'/></iommuGroup><numa node='1'/></capability></device>"""

VF_XML = """<device><name>pci_0000_3b_01_1</name>
<driver><name>vfio-pci</name></driver>
<capability type='pci'><domain>0</domain><bus>59</bus><slot>1</slot>
<function>1</function>
<product id='0x1889'>VF</product><vendor id='0x8086'>Intel</vendor>
<capability type='phys_function'>
<address domain='0x0000' bus='0x3b' slot='0x00' function='0x0'/>
</capability><numa node='-1'/></capability></device>"""

GPU_XML = """<device><name>pci_0000_af_00_0</name>
<capability type='pci'><domain>0</domain><bus>175</bus><slot>0</slot>
<function>0</function><product id='0x1EB8'>T4</product>
<vendor id='0x10DE'>NVIDIA</vendor>
<capability type='mdev_types'>
<type id='nvidia-222'><name>GRID T4-1B</name><deviceAPI>vfio-pci</deviceAPI>
<availableInstances>16</availableInstances></type>
<type id='nvidia-223'><availableInstances>8</availableInstances></type>
</capability></capability></device>"""

NET_XML = ("<device><name>net_eth0</name><capability type='net'/>"
           "</device>")


def pci_xml(address='<domain>0</domain><bus>59</bus><slot>2</slot>'
                    '<function>0</function>',
            ids="<product id='0x1017'/><vendor id='0x15b3'/>", extra=''):
    return ("<device><name>pci_x</name><capability type='pci'>%s%s%s"
            "</capability></device>" % (address, ids, extra))


class NodeDeviceXMLTest(base.BaseTestCase):

    def test_pf(self):
        dev = os_acc.device_from_nodedev_xml(PF_XML)
        self.assertEqual('0000:3b:00.0', dev.address)
        self.assertEqual(('8086', '1592'), (dev.vendor_id, dev.product_id))
        self.assertEqual('020000', dev.class_code)
        self.assertEqual('ice', dev.driver)
        self.assertEqual(1, dev.numa_node)
        self.assertEqual(27, dev.iommu_group)
        self.assertEqual((128, 2), (dev.sriov_totalvfs, dev.sriov_numvfs))
        self.assertIsNone(dev.physfn)
        self.assertTrue(dev.is_pf)
        # Tags are select_devices' business.
        self.assertIsNone(dev.resource_class)
        self.assertEqual(set(), dev.traits)

    def test_vf(self):
        dev = os_acc.device_from_nodedev_xml(VF_XML)
        self.assertEqual('0000:3b:01.1', dev.address)
        self.assertEqual('0000:3b:00.0', dev.physfn)
        self.assertIsNone(dev.numa_node)
        self.assertIsNone(dev.class_code)
        self.assertTrue(dev.is_vf)

    def test_mdev_types(self):
        dev = os_acc.device_from_nodedev_xml(GPU_XML)
        self.assertEqual({'nvidia-222': 16, 'nvidia-223': 8}, dev.mdev_types)
        self.assertEqual('0000:af:00.0', dev.address)
        # IDs are lowercase, as sysfs gives them.
        self.assertEqual(('10de', '1eb8'), (dev.vendor_id, dev.product_id))
        self.assertIsNone(dev.driver)

    def test_not_pci(self):
        self.assertIsNone(os_acc.device_from_nodedev_xml(NET_XML))

    def test_minimal(self):
        self.assertEqual(
            os_acc.Device(address='0000:3b:02.0', vendor_id='15b3',
                          product_id='1017'),
            os_acc.device_from_nodedev_xml(pci_xml()))

    def test_invalid(self):
        cases = [
            ('<device><capability', 'Unparsable'),
            ('', 'Unparsable'),
            (pci_xml(address=''), '<domain>'),
            (pci_xml(address='<domain>0</domain><bus>59</bus><slot>x'
                             '</slot><function>0</function>'), "'x'"),
            # slot 32 does not exist.
            (pci_xml(address='<domain>0</domain><bus>59</bus><slot>32'
                             '</slot><function>0</function>'), 'slot'),
            (pci_xml(address='<domain>0</domain><bus>-1</bus><slot>0'
                             '</slot><function>0</function>'), "'-1'"),
            (pci_xml(ids="<vendor id='0x15b3'/>"), '<product'),
            (pci_xml(ids="<product id='0x1017'/><vendor/>"), '<vendor'),
            (pci_xml(ids="<product id='0x1017'/><vendor id='15b3'/>"),
             "'15b3'"),
            (pci_xml(ids="<product id='0x10170'/><vendor id='0x15b3'/>"),
             "'0x10170'"),
        ]
        for xml, needle in cases:
            with self.subTest(xml=xml):
                exc = self.assertRaises(exception.InvalidNodeDevice,
                                        os_acc.device_from_nodedev_xml, xml)
                self.assertIsInstance(exc, ValueError)
                self.assertIn(needle, str(exc))

    def test_odd_optional_values_are_left_out(self):
        dev = os_acc.device_from_nodedev_xml(pci_xml(extra=(
            "<class>network</class><numa node='many'/>"
            "<iommuGroup number='-2'/>"
            "<capability type='phys_function'>"
            "<address domain='0x0000' bus='0x3b' slot='0x20' "
            "function='0x0'/></capability>"
            "<capability type='virt_functions' maxCount='lots'>"
            "<address domain='0x0000' bus='0x3b' slot='0x01' "
            "function='0x0'/></capability>"
            "<capability type='mdev_types'>"
            "<type id='good'><availableInstances>2</availableInstances></type>"
            "<type id='unknown'/>"
            "<type id='bad'><availableInstances>-1</availableInstances>"
            "</type><type><availableInstances>3</availableInstances></type>"
            "</capability>")))
        self.assertEqual('0000:3b:02.0', dev.address)
        self.assertIsNone(dev.class_code)
        self.assertIsNone(dev.numa_node)
        self.assertIsNone(dev.iommu_group)
        self.assertIsNone(dev.physfn)
        # maxCount unreadable: the VFs libvirt lists are what is known.
        self.assertEqual((1, 1), (dev.sriov_totalvfs, dev.sriov_numvfs))
        self.assertEqual({'good': 2, 'unknown': 0, 'bad': 0},
                         dev.mdev_types)


class DiscoverFromNodedevsTest(base.BaseTestCase):

    XMLS = [GPU_XML, NET_XML, VF_XML, PF_XML]

    def test_selects_and_tags(self):
        found = os_acc.discover_from_nodedevs(self.XMLS, [
            {'physfn': '0000:3b:00.0', 'resource_class': 'CUSTOM_NIC_VF',
             'traits': ['CUSTOM_FAST']},
            {'vendor_id': '10de'},
        ])
        self.assertEqual(['0000:3b:01.1', '0000:af:00.0'],
                         [d.address for d in found])
        vf, gpu = found
        self.assertEqual(('CUSTOM_NIC_VF', {'CUSTOM_FAST'}),
                         (vf.resource_class, vf.traits))
        self.assertEqual('CUSTOM_PCI_10DE_1EB8', gpu.resource_class)

    def test_same_devices_as_select_devices(self):
        specs = [{'address': '*'}]
        parsed = [os_acc.device_from_nodedev_xml(x) for x in self.XMLS]
        self.assertEqual(
            os_acc.select_devices([d for d in parsed if d], specs),
            os_acc.discover_from_nodedevs(self.XMLS, specs))

    def test_unusable_node_device_is_skipped(self):
        with self.assertLogs('os_acc.internal.nodedev', 'WARNING') as logs:
            found = os_acc.discover_from_nodedevs(
                ['<device', pci_xml(ids=''), PF_XML], [{'address': '*'}])
        self.assertEqual(['0000:3b:00.0'], [d.address for d in found])
        self.assertEqual(2, len(logs.records))
        self.assertIn('Unparsable', logs.output[0])

    def test_no_specs_reads_nothing(self):
        def xmls():
            raise AssertionError('listed node devices without specs')
            yield  # pragma: no cover
        self.assertEqual([], os_acc.discover_from_nodedevs(xmls(), []))

    def test_bad_spec_before_reading(self):
        def xmls():
            raise AssertionError('listed node devices with a bad spec')
            yield  # pragma: no cover
        exc = self.assertRaises(
            exception.InvalidDeviceSpec, os_acc.discover_from_nodedevs,
            xmls(), [{'vendor': '10de'}])
        self.assertIn("'vendor'", str(exc))


class DiscoveryCacheTest(base.BaseTestCase):
    """Discovery works each node device out once, and still sees changes.

    A host lists the same node devices on every resource update; what a
    device's XML and the specs select is kept (``nodedev._selected``),
    keyed by both, so a device that appears, vanishes or changes is seen
    at once, and the cache stays bounded.
    """

    SPECS = [{'address': '*'}]

    def setUp(self):
        super().setUp()
        # Each test starts from an empty cache (and leaves one behind).
        self.addCleanup(self.clear_cache)
        self.clear_cache()
        self.parsed = []
        real = nodedev.device_from_nodedev_xml

        def counting(xml):
            self.parsed.append(xml)
            return real(xml)

        self.useFixture(fixtures.MonkeyPatch(
            'os_acc.internal.nodedev.device_from_nodedev_xml', counting))

    @staticmethod
    def clear_cache():
        for name in ('_selected', '_last_listings'):
            cached = getattr(nodedev, name, None)
            if cached is not None:
                cached.cache_clear()

    def discover(self, xmls, specs=None):
        return [(d.address, d.resource_class, d.numa_node) for d in
                os_acc.discover_from_nodedevs(xmls, specs or self.SPECS)]

    def test_the_same_devices_are_parsed_once(self):
        first = self.discover([GPU_XML, PF_XML])
        self.assertEqual(first, self.discover([GPU_XML, PF_XML]))
        self.assertEqual([GPU_XML, PF_XML], self.parsed)

    def test_a_device_that_appears_or_vanishes_is_seen(self):
        self.discover([GPU_XML])
        self.assertEqual(['0000:3b:00.0', '0000:af:00.0'],
                         [a for a, *_ in self.discover([GPU_XML, PF_XML])])
        self.assertEqual(['0000:3b:00.0'],
                         [a for a, *_ in self.discover([PF_XML])])

    def test_a_changed_device_is_parsed_again(self):
        moved = PF_XML.replace("<numa node='1'/>", "<numa node='0'/>")
        self.assertNotEqual(moved, PF_XML)
        self.assertEqual([1], [n for *_, n in self.discover([PF_XML])])
        self.assertEqual([0], [n for *_, n in self.discover([moved])])

    def test_other_specs_select_again(self):
        self.discover([GPU_XML])
        found = self.discover([GPU_XML], [{'vendor_id': '10de',
                                           'resource_class': 'CUSTOM_GPU'}])
        self.assertEqual([('0000:af:00.0', 'CUSTOM_GPU', None)], found)

    def test_an_unusable_device_is_logged_every_time(self):
        for _ in range(2):
            with self.assertLogs('os_acc.internal.nodedev', 'WARNING'):
                self.assertEqual([], self.discover(['<device']))

    def test_devices_are_not_shared_with_other_callers(self):
        # Only discovery reads the cached devices; device_from_nodedev_xml
        # gives every caller a device of its own.
        self.discover([GPU_XML])
        self.assertIsNot(os_acc.device_from_nodedev_xml(GPU_XML),
                         os_acc.device_from_nodedev_xml(GPU_XML))

    def test_a_listing_seen_again_is_not_looked_up_device_by_device(self):
        self.discover([GPU_XML, PF_XML])
        looked_up = nodedev._selected.cache_info()
        self.assertEqual(['0000:3b:00.0', '0000:af:00.0'],
                         [a for a, *_ in self.discover([GPU_XML, PF_XML])])
        self.assertEqual(looked_up, nodedev._selected.cache_info())

    def test_listings_of_two_hosts_in_turn_are_each_their_own(self):
        moved = PF_XML.replace("<numa node='1'/>", "<numa node='0'/>")
        for _ in range(2):
            self.assertEqual([1], [n for *_, n in self.discover([PF_XML])])
            self.assertEqual([0], [n for *_, n in self.discover([moved])])
            self.assertEqual(['0000:3b:00.0', '0000:af:00.0'],
                             [a for a, *_ in self.discover([PF_XML,
                                                            GPU_XML])])

    def test_the_callers_list_is_its_own(self):
        self.discover([GPU_XML]).clear()
        found = os_acc.discover_from_nodedevs([GPU_XML], self.SPECS)
        found.clear()
        self.assertEqual(1, len(os_acc.discover_from_nodedevs(
            [GPU_XML], self.SPECS)))

    def test_bounded(self):
        self.assertEqual(nodedev.SELECTED_CACHE_SIZE,
                         nodedev._selected.cache_info().maxsize)


class ImportTest(base.BaseTestCase):

    def test_no_nova_nor_libvirt_on_import(self):
        # os_acc is usable (and its discovery testable) without Nova: only
        # the plugins, loaded by initialize(), import it.
        code = ('import sys, os_acc; '
                'print(sorted(m for m in sys.modules '
                'if m.split(".")[0] in ("nova", "libvirt", "nova_acc"))); '
                'os_acc.discover_from_nodedevs([], [{"address": "*"}])')
        result = subprocess.run([sys.executable, '-c', code],
                                capture_output=True, text=True, check=True)
        self.assertEqual('[]', result.stdout.strip(), result.stderr)

    def test_no_import_cycle(self):
        # Every import between os_acc's modules, at module level or in a
        # function (a lazy import is still a cycle), type-checking ones
        # included, must go one way.
        graph = _os_acc_imports()
        self.assertIn('os_acc.internal.grammar', graph['os_acc.objects'])
        self.assertIn('os_acc.objects', graph['os_acc.internal.spec'])

        def visit(module, path):
            if module in path:
                self.fail('Import cycle: %s' % ' -> '.join(
                    path[path.index(module):] + [module]))
            for imported in sorted(graph.get(module, ())):
                visit(imported, path + [module])

        for module in sorted(graph):
            visit(module, [])


def _os_acc_imports():
    """{module: os_acc modules it imports}, read from the source."""
    root = os.path.dirname(os_acc.__file__)
    modules = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, os.path.dirname(root))[:-3]
                module = rel.replace(os.sep, '.')
                modules[module.removesuffix('.__init__')] = path
    graph = {}
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.update('%s.%s' % (node.module, a.name)
                                for a in node.names)
                imported.add(node.module)
        # A package's own __init__ is not part of a cycle: importing
        # os_acc.x runs os_acc/__init__.py first whatever x imports.
        graph[module] = {m for m in imported
                         if m in modules and m != 'os_acc' and m != module}
    return graph
