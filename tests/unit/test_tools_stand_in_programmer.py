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
"""tools/lib/stand_in_programmer.py, run as the fpga_bitstream configurator
runs a programming tool: its own process, the image as /dev/fd/N of a file
nobody else can open (nova_acc.compute.fpga._run), a fake sysfs.

``ConfiguratorRunsItTest`` runs it as the VFIO host VM's nova.conf names it
(tools/run-vfio-host.sh), from the configurator's own checks
(``fpga.program_verified``, ``fpga.erase_verified``).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

from oslo_config import fixture as config_fixture
from oslotest import base

from nova_acc.compute import fpga
from tests.unit.os_acc import fake_sysfs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, 'tools', 'lib', 'stand_in_programmer.py')
ADDRESS = '0000:01:00.0'


class StandInProgrammerTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='nova-acc-stand-in-')
        self.addCleanup(shutil.rmtree, self.dir)
        self.sysfs = os.path.join(self.dir, 'sys')
        os.makedirs(os.path.join(self.sysfs, 'bus', 'pci', 'devices',
                                 ADDRESS))
        self.log = os.path.join(self.dir, 'log', 'programmer.log')

    def run_tool(self, *args, pass_fds=()):
        return subprocess.run(
            [sys.executable, TOOL, '--log', self.log,
             '--sysfs-root', self.sysfs] + list(args),
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            pass_fds=pass_fds, timeout=60)

    def logged(self):
        try:
            with open(self.log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def program(self, data, address=ADDRESS):
        """As fpga.program_verified: an unlinked copy, read to its end."""
        with tempfile.TemporaryFile(dir=self.dir) as image:
            image.write(data)
            image.flush()
            return self.run_tool('program', address,
                                 '/dev/fd/%d' % image.fileno(),
                                 pass_fds=(image.fileno(),))

    def test_program_records_the_address_and_the_image_sha256(self):
        data = os.urandom(3000)
        result = self.program(data)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(['programmed %s %s' % (
            ADDRESS, hashlib.sha256(data).hexdigest())], self.logged())
        # Written by the privsep daemon (root): nobody else may write it.
        self.assertEqual(0o644, os.stat(self.log).st_mode & 0o777)

    def test_erase_appends(self):
        self.assertEqual(0, self.program(b'one').returncode)
        result = self.run_tool('erase', ADDRESS)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(['programmed %s %s' % (
            ADDRESS, hashlib.sha256(b'one').hexdigest()),
            'erased %s' % ADDRESS], self.logged())

    def test_refuses_what_is_not_a_pci_address(self):
        for address in ('0000:01:00.0,0000:02:00.0', '../../etc',
                        '0000:1:00.0', '0000:01:00.0\n', '0000:01:00.8'):
            result = self.run_tool('erase', address)
            self.assertEqual(1, result.returncode, address)
            self.assertIn('is not a PCI address', result.stderr)
        self.assertEqual([], self.logged())

    def test_refuses_a_device_the_host_does_not_have(self):
        result = self.program(b'image', address='0000:02:00.0')
        self.assertEqual(1, result.returncode)
        self.assertIn('no PCI device 0000:02:00.0', result.stderr)
        self.assertEqual([], self.logged())

    def test_refuses_an_image_that_is_missing_empty_or_not_a_file(self):
        for image, why in ((os.path.join(self.dir, 'nope'),
                            'cannot open the image'),
                           (self.dir, 'is not a regular file of 1 to')):
            result = self.run_tool('program', ADDRESS, image)
            self.assertEqual(1, result.returncode, image)
            self.assertIn(why, result.stderr)
        result = self.program(b'')
        self.assertEqual(1, result.returncode)
        self.assertIn('is not a regular file of 1 to', result.stderr)
        self.assertEqual([], self.logged())

    def test_never_writes_through_a_link(self):
        target = os.path.join(self.dir, 'elsewhere')
        with open(target, 'w') as f:
            f.write('untouched\n')
        os.makedirs(os.path.dirname(self.log))
        os.symlink(target, self.log)
        result = self.run_tool('erase', ADDRESS)
        self.assertEqual(1, result.returncode)
        with open(target) as f:
            self.assertEqual('untouched\n', f.read())

    def test_bad_usage_is_status_2(self):
        self.assertEqual(2, self.run_tool('program', ADDRESS).returncode)
        self.assertEqual(2, self.run_tool('flash', ADDRESS).returncode)
        self.assertEqual([], self.logged())


class ConfiguratorRunsItTest(base.BaseTestCase):
    """The VM's [fpga_bitstream] commands, with {address} and {image}."""

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='nova-acc-stand-in-')
        self.addCleanup(shutil.rmtree, self.dir)
        sysfs = fake_sysfs.FakeSysfs(os.path.join(self.dir, 'sys'))
        sysfs.add_device(ADDRESS, vendor='0x1af4', device='0x1044',
                         pci_class='0x00ff00')
        self.staging = os.path.join(self.dir, 'staging')
        os.mkdir(self.staging, 0o700)
        self.log = os.path.join(self.dir, 'programmer.log')
        tool = [sys.executable, TOOL, '--log', self.log,
                '--sysfs-root', sysfs.root]
        conf = self.useFixture(config_fixture.Config())
        # The virtio-rng entry of tools/lib/nova_conf.py's VFIO host specs.
        conf.config(group='nova_acc', sysfs_root=sysfs.root, device_spec=[
            json.dumps({'vendor_id': '1af4', 'product_id': '1044',
                        'resource_class': 'CUSTOM_RNG',
                        'configurator': 'fpga_bitstream',
                        'config': {'bitstream_id': 'uuid'}})])
        conf.config(group='fpga_bitstream', staging_dir=self.staging,
                    program_command=tool + ['program', '{address}',
                                            '{image}'],
                    erase_command=tool + ['erase', '{address}'])

    def logged(self):
        with open(self.log) as f:
            return f.read().splitlines()

    def test_programs_the_verified_image_and_erases(self):
        data = os.urandom(5000)
        name = 'a' * 32 + '.bit'
        with open(os.path.join(self.staging, name), 'wb') as f:
            f.write(data)
        # Glance's default checksum is sha512; the tool logs sha256.
        fpga.program_verified(ADDRESS, name, 'sha512',
                              hashlib.sha512(data).hexdigest())
        fpga.erase_verified(ADDRESS)
        self.assertEqual(['programmed %s %s' % (
            ADDRESS, hashlib.sha256(data).hexdigest()),
            'erased %s' % ADDRESS], self.logged())
