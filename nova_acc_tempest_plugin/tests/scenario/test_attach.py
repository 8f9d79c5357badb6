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
"""Attach a device context to a running server and detach it (issue 23).

``PUT``/``DELETE /v1/device-contexts/{id}/attachment`` in a real cloud:
nova-acc-api reads the server from Nova's API with its ``[nova]``
credentials and casts over the cloud's RabbitMQ to nova-acc's endpoint on
the server's nova-compute, which ends the context ``bound`` or
``unbound`` with a fault (see the API reference and the user guide).

``AttachRefusedTest`` needs no device: an attach no host can serve, and
the refusals the API gives at once. ``AttachDetachTest`` runs on the host
with devices (``DeviceRequired``, the VFIO host VM in CI): one server
without a context, one attach of a context of the pool of
``[nova_acc] device_context``, one detach, each checked in the domain
XML, the host's ledger and placement.
"""

import re
import time

from tempest.common import waiters
from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib.common.utils import test_utils
from tempest.lib import decorators
from tempest.lib import exceptions as lib_exc

from nova_acc_tempest_plugin.services import device_context_client
from nova_acc_tempest_plugin.tests.scenario import test_device_context_api
from nova_acc_tempest_plugin.tests.scenario import test_device_host

CONF = config.CONF

message = device_context_client.error_message
#: The states in which a context's compute is still at work.
TRANSITIONS = ('attaching', 'detaching')
#: A line of the probe guest's listing of its PCI functions at boot
#: (tools/lib/probe-init.sh; an image built by an older version prints no
#: "done" after it).
GUEST_UP = re.compile(r'nova-acc guest: pci ')


def resources(allocations):
    """rp -> resources of a consumer's allocations (the providers'
    generations change with every other consumer's allocation)."""
    return {rp: alloc['resources'] for rp, alloc in allocations.items()}


def wait_for_transition(test, contexts, context_id):
    """The context once its compute ended the attach or detach."""
    timeout = CONF.device_context.state_timeout
    deadline = time.time() + timeout
    while True:
        context = contexts.show_device_context(context_id)['device_context']
        if context['state'] not in TRANSITIONS:
            return context
        if time.time() > deadline:
            test.fail('device context %s is still %s after %d s: %s' % (
                context_id, context['state'], timeout, context))
        time.sleep(CONF.compute.build_interval)


class AttachRefusedTest(test_device_context_api.DeviceContextAPIBase):
    """Attaches that must fail, and leave the server and placement as
    they were; one server of the primary project for the class."""

    @classmethod
    def resource_setup(cls):
        super().resource_setup()
        server = cls.servers_client.create_server(
            name=data_utils.rand_name(prefix=CONF.resource_name_prefix,
                                      name='nova-acc-attach'),
            imageRef=CONF.compute.image_ref,
            flavorRef=CONF.compute.flavor_ref, networks='none')['server']
        cls.addClassResourceCleanup(waiters.wait_for_server_termination,
                                    cls.servers_client, server['id'],
                                    ignore_error=True)
        cls.addClassResourceCleanup(test_utils.call_and_ignore_notfound_exc,
                                    cls.servers_client.delete_server,
                                    server['id'])
        waiters.wait_for_server_status(cls.servers_client, server['id'],
                                       'ACTIVE')
        cls.server_id = server['id']

    def assert_server_untouched(self, allocations):
        server = self.admin_servers.show_server(self.server_id)['server']
        self.assertEqual(('ACTIVE', None),
                         (server['status'],
                          server['OS-EXT-STS:task_state']))
        self.assertEqual(resources(allocations),
                         resources(self.allocations(self.server_id)))

    @decorators.idempotent_id('3b8c1e52-7d4a-4f06-9a1e-5c2d8b7f0a31')
    def test_attach_no_host_can_serve_fails_cleanly(self):
        """The compute finds no device on its host: the context ends
        unbound with a fault naming it and why; the server keeps running
        with the allocation it had; the attach is an instance action."""
        allocations = self.allocations(self.server_id)
        context = self.create_context(
            spec=CONF.nova_acc.unsatisfiable_context)
        started = self.contexts.attach_device_context(
            context['id'], self.server_id)['device_context']
        self.assertEqual(('attaching', self.server_id),
                         (started['state'], started['server_id']))

        ended = wait_for_transition(self, self.contexts, context['id'])
        self.assertEqual(('unbound', None, None, []),
                         (ended['state'], ended['server_id'], ended['host'],
                          ended['devices']), ended)
        self.assertIn('device context %s could not be attached to server %s'
                      % (context['id'], self.server_id), ended['fault'])
        self.assertIn('no free device on host', ended['fault'])
        self.assert_server_untouched(allocations)
        actions = self.servers_client.list_instance_actions(
            self.server_id)['instanceActions']
        self.assertIn('attach_device_context',
                      [a['action'] for a in actions], actions)
        # Unbound, it is the user's to use or delete again.
        self.contexts.delete_device_context(context['id'])

    @decorators.idempotent_id('4c9d2f63-8e5b-4017-8b2f-6d3e9c801b42')
    def test_attach_refused_bound_context_and_foreign_server(self):
        """409 naming the server a context is bound to; another project's
        server is a 404 in the words of a missing one; nothing changes."""
        allocations = self.allocations(self.server_id)
        server = self.admin_servers.show_server(self.server_id)['server']
        project_id = self.os_primary.credentials.project_id

        # Bound (by Nova's side; here the admin): not attachable.
        context = self.create_context()
        self.admin_contexts.bind_device_context(
            context['id'], self.server_id, server['OS-EXT-SRV-ATTR:host'],
            project_id)
        self.addCleanup(self.admin_contexts.unbind_device_context,
                        context['id'], self.server_id)
        error = self.assertRaises(lib_exc.Conflict,
                                  self.contexts.attach_device_context,
                                  context['id'], self.server_id)
        self.assertIn('device context %s is bound to server %s'
                      % (context['id'], self.server_id), message(error))
        self.assertEqual('bound', self.show(context['id'])['state'])

        # The alt project's context to the primary's server: refused as a
        # server that does not exist, nothing of the server in the answer.
        foreign = self.alt_contexts.create_device_context(
            spec=test_device_context_api.SPEC)['device_context']
        self.addCleanup(test_utils.call_and_ignore_notfound_exc,
                        self.alt_contexts.delete_device_context,
                        foreign['id'])
        missing_id = data_utils.rand_uuid()
        refused = [
            message(self.assertRaises(
                lib_exc.NotFound, self.alt_contexts.attach_device_context,
                foreign['id'], server_id))
            for server_id in (self.server_id, missing_id)]
        self.assertEqual('Server %s could not be found.' % self.server_id,
                         refused[0])
        self.assertEqual(refused[1].replace(missing_id, self.server_id),
                         refused[0])
        self.assertNotIn(project_id, refused[0])
        after = self.alt_contexts.show_device_context(
            foreign['id'])['device_context']
        self.assertEqual(('unbound', None, None),
                         (after['state'], after['server_id'], after['fault']))
        self.assert_server_untouched(allocations)


class AttachDetachTest(test_device_host.DeviceHostBase,
                       test_device_context_api.DeviceContextAPIBase):
    """A device hot-plugged into a running guest and unplugged again.

    The server is the admin project's: only an admin may say which host a
    server boots on (``host``, microversion 2.74), and a server without a
    context would otherwise land on any host. Its context is the admin
    project's too (an attach needs both in one project).
    """

    min_microversion = '2.74'

    def boot_on_device_host(self):
        server = self.admin_servers.create_server(
            name=data_utils.rand_name(prefix=CONF.resource_name_prefix,
                                      name='nova-acc-attach'),
            imageRef=CONF.compute.image_ref,
            flavorRef=CONF.compute.flavor_ref, networks='none',
            host=CONF.nova_acc.libvirt_host)['server']
        self.addCleanup(waiters.wait_for_server_termination,
                        self.admin_servers, server['id'], ignore_error=True)
        self.addCleanup(test_utils.call_and_ignore_notfound_exc,
                        self.admin_servers.delete_server, server['id'])
        waiters.wait_for_server_status(self.admin_servers, server['id'],
                                       'ACTIVE')
        return self.admin_servers.show_server(server['id'])['server']

    def wait_for_guest(self, server_id):
        """The probe guest's console once it listed its PCI functions.

        A hot-unplug needs the guest's kernel to release the device (as a
        port's detach does): detaching from a guest still booting would
        wait out Nova's detach retries.
        """
        deadline = time.time() + CONF.nova_acc.console_timeout
        output = ''
        while not GUEST_UP.search(output):
            if time.time() > deadline:
                self.fail('the guest of server %s did not boot within %s s:'
                          '\n%s' % (server_id, CONF.nova_acc.console_timeout,
                                    output[-2000:]))
            time.sleep(15)
            output = self.admin_servers.get_console_output(
                server_id)['output']
        return output

    def wait_for_kernel_to_find(self, server_id, pci_id):
        """The guest's console once its kernel logged the PCI function
        pci_id (0xVENDOR:0xDEVICE) found on a bus (``pci 0000:00:05.0:
        [1af4:1044] type 00 ...``): the hot-plug reached the guest. The
        cloud's guest image has its kernel log on the serial console."""
        vendor, device = (part[2:] for part in pci_id.split(':'))
        found = re.compile(r'pci [0-9a-f:.]+: \[%s:%s\] type' % (
            re.escape(vendor), re.escape(device)))
        deadline = time.time() + CONF.nova_acc.console_timeout
        output = ''
        while not found.search(output):
            if time.time() > deadline:
                self.fail('the guest of server %s does not show %s after %s '
                          's:\n%s' % (server_id, pci_id,
                                      CONF.nova_acc.console_timeout,
                                      output[-2000:]))
            time.sleep(10)
            output = self.admin_servers.get_console_output(
                server_id)['output']

    def rp_name(self, rp_uuid):
        return self.providers.show_resource_provider(rp_uuid)['name']

    def assert_on_the_servers_node(self, server_id, pool):
        """pool's provider is a pool of the node the server runs on."""
        allocations = self.allocations(server_id)
        (node,) = [rp for rp, alloc in allocations.items()
                   if 'VCPU' in alloc['resources']]
        self.assertTrue(self.rp_name(pool).startswith(
            self.rp_name(node) + '_'), (pool, node))
        return allocations

    @decorators.idempotent_id('5dae3074-9f6c-4128-9c30-7e4fad912c53')
    def test_attach_to_running_server_then_detach(self):
        contexts = self.admin_contexts
        before = self.ledger()
        server = self.boot_on_device_host()
        server_id = server['id']
        self.assertEqual([], self.devices_of(server_id))
        allocations = self.allocations(server_id)
        console = self.wait_for_guest(server_id)
        pci_id = CONF.nova_acc.device_pci_id
        if pci_id:
            self.assertNotIn('[%s:%s]' % tuple(
                part[2:] for part in pci_id.split(':')), console,
                'the guest has the device before the attach')

        context = contexts.create_device_context(
            spec=CONF.nova_acc.device_context)['device_context']
        self.addCleanup(test_utils.call_and_ignore_notfound_exc,
                        contexts.delete_device_context, context['id'])
        started = contexts.attach_device_context(
            context['id'], server_id)['device_context']
        self.assertEqual('attaching', started['state'])
        bound = wait_for_transition(self, contexts, context['id'])
        self.assertEqual(('bound', server_id, server['OS-EXT-SRV-ATTR:host'],
                          None),
                         (bound['state'], bound['server_id'], bound['host'],
                          bound['fault']), bound)
        # The guest has one device, the ledger gives it to the server,
        # placement counts it on a pool of the server's own node.
        (address,) = self.devices_of(server_id)
        self.assert_held(server_id, [address])
        self.assertEqual('attached', self.ledger()[address]['state'])
        (pool,) = set(self.allocations(server_id)) - set(allocations)
        grown = resources(self.assert_on_the_servers_node(server_id, pool))
        added = grown.pop(pool)
        match = re.match(r'resources:([A-Z0-9_]+)=(\d+)$',
                         CONF.nova_acc.device_context)
        if match:
            self.assertEqual({match.group(1): int(match.group(2))}, added)
        # Grown by the pool's devices only.
        self.assertEqual(resources(allocations), grown)
        if pci_id:
            self.wait_for_kernel_to_find(server_id, pci_id)

        started = contexts.detach_device_context(
            context['id'])['device_context']
        self.assertEqual('detaching', started['state'])
        unbound = wait_for_transition(self, contexts, context['id'])
        self.assertEqual(('unbound', None, None, [], None),
                         (unbound['state'], unbound['server_id'],
                          unbound['host'], unbound['devices'],
                          unbound['fault']), unbound)
        self.assertEqual([], self.devices_of(server_id))
        self.assert_released(address, before[address]['last_reset'])
        self.assertEqual(resources(allocations),
                         resources(self.allocations(server_id)))
        self.assertEqual('ACTIVE', self.admin_servers.show_server(
            server_id)['server']['status'])
        # The bound context named the device it got (the API reference's
        # promise); checked last, so that the detach is checked either way.
        self.assertEqual([{'pool': pool, 'address': address}],
                         bound['devices'], bound)
