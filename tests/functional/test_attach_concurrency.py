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
"""Many attaches at once to servers of one host with fewer free devices
than asked (issue 23, Tests), in Nova's harness with casts as casts.

nova-acc-api answers each attach 202 at once; the host's RPC server runs
the casts side by side (each under its own server's lock, none under
another's), so they race in placement for the one pool of the host.
Exactly as many succeed as there are devices; every other context ends
``unbound`` with a fault that names it and says why; no device is in two
guests; placement = ledger = domain hostdevs for every server after.
"""

import collections
import threading
import time

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt

from nova_acc.compute import attach_placement
from nova_acc.compute import ledger
from tests.functional import test_attach

SERVERS = 20
DEVICES = 5


class AttachConcurrencyTest(test_attach.AttachTestBase):

    def _servers(self, count):
        self.flags(instances=-1, cores=-1, ram=-1, group='quota')
        # 8 cores (32 vCPUs at Nova's default ratio) for 20 servers.
        self.fpgas = self.start_fpga_host(
            'compute1', num_fpgas=DEVICES,
            host_info=fakelibvirt.HostInfo(cpu_cores=8))
        # One by one: the concurrency under test is the attaches'.
        return [self.boot() for _ in range(count)]

    def test_more_attaches_than_free_devices_exactly_as_many_as_fit(self):
        began = time.monotonic()
        servers = self._servers(SERVERS)
        contexts = [self.create() for _ in servers]

        for ctx, server in zip(contexts, servers):
            answered = self.member.attach(ctx, server['id'])
            self.assertEqual('attaching', answered['state'])
        final = [self.wait_for_context(ctx, 'bound', 'unbound', timeout=300)
                 for ctx in contexts]
        print('%d servers, %d devices: %.1f s' % (
            SERVERS, DEVICES, time.monotonic() - began))

        states = collections.Counter(c['state'] for c in final)
        self.assertEqual({'bound': DEVICES, 'unbound': SERVERS - DEVICES},
                         dict(states))
        held = []
        for ctx, server in zip(final, servers):
            devices = [d['address'] for d in ctx['devices']]
            self.assert_agree(server, 'compute1', devices)
            held += devices
            if ctx['state'] == 'unbound':
                self.assertEqual([], devices)
                self.assertIn(
                    'device context %s could not be attached to server %s: '
                    'no free device on host compute1 for it' % (
                        ctx['id'], server['id']), ctx['fault'])
                self.assertEqual([], self.spec_values(server))
                self.assertEqual([], self.server_bindings(server))
            else:
                self.assertEqual([ctx['id']], self.spec_values(server))
        # Each device in one guest, and every device in one.
        self.assertEqual(sorted(self.fpgas), sorted(held))
        in_domains = [a for addresses in self.domain_hostdevs(
            'compute1').values() for a in addresses]
        self.assertEqual(sorted(self.fpgas), sorted(in_domains))
        records = self.ledger('compute1')
        self.assertEqual([ledger.ATTACHED] * DEVICES,
                         [records[a].state for a in self.fpgas])
        self.assertEqual({'FPGA': DEVICES}, self.provider_usage(
            self.device_rp('compute1', self.fpgas[0])))
        # Nothing was reset: no device was given to a server and taken
        # back.
        self.assertEqual([0] * DEVICES,
                         [self.reset_count(a) for a in self.fpgas])

    def test_the_last_device_offered_to_two_attaches_one_gets_it(self):
        """Placement offers both the last free device; the attach whose
        PUT comes second is refused for capacity, asks again and fails
        saying there is no free device, not that its server changed."""
        first, second = self._servers(2)
        # One device free: each other one is held by a server of its own.
        for _ in range(DEVICES - 1):
            self.boot('resources:FPGA=1')
        offered, taken = threading.Event(), threading.Event()
        real = attach_placement._write

        def write(report, ctxt, server_uuid, current, allocations):
            if server_uuid == first['id'] and not offered.is_set():
                # first read the candidate; the second now takes it.
                offered.set()
                taken.wait(30)
                return real(report, ctxt, server_uuid, current, allocations)
            try:
                return real(report, ctxt, server_uuid, current, allocations)
            finally:
                if server_uuid == second['id']:
                    taken.set()

        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.compute.attach_placement._write', write))
        lost, won = self.create(), self.create()
        self.member.attach(lost, first['id'])
        self.assertTrue(offered.wait(30))
        self.member.attach(won, second['id'])

        won_now = self.wait_for_context(won, 'bound', 'unbound')
        lost_now = self.wait_for_context(lost, 'bound', 'unbound')

        self.assertEqual(('bound', 'unbound'),
                         (won_now['state'], lost_now['state']))
        self.assertIn('device context %s could not be attached to server %s: '
                      'no free device on host compute1 for it' % (
                          lost, first['id']), lost_now['fault'])
        device = [d['address'] for d in won_now['devices']]
        self.assert_agree(second, 'compute1', device)
        self.assert_agree(first, 'compute1', [])
        self.assertEqual([], self.spec_values(first))
        self.assertEqual({'FPGA': DEVICES}, self.provider_usage(
            self.device_rp('compute1', device[0])))
