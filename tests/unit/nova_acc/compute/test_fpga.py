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
"""The fpga_bitstream configurator and the checks of its privsep daemon.

The programming command is a stand-in script that records the arguments it
got and the SHA-256 of the image it was given, so each test asserts what a
real tool would have programmed (or that nothing ran).
"""

import configparser
import hashlib
import json
import os

import fixtures
from nova import exception as nova_exc
from oslo_config import fixture as config_fixture
from oslotest import base

from nova_acc.compute import fpga
from nova_acc.tests.fixtures import configurators
from os_acc import exception as acc_exc
from tests.unit.os_acc import fake_sysfs

FPGA = '0000:3b:00.0'
OTHER_FPGA = '0000:3b:00.1'  # selected by an entry without configurator
NIC = '0000:00:1f.6'
IMAGE_ID = '9d1c3f0a-6c1e-4f0b-8a52-2b3d8d7a1c11'
IMAGE = b'\x00bitstream' * 1000

# The repository's root is four levels up (tests/unit/nova_acc/compute).
FILTERS = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..',
                       'etc', 'nova', 'rootwrap.d', 'nova-acc.filters')


class FakeImageAPI:
    """Glance as ``nova.image.glance.API`` answers: metadata and data."""

    def __init__(self, images):
        self.images = images  # id -> (metadata, data)
        self.downloads = []

    def get(self, context, image_id):
        if image_id not in self.images:
            raise nova_exc.ImageNotFound(image_id=image_id)
        return dict(self.images[image_id][0])

    # The signature of nova.image.glance.API.download (dest_path, not the
    # dst_path of the image service behind it).
    def download(self, context, image_id, dest_path=None):
        self.downloads.append(dest_path)
        with open(dest_path, 'wb') as f:
            f.write(self.images[image_id][1])


class FpgaTestBase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        tmp = self.useFixture(fixtures.TempDir()).path
        self.sysfs = fake_sysfs.FakeSysfs(os.path.join(tmp, 'sys'))
        for address in (FPGA, OTHER_FPGA):
            self.sysfs.add_device(address, vendor='0x10ee', device='0x5000',
                                  pci_class='0x120000')
        self.sysfs.add_device(NIC)
        self.staging = os.path.join(tmp, 'staging')
        os.mkdir(self.staging, 0o700)
        self.programmer = self.useFixture(
            configurators.StandInProgrammer())
        tool = self.tool = self.programmer.tool
        self.conf = self.useFixture(config_fixture.Config())
        self.conf.config(group='nova_acc', sysfs_root=self.sysfs.root,
                         device_spec=[
                             json.dumps({'address': FPGA,
                                         'resource_class': 'FPGA',
                                         'configurator': 'fpga_bitstream',
                                         'config': {'bitstream_id': 'uuid'}}),
                             json.dumps({'address': OTHER_FPGA,
                                         'resource_class': 'FPGA'})])
        self.conf.config(group='fpga_bitstream', staging_dir=self.staging,
                         program_command=[tool, '--device', '{address}',
                                          '--image', '{image}'])

    def programmed(self):
        return self.programmer.runs()

    def stage(self, data=IMAGE, name='0' * 32 + '.bit'):
        with open(os.path.join(self.staging, name), 'wb') as f:
            f.write(data)
        return name


class ProgramVerifiedTest(FpgaTestBase):
    """What the privsep daemon checks before it runs the command."""

    def test_programs_the_verified_copy(self):
        name = self.stage()
        fpga.program_verified(FPGA, name, 'sha256',
                              hashlib.sha256(IMAGE).hexdigest())
        [run] = self.programmed()
        self.assertEqual(['--device', FPGA, '--image'], run['args'][:3])
        # The tool read the daemon's private copy, not the staged path.
        self.assertTrue(run['args'][3].startswith('/dev/fd/'))
        self.assertEqual(hashlib.sha256(IMAGE).hexdigest(), run['image'])

    def test_checksum_mismatch_programs_nothing(self):
        name = self.stage()
        e = self.assertRaises(
            acc_exc.ConfigureFailed, fpga.program_verified, FPGA, name,
            'sha256', hashlib.sha256(b'another image').hexdigest())
        self.assertIn('does not match its sha256 checksum', str(e))
        self.assertEqual([], self.programmed())

    def test_md5_from_old_glance_images(self):
        name = self.stage()
        fpga.program_verified(FPGA, name, 'md5',
                              hashlib.md5(IMAGE).hexdigest())
        self.assertEqual(1, len(self.programmed()))

    def test_unsupported_algorithm_refused(self):
        name = self.stage()
        self.assertRaises(acc_exc.ConfigureFailed, fpga.program_verified,
                          FPGA, name, 'sha1', hashlib.sha1(IMAGE).hexdigest())
        self.assertEqual([], self.programmed())

    def test_device_without_this_configurator_refused(self):
        name = self.stage()
        digest = hashlib.sha256(IMAGE).hexdigest()
        for address in (OTHER_FPGA, NIC, '0000:99:00.0'):
            self.assertRaises(acc_exc.DeviceNotManaged,
                              fpga.program_verified, address, name, 'sha256',
                              digest)
        self.assertEqual([], self.programmed())

    def test_address_that_is_not_canonical_refused(self):
        name = self.stage()
        for address in ('3b:00.0', FPGA + '/../x', '0000:3B:00.0'):
            self.assertRaises(acc_exc.ConfigureFailed,
                              fpga.program_verified, address, name, 'sha256',
                              hashlib.sha256(IMAGE).hexdigest())
        self.assertEqual([], self.programmed())

    def test_names_it_did_not_generate_refused(self):
        self.stage()
        digest = hashlib.sha256(IMAGE).hexdigest()
        for name in ('../' + '0' * 32 + '.bit', '/etc/shadow', 'x.bit',
                     '0' * 32 + '.bit/..'):
            e = self.assertRaises(acc_exc.ConfigureFailed,
                                  fpga.program_verified, FPGA, name,
                                  'sha256', digest)
            self.assertIn('is not a staged image name', str(e))
        self.assertEqual([], self.programmed())

    def test_symlink_in_staging_not_followed(self):
        secret = os.path.join(os.path.dirname(self.staging), 'secret')
        with open(secret, 'wb') as f:
            f.write(IMAGE)
        name = 'a' * 32 + '.bit'
        os.symlink(secret, os.path.join(self.staging, name))
        e = self.assertRaises(acc_exc.ConfigureFailed, fpga.program_verified,
                              FPGA, name, 'sha256',
                              hashlib.sha256(IMAGE).hexdigest())
        self.assertIn('cannot be opened', str(e))
        self.assertEqual([], self.programmed())

    def test_staging_dir_that_is_a_symlink_not_followed(self):
        real = self.staging + '-real'
        os.rename(self.staging, real)
        os.symlink(real, self.staging)
        name = 'b' * 32 + '.bit'
        with open(os.path.join(real, name), 'wb') as f:
            f.write(IMAGE)
        self.assertRaises(OSError, fpga.program_verified, FPGA, name,
                          'sha256', hashlib.sha256(IMAGE).hexdigest())
        self.assertEqual([], self.programmed())

    def test_image_over_the_size_limit_refused(self):
        self.conf.config(group='fpga_bitstream', max_image_bytes=100)
        name = self.stage()
        e = self.assertRaises(acc_exc.ConfigureFailed, fpga.program_verified,
                              FPGA, name, 'sha256',
                              hashlib.sha256(IMAGE).hexdigest())
        self.assertIn('at most 100 bytes', str(e))

    def test_command_failure_is_a_configure_failure(self):
        self.conf.config(group='fpga_bitstream', program_command=[
            self.tool, '--image', '{image}', '--exit', '3'])
        name = self.stage()
        e = self.assertRaises(acc_exc.ConfigureFailed, fpga.program_verified,
                              FPGA, name, 'sha256',
                              hashlib.sha256(IMAGE).hexdigest())
        self.assertIn('exited with status 3', str(e))

    def test_no_program_command_configured(self):
        self.conf.config(group='fpga_bitstream', program_command=[])
        e = self.assertRaises(acc_exc.ConfigureFailed, fpga.program_verified,
                              FPGA, self.stage(), 'sha256',
                              hashlib.sha256(IMAGE).hexdigest())
        self.assertIn('[fpga_bitstream] program_command', str(e))

    def test_placeholders_only_replace_whole_arguments(self):
        self.conf.config(group='fpga_bitstream', program_command=[
            self.tool, '--device={address}', '--image', '{image}'])
        fpga.program_verified(FPGA, self.stage(), 'sha256',
                              hashlib.sha256(IMAGE).hexdigest())
        [run] = self.programmed()
        self.assertEqual('--device={address}', run['args'][0])

    def test_erase_runs_the_erase_command_on_managed_devices_only(self):
        self.conf.config(group='fpga_bitstream',
                         erase_command=[self.tool, '--erase', '{address}'])
        fpga.erase_verified(FPGA)
        self.assertRaises(acc_exc.DeviceNotManaged, fpga.erase_verified, NIC)
        self.assertEqual([{'args': ['--erase', FPGA], 'image': None}],
                         self.programmed())

    def test_no_erase_command_runs_nothing(self):
        fpga.erase_verified(FPGA)
        self.assertEqual([], self.programmed())


class BitstreamConfiguratorTest(FpgaTestBase):
    """nova-compute's half: Glance, staging, then the daemon."""

    def setUp(self):
        super().setUp()
        # The daemon's half runs in this process (as privsep's tests do).
        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.compute.fpga.program', fpga.program_verified))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.compute.fpga.erase', fpga.erase_verified))

    def request(self, config):
        return fpga.configurator.ConfigureRequest(
            address=FPGA, config=config, context_id='ctx-1',
            instance_uuid='inst-1', request_context=object())

    def test_programs_the_image_and_leaves_no_staged_file(self):
        images = FakeImageAPI({IMAGE_ID: (
            {'os_hash_algo': 'sha512',
             'os_hash_value': hashlib.sha512(IMAGE).hexdigest()}, IMAGE)})
        fpga.BitstreamConfigurator(images).configure(
            self.request({'bitstream_id': IMAGE_ID}))
        [run] = self.programmed()
        self.assertEqual(hashlib.sha256(IMAGE).hexdigest(), run['image'])
        self.assertEqual([], os.listdir(self.staging))

    def test_image_changed_in_transit_programs_nothing(self):
        images = FakeImageAPI({IMAGE_ID: (
            {'os_hash_algo': 'sha512',
             'os_hash_value': hashlib.sha512(b'what glance has').hexdigest()},
            IMAGE)})
        e = self.assertRaises(acc_exc.ConfigureFailed,
                              fpga.BitstreamConfigurator(images).configure,
                              self.request({'bitstream_id': IMAGE_ID}))
        self.assertIn('does not match', str(e))
        self.assertEqual([], self.programmed())
        self.assertEqual([], os.listdir(self.staging))

    def test_image_without_checksum_refused_before_download(self):
        images = FakeImageAPI({IMAGE_ID: ({}, IMAGE)})
        e = self.assertRaises(acc_exc.ConfigureFailed,
                              fpga.BitstreamConfigurator(images).configure,
                              self.request({'bitstream_id': IMAGE_ID}))
        self.assertIn('has no checksum', str(e))
        self.assertEqual([], images.downloads)

    def test_unknown_image_names_it(self):
        e = self.assertRaises(acc_exc.ConfigureFailed,
                              fpga.BitstreamConfigurator(
                                  FakeImageAPI({})).configure,
                              self.request({'bitstream_id': IMAGE_ID}))
        self.assertIn('image %s (accel:bitstream_id) was not found' %
                      IMAGE_ID, str(e))

    def test_no_bitstream_key_does_nothing(self):
        images = FakeImageAPI({})
        fpga.BitstreamConfigurator(images).configure(self.request({}))
        self.assertEqual([], images.downloads)
        self.assertEqual([], self.programmed())


class PrivsepContextTest(base.BaseTestCase):

    def test_rootwrap_filter_starts_the_programming_context(self):
        parser = configparser.ConfigParser()
        parser.optionxform = str
        self.assertEqual([FILTERS], parser.read(FILTERS))
        args = [a.strip() for a in
                parser['Filters']['privsep-rootwrap-nova_acc_fpga'].split(',')]
        self.assertEqual(fpga.program_pctxt.pypath,
                         args[args.index('--privsep_context') + 1])
        module, _, name = fpga.program_pctxt.pypath.rpartition('.')
        self.assertEqual(fpga.__name__, module)
        self.assertIs(fpga.program_pctxt, getattr(fpga, name))
