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
"""Step 5 on the host: run the reconcile and carry out its releases.

``nova_acc.compute.reconcile`` holds the rules (pure: facts in, records
changed); the ``Reconciler`` runs them against one host's ledger, with the
two things it must not import back given to it, as NVIDIA's DRA driver
gives its periodic cleanup the unprepare function: ``release`` (reset,
unbind, mdev removal: ``nova_acc.compute.release``, wired in
``nova_acc.compute.wiring``) and ``guest_devices`` (domain XML -> the
devices in it: ``os_acc.guest_devices``).

A release is recorded first (``releasing``, one ledger transaction) and
carried out after that record is on disk (a second one), so a ledger that
cannot be written resets nothing.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses

from oslo_log import log as logging

from nova_acc import exception
from nova_acc.compute import attach_handles
from nova_acc.compute import ledger
from nova_acc.compute import reconcile
from nova_acc.compute import snapshot as host_snapshot

LOG = logging.getLogger(__name__)


class Reconciler:
    """The reconcile and release of one host's ledger.

    :param release: ``(records, record, why) -> None``: releases one
        record's device (``reconcile.Releaser``).
    :param guest_devices: domain XML -> PCI addresses and mdev UUIDs.
    :param teardown_contexts: the request contexts of guest teardowns,
        kept for the release's unbind while their server holds devices.
    """

    def __init__(self, host: host_snapshot.Host,
                 release: reconcile.Releaser,
                 guest_devices: Callable[[str], set[str]],
                 teardown_contexts: attach_handles.TeardownContexts):
        self._host = host
        self._release = release
        self._guest_devices = guest_devices
        self._teardown_contexts = teardown_contexts
        # Address -> the record as a release left it, for releases that
        # were carried out (reset, unbound, removed) but whose outcome the
        # ledger could not record: the next attempt records the outcome
        # instead of resetting the device again. None: the record went.
        self._released_unrecorded: dict[
            str, tuple[ledger.DeviceRecord,
                       ledger.DeviceRecord | None]] = {}
        # Pools whose devices a release freed since the last report to
        # placement (see ``take_freed_pools``).
        self._freed_pools: set[str] = set()

    def _reconcile_locked(self, records, managed, only=None) -> list[str]:
        """Reconcile under the ledger lock; devices to release go releasing.

        Nothing is reset here: a release is only recorded (``releasing``),
        and carried out by ``_finish_releases`` once that record is on
        disk. :returns: the addresses whose release is due now (none when
        a guest could not be read).
        """
        book = self._host.ledger
        facts = reconcile.gather_facts(self._host.libvirt_host,
                                       self._host.nodename, managed, records,
                                       self._guest_devices)
        due: list[str] = []

        def record_release(records, record, why) -> None:
            due.append(record.address)
            if record.state == ledger.DIRTY:
                return  # an mdev whose removal is tried again
            if record.state != ledger.RELEASING:
                record.releasing(why)

        lost = book.recovered_from is not None
        reconcile.reconcile(records, facts, record_release,
                            only=None if lost else only, history_lost=lost)
        book.recovered_from = None
        return due if facts.complete else []

    def _finish_releases(self, due: list[str]) -> bool:
        """Release the devices whose release the ledger records.

        Run after the transaction that recorded them ``releasing`` was
        written: if the ledger cannot be written, nothing was reset. A
        release carried out here whose outcome cannot be written either is
        remembered, so the next attempt records it instead of resetting
        the device once more.

        :returns: whether an mdev was removed (its parent has capacity).
        """
        done: dict[str, tuple[ledger.DeviceRecord,
                              ledger.DeviceRecord | None]] = {}
        try:
            with self._host.ledger.transaction() as records:
                for address in sorted(set(due)):
                    rec = records.get(address)
                    if rec is None or not (
                            rec.state == ledger.RELEASING or
                            (rec.is_mdev and rec.state == ledger.DIRTY)):
                        continue
                    before = dataclasses.replace(rec)
                    self._release_once(records, rec)
                    after = records.get(address)
                    if after is not None and after.state == ledger.RELEASING:
                        continue  # not attempted (privsep down): later
                    done[address] = (before, dataclasses.replace(after)
                                     if after is not None else None)
        except Exception:
            self._released_unrecorded.update(done)
            raise
        for address, (before, after) in done.items():
            self._released_unrecorded.pop(address, None)
            if before.rp_uuid and after is not None and \
                    after.state == ledger.FREE:
                self._freed_pools.add(before.rp_uuid)
        return any(before.is_mdev and after is None
                   for before, after in done.values())

    def _release_once(self, records, rec: ledger.DeviceRecord) -> None:
        """Release ``rec``, or record the outcome of a release already done.
        """
        remembered = self._released_unrecorded.get(rec.address)
        if remembered is not None and remembered[0] == rec:
            outcome = remembered[1]
            LOG.info('Device %s was released before but the ledger could '
                     'not record it; recording it now without releasing '
                     'it again.', rec.address)
            if outcome is None:
                del records[rec.address]
            else:
                records[rec.address] = dataclasses.replace(outcome)
            return
        self._release(records, rec, rec.reason or 'its release is due')

    def reconcile(self, snapshot: host_snapshot.HostSnapshot, only=None
                  ) -> dict[str, ledger.DeviceRecord]:
        """Reconcile the ledger (all devices, or the addresses ``only``).

        Two ledger transactions: the first records what is to be released
        (``releasing``), the second releases it (reset, unbind, removal)
        and records the outcome. Nothing is released when a guest could not
        be read (``nova_acc.compute.reconcile``). An mdev removed here
        gives its parent capacity back: the snapshot looks again, after
        the lock.

        :param snapshot: the operation's host snapshot.
        :returns: the ledger's records afterwards (the caller's own: the
            ledger keeps no reference to them).
        """
        managed = snapshot.managed
        with self._host.ledger.transaction() as records:
            due = self._reconcile_locked(records, managed, only=only)
        # No copies: a transaction's records are new objects made from the
        # file for this transaction alone, and the ledger keeps none of
        # them once it is over (a copy of 2057 records was most of an
        # unchanged update's reconcile).
        result = records
        if due:
            if self._finish_releases(due):
                snapshot.refresh_mdevs()
            result = self._host.ledger.read()
        self._teardown_contexts.forget_all_but(
            {r.instance_uuid for r in result.values()})
        return result

    def take_freed_pools(self) -> set[str]:
        """The pools whose devices were freed since the last call.

        Their inventory's ``reserved`` changed; the driver reports it to
        placement at once rather than at the next periodic update.
        """
        freed, self._freed_pools = self._freed_pools, set()
        return freed

    def after_teardown(self, context, instance) -> None:
        """The server's guest is gone: release what it no longer holds.

        Whether the server still holds its devices (a hard reboot, a
        rebuild) or not (delete, reap, shelve offload, failed build) is for
        the reconcile to tell from what Nova records, not from why the guest
        was destroyed. The resource update Nova makes once the server is
        deleted or offloaded catches the rest.

        When the ledger cannot be read now (``LedgerUnreadable``: EIO,
        EMFILE...), nothing is released and nothing raised: the guest is
        gone whatever happens here, the devices stay recorded as the
        server's (out of service for anyone else), and the first resource
        update that can read the ledger releases them.
        """
        try:
            records = self._host.ledger.records()
            held = [a for a, r in records.items()
                    if r.instance_uuid == instance.uuid]
            if any(records[a].backend_owned for a in held):
                self._teardown_contexts.remember(instance.uuid, context)
            if held:
                self.reconcile(self._host.snapshot(), only=held)
        except exception.LedgerUnreadable as e:
            LOG.error('%s. Nothing of the server is released now; its '
                      'devices stay out of service and nova-compute releases '
                      'them at the first resource update that can read the '
                      'ledger.', e, instance=instance)

    def reconcile_for_report(self, snapshot: host_snapshot.HostSnapshot
                             ) -> dict[str, ledger.DeviceRecord]:
        """Reconcile (release what no server holds); records to report.

        Never raises: it never stops the host's inventory updates, and it
        fails closed: when the reconcile fails, what the ledger last
        recorded (out-of-service devices stay reserved); when the ledger's
        state is unknown - it cannot be read now, or it was corrupt and is
        not rebuilt yet - records that keep every device of the snapshot
        and every mdev parent out of service, so that every pool is
        reported fully reserved: placement must not offer devices whose
        state is unknown. The next update that can read the ledger reports
        them as they are.
        """
        book = self._host.ledger
        try:
            if not snapshot.managed and not book.exists():
                return {}
            return self.reconcile(snapshot)
        except exception.LedgerUnreadable as e:
            return self._state_unknown(snapshot, str(e))
        except Exception:
            LOG.exception('Reconciling the device ledger of node %s failed; '
                          'reporting its last recorded state.',
                          snapshot.nodename)
        return self.records_for_report(snapshot)

    def records_for_report(self, snapshot: host_snapshot.HostSnapshot
                           ) -> dict[str, ledger.DeviceRecord]:
        """The records to report as the ledger holds them, no reconcile.

        Never raises, and fails closed as ``reconcile_for_report``: when
        the ledger cannot be read now, or was corrupt and is not rebuilt
        yet, records that keep every device out of service.
        """
        book = self._host.ledger
        try:
            if book.recovered_from is None:
                return book.read()
            why = ('the device ledger was corrupt, moved to %s and is not '
                   'rebuilt yet' % book.recovered_from)
        except exception.LedgerError as e:
            why = str(e)
        return self._state_unknown(snapshot, why)

    @staticmethod
    def _state_unknown(snapshot: host_snapshot.HostSnapshot, why: str
                       ) -> dict[str, ledger.DeviceRecord]:
        """Records for inventory that keep every device out of service."""
        LOG.error('%s; reporting every device pool of node %s fully '
                  'reserved until the ledger can be read.', why,
                  snapshot.nodename)
        addresses = set(snapshot.managed)
        try:
            addresses.update(d.address for d in snapshot.mdev_parents)
        except Exception as e:  # libvirt's: the whole devices are reserved
            LOG.warning('Cannot list the mdev parents of node %s: %s',
                        snapshot.nodename, e)
        return {a: ledger.DeviceRecord(
                    address=a, state=ledger.DIRTY,
                    reason='state unknown: %s' % why)
                for a in sorted(addresses)}
