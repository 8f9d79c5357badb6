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
"""Step 0 on the host: what one resource update reports of the pools.

``PoolReport.update`` is nova-acc's half of ``update_provider_tree``: one
host snapshot, the reconcile (which releases what no server holds), the
placement reads the report needs (devices held beyond an allocation; does
a provider to be removed have allocations), the provider tree
(``nova_acc.compute.inventory``) and, after a reshape, the ledger's records
pointed at the pools their per-device providers were folded into.

A periodic resource update does its first half in ``PoolReport.look``,
before the resource tracker's lock (see there); the other updates
(a build's claim, a delete's) do all of it in ``update``.
"""

from __future__ import annotations

import threading

from nova import context as nova_context
from nova import exception as nova_exc
from nova.scheduler.client import report
from oslo_log import log as logging

from nova_acc import conf
from nova_acc import exception
from nova_acc.compute import inventory
from nova_acc.compute import ledger
from nova_acc.compute import reconciler as host_reconciler
from nova_acc.compute import snapshot as host_snapshot

CONF = conf.CONF
LOG = logging.getLogger(__name__)


def held_without_allocation(records) -> dict[str, int]:
    """pool UUID -> devices servers hold there beyond their allocation.

    Placement would offer such devices to the next server, whose claim
    the ledger then refuses; reserving them keeps placement from trying
    until the holder leaves. One placement read per pool in use, not per
    device.
    """
    held: dict[str, dict[str, int]] = {}
    for rec in records.values():
        if (rec.state in ledger.ACTIVE and
                not rec.backend_owned and rec.rp_uuid):
            per_server = held.setdefault(rec.rp_uuid, {})
            per_server[rec.instance_uuid] = per_server.get(
                rec.instance_uuid, 0) + 1
    result = {}
    client = report.report_client_singleton()
    ctxt = nova_context.get_admin_context()
    for rp_uuid, per_server in sorted(held.items()):
        try:
            consumers = client.get_allocations_for_resource_provider(
                ctxt, rp_uuid).allocations
        except nova_exc.NovaException as e:
            LOG.warning('Cannot check the allocations of device pool '
                        '%s: %s', rp_uuid, e)
            continue
        excess = 0
        for server, count in sorted(per_server.items()):
            allocated = sum(consumers.get(server, {}).get(
                'resources', {}).values())
            if count > allocated:
                LOG.warning('Server %s holds %d device(s) of pool %s on '
                            'this host but placement allocated it %d; '
                            'reserving the difference until the server '
                            'leaves.', server, count, rp_uuid, allocated)
                excess += count - allocated
        if excess:
            result[rp_uuid] = excess
    return result


def provider_has_allocations(rp_uuid: str) -> bool:
    ctxt = nova_context.get_admin_context()
    allocs = report.report_client_singleton(
        ).get_allocations_for_resource_provider(ctxt, rp_uuid)
    return bool(allocs.allocations)


class PoolReport:
    """The device pools of one host, for its resource updates."""

    def __init__(self, host: host_snapshot.Host,
                 reconciler: host_reconciler.Reconciler):
        self._host = host
        self._reconciler = reconciler
        # The look of the resource update under way in this thread (a
        # green thread under eventlet): (nodename, snapshot, the host's
        # ``changes`` when it was taken). Thread-local, so that only the
        # update that took it uses it, never a build's or a delete's update
        # running meanwhile (those reconcile for themselves).
        self._looks = threading.local()

    def look(self, nodename: str) -> None:
        """The first half of a periodic resource update, before its lock.

        Called from the driver's ``get_available_resource``, which Nova's
        resource tracker calls before it takes ``COMPUTE_RESOURCE_
        SEMAPHORE`` for the rest of the update (where Nova reports the
        host's PCI devices for its own tracker). It takes the host snapshot
        and runs the reconcile, so that listing the host's devices and
        releasing what no server holds (resets, mdev removals: seconds on
        a real device) no longer hold up the claims of builds on the host,
        which wait for that lock. ``update``, in the same thread, then uses
        this snapshot and reads the ledger again, as it is under the lock.

        Never raises: when the listing fails, ``update`` tries again and
        fails closed as it always did.
        """
        self._looks.taken = None
        changes = self._host.changes
        snapshot = self._host.snapshot()
        try:
            snapshot.take()
        except Exception:
            return  # ``update`` lists again, and says what failed
        self._reconciler.reconcile_for_report(snapshot)
        self._looks.taken = (nodename, snapshot, changes)

    def _take_look(self, nodename: str) -> host_snapshot.HostSnapshot | None:
        """This thread's look, if it is of ``nodename`` and still true.

        Used once. A look taken before nova-acc changed the host's node
        devices (an mdev created or removed since, by a build or a release
        in another thread) is not used: the update looks again.
        """
        taken, self._looks.taken = getattr(self._looks, 'taken', None), None
        if taken is None or taken[0] != nodename or \
                taken[2] != self._host.changes:
            return None
        return taken[1]

    def update(self, provider_tree, nodename: str, allocations=None,
               may_reshape: bool = True) -> None:
        """Make the node's pool providers match the host and its ledger.

        :param may_reshape: Nova reshapes only on the first update after
            nova-compute starts; ReshapeNeeded on a later one would stop
            every update.
        :raises nova.exception.ReshapeNeeded: at startup, after an upgrade
            from per-device providers; Nova then calls again with the
            allocations to move.
        """
        snapshot = self._take_look(nodename)
        if snapshot is not None:
            # Reconciled by the look; the ledger as it is now, under the
            # resource tracker's lock (a claim may have changed it since).
            records = self._reconciler.records_for_report(snapshot)
        else:
            snapshot = self._host.snapshot()
            try:
                snapshot.take()
            except exception.DeviceListingFailed as e:
                # Fail closed: the pools stay as last reported (the tree
                # Nova passes holds them) and nothing is released this
                # round.
                LOG.error('%s; the device pools of node %s stay as last '
                          'reported and no device is released until a '
                          'listing succeeds.', e, nodename)
                return
            records = self._reconciler.reconcile_for_report(snapshot)
        moved = inventory.update_provider_tree(
            provider_tree, nodename, snapshot.managed.values(),
            CONF.nova_acc.capability_trait,
            has_allocations=provider_has_allocations,
            records=records,
            held_without_allocation=held_without_allocation(records),
            allocations=allocations,
            may_reshape=may_reshape,
            # After the reconcile, which refreshed them if it removed an
            # mdev.
            mdev_parents=snapshot.mdev_parents,
            host_mdevs=snapshot.host_mdevs(records))
        self.repoint(moved)

    def repoint(self, moved: dict[str, str]) -> None:
        """After a reshape: records of per-device providers -> their pool."""
        book = self._host.ledger
        if not moved or not book.exists():
            return
        with book.transaction() as records:
            for rec in records.values():
                if rec.rp_uuid in moved:
                    rec.rp_uuid = moved[rec.rp_uuid]
