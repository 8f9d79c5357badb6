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
"""The privsep context and the rootwrap filter that starts it agree."""

import configparser
import os
import re

import fixtures
from oslotest import base

from nova_acc import privsep

FILTERS = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'etc',
                       'nova', 'rootwrap.d', 'nova-acc.filters')


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

    def test_entrypoint_resets_through_os_acc(self):
        self.useFixture(fixtures.MockPatchObject(
            privsep.sys_admin_pctxt, 'client_mode', False))
        root = self.useFixture(fixtures.TempDir()).path
        dev = os.path.join(root, 'bus', 'pci', 'devices', '0000:81:00.0')
        os.makedirs(dev)
        open(os.path.join(dev, 'reset'), 'w').close()
        self.assertTrue(privsep.reset_device('0000:81:00.0', root))
        with open(os.path.join(dev, 'reset')) as f:
            self.assertEqual('1', f.read())
