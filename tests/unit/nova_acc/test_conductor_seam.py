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
"""The wording of the fault when the last host refused a server.

What a user sees end to end is in tests/functional/test_reschedule_fault.py;
here the cases a functional test does not reach cheaply: ARQs, contexts
of several groups, what is left out, long values.
"""

import uuid

from nova import objects
from oslotest import base

from nova_acc import request_groups
from nova_acc.seams import conductor

objects.register_all()

SERVER = '5a0c5a55-0000-4000-8000-000000000001'
OTHER = '0b0b0b0b-0000-4000-8000-000000000002'
POOL = 'e9ef9a8a-ccdb-537d-8ef3-d38c00ad6b00'
ARQ = '7d5f9b5e-1c1e-4b53-9f54-6a3f3b1e2c11'
UNAVAILABLE = 'Insufficient compute resources: %s.'


def fault(reason, values, groups=None, nodes=('compute1',)):
    own = {SERVER} | {str(uuid.UUID(v)) for v in values
                      if v.count('-') == 4}
    return conductor.refusal_fault(UNAVAILABLE % reason, list(values),
                                   groups or {}, own, list(nodes))


class RefusalFaultTest(base.BaseTestCase):

    def test_a_group_is_named_by_its_context_and_the_rest_left_out(self):
        text = fault(
            'device group nova_acc_0_0 needs 1 device(s) of pool %s, only '
            '0 free (device 0000:81:00.0 is attached by server %s) on node '
            'compute1' % (POOL, OTHER), ['resources:FPGA=1'])
        self.assertEqual(
            "No host is left to try; the last one refused: device context "
            "'resources:FPGA=1' needs 1 device(s) of its pool, only 0 free "
            "(device 0000:81:00.0 is attached by another server) on the "
            "host.", text)

    def test_an_arq_is_named_by_its_id_as_the_user_wrote_it(self):
        written = ARQ.upper()
        requester = request_groups.RequesterId(0, 0, ARQ).encode()
        text = fault('device group %s needs 1 device(s)' % requester,
                     [written])
        self.assertIn("device context '%s' needs 1 device(s)" % written,
                      text)
        self.assertNotIn(requester, text)
        # The ARQ's own ID, in the host's words, is the user's to see.
        self.assertIn(ARQ, fault('device context %s has no attach handle '
                                 'yet' % ARQ, [written]))

    def test_a_group_of_a_context_of_several(self):
        text = fault('device group nova_acc_1_1 needs 2 device(s)',
                     ['resources:PGPU=1', 'profile:pair'], {0: 1, 1: 2})
        self.assertIn("group 2 of device context 'profile:pair' needs",
                      text)
        self.assertNotIn('PGPU', text)

    def test_a_reason_naming_no_group_names_every_context(self):
        text = conductor.refusal_fault(
            "[Errno 28] No space left on device: '/var/lib/nova/ledger'",
            ['resources:FPGA=1', 'profile:gzip'], {}, {SERVER}, [])
        self.assertEqual(
            "No host is left to try; the last one refused the server with "
            "device context 'resources:FPGA=1', device context "
            "'profile:gzip': [Errno 28] No space left on device: "
            "'/var/lib/nova/ledger'.", text)

    def test_what_is_not_the_users_is_left_out(self):
        def refused(reason):
            return fault(reason, ['resources:FPGA=1'],
                         nodes=['compute1.example.org'])

        text = refused('device 0000:81:00.0 is used by guest '
                       'instance-0000002a, which Nova does not know as its '
                       'holder')
        self.assertIn('used by a guest, which Nova does not know', text)
        self.assertNotIn('instance-0000002a', text)
        text = refused('device 0000:81:00.1 is still held by the guest of '
                       'server %s, which left this host' % OTHER)
        self.assertIn('the guest of another server, which left', text)
        self.assertNotIn(OTHER, text)
        text = refused('resource provider %s is not in the tree of node '
                       'compute1.example.org' % uuid.uuid4())
        self.assertIn('resource provider (not shown) is not in the tree of '
                      'the host', text)
        self.assertNotIn('compute1', text)
        # The server's own UUID is the user's.
        self.assertIn('server %s' % SERVER,
                      refused('device 0000:81:00.2 is claimed by server %s'
                              % SERVER))

    def test_long_values_and_reasons_fit_the_fault(self):
        value = 'resources:FPGA=1,' + ','.join(
            'trait:CUSTOM_T%03d=required' % i for i in range(100))
        text = fault('device group nova_acc_0_0 needs 1 device(s) of pool '
                     '%s, only 0 free (%s)' % (POOL, 'x' * 500), [value])
        self.assertIn("device context '%s...' needs" % value[:57], text)
        self.assertLessEqual(
            len('Exceeded maximum number of retries. ' + text), 255)
        self.assertTrue(text.endswith('...'))


class RefusalOfTest(base.BaseTestCase):
    """Which reschedules get nova-acc's fault."""

    def spec(self, values):
        return objects.RequestSpec(
            scheduler_hints={'device_context': values} if values else {})

    def test_servers_with_device_contexts_and_a_reason(self):
        props = {'retry': {'exc_reason': UNAVAILABLE % 'boom',
                           'hosts': [['compute1', 'node1']]}}
        reason, text = conductor._refusal_of(
            props, self.spec(['resources:FPGA=1']),
            [objects.Instance(uuid=SERVER)])
        self.assertEqual(UNAVAILABLE % 'boom', reason)
        self.assertIn("'resources:FPGA=1': boom.", text)

    def test_nova_keeps_its_own_fault_otherwise(self):
        server = [objects.Instance(uuid=SERVER)]
        with_reason = {'retry': {'exc_reason': 'boom'}}
        self.assertIsNone(conductor._refusal_of(
            with_reason, self.spec([]), server))
        self.assertIsNone(conductor._refusal_of(
            {'retry': {}}, self.spec(['resources:FPGA=1']), server))
        self.assertIsNone(conductor._refusal_of(
            with_reason, None, server))
