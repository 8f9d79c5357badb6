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
"""nova_acc.compute.moves: the one Migration reader, bindings from records."""

from unittest import mock

import fixtures
from nova import exception as nova_exc
from nova import objects
from oslotest import base

from nova_acc import binding
from nova_acc import exception
from nova_acc.compute import attach_handles
from nova_acc.compute import claiming
from nova_acc.compute import ledger
from nova_acc.compute import moves
from tests.unit.nova_acc.compute import rooms


def record(address, server=rooms.SERVER, group='g0', rp='rp', **fields):
    rec = ledger.DeviceRecord(address=address)
    rec.claim(server, rp, 'FPGA', (), fields.pop('context_id', None), group,
              fields.pop('migration_id', None))
    return rec


class FromRecordsTest(base.BaseTestCase):

    def test_groups_of_the_server_here(self):
        records = {'a': record('a'), 'b': record('b'),
                   'c': record('c', group='g1', rp='rp2'),
                   'd': record('d', server=rooms.OTHER),
                   'e': record('e', migration_id=7),
                   'f': record('f', context_id='arq', group='g2')}
        found = moves.from_records(records, rooms.SERVER, rooms.NODE)
        self.assertEqual([('g0', 'rp', 2), ('g1', 'rp2', 1)],
                         [(b.requester_id, b.rp_uuid, b.amount)
                          for b in found])
        self.assertTrue(all(b.is_pool and b.nodename == rooms.NODE
                            for b in found))


class ReadMoveTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        objects.register_all()
        self.get = self.useFixture(fixtures.MockPatchObject(
            objects.Migration, 'get_by_id')).mock

    def migration(self, status='finished', dest='node1'):
        self.get.return_value = mock.Mock(id=7, status=status,
                                          source_node='node0',
                                          dest_node=dest)

    def test_read(self):
        self.migration()
        self.assertEqual(moves.Move(7, 'finished', 'node0', 'node1'),
                         moves.read_move(None, 7))

    def test_gone(self):
        self.get.side_effect = nova_exc.MigrationNotFound(migration_id=7)
        self.assertIsNone(moves.read_move(None, 7))

    def test_move_here(self):
        self.migration()
        instance = rooms.server(migration_context=mock.Mock(migration_id=7))
        self.assertEqual(7, moves.move_here(instance, 'node1'))
        self.assertIsNone(moves.move_here(instance, 'node2'))
        self.assertIsNone(moves.move_here(rooms.server(), 'node1'))

    def test_an_undone_move_is_not_one(self):
        for status in moves.UNDONE:
            self.migration(status=status)
            instance = rooms.server(
                migration_context=mock.Mock(migration_id=7))
            self.assertIsNone(moves.move_here(instance, 'node1'), status)


class ClaimForMoveTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.fx = self.useFixture(rooms.HostFixture())
        claims = claiming.Claims(self.fx.host, mock.Mock())
        handles = attach_handles.AttachHandles(
            self.fx.host, attach_handles.TeardownContexts())
        self.moves = moves.Moves(self.fx.host, claims, handles)

    def test_a_binding_that_cannot_move_is_a_device_not_usable_here(self):
        # One device bound before pools: for_move refuses it, as a move's
        # binding (not a pre-bind); the destination fails the move with it.
        device = binding.Binding('g0', 'rp-old', rooms.A, 'node0')
        self.assertRaises(exception.BindingCannotMove, binding.for_move,
                          [device], {}, {}, rooms.NODE)
        instance = rooms.server([device])
        e = self.assertRaises(
            exception.DeviceNotUsable, self.moves.claim_for_move, None,
            instance, mock.Mock(id=7), {}, None, self.fx.host.snapshot())
        self.assertIn('device group g0 is bound to %s, which cannot move'
                      % rooms.A, str(e))
        self.assertEqual([device], binding.load(instance))
        self.assertFalse(self.fx.host.ledger.exists())
