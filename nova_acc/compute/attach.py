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
"""A device context of nova-acc-api attached to or detached from a server
that runs (or is stopped) on this host (issue 23).

Called by the RPC endpoint (``attach_rpc``) under Nova's per-instance lock.
An attach: bind the context (the API's compare-and-swap), name it in the
server's RequestSpec (``attach_spec``: later moves and unshelves ask for
it like a boot-time one), grow the server's allocation on this host
(``attach_placement``), record the groups' bindings in the server's
system metadata (so every later operation treats them as boot-time
ones), claim and configure the devices
in the ledger (``GuestDevices.prepare``) and hot-plug them (persistent, and
live when the guest runs). Any failure undoes what was done, in reverse,
and leaves the context unbound with a fault naming it and why.

A detach: unplug the devices with Nova's detach-with-event (the device-
removed event of libvirt, ``[libvirt] device_detach_timeout`` and
``device_detach_attempts``), once the RequestSpec keeps only the
context's place; a guest that does not let go leaves them
attached and held, and the context in ``error`` saying so. Then the
bindings go, the ledger releases (and resets) the devices, the allocation
shrinks and the context is unbound.
"""

from __future__ import annotations

import functools

from nova.compute import power_state
from nova.compute import vm_states
from nova import exception as nova_exc
from nova import objects
from nova.virt.libvirt import config as vconfig
import os_acc
from oslo_log import log as logging

from nova_acc.api import client as api_client
from nova_acc.backends import contexts_api
from nova_acc.backends import local
from nova_acc import binding
from nova_acc.compute import attach_placement
from nova_acc.compute import attach_spec
from nova_acc.compute import ledger
from nova_acc import conf
from nova_acc import exception
from nova_acc import request_groups

CONF = conf.CONF
LOG = logging.getLogger(__name__)

#: The vm states an attach or detach may run in (ACTIVE, SHUTOFF).
USABLE_VM_STATES = (vm_states.ACTIVE, vm_states.STOPPED)
#: The API's state of a context whose attach its compute is to carry out.
ATTACHING = 'attaching'


class AttachFailed(exception.NovaAccException):
    """An attach or detach did not happen; ``reason`` names the context."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def format_message(self) -> str:
        """The reason, for the event of the server's instance action.

        Nova shows an event's failure to the server's users (``details``,
        compute API 2.84) only for exceptions with this method, else the
        class name; the reason names the context and the server only.
        """
        return self.reason


#: ``[nova_acc] backend`` of Cyborg ARQs: no attach or detach of IDs.
CYBORG = 'cyborg'


def cyborg_refusal(context_id: str, server_uuid: str) -> str | None:
    """Why a context by ID is not attached to or detached from a running
    server here, or None: with ``backend = cyborg`` IDs name Cyborg ARQs,
    which Cyborg 17 binds to a server only while it is built (see
    doc/source/cyborg.rst, *Attach and detach*)."""
    if CONF.nova_acc.backend != CYBORG:
        return None
    return ('device context %s of server %s: device contexts by ID are '
            'Cyborg ARQs on this cloud, and Cyborg binds no ARQ to a server '
            'that already has one; they are not attached to or detached '
            'from a running server; nothing changed' % (
                context_id, server_uuid))


def check_usable(instance, host: str, context_id: str) -> None:
    if instance.host != host or instance.vm_state not in \
            USABLE_VM_STATES or instance.task_state is not None:
        raise AttachFailed(
            'device context %s: server %s is no longer ACTIVE or SHUTOFF '
            'on host %s with no task in progress' % (
                context_id, instance.uuid, host))


def _hostdev_in(guest, rec: ledger.DeviceRecord,
                from_persistent_config: bool = False):
    """The hostdev of the device of ``rec`` in the guest's domain, or None.

    As read back from the domain XML (with its alias, which the detach
    event names), not as built for an attach.
    """
    if rec.is_mdev:
        for dev in guest.get_all_devices(
                vconfig.LibvirtConfigGuestHostdevMDEV,
                from_persistent_config=from_persistent_config):
            if dev.uuid == rec.address:
                return dev
        return None
    wanted = os_acc.PciAddress.parse(rec.address)
    for dev in guest.get_all_devices(
            vconfig.LibvirtConfigGuestHostdevPCI,
            from_persistent_config=from_persistent_config):
        try:
            if os_acc.PciAddress.from_hex_fields(
                    dev.domain, dev.bus, dev.slot, dev.function) == wanted:
                return dev
        except ValueError:  # InvalidDeviceAddress: not one to match
            continue
    return None


def used_indexes(instance) -> set[int]:
    """The context indexes the server's bindings carry."""
    taken = [request_groups.RequesterId.decode(b.requester_id)
             for b in binding.load(instance)]
    return {t.context_index for t in taken if t}


def groups_of(context_id: str, ctx: dict, index: int
              ) -> tuple[list, dict[str, dict[str, str]]]:
    """The context's request groups, with requester ids of context index
    ``index`` (its place in the RequestSpec), and their config data by
    requester id.

    :raises AttachFailed: the context's spec cannot be used.
    """
    try:
        spec = local.LocalBackend.spec_of(context_id, ctx)
    except exception.ContextRefused as e:
        raise AttachFailed(str(e)) from e
    return [request_groups.to_request_group(request_groups.ContextGroup(
        index, group_index, context_id, group, context_id=context_id))
        for group_index, group in enumerate(spec.groups)], {
            request_groups.RequesterId(index, group_index, context_id
                                       ).encode(): dict(group.config)
            for group_index, group in enumerate(spec.groups)
            if group.config}


class Attacher:
    """Attach and detach on one host, for the libvirt driver ``driver``."""

    def __init__(self, driver) -> None:
        self._driver = driver
        self._rooms = driver.acc

    @property
    def host(self) -> str:
        return self._rooms.host.nodename

    def guest_of(self, instance):
        """The server's libvirt guest; raises InstanceNotFound."""
        return self._driver._host.get_guest(instance)

    def _own_requester_ids(self, instance, context_id: str) -> set[str]:
        return {b.requester_id for b in binding.load(instance)
                if (b.context_id or request_groups.context_id_of(
                    b.requester_id)) == context_id}

    def _records_of(self, instance, requester_ids: set[str]) -> list:
        return sorted((r for r in self._rooms.host.ledger.records().values()
                       if r.instance_uuid == instance.uuid and
                       r.requester_id in requester_ids and
                       r.state in ledger.ACTIVE), key=lambda r: r.address)

    # ---- attach -----------------------------------------------------------

    def attach(self, ctxt, instance, context_id: str) -> None:
        """Attach; on failure undo and unbind with a fault.

        :raises AttachFailed: naming the context and why.
        """
        client = contexts_api.client()
        ctx = client.get(context_id)
        if (ctx['state'], ctx['server_id'], ctx['host']) != (
                ATTACHING, instance.uuid, self.host):
            # The API's compare-and-swap gave the context to this server
            # on this host; anything else is not this attach's to finish.
            raise AttachFailed(
                'device context %s is not being attached to server %s on '
                'host %s (it is %s); nothing done' % (
                    context_id, instance.uuid, self.host, ctx['state']))
        done: dict = {}
        try:
            refusal = cyborg_refusal(context_id, instance.uuid)
            if refusal:
                # A later move would resolve the ID as an ARQ.
                raise AttachFailed(refusal)
            check_usable(instance, self.host, context_id)
            self._attach_steps(ctxt, instance, context_id, ctx, done)
            # attaching -> bound, keeping the devices recorded meanwhile.
            client.bind(context_id, instance.uuid, self.host,
                        instance.project_id)
        except Exception as e:
            reason = getattr(e, 'reason', None) or str(e)
            why = 'device context %s could not be attached to server %s: ' \
                '%s' % (context_id, instance.uuid, reason)
            LOG.error('%s', why, instance=instance)
            self._undo_attach(ctxt, instance, done)
            try:
                client.unbind(context_id, instance.uuid,
                              fault=why[:2048])
            except api_client.ContextAPIError as unbind_error:
                LOG.error('Could not unbind device context %s after a '
                          'failed attach: %s', context_id, unbind_error,
                          instance=instance)
            raise AttachFailed(why) from e

    def _attach_steps(self, ctxt, instance, context_id: str, ctx: dict,
                      done: dict) -> None:
        """Placement, bindings, ledger, guest; ``done`` records what to
        undo."""
        try:
            index, done['spec_values'] = attach_spec.record_attached(
                ctxt, instance.uuid, context_id, used_indexes(instance))
        except attach_spec.SpecNotUpdated as e:
            raise AttachFailed(str(e)) from e
        groups, config = groups_of(context_id, ctx, index)
        node = objects.ComputeNode.get_by_host_and_nodename(
            ctxt, instance.host, instance.node)
        report = self._driver.virtapi.reportclient
        try:
            done['allocated'] = attach_placement.grow(
                report, ctxt, instance.uuid, self.host, node.uuid, groups)
        except attach_placement.PlacementRefused as e:
            raise AttachFailed(e.reason) from e
        new = binding.compute_bindings(report, ctxt, groups, self.host)
        done['groups'] = {b.requester_id for b in new}
        binding.add_groups(instance, new, config)
        instance.save()
        snapshot = self._rooms.host.snapshot()
        try:
            self._rooms.guests.prepare(instance, snapshot,
                                       request_context=ctxt)
        except exception.DeviceNotUsable as e:
            raise AttachFailed(e.reason) from e
        guest = self._driver._host.get_guest(instance)
        done['guest'] = guest
        done['plugged'] = []
        for rec in self._records_of(instance, done['groups']):
            acc = rec.accelerator()
            os_acc.attach(acc, guest, self._driver._host, instance)
            done['plugged'].append(acc)
        if guest.get_power_state(self._driver._host) == power_state.RUNNING:
            self._rooms.claims.mark_attached(instance)
        LOG.info('Attached device context %s (devices %s)', context_id,
                 ', '.join(a.address or a.mdev_uuid
                           for a in done['plugged']), instance=instance)

    def _undo_attach(self, ctxt, instance, done: dict) -> None:
        """Undo in reverse, best effort: each step is logged if it fails."""
        for acc in reversed(done.get('plugged', [])):
            try:
                os_acc.detach(acc, done['guest'], self._driver._host,
                              instance)
            except Exception as e:  # libvirt's
                LOG.error('Could not unplug %s after a failed attach: %s',
                          acc.address or acc.mdev_uuid, e,
                          instance=instance)
        if 'groups' in done:
            self._forget_groups(ctxt, instance, done['groups'])
        if 'allocated' in done:
            try:
                attach_placement.shrink(self._driver.virtapi.reportclient,
                                        ctxt, instance.uuid,
                                        done['allocated'])
            except attach_placement.PlacementRefused as e:
                LOG.error('Could not give back the allocation of a failed '
                          'attach: %s', e.reason, instance=instance)
        if 'spec_values' in done:
            self._restore_spec(ctxt, instance, done['spec_values'])

    @staticmethod
    def _restore_spec(ctxt, instance, values: list[str]) -> None:
        try:
            attach_spec.restore(ctxt, instance.uuid, values)
        except attach_spec.SpecNotUpdated as e:
            LOG.error('Could not put back the device_context values %s of '
                      'the request spec: %s', values, e, instance=instance)

    def _forget_groups(self, ctxt, instance, requester_ids: set[str]) -> None:
        """Drop the groups' bindings, then release their devices (reset).

        The release is the ledger's own: recorded ``releasing`` first, then
        carried out by the reconcile once that is on disk (never under a
        guest that uses the device). Recorded here rather than left to the
        reconcile's rules, which keep every device of a pool the server is
        still bound to: another group of the server may use the same pool.
        """
        held = [r.address for r in self._records_of(instance, requester_ids)]
        binding.remove_groups(instance, requester_ids)
        try:
            instance.save()
        except nova_exc.InstanceNotFound:
            pass  # deleted: the reconcile releases everything it held
        if not held:
            return
        why = 'its group was detached from server %s' % instance.uuid
        with self._rooms.host.ledger.transaction() as records:
            for address in held:
                rec = records.get(address)
                if rec is not None and rec.instance_uuid == instance.uuid \
                        and rec.state in ledger.HELD:
                    rec.releasing(why)
        self._rooms.reconciler.reconcile(self._rooms.host.snapshot(),
                                         only=held)
        if self._rooms.reconciler.take_freed_pools():
            self._driver._report_device_pools(ctxt)

    # ---- an allocation no binding accounts for ---------------------------

    def _surplus(self, ctxt, instance) -> dict[str, dict[str, int]]:
        """The server's allocation on this host's pools beyond its bindings.

        :raises PlacementRefused: the allocation could not be read.
        """
        return attach_placement.surplus(
            attach_placement.allocations_of(
                self._driver.virtapi.reportclient, ctxt, instance.uuid),
            set(self._rooms.host.snapshot().pools), binding.load(instance))

    def _with_surplus(self, ctxt, instance, removed: dict
                      ) -> dict[str, dict[str, int]]:
        """``removed`` and what a dead attach left, whichever is more."""
        try:
            extra = self._surplus(ctxt, instance)
        except attach_placement.PlacementRefused:
            return removed
        merged = {rp: dict(rcs) for rp, rcs in removed.items()}
        for rp, rcs in extra.items():
            into = merged.setdefault(rp, {})
            for rc, amount in rcs.items():
                into[rc] = max(into.get(rc, 0), amount)
        return merged

    def repair(self, ctxt, instance) -> None:
        """Give back an allocation an attach left without bindings.

        A compute that died between an attach's allocation PUT and saving
        the groups' bindings leaves the server's allocation grown for
        devices no binding will ever claim. Call under the instance lock
        (no attach of this process runs then); a server with an operation
        under way, or not on this host, is left as it is.
        """
        if instance.host != self.host or instance.vm_state not in \
                USABLE_VM_STATES or instance.task_state is not None:
            return
        extra = self._surplus(ctxt, instance)
        if not extra:
            return
        LOG.warning('Server %s holds %s in placement on pools of host %s '
                    'that none of its device bindings accounts for (an '
                    'attach that did not finish); giving it back.',
                    instance.uuid, extra, self.host, instance=instance)
        attach_placement.shrink(self._driver.virtapi.reportclient, ctxt,
                                instance.uuid, extra)

    # ---- detach ----------------------------------------------------------

    def detach(self, ctxt, instance, context_id: str) -> None:
        """Unplug, release, shrink, unbind.

        :raises AttachFailed: the guest kept a device (the context is in
            ``error`` saying so) or the server cannot be changed now.
        """
        client = contexts_api.client()
        check_usable(instance, self.host, context_id)
        requester_ids = self._own_requester_ids(instance, context_id)
        guest = self._driver._host.get_guest(instance)
        try:
            # First, so that no later move asks for the context again.
            old_values = attach_spec.record_detached(ctxt, instance.uuid,
                                                     context_id)
        except attach_spec.SpecNotUpdated as e:
            why = 'device context %s was not detached from server %s: %s' \
                % (context_id, instance.uuid, e)
            client.set_fault(context_id, instance.uuid, why[:2048])
            raise AttachFailed(why) from e
        try:
            self.release_groups(ctxt, instance, guest, requester_ids,
                                'device context %s' % context_id,
                                old_values)
        except AttachFailed as e:
            client.set_fault(context_id, instance.uuid, e.reason[:2048])
            raise
        client.unbind(context_id, instance.uuid)

    def release_groups(self, ctxt, instance, guest, requester_ids: set[str],
                       label: str, old_values: list[str] | None) -> None:
        """Unplug the groups' devices, then release, reset and shrink,
        once the RequestSpec keeps only the context's place (``old_values``
        put back when the guest keeps a device; ``label`` names it).

        :raises AttachFailed: the guest kept a device: it stays attached
            and held, and the RequestSpec names the context again.
        """
        records = self._records_of(instance, requester_ids)
        for rec in records:
            try:
                self._unplug(guest, instance, rec)
            except Exception as e:  # DeviceDetachFailed, libvirt's
                if old_values is not None:
                    # Still the server's: later moves keep asking for it.
                    self._restore_spec(ctxt, instance, old_values)
                raise AttachFailed(
                    'the guest of server %s did not release device %s '
                    'of %s (%s); it stays attached and held; retry the '
                    'detach, or stop or delete the server' % (
                        instance.uuid, rec.address, label,
                        getattr(e, 'kwargs', {}).get('reason') or e)) from e
        removed: dict[str, dict[str, int]] = {}
        for b in binding.load(instance):
            if b.requester_id in requester_ids and b.resource_class:
                into = removed.setdefault(b.rp_uuid, {})
                into[b.resource_class] = into.get(b.resource_class, 0) + \
                    b.amount
        self._forget_groups(ctxt, instance, requester_ids)
        try:
            attach_placement.shrink(
                self._driver.virtapi.reportclient, ctxt, instance.uuid,
                self._with_surplus(ctxt, instance, removed))
        except attach_placement.PlacementRefused as e:
            LOG.error('%s is detached but the allocation of server %s '
                      'could not shrink: %s', label, instance.uuid,
                      e.reason, instance=instance)
        LOG.info('Detached %s (devices %s)', label,
                 ', '.join(r.address for r in records), instance=instance)

    def _unplug(self, guest, instance, rec: ledger.DeviceRecord) -> None:
        """Nova's detach with the device-removed event and its retries."""
        try:
            self._driver._detach_with_retry(
                guest, instance.uuid,
                functools.partial(_hostdev_in, guest, rec),
                device_name=rec.address)
        except nova_exc.DeviceNotFound:
            LOG.info('Device %s was not in the guest any more.',
                     rec.address, instance=instance)
