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
"""Config data takes effect on a real compute host (issue 21).

A device context of nova-acc-api with ``accel:bitstream_id=<Glance image>``
in its config, booted by ID: the host's ``fpga_bitstream`` configurator
downloads the image as the user, its privsep daemon verifies it and runs
the host's programming command on the device the server got, and the
release runs the erase command before the reset. CI runs it on the VFIO
host VM of ``tools/run-vfio-host.sh``, whose virtio-rng pool allows the key
(``[nova_acc] bitstream_context``) and whose programming command is a
stand-in that logs what it was asked to do (``bitstream_log_command``):
``programmed ADDRESS SHA256`` and ``erased ADDRESS``. The ledger
(``manage_command``) says which server holds the device and which
configurator it was given to.
"""

import hashlib
import io
import shlex
import subprocess

from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib.common.utils import test_utils
from tempest.lib import decorators

from nova_acc_tempest_plugin.tests.scenario import test_device_context_api
from nova_acc_tempest_plugin.tests.scenario import test_device_host

CONF = config.CONF

CONFIGURATOR = 'fpga_bitstream'
KEY = 'accel:bitstream_id'


class BitstreamConfigTest(test_device_host.DeviceHostBase,
                          test_device_context_api.DeviceContextAPIBase):
    """A context's bitstream programmed into its device, erased after."""

    device_kinds = ('bitstream_context',)

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not (CONF.nova_acc.bitstream_context and
                CONF.nova_acc.bitstream_log_command):
            raise cls.skipException(
                '[nova_acc] bitstream_context and bitstream_log_command are '
                'needed to see what was programmed')

    @classmethod
    def setup_clients(cls):
        super().setup_clients()
        cls.images = cls.os_primary.image_client_v2
        cls.admin_images = cls.os_admin.image_client_v2

    def upload_bitstream(self, images):
        """A small private image of images' project, deleted at cleanup;
        (its id, the SHA-256 of its data)."""
        data = data_utils.random_bytes(4096)
        image = images.create_image(
            name=data_utils.rand_name(prefix=CONF.resource_name_prefix,
                                      name='nova-acc-bitstream'),
            container_format='bare', disk_format='raw',
            visibility='private')
        self.addCleanup(self.delete_image, images, image['id'])
        images.store_image_file(image['id'], io.BytesIO(data))
        return image['id'], hashlib.sha256(data).hexdigest()

    @staticmethod
    def delete_image(images, image_id):
        test_utils.call_and_ignore_notfound_exc(images.delete_image,
                                                image_id)
        images.wait_for_resource_deletion(image_id)

    def programmer_log(self):
        """The lines of the host programming tool's log."""
        result = subprocess.run(
            shlex.split(CONF.nova_acc.bitstream_log_command),
            capture_output=True, text=True, timeout=120)
        self.assertEqual(0, result.returncode, 'bitstream_log_command: '
                         '%s %s' % (result.stdout, result.stderr))
        return result.stdout.splitlines()

    def create_bitstream_context(self, image_id):
        return self.create_context(spec=CONF.nova_acc.bitstream_context,
                                   config={KEY: image_id})

    @decorators.idempotent_id('6f876884-0c98-4be2-8e98-a2550a403fb4')
    def test_bitstream_programmed_at_boot_erased_at_delete(self):
        image_id, sha256 = self.upload_bitstream(self.images)
        context = self.create_bitstream_context(image_id)
        ledger_before = self.ledger()
        log_before = len(self.programmer_log())

        server = self.boot(context['id'], wait_until='ACTIVE')

        bound = self.show(context['id'])
        self.assertEqual(('bound', server['id'],
                          server['OS-EXT-SRV-ATTR:host']),
                         (bound['state'], bound['server_id'], bound['host']),
                         bound)
        addresses = [d.get('address') for d in bound['devices']]
        self.assertEqual(1, len(addresses), bound)
        (address,) = addresses
        self.assertEqual([address], self.devices_of(server['id']))
        rec = self.ledger()[address]
        self.assertEqual(
            (server['id'], CONFIGURATOR, context['id']),
            (rec['instance_uuid'], rec['configured_by'],
             rec['device_context']), rec)
        # The image the context named, as the user uploaded it, reached
        # the device the server got, and nothing else was programmed.
        self.assertEqual(['programmed %s %s' % (address, sha256)],
                         self.programmer_log()[log_before:])

        self.delete_server(server['id'])
        unbound = self.wait_for_state(context['id'], 'unbound')
        self.assertEqual((None, []),
                         (unbound['server_id'], unbound['devices']))
        self.assert_no_allocation(server['id'])
        # Erased, reset (a later last reset) and free, no longer marked.
        rec = self.wait_for_ledger(
            address, 'free',
            reset_after=ledger_before[address]['last_reset'] or '')
        self.assertEqual((None, None),
                         (rec['instance_uuid'], rec['configured_by']), rec)
        self.assertEqual(['programmed %s %s' % (address, sha256),
                          'erased %s' % address],
                         self.programmer_log()[log_before:])

    @decorators.idempotent_id('9825bf04-2394-425f-82b0-0213ee3f95c1')
    def test_image_the_user_cannot_see_fails_the_boot(self):
        """Another project's private image: Glance says it does not exist.

        The fault names the context and why; nothing is programmed, the
        context is unbound and the pool is free in placement and in the
        ledger: the device tried is erased (the configurator's undo of
        what it may have begun), reset and free.
        """
        image_id, _ = self.upload_bitstream(self.admin_images)
        context = self.create_bitstream_context(image_id)
        spec = CONF.nova_acc.bitstream_context
        free_before = self.free_in_placement(spec)
        ledger_before = self.ledger()
        log_before = len(self.programmer_log())

        server = self.boot(context['id'])

        message = self.fault(server)
        self.assertIn("device context '%s'" % context['id'], message)
        self.assertIn('could not be configured on the host: image', message)
        self.assertIn('(%s) was not found' % KEY, message)
        self.assert_no_allocation(server['id'])
        unbound = self.wait_for_state(context['id'], 'unbound')
        self.assertEqual((None, []),
                         (unbound['server_id'], unbound['devices']))
        self.wait_for_free_in_placement(spec, free_before)
        # One host, one attempt: one device tried, nothing programmed.
        lines = self.programmer_log()[log_before:]
        self.assertEqual(1, len(lines), lines)
        self.assertTrue(lines[0].startswith('erased '), lines)
        address = lines[0].split()[1]
        self.assertIn(address, ledger_before)
        rec = self.wait_for_ledger(
            address, 'free',
            reset_after=ledger_before[address]['last_reset'] or '')
        self.assertEqual((None, None),
                         (rec['instance_uuid'], rec['configured_by']), rec)
