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
"""The privsep context and its filter agree; the daemon's own checks.

The real daemon, started as root and called from another uid, is in
tests/functional/test_privilege.py.
"""

import configparser
import json
import os
import re

import fixtures
from oslo_config import fixture as config_fixture
from oslotest import base

from nova_acc import exception
from nova_acc.compute import ledger
from nova_acc.compute import privsep
from nova_acc.compute import release
from os_acc import exception as acc_exc
from tests.unit.os_acc import fake_sysfs

MANAGED = '0000:81:00.0'
UNMANAGED = '0000:81:00.1'
FPGA_SPEC = {'vendor_id': '1172', 'product_id': '5050',
             'resource_class': 'FPGA'}

# The repository's root is four levels up (tests/unit/nova_acc/compute).
FILTERS = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..',
                       'etc', 'nova', 'rootwrap.d', 'nova-acc.filters')


class PrivsepTest(base.BaseTestCase):

    def test_context_is_importable_by_its_pypath(self):
        module, _, name = privsep.sys_admin_pctxt.pypath.rpartition('.')
        self.assertEqual(privsep.__name__, module)
        self.assertIs(privsep.sys_admin_pctxt, getattr(privsep, name))

    def test_rootwrap_filter_starts_this_context(self):
        parser = configparser.ConfigParser()
        parser.optionxform = str
        self.assertEqual([FILTERS], parser.read(FILTERS))
        args = [a.strip() for a in
                parser['Filters']['privsep-rootwrap-nova_acc'].split(',')]
        context = args[args.index('--privsep_context') + 1]
        self.assertEqual(privsep.sys_admin_pctxt.pypath, context)
        self.assertEqual(['RegExpFilter', 'privsep-helper', 'root'], args[:3])
        self.assertTrue(re.fullmatch(args[args.index('--config-file') + 1],
                                     '/etc/nova/nova.conf'))


class DaemonChecksTest(base.BaseTestCase):
    """What the daemon runs, in this process: its checks do not depend on
    the privilege, only on its own configuration."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatchObject(
            privsep.sys_admin_pctxt, 'client_mode', False))
        self.conf = self.useFixture(config_fixture.Config(privsep.CONF))
        self.root = self.useFixture(fixtures.TempDir()).path
        self.sysfs = fake_sysfs.FakeSysfs(self.root)
        self.sysfs.add_device(MANAGED, vendor='0x1172', device='0x5050',
                              reset=True)
        self.sysfs.add_device(UNMANAGED, reset=True)
        self.conf.config(sysfs_root=self.root,
                         device_spec=[json.dumps(FPGA_SPEC)],
                         group='nova_acc')

    def resets(self, root, address):
        with open(os.path.join(fake_sysfs.FakeSysfs(root).device_dir(
                address), 'reset')) as f:
            return f.read().count('1')

    def test_resets_a_managed_device_of_its_own_sysfs_root(self):
        self.assertTrue(privsep.reset_device(MANAGED))
        self.assertEqual(1, self.resets(self.root, MANAGED))

    def test_refuses_a_device_device_spec_does_not_select(self):
        exc = self.assertRaises(acc_exc.DeviceNotManaged,
                                privsep.reset_device, UNMANAGED)
        self.assertIn(UNMANAGED, str(exc))
        self.assertEqual(0, self.resets(self.root, UNMANAGED))
        # Through the release: the device becomes dirty, with the reason.
        done, why = release.reset(ledger.DeviceRecord(address=UNMANAGED),
                                  '/ignored', privsep.reset_for_release)
        self.assertFalse(done)
        self.assertIn('not selected by a whole-device device_spec', why)

    def test_caller_cannot_choose_the_sysfs_root(self):
        # The caller's tree: the device's reset is a link to a file of
        # root's. Neither the entrypoint nor the release's resetter lets it
        # in.
        theirs = self.useFixture(fixtures.TempDir()).path
        their_sysfs = fake_sysfs.FakeSysfs(theirs)
        their_sysfs.add_device(MANAGED, vendor='0x1172', device='0x5050')
        canary = os.path.join(self.useFixture(fixtures.TempDir()).path,
                              'shadow')
        with open(canary, 'w') as f:
            f.write('root:secret')
        os.symlink(canary, os.path.join(their_sysfs.device_dir(MANAGED),
                                        'reset'))
        self.assertRaises(TypeError, privsep.reset_device, MANAGED, theirs)
        self.assertTrue(privsep.reset_for_release(MANAGED, theirs))
        self.assertEqual(1, self.resets(self.root, MANAGED))
        with open(canary) as f:
            self.assertEqual('root:secret', f.read())

    def test_only_the_address_crosses_over(self):
        for bad in ('../../../etc/shadow', '0000:81:00.0/../../x', None, 42,
                    ['0000:81:00.0'], {'address': MANAGED}):
            with self.subTest(address=bad):
                self.assertRaises(acc_exc.InvalidDeviceAddress,
                                  privsep.reset_device, bad)
        self.assertEqual(0, self.resets(self.root, MANAGED))

    def test_bad_device_spec_line_is_named(self):
        self.conf.config(device_spec=['{"vendor_id": '], group='nova_acc')
        exc = self.assertRaises(exception.InvalidDeviceSpecConfig,
                                privsep.reset_device, MANAGED)
        self.assertIn('{"vendor_id": ', str(exc))
        self.assertEqual(0, self.resets(self.root, MANAGED))
