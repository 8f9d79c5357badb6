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
"""Nova's own libvirt functional tests, run with nova-acc's services.

Operators replace nova-scheduler, nova-conductor and the compute driver
with nova-acc's. Servers without device contexts must behave exactly as
with a stock Nova - PCI passthrough and SR-IOV, NUMA, vGPU, reshapes,
machine types, firmware, live migration - and Nova's tests of those, which
wrap and patch the libvirt driver's private methods the way operators' and
vendors' patches do, must keep passing with nova-acc's driver underneath.

Every concrete test class of ``nova.tests.functional.libvirt`` is
subclassed here with ``NovaAccLibvirtMixin`` (the subclasses are made by a
loop, so a test class Nova adds is run too). Nothing of Nova is patched at
import time: the mixin only changes which managers and which compute driver
Nova's own harness starts.
"""

import importlib
import pkgutil
import threading
import unittest
from xml.etree import ElementTree

import fixtures
from nova import conf as nova_conf
from nova import monkey_patch
from nova.tests.functional.api import client
from nova.tests.functional import libvirt as nova_libvirt_tests
from oslo_db.sqlalchemy import enginefacade
from oslo_utils import importutils

from nova_acc.cmd import _service
from nova_acc.compute import ledger
from nova_acc.compute import privsep
from nova_acc.tests.fixtures import cloud

CONF = nova_conf.CONF

STOCK_DRIVER = 'libvirt.LibvirtDriver'
NOVA_ACC_DRIVER = 'nova_acc.LibvirtAccDriver'
# The class that name loads (Nova prefixes it with nova.virt.).
LibvirtAccDriver = importutils.import_class('nova.virt.' + NOVA_ACC_DRIVER)

# Nova tests that fail with a stock Nova too, in this environment: skipped
# here so that a failure of this module always means nova-acc broke
# something. '<class>.<test>' -> the stock failure. None today: all 463
# tests of Nova 34.0 pass stock (one skips itself, three are expected
# failures, the same here).
STOCK_FAILURES = {
}


def _patched_after_oslo_db():
    """Whether oslo.db's thread-locals predate the monkey patching.

    Then oslo.db's transaction context is one real thread-local shared by
    the greenthreads of all in-process services, and 24 of these tests fail
    with a stock Nova too (servers lose their network info cache and port
    bindings). tests/__init__.py patches first, as Nova's test packages do.
    """
    tlocal = getattr(enginefacade, '_TransactionContextTLocal', None)
    return (not monkey_patch.is_patched() or tlocal is None or
            not issubclass(tlocal, threading.local))


def _managers():
    """binary -> the manager class nova-acc's service of it runs."""
    return {binary: importutils.import_class(path)
            for binary, path in _service.MANAGERS.items()}


class NovaAccLibvirtMixin(cloud.NovaAccServicesMixin):
    """Nova's libvirt harness with nova-acc's managers and compute driver.

    Nova's libvirt test bases select ``libvirt.LibvirtDriver`` in different
    places (``ServersTestBase._setup_compute_service``, the class attribute
    of ``LibvirtProviderUsageBaseTestCase``, the evacuate tests' ``setUp``),
    but all start nova-compute through ``start_service``: the driver is
    swapped for nova-acc's there, as an operator does in nova.conf.
    """

    def setUp(self):
        # No [nova_acc] device_spec: no server here has device contexts,
        # and the driver must then behave as stock. Its ledger and resets
        # still stay inside the test.
        self.flags(ledger_dir=self.useFixture(fixtures.TempDir()).path,
                   sysfs_root=self.useFixture(fixtures.TempDir()).path,
                   group='nova_acc')
        self.useFixture(fixtures.MockPatchObject(
            privsep.sys_admin_pctxt, 'client_mode', False))
        super().setUp()

    def start_service(self, name, host=None, cell_name=None, **kwargs):
        if name == 'compute' and CONF.compute_driver == STOCK_DRIVER:
            self.flags(compute_driver=NOVA_ACC_DRIVER)
        svc = super().start_service(name, host=host, cell_name=cell_name,
                                    **kwargs)
        # Each inherited test fails rather than pass on stock services.
        if name == 'compute':
            self.assertIsInstance(svc.manager.driver,
                                  LibvirtAccDriver)
        elif svc.binary in _service.MANAGERS:
            self.assertIsInstance(svc.manager, _managers()[svc.binary])
        # Underscored: Nova's TestCase deletes a test's other attributes
        # when it ends, and NovaAccServicesInUseTest reads this afterwards.
        self.__dict__.setdefault('_nova_acc_services', []).append(svc)
        return svc


def _stock_failure(reason):
    def test(self):
        self.skipTest('fails with a stock Nova as well: %s' % reason)
    return test


def _nova_test_classes():
    """(module name, class) of every Nova libvirt test class with tests."""
    loader = unittest.TestLoader()
    for info in pkgutil.iter_modules(nova_libvirt_tests.__path__):
        if not info.name.startswith('test_'):
            continue
        module = importlib.import_module(
            '%s.%s' % (nova_libvirt_tests.__name__, info.name))
        for name, obj in sorted(vars(module).items()):
            if (isinstance(obj, type) and
                    issubclass(obj, unittest.TestCase) and
                    obj.__module__ == module.__name__ and
                    loader.getTestCaseNames(obj)):
                yield info.name, obj


def _make_test_classes():
    skips = dict(STOCK_FAILURES)
    loader = unittest.TestLoader()
    classes = {}
    for module_name, nova_cls in _nova_test_classes():
        name = nova_cls.__name__
        if name in classes:
            raise AssertionError('two Nova libvirt test classes are named %s'
                                 % name)
        attrs = {'__module__': __name__,
                 '__doc__': 'nova.tests.functional.libvirt.%s.%s' % (
                     module_name, name)}
        for test in loader.getTestCaseNames(nova_cls):
            reason = skips.pop('%s.%s' % (name, test), None)
            if reason:
                attrs[test] = _stock_failure(reason)
        classes[name] = type(name, (NovaAccLibvirtMixin, nova_cls), attrs)
    # A skip of a test Nova renamed or removed would hide nothing.
    if skips:
        raise AssertionError('no such Nova libvirt tests: %s' % ', '.join(
            sorted(skips)))
    return classes


# Module-level classes, for stestr's discovery.
TEST_CLASSES = _make_test_classes()
globals().update(TEST_CLASSES)


class EventletPatchedFirstTest(unittest.TestCase):
    """Nova's harness runs its services as greenthreads of one process."""

    def test_oslo_db_context_is_greenthread_local(self):
        self.assertFalse(_patched_after_oslo_db(),
                         'eventlet monkey patching must come before oslo.db '
                         'is imported: see tests/__init__.py')


class NovaAccServicesInUseTest(unittest.TestCase):
    """The tests above prove nothing unless nova-acc's services run them."""

    # An inherited test of each kind of Nova libvirt test base: compute
    # started by the test (ServersTestBase), by the provider-usage base,
    # and by the evacuate tests' own helper.
    SAMPLES = [
        'LibvirtMachineTypeTest.test_machine_type_after_config_change',
        'LibvirtReportTraitsTests.test_report_cpu_traits',
        'LibvirtFlatEvacuateTest.test_evacuate_failure_nonshared_instancedir',
    ]

    def test_nova_acc_services_are_in_use(self):
        managers = _managers()
        for sample in self.SAMPLES:
            cls_name, test_name = sample.split('.')
            test = TEST_CLASSES[cls_name](test_name)
            result = unittest.TestResult()
            test.run(result)
            self.assertEqual(([], [], []), (result.errors, result.failures,
                                            result.skipped), sample)
            started = {}
            for svc in test.__dict__.get('_nova_acc_services', []):
                started.setdefault(svc.binary, []).append(svc)
            self.assertEqual(
                {'nova-compute', 'nova-conductor', 'nova-scheduler'},
                set(started), sample)
            for svc in started['nova-compute']:
                self.assertIsInstance(svc.manager.driver,
                                      LibvirtAccDriver, sample)
            for binary in ('nova-conductor', 'nova-scheduler'):
                for svc in started[binary]:
                    self.assertIsInstance(svc.manager, managers[binary],
                                          sample)


class GuestConfigWrappingTest(cloud.DeviceContextTestBase):
    """nova-acc's hostdevs compose with patches of _get_guest_config.

    The patch the way Nova's machine type, firmware and device bus tests
    make it (and operators' and vendors' patches may): the driver's bound
    method, wrapped and set on LibvirtDriver.
    """

    def setUp(self):
        super().setUp()
        self.fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        self.guest_configs = []
        orig_get_config = self.computes['compute1'].driver._get_guest_config

        def _get_guest_config(_self, *args, **kwargs):
            config = orig_get_config(*args, **kwargs)
            self.guest_configs.append((args[0].uuid, config))
            return config

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.LibvirtDriver._get_guest_config',
            _get_guest_config))

    def config_hostdevs(self, server):
        """Hostdev addresses of each guest config the wrapper saw."""
        result = []
        for uuid, config in self.guest_configs:
            if uuid != server['id']:
                continue
            xml = ElementTree.fromstring(config.to_xml())
            result.append(['%04x:%02x:%02x.%x' % tuple(
                int(a.get(k), 16) for k in
                ('domain', 'bus', 'slot', 'function'))
                for a in xml.findall(
                    "./devices/hostdev[@type='pci']/source/address")])
        return result

    def test_every_guest_definition_has_the_device(self):
        server = self.boot('resources:FPGA=1')
        self._reboot_server(server, hard=True)
        self._stop_server(server)
        self._start_server(server)
        self._rebuild_server(server, server['image']['id'])

        # Boot, hard reboot, power on, rebuild: each generated through the
        # wrapper, each with the device.
        self.assertEqual([[self.fpga]] * 4, self.config_hostdevs(server))
        self.assertEqual([self.fpga],
                         self.domain_hostdevs('compute1', server))
        self.assertEqual(('attached', server['id']),
                         self.ledger_state('compute1', self.fpga))

    def test_hard_reboot_without_the_device_fails(self):
        server = self.boot('resources:FPGA=1')
        # The ledger no longer gives the server its device (here: an
        # operator took it out of service).
        with ledger.DeviceLedger('compute1', self.ledger_dir).transaction(
                ) as records:
            records[self.fpga].dirty('taken out of service by the test')

        # Nova's harness makes RPC casts calls, so the compute's error
        # reaches the API too.
        self.assertRaises(client.OpenStackApiException, self._reboot_server,
                          server, hard=True, expected_state='ERROR')
        server = self._wait_for_state_change(server, 'ERROR')

        # Not started without the device it was built with, and the device
        # is in no guest.
        self.assertIn('is dirty', self.fault_message(server))
        self.assertEqual({}, self.domain_hostdevs('compute1'))
        self.assertEqual(('dirty', None),
                         self.ledger_state('compute1', self.fpga))
        self.assertEqual([[self.fpga]], self.config_hostdevs(server))
