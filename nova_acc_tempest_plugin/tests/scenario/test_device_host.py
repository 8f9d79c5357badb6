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
"""Scenarios on a compute host with real VFIO devices.

CI runs them on the VFIO host VM of ``tools/run-vfio-host.sh``: a pool of
two virtio-rng functions with FLR (``[nova_acc] device_context``), the VFs
of an nvme PF (``vf_context``) and the PF itself (``pf_context``), and the
``edu`` without a reset method (``no_reset_context``). What the compute
host's ledger says (resets, dirty devices) is read with ``nova-acc-manage``
on that host (``manage_command``); the domain XML with ``virsh_command``.
Each class needs what it names and is skipped without it; classes on the
same devices run one at a time, as they count the devices of their pools
(``DevicesHeld``), and beside the classes on other devices.
"""

import re
import time

from tempest.common import waiters
from tempest import config
from tempest.lib import decorators

from nova_acc_tempest_plugin.tests.scenario import test_device_context as base

CONF = config.CONF


class DeviceHostBase(base.DeviceRequired, base.DeviceContextBase):
    """Needs the domain XML and the ledger of the host with the devices."""

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not (CONF.nova_acc.libvirt_uri and CONF.nova_acc.manage_command):
            raise cls.skipException(
                '[nova_acc] libvirt_uri and manage_command are needed to '
                'see which device a server got')

    def devices_of(self, server_id):
        """The host addresses of the server's PCI hostdevs."""
        server = self.admin_servers.show_server(server_id)['server']
        domain = self.domain_xml(server)
        self.assertIsNotNone(domain, 'server %s is not on %s' % (
            server_id, CONF.nova_acc.libvirt_host))
        return self.hostdev_addresses(domain)

    def assert_held(self, server_id, addresses):
        """The ledger records addresses as held by the server."""
        ledger = self.ledger()
        for address in addresses:
            self.assertEqual(server_id, ledger[address]['instance_uuid'],
                             ledger[address])

    def assert_released(self, address, last_reset):
        """address is reset (after last_reset) and free in the ledger."""
        rec = self.wait_for_ledger(address, 'free',
                                   reset_after=last_reset or '')
        self.assertIsNone(rec['instance_uuid'], rec)

    def free_in_placement(self, context):
        """Devices placement offers for the inline context's class."""
        rc = re.match(r'resources:([A-Z0-9_]+)=', context).group(1)
        free = 0
        for rp in self.providers.list_resource_providers()[
                'resource_providers']:
            inventory = self.providers.list_resource_provider_inventories(
                rp['uuid'])['inventories'].get(rc)
            if inventory:
                used = self.providers.list_resource_provider_usages(
                    rp['uuid'])['usages'].get(rc, 0)
                free += inventory['total'] - inventory['reserved'] - used
        return free

    def wait_for_free_in_placement(self, context, free):
        """Placement offers free devices for context (it learns of dirty
        and cleared devices at the host's next resource update)."""
        deadline = time.time() + CONF.nova_acc.ledger_timeout
        while self.free_in_placement(context) != free:
            if time.time() > deadline:
                self.fail('placement does not offer %s device(s) for %s '
                          'after %s s' % (free, context,
                                          CONF.nova_acc.ledger_timeout))
            time.sleep(5)

    def boot_many(self, context, count):
        """count servers created at once; their ids once all are ACTIVE."""
        ids = [self.boot(context, wait_until=None)['id']
               for _ in range(count)]
        for server_id in ids:
            waiters.wait_for_server_status(self.servers_client, server_id,
                                           'ACTIVE')
        return ids


class DevicePoolTest(DeviceHostBase):
    """A pool of identical devices with a reset method."""

    @decorators.idempotent_id('3c0f4e2a-7b51-4f0e-9d6a-1e2f3a4b5c60')
    def test_guest_lists_its_device(self):
        """The guest's console lists the PCI function it was given."""
        pci_id = CONF.nova_acc.device_pci_id
        if not pci_id:
            raise self.skipException('[nova_acc] device_pci_id is not set')
        server = self.boot(CONF.nova_acc.device_context,
                           wait_until='ACTIVE')
        self.assertEqual(1, len(self.devices_of(server['id'])))
        listed = re.compile(r'nova-acc guest: pci \S+ %s' % re.escape(pci_id))
        deadline = time.time() + CONF.nova_acc.console_timeout
        output = ''
        while not listed.search(output):
            if time.time() > deadline:
                self.fail('the console of server %s does not list %s after '
                          '%s s:\n%s' % (server['id'], pci_id,
                                         CONF.nova_acc.console_timeout,
                                         output[-2000:]))
            time.sleep(15)
            output = self.servers_client.get_console_output(
                server['id'])['output']

    @decorators.idempotent_id('4d1a5f3b-8c62-4a1f-8e7b-2f3a4b5c6d71')
    def test_pool_hands_out_each_device_once_and_resets_it(self):
        """N servers get N different devices, one more fails; delete resets.

        The fault of the server that found no device names its context.
        """
        size = CONF.nova_acc.device_pool_size
        if not size:
            raise self.skipException('[nova_acc] device_pool_size is not '
                                     'set')
        context = CONF.nova_acc.device_context
        before = self.ledger()
        ids = self.boot_many(context, size)
        held = {server_id: self.devices_of(server_id) for server_id in ids}
        addresses = [a for devices in held.values() for a in devices]
        self.assertEqual(size, len(addresses), held)
        self.assertEqual(size, len(set(addresses)),
                         'two servers got the same device: %s' % held)
        for server_id, devices in held.items():
            self.assert_held(server_id, devices)

        refused = self.boot(context)
        message = self.fault(refused)
        self.assertIn(base.NO_DEVICES % context, message)
        self.assert_no_allocation(refused['id'])

        for server_id in ids:
            self.delete_server(server_id)
            self.assert_no_allocation(server_id)
        for address in addresses:
            self.assert_released(address, before[address]['last_reset'])


class SriovTest(DeviceHostBase):
    """The VFs of a PF are a pool; the PF is refused while a VF is used."""

    device_kinds = ('vf_context', 'pf_context')

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not (CONF.nova_acc.vf_context and CONF.nova_acc.pf_context):
            raise cls.skipException('[nova_acc] vf_context and pf_context '
                                    'are not set')

    @decorators.idempotent_id('5e2b6a4c-9d73-4b2a-9f8c-3a4b5c6d7e82')
    def test_vf_boots_and_its_pf_is_refused(self):
        before = self.ledger()
        server = self.boot(CONF.nova_acc.vf_context, wait_until='ACTIVE')
        (vf,) = self.devices_of(server['id'])
        self.assert_held(server['id'], [vf])
        self.assertNotEqual('0', vf[-1], 'not a VF: %s' % vf)

        # Refused by the scheduler once placement learnt that the PF is
        # blocked (the host's next resource update), before that by the
        # host's claim: either way the fault names the context.
        pf_context = CONF.nova_acc.pf_context
        refused = self.boot(pf_context)
        message = self.fault(refused)
        self.assertTrue(
            base.NO_DEVICES % pf_context in message or
            ("device context '%s'" % pf_context in message and
             'is blocked: its PF or one of its VFs is in use' in message),
            message)
        self.assert_no_allocation(refused['id'])

        self.delete_server(server['id'])
        self.assert_no_allocation(server['id'])
        self.assert_released(vf, before[vf]['last_reset'])


class DirtyDeviceTest(DeviceHostBase):
    """A device without a reset method: dirty on release until cleared."""

    device_kinds = ('no_reset_context',)

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.nova_acc.no_reset_context:
            raise cls.skipException('[nova_acc] no_reset_context is not '
                                    'set')

    def clear_dirty(self, address):
        self.manage('devices', 'clear-dirty', '--force', address)

    @decorators.idempotent_id('6f3c7b5d-0e84-4c3b-8a9d-4b5c6d7e8f93')
    def test_released_device_is_dirty_until_cleared(self):
        context = CONF.nova_acc.no_reset_context
        server = self.boot(context, wait_until='ACTIVE')
        (address,) = self.devices_of(server['id'])
        self.assert_held(server['id'], [address])

        self.delete_server(server['id'])
        self.assert_no_allocation(server['id'])
        # Runs after the last server's delete (cleanups run last first):
        # waits for that release, clears the edu and waits for placement.
        self.addCleanup(self.clear_if_dirty, address)
        rec = self.wait_for_ledger(address, 'dirty')
        self.assertIsNone(rec['instance_uuid'], rec)
        self.assertTrue(rec['reason'], rec)

        # Out of service: placement offers it no more, a boot fails.
        self.wait_for_free_in_placement(context, 0)
        refused = self.boot(context)
        self.assertIn(base.NO_DEVICES % context, self.fault(refused))
        self.assert_no_allocation(refused['id'])
        self.delete_server(refused['id'])

        self.clear_dirty(address)
        self.assertEqual('free', self.ledger()[address]['state'])
        # Back in service: a boot gets it again.
        self.wait_for_free_in_placement(context, 1)
        server = self.boot(context, wait_until='ACTIVE')
        self.assertEqual([address], self.devices_of(server['id']))


class DeviceLifecycleTest(DeviceHostBase):
    """Server actions and the devices (the user guide's support matrix)."""

    def wait(self, server_id, status):
        waiters.wait_for_server_status(self.servers_client, server_id,
                                       status)

    @decorators.idempotent_id('7a4d8c6e-1f95-4d4c-9b0e-5c6d7e8f9004')
    def test_reboot_stop_start_rebuild_shelve_unshelve(self):
        """Kept by hard reboot, stop/start, rebuild; new after unshelve."""
        server = self.boot(CONF.nova_acc.device_context,
                           wait_until='ACTIVE')
        server_id = server['id']
        devices = self.devices_of(server_id)
        self.assertEqual(1, len(devices))

        self.servers_client.reboot_server(server_id, type='HARD')
        self.wait(server_id, 'ACTIVE')
        self.assertEqual(devices, self.devices_of(server_id), 'hard reboot')

        self.servers_client.stop_server(server_id)
        self.wait(server_id, 'SHUTOFF')
        self.assert_held(server_id, devices)
        self.servers_client.start_server(server_id)
        self.wait(server_id, 'ACTIVE')
        self.assertEqual(devices, self.devices_of(server_id), 'stop/start')

        self.servers_client.rebuild_server(server_id, CONF.compute.image_ref)
        self.wait(server_id, 'ACTIVE')
        self.assertEqual(devices, self.devices_of(server_id), 'rebuild')

        # Shelved and offloaded: the devices are reset and freed; unshelve
        # gets devices of the same pool, like a new boot.
        before = self.ledger()[devices[0]]['last_reset']
        self.servers_client.shelve_server(server_id)
        self.wait(server_id, 'SHELVED_OFFLOADED')
        self.assert_released(devices[0], before)
        self.servers_client.unshelve_server(server_id)
        self.wait(server_id, 'ACTIVE')
        unshelved = self.devices_of(server_id)
        self.assertEqual(1, len(unshelved))
        self.assert_held(server_id, unshelved)


class SameHostResizeTest(DeviceHostBase):
    """Resize on the host with the devices: confirm and revert."""

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.nova_acc.same_host_resize:
            raise cls.skipException('[nova_acc] same_host_resize is not '
                                    'set')

    def resize(self, server_id):
        """Resized to flavor_ref_alt (booted, or reverted, with flavor_ref),
        waiting for confirmation; the devices of the resized guest."""
        self.servers_client.resize_server(server_id,
                                          CONF.compute.flavor_ref_alt)
        waiters.wait_for_server_status(self.servers_client, server_id,
                                       'VERIFY_RESIZE')
        return self.devices_of(server_id)

    @decorators.idempotent_id('8b5e9d7f-2a06-4e5d-8c1f-6d7e8f90a015')
    def test_resize_revert_then_confirm(self):
        """New devices while resized; revert keeps the old, confirm the new.

        The devices the server gives up are reset and freed.
        """
        server = self.boot(CONF.nova_acc.device_context,
                           wait_until='ACTIVE')
        server_id = server['id']
        old = self.devices_of(server_id)
        before = self.ledger()

        new = self.resize(server_id)
        self.assertEqual(len(old), len(new))
        self.assertEqual([], sorted(set(old) & set(new)),
                         'the resized guest kept a device of the old one')
        self.assert_held(server_id, old + new)
        self.servers_client.revert_resize_server(server_id)
        waiters.wait_for_server_status(self.servers_client, server_id,
                                       'ACTIVE')
        self.assertEqual(old, self.devices_of(server_id), 'revert')
        for address in new:
            self.assert_released(address, before[address]['last_reset'])

        before = self.ledger()
        new = self.resize(server_id)
        self.assertEqual([], sorted(set(old) & set(new)))
        self.servers_client.confirm_resize_server(server_id)
        waiters.wait_for_server_status(self.servers_client, server_id,
                                       'ACTIVE')
        self.assertEqual(new, self.devices_of(server_id), 'confirm')
        self.assert_held(server_id, new)
        for address in old:
            self.assert_released(address, before[address]['last_reset'])
