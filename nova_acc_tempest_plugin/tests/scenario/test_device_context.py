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
"""Scenario tests of nova-acc's device contexts against a real cloud.

A device context is the ``device_context`` scheduler hint
(``os:scheduler_hints`` in ``POST /servers``); see nova-acc's user guide.
The faults checked here are the ones the user guide documents under *When
it fails*. Tests that need a host with a matching free device run only
when ``[nova_acc] device_context`` names a context the cloud can satisfy.
"""

import json
import os
import re
import shlex
import subprocess
import time
import xml.etree.ElementTree as ET

from fasteners import process_lock
from oslo_concurrency import lockutils
from tempest.api.compute import base
from tempest.common import waiters
from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib.common.utils import test_utils
from tempest.lib import decorators

CONF = config.CONF

NO_VALID_HOST = 'No valid host was found.'
NO_DEVICES = ("No host has enough free accelerators for the device "
              "context(s) '%s'")


class DeviceContextBase(base.BaseV2ComputeTest):
    """Boots servers with device contexts, checks faults and placement."""

    credentials = ['primary', 'admin']
    # 'networks': 'none' (2.37): the guests of these tests need no network.
    min_microversion = '2.37'

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.service_available.nova_acc:
            raise cls.skipException(
                'nova-acc is not enabled ([service_available] nova_acc)')

    @classmethod
    def setup_clients(cls):
        super().setup_clients()
        cls.admin_servers = cls.os_admin.servers_client
        cls.placement = cls.os_admin.placement_client
        cls.providers = cls.os_admin.resource_providers_client

    # -- helpers ----------------------------------------------------------

    def boot(self, contexts=None, wait_until='ERROR', **kwargs):
        """Creates a server (deleted at cleanup) and waits for wait_until."""
        if contexts is not None:
            kwargs['scheduler_hints'] = {'device_context': contexts}
        kwargs.setdefault('name', data_utils.rand_name(
            prefix=CONF.resource_name_prefix, name='nova-acc'))
        body = self.servers_client.create_server(
            imageRef=CONF.compute.image_ref,
            flavorRef=CONF.compute.flavor_ref,
            networks='none', **kwargs)['server']
        self.addCleanup(self.delete_server, body['id'])
        if wait_until:
            waiters.wait_for_server_status(
                self.servers_client, body['id'], wait_until,
                raise_on_error=(wait_until != 'ERROR'))
        return self.admin_servers.show_server(body['id'])['server']

    def delete_server(self, server_id):
        test_utils.call_and_ignore_notfound_exc(
            self.servers_client.delete_server, server_id)
        waiters.wait_for_server_termination(
            self.servers_client, server_id, ignore_error=True)

    def fault(self, server):
        self.assertEqual('ERROR', server['status'])
        self.assertIn('fault', server, 'server in ERROR without a fault')
        return server['fault']['message']

    def allocations(self, server_id):
        return self.placement.list_allocations(server_id)['allocations']

    def assert_no_allocation(self, server_id):
        self.assertEqual({}, self.allocations(server_id),
                         'placement has allocations for server %s' %
                         server_id)

    def usage(self, resource_class):
        """Sum of the usages of resource_class over all providers."""
        total = 0
        for rp in self.providers.list_resource_providers()[
                'resource_providers']:
            usages = self.providers.list_resource_provider_usages(
                rp['uuid'])['usages']
            total += usages.get(resource_class, 0)
        return total

    def domain_xml(self, server):
        """The libvirt domain XML of server, or None without libvirt_uri."""
        uri = CONF.nova_acc.libvirt_uri
        if not uri:
            return None
        host = CONF.nova_acc.libvirt_host
        if host and server.get('OS-EXT-SRV-ATTR:host') != host:
            return None  # libvirt_uri does not reach the server's host
        name = server['OS-EXT-SRV-ATTR:instance_name']
        out = subprocess.run(
            shlex.split(CONF.nova_acc.virsh_command) + ['-c', uri, 'dumpxml',
                                                        name],
            check=True, capture_output=True, text=True, timeout=60).stdout
        return ET.fromstring(out)

    @staticmethod
    def pci_hostdevs(domain):
        return domain.findall("./devices/hostdev[@type='pci']")

    @classmethod
    def hostdev_addresses(cls, domain):
        """The host PCI addresses (0000:01:00.0) of domain's hostdevs."""
        addresses = []
        for hostdev in cls.pci_hostdevs(domain):
            a = hostdev.find('./source/address').attrib
            addresses.append('%04x:%02x:%02x.%x' % tuple(
                int(a[k], 16) for k in ('domain', 'bus', 'slot',
                                        'function')))
        return sorted(addresses)

    def manage(self, *args, check=True):
        """nova-acc-manage on the compute host ([nova_acc] manage_command)."""
        result = subprocess.run(
            shlex.split(CONF.nova_acc.manage_command) + list(args),
            capture_output=True, text=True, timeout=120)
        if check:
            self.assertEqual(0, result.returncode,
                             'nova-acc-manage %s: %s %s' % (
                                 ' '.join(args), result.stdout,
                                 result.stderr))
        return result

    def ledger(self):
        """address -> the compute host's ledger record of the device."""
        records = json.loads(self.manage('devices', 'list', '--json').stdout)
        return {rec['address']: rec for rec in records}

    def wait_for_ledger(self, address, state, reset_after=None):
        """The ledger record of address once it is in state.

        reset_after: also wait until its last reset is later than this
        (the last_reset the record had before the release).
        """
        deadline = time.time() + CONF.nova_acc.ledger_timeout
        while True:
            rec = self.ledger()[address]
            if rec['state'] == state and (
                    reset_after is None or
                    (rec['last_reset'] or '') > reset_after):
                return rec
            if time.time() > deadline:
                self.fail('device %s did not become %s%s in the ledger '
                          'within %s s: %s' % (
                              address, state,
                              ' with a new reset' if reset_after is not None
                              else '', CONF.nova_acc.ledger_timeout, rec))
            time.sleep(3)

    def clear_if_dirty(self, address):
        """Waits for address's release; frees it if it became dirty."""
        deadline = time.time() + CONF.nova_acc.ledger_timeout
        while self.ledger()[address]['state'] not in ('free', 'dirty'):
            if time.time() > deadline:
                self.fail('device %s was not released within %s s' % (
                    address, CONF.nova_acc.ledger_timeout))
            time.sleep(3)
        rec = self.ledger()[address]
        if rec['state'] == 'dirty':
            self.manage('devices', 'clear-dirty', '--force', address)
            # Back in service once placement no longer reserves it (the
            # host's next resource update): the next test may need it.
            deadline = time.time() + CONF.nova_acc.ledger_timeout
            while self.reserved(rec['resource_class']):
                if time.time() > deadline:
                    self.fail('placement still reserves %s %s s after '
                              'clear-dirty of %s' % (
                                  rec['resource_class'],
                                  CONF.nova_acc.ledger_timeout, address))
                time.sleep(5)

    def reserved(self, resource_class):
        """Sum of the reserved inventory of resource_class."""
        total = 0
        for rp in self.providers.list_resource_providers()[
                'resource_providers']:
            inventory = self.providers.list_resource_provider_inventories(
                rp['uuid'])['inventories'].get(resource_class)
            if inventory:
                total += inventory['reserved']
        return total


def device_lock_names(kinds):
    """The lock names of the devices the [nova_acc] options ``kinds`` ask
    for: their resource classes (``profile``: ``profile_resource_class``),
    or the option's name where none can be told."""
    names = set()
    for kind in kinds:
        if kind == 'profile':
            names.add(CONF.nova_acc.profile_resource_class or kind)
            continue
        value = getattr(CONF.nova_acc, kind) or ''
        names.update(re.findall(r'resources\d*:([A-Z0-9_]+)=', value)
                     or [kind])
    return sorted(names)


class DevicesHeld(object):
    """The class's devices are its own while it runs.

    Its tests count the free devices of their pools and use them all, so
    two classes on the same devices must not overlap; classes on other
    devices (and the tests without devices) run beside them. Each class
    names the [nova_acc] options whose contexts it boots (``device_kinds``)
    and holds an inter-process lock per resource class of those from its
    setUpClass to its tearDownClass, taken in one order (no deadlock).
    Tempest's own ``_serial`` would stop every other test meanwhile.
    """

    #: The [nova_acc] options whose contexts the class's tests boot.
    device_kinds = ('device_context',)

    @classmethod
    def setUpClass(cls):
        cls._device_locks = []
        lock_dir = lockutils.get_lock_path(CONF)
        for name in device_lock_names(cls.device_kinds):
            lock = process_lock.InterProcessLock(
                os.path.join(lock_dir, 'nova-acc-devices-%s' % name))
            lock.acquire()
            cls._device_locks.append(lock)
        try:
            super().setUpClass()
        except BaseException:
            cls._release_devices()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls._release_devices()

    @classmethod
    def _release_devices(cls):
        # Tempest's setUpClass calls tearDownClass itself when it fails.
        while getattr(cls, '_device_locks', None):
            cls._device_locks.pop().release()


class DeviceRequired(DevicesHeld):
    """Skips the class unless a host can serve [nova_acc] device_context.

    Mixed in before DeviceContextBase; its devices are its own while it
    runs (DevicesHeld).
    """

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.nova_acc.device_context:
            raise cls.skipException(
                '[nova_acc] device_context is not set: the cloud has no '
                'host with a matching device to test with')


class DeviceContextFaultsTest(DeviceContextBase):
    """What users get when a device context cannot be served."""

    @decorators.idempotent_id('0b1f3c1e-6c84-4a62-9a0e-6a0d3c7f5a01')
    def test_unsatisfiable_context_no_valid_host(self):
        """No host has the devices: ERROR, NoValidHost, no allocation."""
        context = CONF.nova_acc.unsatisfiable_context
        server = self.boot(context)
        message = self.fault(server)
        self.assertIn(NO_VALID_HOST, message)
        self.assertIn(NO_DEVICES % context, message)
        self.assert_no_allocation(server['id'])

    @decorators.idempotent_id('4c3d8a52-0f0e-4b5e-8d3a-2b7b1c9e5a02')
    def test_invalid_amount_names_token(self):
        """A bad amount: the fault names the context and the token."""
        server = self.boot('resources:FPGA=0')
        message = self.fault(server)
        self.assertIn("device_context 'resources:FPGA=0' is invalid", message)
        self.assertIn("Invalid amount in 'resources:FPGA=0': must be at "
                      "least 1", message)
        self.assert_no_allocation(server['id'])

    @decorators.idempotent_id('a9e2b8e4-1d6f-4c0c-9f7e-3c8d2e1f5a03')
    def test_unknown_key_names_token(self):
        """A token that is no key of the grammar is named in the fault."""
        context = 'resources:FPGA=1,bogus:thing=1'
        server = self.boot(context)
        message = self.fault(server)
        self.assertIn("device_context '%s' is invalid" % context, message)
        self.assertIn('bogus:thing=1', message)
        self.assert_no_allocation(server['id'])

    @decorators.idempotent_id('e3f4a5b6-2c7d-4e8f-9a0b-1c2d3e4f5a04')
    def test_unknown_profile(self):
        """profile:NAME of no profile: named, the cloud's are not listed."""
        server = self.boot('profile:no-such-profile')
        message = self.fault(server)
        self.assertIn("names an unknown profile 'no-such-profile'", message)
        self.assertNotIn('known profiles', message)
        if CONF.nova_acc.profile:
            # As a word: the name may be part of Nova's own words ("edu"
            # is in "Scheduling failed").
            self.assertIsNone(re.search(
                r'\b%s\b' % re.escape(CONF.nova_acc.profile), message),
                message)
        self.assert_no_allocation(server['id'])

    @decorators.idempotent_id('6e7f8091-4b5c-4d6e-9f0a-1b2c3d4e5a06')
    def test_delete_of_failed_server(self):
        """A server that failed on its context is deleted cleanly."""
        server = self.boot([CONF.nova_acc.unsatisfiable_context])
        self.fault(server)
        self.delete_server(server['id'])
        self.assert_no_allocation(server['id'])


class ProfileWithoutFreeDeviceTest(DevicesHeld, DeviceContextBase):
    """profile:NAME when no host has a free device for it.

    Where a host has the profile's devices (profile_satisfiable), the test
    first holds all of them (profile_pool_size servers): they are its own
    while it runs (DevicesHeld).
    """

    device_kinds = ('profile',)

    @decorators.idempotent_id('5d6e7f80-3a4b-4c5d-8e9f-0a1b2c3d5a05')
    def test_profile_without_free_device(self):
        """profile:NAME of a profile no host can serve: NoValidHost."""
        if not CONF.nova_acc.profile:
            raise self.skipException('[nova_acc] profile is not set')
        held = CONF.nova_acc.profile_pool_size
        if CONF.nova_acc.profile_satisfiable and not held:
            raise self.skipException('[nova_acc] profile_satisfiable and no '
                                     'profile_pool_size: cannot use up the '
                                     "profile's devices")
        context = 'profile:%s' % CONF.nova_acc.profile
        holders = []
        if CONF.nova_acc.profile_satisfiable:
            holders = [self.boot(context, wait_until='ACTIVE')
                       for _ in range(held)]
        server = self.boot(context)
        message = self.fault(server)
        self.assertIn(NO_VALID_HOST, message)
        self.assertIn(NO_DEVICES % context, message)
        self.assert_no_allocation(server['id'])
        for holder in holders:
            domain = self.domain_xml(holder)
            self.delete_server(holder['id'])
            if domain is not None and CONF.nova_acc.manage_command:
                # A device without a reset method is dirty now: put back.
                for address in self.hostdev_addresses(domain):
                    self.clear_if_dirty(address)


class PlainServerTest(DeviceContextBase):
    """nova-acc does not get in the way of servers without contexts."""

    @decorators.idempotent_id('7f8091a2-5c6d-4e7f-8a1b-2c3d4e5f5a07')
    def test_plain_server_boots_and_deletes(self):
        server = self.boot(wait_until='ACTIVE')
        allocations = self.allocations(server['id'])
        self.assertEqual(1, len(allocations), allocations)
        resources = list(allocations.values())[0]['resources']
        self.assertIn('VCPU', resources)
        self.assertIn('MEMORY_MB', resources)
        domain = self.domain_xml(server)
        if domain is not None:
            self.assertEqual([], self.pci_hostdevs(domain))
        self.delete_server(server['id'])
        self.assert_no_allocation(server['id'])


class DeviceContextCliTest(DeviceContextBase):
    """``openstack server create --device-context`` (nova-acc[cli])."""

    def openstack(self, *args):
        creds = self.os_primary.credentials
        env = {k: v for k, v in os.environ.items()
               if not k.startswith('OS_')}
        env.update({
            'OS_AUTH_URL': CONF.identity.uri_v3,
            'OS_IDENTITY_API_VERSION': '3',
            'OS_USERNAME': creds.username,
            'OS_PASSWORD': creds.password,
            'OS_PROJECT_NAME': creds.project_name,
            'OS_USER_DOMAIN_NAME': creds.user_domain_name or 'Default',
            'OS_PROJECT_DOMAIN_NAME': creds.project_domain_name or 'Default',
            'OS_REGION_NAME': CONF.identity.region,
            'OS_COMPUTE_API_VERSION': '2.37',
        })
        return subprocess.run(
            [CONF.nova_acc.openstack_command] + list(args), env=env,
            capture_output=True, text=True,
            timeout=CONF.nova_acc.cli_timeout)

    def server_create(self, name, *options):
        return self.openstack(
            'server', 'create', '--flavor', CONF.compute.flavor_ref,
            '--image', CONF.compute.image_ref, '--nic', 'none',
            *options, '-f', 'json', name)

    @decorators.idempotent_id('8091a2b3-6d7e-4f80-9b2c-3d4e5f605a08')
    def test_cli_device_context_reaches_the_cloud(self):
        context = CONF.nova_acc.unsatisfiable_context
        name = data_utils.rand_name(prefix=CONF.resource_name_prefix,
                                    name='nova-acc-cli')
        result = self.server_create(name, '--device-context', context)
        self.assertEqual(0, result.returncode, result.stderr)
        server_id = json.loads(result.stdout)['id']
        self.addCleanup(self.delete_server, server_id)
        waiters.wait_for_server_status(self.servers_client, server_id,
                                       'ERROR', raise_on_error=False)
        server = self.admin_servers.show_server(server_id)['server']
        message = self.fault(server)
        self.assertIn(NO_DEVICES % context, message)
        self.assert_no_allocation(server_id)

    @decorators.idempotent_id('91a2b3c4-7e8f-4091-8c3d-4e5f60715a09')
    def test_cli_refuses_invalid_context(self):
        """The client checks the value: nothing is created."""
        name = data_utils.rand_name(prefix=CONF.resource_name_prefix,
                                    name='nova-acc-cli-bad')
        result = self.server_create(name, '--device-context',
                                    'resources:FPGA=0')
        self.assertNotEqual(0, result.returncode, result.stdout)
        self.assertIn("Invalid amount in 'resources:FPGA=0'", result.stderr)
        servers = self.servers_client.list_servers(name=name)['servers']
        self.assertEqual([], servers)


class DeviceBootTest(DeviceRequired, DeviceContextBase):
    """A context a host can serve: the device is passed through."""

    device_kinds = ('device_context', 'profile')

    @classmethod
    def resource_class(cls):
        if CONF.nova_acc.device_resource_class:
            return CONF.nova_acc.device_resource_class, None
        match = re.match(r'resources:([A-Z0-9_]+)=(\d+)$',
                         CONF.nova_acc.device_context)
        if not match:
            return None, None
        return match.group(1), int(match.group(2))

    @decorators.idempotent_id('a2b3c4d5-8f90-41a2-9d4e-5f6071825a10')
    def test_boot_with_device(self):
        rc, amount = self.resource_class()
        before = self.usage(rc) if rc else None
        server = self.boot(CONF.nova_acc.device_context,
                           wait_until='ACTIVE')
        if rc:
            during = self.usage(rc)
            self.assertEqual(before + (amount or 1), during)
            resources = {}
            for alloc in self.allocations(server['id']).values():
                for k, v in alloc['resources'].items():
                    resources[k] = resources.get(k, 0) + v
            self.assertEqual(amount or 1, resources.get(rc))
        if CONF.nova_acc.libvirt_uri and CONF.nova_acc.libvirt_host:
            # The host with the device is the one whose libvirt we read.
            self.assertEqual(CONF.nova_acc.libvirt_host,
                             server['OS-EXT-SRV-ATTR:host'])
        domain = self.domain_xml(server)
        if domain is not None:
            hostdevs = self.pci_hostdevs(domain)
            self.assertEqual(amount or 1, len(hostdevs),
                             ET.tostring(domain, encoding='unicode'))
            for hostdev in hostdevs:
                self.assertIsNotNone(hostdev.find('./source/address'))
        self.delete_server(server['id'])
        self.assert_no_allocation(server['id'])
        if rc:
            self.assertEqual(before, self.usage(rc))

    @decorators.idempotent_id('b3c4d5e6-9012-42b3-8e5f-607182935a11')
    def test_profile_with_device(self):
        if not (CONF.nova_acc.profile and CONF.nova_acc.profile_satisfiable):
            raise self.skipException('[nova_acc] profile is not set or not '
                                     'profile_satisfiable')
        server = self.boot('profile:%s' % CONF.nova_acc.profile,
                           wait_until='ACTIVE')
        domain = self.domain_xml(server)
        if domain is not None:
            self.assertNotEqual([], self.pci_hostdevs(domain))
        self.delete_server(server['id'])
        self.assert_no_allocation(server['id'])
        if domain is not None and CONF.nova_acc.manage_command:
            # The profile's device may have no reset method (the edu):
            # dirty after the delete, put back for the tests after this.
            for address in self.hostdev_addresses(domain):
                self.clear_if_dirty(address)
