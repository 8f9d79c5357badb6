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
"""Step 4 of the flow: the devices a server's guest gets on this host.

``prepare`` runs once per guest definition an operation makes (a build, a
hard reboot, a power on, a rescue, the destination of a move): it checks
the server's bindings, claims in the ledger what the ledger does not give
it yet (the first build; a server bound before the ledger existed), creates
the mdevs it holds that do not exist (the first build; after a host reboot)
and returns the devices as ``os_acc.Accelerator``, one hostdev each in the
guest. A device the ledger does not give the server never reaches its
guest.

``restore_mdevs`` recreates, at nova-compute's start, the mdevs servers
hold that a host reboot lost.

Failures raise ``DeviceNotUsable``; the seam turns it into Nova's
``ComputeResourcesUnavailable`` so the server alone is rescheduled.
"""

from __future__ import annotations

from nova import context as nova_context
import os_acc
from os_acc import exception as acc_exc
from oslo_log import log as logging

from nova_acc import binding
from nova_acc import exception
from nova_acc.compute import attach_handles
from nova_acc.compute import claiming
from nova_acc.compute import configuring
from nova_acc.compute import ledger
from nova_acc.compute import moves
from nova_acc.compute import snapshot as host_snapshot

LOG = logging.getLogger(__name__)


def _current_tags(records, instance, move: int | None) -> set:
    """``migration_id`` values of the devices the guest gets now.

    During a move to this node, those claimed for the move; otherwise
    the others (on the same host the source devices stay recorded
    until the move is confirmed or reverted), except those of a move
    that was undone.
    """
    if move is not None:
        return {move}
    tags = {None}
    ctxt = nova_context.get_admin_context()
    for tag in {r.migration_id for r in records.values()
                if r.instance_uuid == instance.uuid} - {None}:
        found = moves.read_move(ctxt, tag)
        if found is not None and found.status not in moves.UNDONE:
            tags.add(tag)
    return tags


def _current(rec, instance, tags: set) -> bool:
    return (rec.instance_uuid == instance.uuid and
            rec.state in ledger.ACTIVE and
            rec.migration_id in tags)


def _holds_all(instance, bindings, records, tags: set) -> bool:
    """Does the ledger give the instance everything it is bound to?"""
    for b in bindings:
        if b.is_pool:
            held = sum(1 for r in records.values()
                       if _current(r, instance, tags) and
                       r.requester_id == b.requester_id)
            if held < b.amount:
                return False
        else:
            rec = records.get(b.address)
            if rec is None or rec.instance_uuid != instance.uuid:
                return False
    return True


def _check_bindings(bindings, nodename: str, managed) -> None:
    """Every binding is on this node and has something to attach here.

    :raises DeviceNotUsable:
    """
    for b in bindings:
        if b.nodename != nodename:
            raise exception.DeviceNotUsable(
                'device group %s is bound to node %s, not %s' % (
                    b.requester_id, b.nodename, nodename))
        if b.context_id and b.address is None:
            raise exception.DeviceNotUsable(
                'device context %s has no attach handle yet' %
                b.context_id)
        # Devices of ID-based contexts belong to their backend (Cyborg),
        # not to [nova_acc] device_spec.
        if not b.context_id and not b.is_pool and \
                b.address not in managed:
            raise exception.DeviceNotUsable(
                'bound device %s is not present on node %s' % (
                    b.address, b.nodename))


class GuestDevices:
    """The devices of the guests of one host."""

    def __init__(self, host: host_snapshot.Host, claims: claiming.Claims):
        self._host = host
        self._claims = claims

    def prepare(self, instance, snapshot: host_snapshot.HostSnapshot,
                request_context=None) -> list[os_acc.Accelerator]:
        """Check, claim, configure and create what the guest gets.

        Every binding on this node must be held by the instance in the
        ledger. Where the ledger does not give it all yet (the first spawn;
        a server bound before the ledger existed) the devices are claimed
        here; the devices of groups with config data that are not
        configured yet (just claimed, here or for a move) are configured
        (``nova_acc.compute.configuring``); the mdevs the server holds that
        do not exist are created.

        :param snapshot: the operation's host snapshot.
        :param request_context: the user's request context, passed to the
            configurators (one fetching an image on the user's behalf).
        :returns: the devices, one hostdev each in the guest.
        :raises DeviceNotUsable: a bound device is not usable here.
        """
        error = binding.load_error(instance)
        if error:
            raise exception.DeviceNotUsable(error)
        bindings = binding.load(instance)
        if not bindings:
            return []
        managed = snapshot.managed if any(
            not b.context_id for b in bindings) else {}
        _check_bindings(bindings, snapshot.nodename, managed)
        with self._claims.reschedule_if_ledger_unusable():
            records = self._host.ledger.records()
        move = moves.move_here(instance, snapshot.nodename) if any(
            b.is_pool for b in bindings) else None
        tags = _current_tags(records, instance, move)
        if not _holds_all(instance, bindings, records, tags):
            self._claims.claim(instance, snapshot, migration_id=move,
                               held_tags=tags)
            with self._claims.reschedule_if_ledger_unusable():
                records = self._host.ledger.records()
            attach_handles.record_in_contexts(instance, snapshot.nodename, [
                r for r in records.values() if _current(r, instance, tags)])
        configuring.configure(
            self._host.ledger, self._claims.reschedule_if_ledger_unusable,
            instance, [r for r in records.values()
                       if _current(r, instance, tags)],
            snapshot, request_context)
        wanted, mdevs = self._held(instance, bindings, records, tags,
                                   snapshot)
        if mdevs:
            self._ensure_mdevs(mdevs, records, snapshot)
        accelerators = []
        for acc in wanted:
            try:
                os_acc.get_config(acc)
            except acc_exc.InvalidAccelerator as e:
                raise exception.DeviceNotUsable(str(e))
            accelerators.append(acc)
        return accelerators

    @staticmethod
    def _held(instance, bindings, records, tags: set,
              snapshot: host_snapshot.HostSnapshot
              ) -> tuple[list[os_acc.Accelerator],
                         list[ledger.DeviceRecord]]:
        """(the devices the guest gets, the mdev records among them)."""
        pool_groups = {b.requester_id for b in bindings if b.is_pool}
        wanted = []
        mdevs = []
        for b in bindings:
            if b.is_pool:
                continue
            rec = records.get(b.address)
            if rec is not None and rec.is_mdev:
                # An MDEV attach handle of the backend.
                mdevs.append(rec)
                wanted.append(os_acc.Accelerator(interface_type='mdev',
                                                 mdev_uuid=b.address))
            else:
                wanted.append(os_acc.Accelerator(interface_type='pci',
                                                 address=b.address))
        for address, rec in sorted(records.items(),
                                   key=lambda i: (i[1].requester_id or '',
                                                  i[0])):
            if not (_current(rec, instance, tags) and
                    rec.requester_id in pool_groups):
                continue
            if rec.is_mdev:
                mdevs.append(rec)
                wanted.append(os_acc.Accelerator(interface_type='mdev',
                                                 mdev_uuid=address))
                continue
            if address not in snapshot.managed:
                raise exception.DeviceNotUsable(
                    'device %s of group %s is not present on node %s'
                    % (address, rec.requester_id, snapshot.nodename))
            wanted.append(os_acc.Accelerator(interface_type='pci',
                                             address=address))
        return wanted, mdevs

    def _ensure_mdevs(self, held: list[ledger.DeviceRecord], records,
                      snapshot: host_snapshot.HostSnapshot) -> None:
        """Create the mdevs the ledger gives a server that do not exist.

        On the first boot (the claim recorded them), and after a host
        reboot that lost them: with the same UUID, on the same parent, so
        the guest gets back the device its definition names.

        :raises DeviceNotUsable: one could not be created.
        """
        present = snapshot.host_mdevs(records)
        for rec in held:
            if rec.address in present:
                continue
            try:
                self._host.create_mdev(rec.parent, rec.mdev_type,
                                       rec.address)
            except exception.MdevError as e:
                raise exception.DeviceNotUsable(
                    '%s on node %s' % (e, snapshot.nodename))

    def restore_mdevs(self) -> None:
        """At nova-compute's start: recreate the mdevs servers still hold.

        After a host reboot mdevs that were not persistent (or whose
        parent came back late) are gone while their guests are defined;
        they are recreated with their UUIDs before any guest starts, as
        Nova does for its own vGPUs. A failure is logged, not raised: the
        server's next start tries again and fails alone if it must.
        """
        try:
            records = self._host.ledger.records()
        except exception.LedgerUnreadable as e:
            LOG.error('%s; no mdev recreated now.', e)
            return
        if not any(r.is_mdev for r in records.values()):
            return
        # No reconcile here: an mdev of a server deleted while the host was
        # down is recreated too, and removed by the first resource update.
        present = self._host.snapshot().host_mdevs(records)
        for rec in sorted(records.values(), key=lambda r: r.address):
            if not rec.is_mdev or rec.address in present or \
                    rec.state not in ledger.ACTIVE:
                continue
            try:
                self._host.create_mdev(rec.parent, rec.mdev_type,
                                       rec.address)
                LOG.info('Recreated mdev %s of server %s on %s.',
                         rec.address, rec.instance_uuid, rec.parent)
            except exception.MdevError as e:
                LOG.error('Could not recreate mdev %s of server %s: %s',
                          rec.address, rec.instance_uuid, e)
