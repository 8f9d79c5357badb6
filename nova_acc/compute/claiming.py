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
"""Claims: a server's devices recorded in the host's ledger, all or nothing.

For a group bound to a pool this is where the concrete devices are
chosen: under the ledger lock, which every build, move, delete and
reconcile on this host takes, the host picks as many free devices of the
pool as placement allocated (as Nova's PCI tracker picks VFs under the
resource tracker's lock), never a device held, out of service or blocked
by its PF or VFs, and records them before the guest is defined. The
picking itself and the blocking rules beside it (PF and VFs, a GPU with
mdevs) are ``nova_acc.compute.claims``, which the provider tree reports
with too; this module is the claim as the compute asks for it: the
bindings as requests, the lock, the snapshot's facts.

The host's devices come from the operation's snapshot, taken before the
lock: no libvirt listing happens while the lock is held.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib

from oslo_log import log as logging

from nova_acc import binding
from nova_acc import exception
from nova_acc.compute import claims
from nova_acc.compute import inventory
from nova_acc.compute import ledger
from nova_acc.compute import snapshot as host_snapshot

LOG = logging.getLogger(__name__)

# reconcile(snapshot) -> records: the reconcile a claim runs first.
Reconcile = Callable[[host_snapshot.HostSnapshot], object]


class Claims:
    """Claims in the ledger of one host.

    :param reconcile: run before a claim, so that a device still recorded
        for a server that is gone is released (and reset) now rather than
        at the next periodic run.
    """

    def __init__(self, host: host_snapshot.Host, reconcile: Reconcile):
        self._host = host
        self._reconcile = reconcile

    @contextlib.contextmanager
    def reschedule_if_ledger_unusable(self):
        """A ledger that cannot be read or written now fails the claim.

        ``DeviceNotUsable``: the server is rescheduled to another host; the
        file is kept as it is.
        """
        nodename = self._host.nodename
        try:
            yield
        except exception.LedgerUnreadable as e:
            raise exception.DeviceNotUsable(
                'the device ledger of node %s could not be read, so no '
                'device can be claimed there now (%s)' % (nodename, e)
            ) from e
        except (exception.LedgerError, OSError) as e:
            # A full disk, a read-only file system: the claim was not
            # recorded, so it did not happen (nothing was written).
            LOG.error('Could not write the device ledger of node %s: %s',
                      nodename, e)
            raise exception.DeviceNotUsable(
                'the device ledger of node %s could not be written, so no '
                'device can be claimed there now (%s)' % (
                    nodename, getattr(e, 'strerror', None) or e)
            ) from e

    def claim_request(self, instance, snapshot: host_snapshot.HostSnapshot
                      ) -> tuple[list[dict], list[claims.PoolRequest]]:
        """What the instance's bindings on this node ask the ledger for.

        :returns: (specific devices, pool requests) as ``claims.claim``
            takes them.
        """
        managed = snapshot.managed
        node_pools = snapshot.pools
        wanted, requests = [], []
        for b in binding.load(instance):
            if b.nodename != snapshot.nodename:
                continue
            if b.is_pool:
                pool = node_pools.get(b.rp_uuid)
                requests.append(claims.PoolRequest(
                    requester_id=b.requester_id, rp_uuid=b.rp_uuid,
                    count=b.amount,
                    candidates=tuple(pool.addresses) if pool else (),
                    resource_class=pool.key.resource_class if pool else None,
                    traits=pool.key.traits if pool else (),
                    mdev_type=pool.key.mdev_type if pool else None))
            elif b.address is not None:
                dev = managed.get(b.address)
                wanted.append({
                    'address': b.address, 'rp_uuid': b.rp_uuid,
                    'resource_class': dev.resource_class if dev else None,
                    'traits': dev.traits if dev else (),
                    'context_id': b.context_id,
                    'requester_id': b.requester_id})
        return wanted, requests

    def claim(self, instance, snapshot: host_snapshot.HostSnapshot,
              migration_id: int | None = None,
              held_tags: set | None = None) -> None:
        """Claim the instance's devices in the ledger, all or nothing.

        Devices of pools are picked here. Idempotent: what the instance
        already holds for a group counts towards it.

        :param migration_id: on the destination of a move, the move (the
            server keeps its source devices until it is confirmed).
        :raises DeviceNotUsable: a device is not free on this host, or a
            pool has fewer free devices than the group was allocated;
            nothing was claimed.
        """
        wanted, requests = self.claim_request(instance, snapshot)
        if not wanted and not requests:
            return
        with self.reschedule_if_ledger_unusable():
            self._reconcile(snapshot)
        wants_mdevs = any(r.mdev_type for r in requests)
        if wants_mdevs:
            # Before the lock, with the parents' capacity of the same
            # snapshot: what the parents can create, less what claims
            # recorded and did not create yet, is then counted right.
            snapshot.host_mdevs()
        book = self._host.ledger
        with self.reschedule_if_ledger_unusable(), \
                book.transaction() as records:
            host_mdevs = snapshot.host_mdevs(records) if wants_mdevs else {}
            capacity = inventory.mdev_capacity(
                snapshot.mdev_parents, records, host_mdevs
            ) if wants_mdevs else {}
            try:
                claimed = claims.claim(
                    records, instance.uuid, wanted, requests,
                    blocked=claims.blocked(
                        snapshot.managed, records,
                        claims.parents_with_mdevs(records, host_mdevs)),
                    relatives=claims.relatives(snapshot.managed),
                    migration_id=migration_id, held_tags=held_tags,
                    mdev_capacity=capacity)
            except exception.DeviceNotFree as e:
                raise exception.DeviceNotUsable(
                    '%s on node %s' % (e, snapshot.nodename))
        LOG.info('Claimed devices %s in the device ledger',
                 ', '.join(r.address for r in claimed), instance=instance)

    def mark_attached(self, instance) -> None:
        """The guest runs: the devices it was claimed are attached."""
        # Servers without device contexts (most of them) never touch the
        # ledger, so a host without nova-acc devices never writes one.
        book = self._host.ledger
        if not any(r.instance_uuid == instance.uuid and
                   r.state == ledger.CLAIMED
                   for r in book.records().values()):
            return
        with book.transaction() as records:
            for rec in records.values():
                if rec.instance_uuid == instance.uuid and \
                        rec.state == ledger.CLAIMED:
                    rec.attach()
