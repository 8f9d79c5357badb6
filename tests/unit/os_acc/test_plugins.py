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

import importlib.metadata
import os
import shutil
import subprocess
from unittest import mock
import uuid

import fixtures
import libvirt
from lxml import etree
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import guest as libvirt_guest
from oslotest import base
from stevedore import extension

import os_acc
from os_acc import exception
from os_acc import plugin
from os_acc.plugins import mdev
from os_acc.plugins import pci

ADDRESS = '0000:3b:02.1'
MDEV_UUID = 'c2177883-f1bb-47f0-914d-32a22e3a8804'
SCHEMA = '/usr/share/libvirt/schemas/domain.rng'

PCI_XML = ('<hostdev mode="subsystem" type="pci" managed="yes">\n'
           '  <source>\n'
           '    <address domain="0x0000" bus="0x3b" slot="0x02" '
           'function="0x1"/>\n'
           '  </source>\n'
           '</hostdev>\n')
MDEV_XML = ('<hostdev mode="subsystem" type="mdev" managed="no" '
            'model="vfio-pci">\n'
            '  <source>\n'
            '    <address uuid="%s"/>\n'
            '  </source>\n'
            '</hostdev>\n' % MDEV_UUID)

PLUGINS = {'pci': pci.PciPlugin, 'mdev': mdev.MdevPlugin}


def make_manager(*names):
    return extension.ExtensionManager.make_test_instance(
        [extension.Extension(name, None, PLUGINS[name], PLUGINS[name]())
         for name in names],
        namespace=os_acc.PLUGIN_NAMESPACE)


def pci_acc(address=ADDRESS):
    return os_acc.Accelerator(interface_type='pci', address=address)


def mdev_acc(mdev_uuid=MDEV_UUID):
    return os_acc.Accelerator(interface_type='mdev', mdev_uuid=mdev_uuid)


def nova_pci_config(address):
    """The config Nova's own driver builds for a PCI device."""
    fake_driver = mock.Mock(spec=['_set_managed_mode'])
    fake_driver._set_managed_mode.side_effect = (
        lambda dev, managed: libvirt_driver.LibvirtDriver._set_managed_mode(
            fake_driver, dev, managed))
    pci_device = mock.Mock(address=address, extra_info={})
    return libvirt_driver.LibvirtDriver._get_guest_pci_device(
        fake_driver, pci_device)


def nova_mdev_config(mdev_uuid):
    """The config Nova's own driver builds for an mdev."""
    guest = vconfig.LibvirtConfigGuest()
    libvirt_driver.LibvirtDriver._guest_add_mdevs(None, guest, [mdev_uuid])
    return guest.devices[0]


def domain_xml(*devices):
    guest = vconfig.LibvirtConfigGuest()
    guest.virt_type = 'test'
    guest.name = 'os-acc-%s' % uuid.uuid4()
    guest.uuid = str(uuid.uuid4())
    guest.memory = 1024
    guest.vcpus = 1
    guest.os_type = 'hvm'
    for device in devices:
        guest.add_device(device)
    return guest.to_xml()


class PluginTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        # Every test starts with its own plugins and leaves os_acc as it was.
        self.useFixture(
            fixtures.MonkeyPatch('os_acc._EXT_MANAGER', None))
        os_acc.initialize(extension_manager=make_manager('pci', 'mdev'))


class TestInitialize(PluginTestCase):

    def test_loads_entry_points_once(self):
        manager = make_manager('pci', 'mdev')
        self.useFixture(fixtures.MonkeyPatch('os_acc._EXT_MANAGER', None))
        with mock.patch.object(extension, 'ExtensionManager',
                               return_value=manager) as cls:
            os_acc.initialize()
            os_acc.initialize()
            cls.assert_called_once_with(namespace='os_acc',
                                        invoke_on_load=True)
            os_acc.initialize(reset=True)
            self.assertEqual(2, cls.call_count)
        self.assertIsInstance(os_acc.get_config(pci_acc()),
                              vconfig.LibvirtConfigGuestHostdevPCI)

    def test_missing_builtin_plugin(self):
        exc = self.assertRaises(exception.PluginNotFound, os_acc.initialize,
                                extension_manager=make_manager('pci'))
        self.assertIn("'mdev'", str(exc))

    def test_plugin_not_loaded(self):
        manager = extension.ExtensionManager.make_test_instance(
            [extension.Extension(name, None, PLUGINS[name], PLUGINS[name]())
             for name in PLUGINS] +
            [extension.Extension('vdpa', None, object, None)],
            namespace=os_acc.PLUGIN_NAMESPACE)
        exc = self.assertRaises(exception.PluginNotFound, os_acc.initialize,
                                extension_manager=manager)
        self.assertIn("'vdpa'", str(exc))

    def test_not_initialized(self):
        self.useFixture(fixtures.MonkeyPatch('os_acc._EXT_MANAGER', None))
        self.assertRaises(exception.LibraryNotInitialized,
                          os_acc.get_config, pci_acc())

    def test_installed_entry_points(self):
        names = {ep.name for ep in importlib.metadata.entry_points(
            group=os_acc.PLUGIN_NAMESPACE)}
        if not set(os_acc.BUILTIN_PLUGINS) <= names:
            self.skipTest('os_acc entry points are not installed; run '
                          '"pip install -e ." to test them')
        os_acc.initialize(reset=True)
        self.assertIsInstance(os_acc._EXT_MANAGER['pci'].obj, pci.PciPlugin)
        self.assertIsInstance(os_acc._EXT_MANAGER['mdev'].obj,
                              mdev.MdevPlugin)

    def test_plugins(self):
        for name, cls in PLUGINS.items():
            obj = cls()
            self.assertIsInstance(obj, plugin.PluginBase)
            self.assertEqual(name, obj.describe().plugin_name)


class TestGetConfig(PluginTestCase):

    def test_pci_is_what_nova_writes(self):
        cfg = os_acc.get_config(pci_acc())
        self.assertIsInstance(cfg, vconfig.LibvirtConfigGuestHostdevPCI)
        self.assertEqual(PCI_XML, cfg.to_xml())
        self.assertEqual(nova_pci_config(ADDRESS).to_xml(), cfg.to_xml())

    def test_mdev_is_what_nova_writes(self):
        cfg = os_acc.get_config(mdev_acc())
        self.assertIsInstance(cfg, vconfig.LibvirtConfigGuestHostdevMDEV)
        self.assertEqual(MDEV_XML, cfg.to_xml())
        self.assertEqual(nova_mdev_config(MDEV_UUID).to_xml(), cfg.to_xml())

    def test_dict_and_case(self):
        self.assertEqual(PCI_XML, os_acc.get_config(
            {'interface_type': 'pci', 'address': '0000:3B:02.1'}).to_xml())
        self.assertEqual(MDEV_XML, os_acc.get_config(
            {'interface_type': 'mdev',
             'mdev_uuid': MDEV_UUID.upper()}).to_xml())

    def test_invalid(self):
        cases = [
            (pci_acc('0000:3b:20.0'), "'0000:3b:20.0'"),   # slot > 0x1f
            (pci_acc('0000:3b:00.8'), "'0000:3b:00.8'"),
            (pci_acc('3b:00.1'), "'3b:00.1'"),
            (pci_acc('0000:3b:00'), "'0000:3b:00'"),
            (pci_acc('00000:3b:00.0'), "'00000:3b:00.0'"),
            (pci_acc('0000:3b:00.0\n'), "'0000:3b:00.0\\n'"),
            (pci_acc('0000:3b:00.0"/><evil/>'), 'evil'),
            (pci_acc('zzzz:3b:00.0'), "'zzzz:3b:00.0'"),
            (pci_acc(None), 'None'),
            (mdev_acc('c2177883f1bb47f0914d32a22e3a8804'),
             "'c2177883f1bb47f0914d32a22e3a8804'"),
            (mdev_acc('{%s}' % MDEV_UUID), MDEV_UUID),
            (mdev_acc('urn:uuid:' + MDEV_UUID), MDEV_UUID),
            (mdev_acc(MDEV_UUID + '\n'), MDEV_UUID),
            (mdev_acc(MDEV_UUID.replace('c', 'g')), 'g'),
            (mdev_acc(None), 'None'),
            (os_acc.Accelerator('vdpa', address=ADDRESS), "'vdpa'"),
            (os_acc.Accelerator('PCI', address=ADDRESS), "'PCI'"),
            (os_acc.Accelerator(None, address=ADDRESS), 'None'),
            ({'interface_type': 'pci', 'adress': ADDRESS}, "'adress'"),
            ({'address': ADDRESS}, 'interface_type'),
            ('pci:' + ADDRESS, 'str'),
        ]
        for acc, needle in cases:
            with self.subTest(acc=acc):
                exc = self.assertRaises(exception.InvalidAccelerator,
                                        os_acc.get_config, acc)
                self.assertIn(needle, str(exc))

    def test_plugin_refuses_other_interface_type(self):
        self.assertRaises(exception.InvalidAccelerator,
                          pci.PciPlugin().get_config, mdev_acc())


class TestLibvirtAcceptsConfig(PluginTestCase):
    """The XML is checked by libvirt itself, not by string comparison."""

    def configs(self):
        return [os_acc.get_config(pci_acc()), os_acc.get_config(mdev_acc())]

    def test_virt_xml_validate(self):
        validator = shutil.which('virt-xml-validate')
        if validator is None:
            self.skipTest('virt-xml-validate not found (Debian package '
                          'libvirt-clients)')
        # virt-xml-validate is a shell script around xmllint.
        if shutil.which('xmllint') is None:
            self.skipTest('xmllint not found (Debian package '
                          'libxml2-utils), virt-xml-validate needs it')
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'domain.xml')
        with open(path, 'w') as f:
            f.write(domain_xml(*self.configs()))
        result = subprocess.run([validator, path, 'domain'],
                                capture_output=True, text=True)
        self.assertEqual(0, result.returncode,
                         result.stdout + result.stderr)

    def test_domain_schema(self):
        # The schema virt-xml-validate uses, applied with lxml: this runs
        # where xmllint is missing.
        if not os.path.exists(SCHEMA):
            self.skipTest('%s not found (Debian package libvirt-clients)' %
                          SCHEMA)
        schema = etree.RelaxNG(etree.parse(SCHEMA))
        doc = etree.fromstring(domain_xml(*self.configs()))
        self.assertTrue(schema.validate(doc), str(schema.error_log))
        # ... and it does reject a bad hostdev: slot 0x20 does not exist.
        bad = nova_pci_config(ADDRESS)
        bad.slot = '20'
        self.assertFalse(
            schema.validate(etree.fromstring(domain_xml(bad))))

    def test_test_driver_keeps_hostdevs(self):
        conn = libvirt.open('test:///default')
        self.addCleanup(conn.close)
        dom = conn.defineXML(domain_xml(*self.configs()))
        self.addCleanup(dom.undefine)
        dom.create()
        self.addCleanup(dom.destroy)
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
            with self.subTest(flags=flags):
                parsed = vconfig.LibvirtConfigGuest()
                parsed.parse_str(dom.XMLDesc(flags))
                hostdevs = [
                    d for d in parsed.devices
                    if isinstance(d, vconfig.LibvirtConfigGuestHostdev)]
                self.assertEqual(2, len(hostdevs))
                pci_dev, mdev_dev = hostdevs
                # PCI __eq__ compares the address numerically: libvirt
                # hands it back with 0x prefixes.
                self.assertEqual(nova_pci_config(ADDRESS), pci_dev)
                self.assertEqual('yes', pci_dev.managed)
                self.assertEqual(MDEV_UUID, mdev_dev.uuid)
                self.assertEqual('vfio-pci', mdev_dev.model)


class TestAttachDetach(PluginTestCase):

    STATES = [
        (libvirt.VIR_DOMAIN_RUNNING, True),
        (libvirt.VIR_DOMAIN_PAUSED, True),
        (libvirt.VIR_DOMAIN_SHUTOFF, False),
        (libvirt.VIR_DOMAIN_SHUTDOWN, False),
        (libvirt.VIR_DOMAIN_CRASHED, False),
        (libvirt.VIR_DOMAIN_PMSUSPENDED, False),
    ]

    def test_flags_through_nova_guest(self):
        host = mock.sentinel.host
        instance = mock.Mock(uuid=str(uuid.uuid4()))
        for acc, xml in ((pci_acc(), PCI_XML), (mdev_acc(), MDEV_XML)):
            for state, live in self.STATES:
                with self.subTest(acc=acc, state=state):
                    dom = mock.Mock(spec=libvirt.virDomain)
                    dom.info.return_value = [state, 1024, 1024, 1, 0]
                    guest = libvirt_guest.Guest(dom)
                    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
                    if live:
                        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE

                    os_acc.attach(acc, guest, host, instance)
                    dom.attachDeviceFlags.assert_called_once_with(
                        xml, flags=flags)

                    os_acc.detach(acc, guest, host, instance)
                    dom.detachDeviceFlags.assert_called_once_with(
                        xml, flags=flags)

    def test_guest_calls(self):
        guest = mock.create_autospec(libvirt_guest.Guest, instance=True)
        guest.get_power_state.return_value = 1  # power_state.RUNNING
        host = mock.sentinel.host
        os_acc.attach(pci_acc(), guest, host, None)
        guest.get_power_state.assert_called_once_with(host)
        guest.attach_device.assert_called_once_with(
            mock.ANY, persistent=True, live=True)
        self.assertEqual(PCI_XML,
                         guest.attach_device.call_args.args[0].to_xml())
        os_acc.detach({'interface_type': 'mdev', 'mdev_uuid': MDEV_UUID},
                      guest, host, None)
        guest.detach_device.assert_called_once_with(
            mock.ANY, persistent=True, live=True)
        self.assertEqual(MDEV_XML,
                         guest.detach_device.call_args.args[0].to_xml())

    def test_invalid_accelerator_touches_nothing(self):
        guest = mock.create_autospec(libvirt_guest.Guest, instance=True)
        for call in (os_acc.attach, os_acc.detach):
            self.assertRaises(exception.InvalidAccelerator, call,
                              pci_acc('0000:3b:00.9'), guest, None, None)
        self.assertEqual([], guest.mock_calls)

    def test_libvirt_error_propagates(self):
        guest = mock.create_autospec(libvirt_guest.Guest, instance=True)
        guest.get_power_state.return_value = 4  # power_state.SHUTDOWN
        guest.attach_device.side_effect = libvirt.libvirtError('boom')
        self.assertRaises(libvirt.libvirtError, os_acc.attach, pci_acc(),
                          guest, None, None)
        guest.attach_device.assert_called_once_with(
            mock.ANY, persistent=True, live=False)
