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
"""Moves on this host: destination and source of resize, migration, evacuate.

Which moves are refused, and why, is the control plane's
(``nova_acc.moves``); this is what the compute does for the moves that
happen. The destination binds the server's groups to its own pools from the
allocation of the move and claims their devices for that move
(``claim_for_move``, ``rebind_for_evacuation``); the source gets its
bindings back when a move is reverted (``restore_after_revert``) or an
evacuation fails here (``restore_bindings``).

Nova's migration record is read here and nowhere else on the compute
(``read_move``): the reconcile's facts, the guest's devices during a move
and the moves themselves all ask this one reader, with the status sets
below saying what a status means for the devices.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
import dataclasses

from nova import context as nova_context
from nova import exception as nova_exc
from nova import objects
from oslo_log import log as logging

from nova_acc import binding
from nova_acc import exception
from nova_acc.compute import attach_handles
from nova_acc.compute import claiming
from nova_acc.compute import ledger
from nova_acc.compute import snapshot as host_snapshot

LOG = logging.getLogger(__name__)

#: Migration statuses of a move that was undone: what its destination
#: claimed is released.
UNDONE = frozenset({'reverted', 'error', 'failed', 'cancelled'})
#: Migration statuses of a move that is over and succeeded.
SUCCEEDED = frozenset({'confirmed', 'done', 'completed'})
#: Migration statuses after which the source no longer keeps the devices.
SOURCE_RELEASED = SUCCEEDED | {'error', 'failed', 'cancelled'}


@dataclasses.dataclass(frozen=True)
class Move:
    """A server's move under way, as its migration record says."""

    migration_id: int
    status: str
    source_node: str | None
    dest_node: str | None


def read_move(ctxt, migration_id: int) -> Move | None:
    """Nova's migration record; None when Nova has no such migration."""
    try:
        migration = objects.Migration.get_by_id(ctxt, migration_id)
    except nova_exc.MigrationNotFound:
        return None
    return Move(migration.id, migration.status, migration.source_node,
                migration.dest_node)


def move_here(instance, nodename: str) -> int | None:
    """The move under way whose destination is this node, if any.

    From the server's migration context; a move that was reverted or
    failed is not one (its devices here are being released).
    """
    mc = instance.migration_context
    if mc is None:
        return None
    move = read_move(nova_context.get_admin_context(), mc.migration_id)
    if move is None or move.dest_node != nodename or \
            move.status in UNDONE:
        return None
    return move.migration_id


def from_records(records: Mapping[str, ledger.DeviceRecord],
                 instance_uuid: str, nodename: str,
                 held_states: Set[str] = ledger.HELD
                 ) -> list[binding.Binding]:
    """Pool bindings of a server rebuilt from the device ledger of a node.

    A reverted move gives the server back the devices it kept on the
    source, and with them the bindings it had there.
    """
    groups: dict[tuple, int] = {}
    for rec in records.values():
        if (rec.instance_uuid == instance_uuid and rec.requester_id and
                rec.migration_id is None and not rec.backend_owned and
                rec.state in held_states):
            key = (rec.requester_id, rec.rp_uuid, rec.resource_class)
            groups[key] = groups.get(key, 0) + 1
    return [binding.Binding(req, rp, None, nodename, amount=n,
                            resource_class=rc)
            for (req, rp, rc), n in sorted(groups.items())]


class Moves:
    """The moves of servers to and from one host."""

    def __init__(self, host: host_snapshot.Host, claims: claiming.Claims,
                 handles: attach_handles.AttachHandles):
        self._host = host
        self._claims = claims
        self._handles = handles

    def rebind_for_evacuation(self, context, instance, allocations,
                              snapshot: host_snapshot.HostSnapshot
                              ) -> list[binding.Binding] | None:
        """Destination of an evacuation: bind the groups to pools here.

        Nova's conductor binds nothing on evacuate for servers without
        Cyborg device profiles, and Nova moves the server's node here only
        once its guest runs: the groups are bound here from the allocation
        of the move (the backend's objects too, by the backend), and the
        devices claimed for it when the guest is defined (tagged with the
        move, so a failed evacuation releases them).

        :returns: the bindings before, for ``restore_bindings`` when the
            evacuation fails here (the server then stays on its source);
            None when nothing was rebound.
        :raises DeviceNotUsable: a group has no pool in the allocation, or
            a binding cannot move, or the backend did not bind it here.
        """
        bindings = binding.load(instance)
        if not bindings or all(b.nodename == snapshot.nodename
                               for b in bindings):
            return None
        if move_here(instance, snapshot.nodename) is None:
            return None  # not a move to here: the guest's devices say why
        try:
            self._rebind(context, instance, bindings, allocations, snapshot)
        except Exception:
            self.restore_bindings(context, instance, bindings)
            raise
        return bindings

    def restore_bindings(self, context, instance,
                         bindings: list[binding.Binding]) -> None:
        """Put back the bindings a failed evacuation replaced.

        The backend's objects are bound back to the source's providers,
        which the source allocation still holds for the server: what the
        backend records then matches placement and the server's record.
        """
        try:
            # The backend unbinds them here first.
            self._handles.bind_backend(context, instance, [
                b for b in bindings if b.context_id])
            binding.replace(instance, bindings)
            instance.save()
        except Exception:  # the evacuation's own error is what matters
            LOG.exception('Could not restore the device bindings of the '
                          'server after its evacuation failed.',
                          instance=instance)

    def _rebind(self, context, instance, bindings, allocations,
                snapshot: host_snapshot.HostSnapshot) -> None:
        try:
            moved = binding.for_move(
                bindings, allocations,
                {u: p.key.resource_class for u, p in snapshot.pools.items()},
                snapshot.nodename)
        except exception.BindingCannotMove as e:
            raise exception.DeviceNotUsable(str(e))
        binding.keep_for_revert(instance, bindings)
        binding.replace(instance, moved)
        instance.save()
        self._handles.bind_backend(context, instance, [
            b for b in moved if b.context_id])

    def claim_for_move(self, context, instance, migration, allocations,
                       virtapi, snapshot: host_snapshot.HostSnapshot
                       ) -> None:
        """Destination of a resize or cold migration: bind and claim.

        The server's groups are bound to this node's pools that placement
        allocated to it for the move, and the devices picked and claimed
        for that move; the backend's objects are bound to the providers of
        the allocation here (the source's guest is shut off by now). The
        source keeps its own devices until the move is confirmed
        (``nova_acc.compute.reconcile``).

        :raises DeviceNotUsable: a group has no pool in the allocation, a
            binding cannot move, a pool has too few free devices, or the
            backend did not bind here.
        """
        bindings = binding.load(instance)
        if not bindings:
            return
        self._rebind(context, instance, bindings, allocations, snapshot)
        self._handles.wait_for_backend(context, instance, virtapi)
        self._claims.claim(instance, snapshot, migration_id=migration.id)
        attach_handles.record_in_contexts(instance, snapshot.nodename, [
            r for r in self._host.ledger.records().values()
            if r.instance_uuid == instance.uuid and
            r.migration_id == migration.id and r.state in ledger.ACTIVE])

    def restore_after_revert(self, context, instance, virtapi) -> None:
        """Source of a reverted move: the bindings of the devices it kept.

        Those of the pools from this node's ledger; the backend's objects
        are bound back to the providers they had here, which the source
        allocation held for the server during the move (the destination
        unbound them when it destroyed its guest).

        :raises DeviceNotUsable: the backend did not bind them back.
        """
        nodename = self._host.nodename
        restored = from_records(self._host.ledger.records(), instance.uuid,
                                nodename)
        kept = binding.kept_for_revert(instance, nodename)
        restored += [dataclasses.replace(b, address=None) for b in kept]
        if not restored:
            return
        binding.replace(instance, sorted(restored,
                                         key=lambda b: b.requester_id))
        binding.forget_kept(instance)
        instance.save()
        self._handles.bind_backend(context, instance, kept)
        self._handles.wait_for_backend(context, instance, virtapi)
        attach_handles.record_in_contexts(instance, nodename, [
            r for r in self._host.ledger.records().values()
            if r.instance_uuid == instance.uuid and
            r.migration_id is None and r.state in ledger.ACTIVE])
