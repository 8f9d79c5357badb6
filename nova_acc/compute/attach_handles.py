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
"""The backend's contexts on this host: binds, attach handles, unbinds.

An ID-based device context (Cyborg's ARQ) is bound by its backend, which
then says what to attach (its attach handle). On this host nova-compute
waits for those handles before a build (``wait_for_backend``), records the
mdevs of MDEV handles in the ledger (the backend chose them; the record is
what ties them to the server), has the backend bind its objects again
where a move puts the server (``bind_backend``), and unbinds them when the
server lets go (``unbind_released``, the release's unbind) or when a build
fails before anything reached the ledger (``backends.unbind_quietly``,
the one best-effort unbind of the conductor and the compute).

The request context of a guest's teardown is kept (``TeardownContexts``)
so that the release after it unbinds as the user; without it (deleted
while this host was down) the backend uses Nova's own credentials.
"""

from __future__ import annotations

import dataclasses

from nova import context as nova_context
from nova import exception as nova_exc
from nova import objects
from oslo_log import log as logging

from nova_acc import backends
from nova_acc import binding
from nova_acc import conf
from nova_acc import exception
from nova_acc.compute import ledger
from nova_acc.compute import snapshot as host_snapshot

CONF = conf.CONF
LOG = logging.getLogger(__name__)


class TeardownContexts:
    """Server UUID -> the request context of its last guest teardown."""

    def __init__(self):
        self._contexts: dict = {}

    def remember(self, instance_uuid: str, context) -> None:
        self._contexts[instance_uuid] = context

    def take(self, instance_uuid: str):
        return self._contexts.pop(instance_uuid, None)

    def forget_all_but(self, holders: set) -> None:
        """Forget the servers that hold nothing here any more."""
        for uuid in set(self._contexts) - holders:
            del self._contexts[uuid]

    def __contains__(self, instance_uuid: str) -> bool:
        return instance_uuid in self._contexts


def record_in_contexts(instance, nodename: str, held) -> None:
    """Tell the contexts' backend which devices the host picked for them.

    What a user sees in ``GET /device-contexts/{id}``: after a first claim,
    and on the host a move takes the server to (the destination of a
    resize or migration, the source of a revert). The ledger stays the
    host's record of who holds what, so a backend that cannot be told is
    logged, not fatal: the next claim of the server tells it again.
    """
    try:
        backends.get_backend().record_devices(instance.uuid, nodename, held)
    except exception.BackendUnavailable as e:
        LOG.warning('The devices of server %s are held but not recorded in '
                    'its device contexts: %s', instance.uuid, e)


class AttachHandles:
    """The backend's contexts of the servers on one host."""

    def __init__(self, host: host_snapshot.Host,
                 teardown_contexts: TeardownContexts):
        self._host = host
        self.teardown_contexts = teardown_contexts

    def unbind_released(self, instance_uuid: str, context_ids: list) -> None:
        """The release's unbind: the contexts of a device it releases.

        As the user of the guest's teardown when this process saw it
        (Cyborg then sees the user's token plus Nova's service token, as
        for every other call), else with Nova's own credentials. Only this
        node's binding: after a reschedule the same server may hold the
        context on another node by now.
        """
        user_context = self.teardown_contexts.take(instance_uuid)
        backend = backends.get_backend()
        nodename = self._host.nodename
        if user_context is not None:
            backend.unbind(user_context, objects.Instance(uuid=instance_uuid),
                           context_ids, hostname=nodename)
        else:
            backend.unbind_orphaned(nova_context.get_admin_context(),
                                    instance_uuid, context_ids,
                                    hostname=nodename)

    @staticmethod
    def bind_backend(context, instance, bindings) -> None:
        """Have the backend bind its objects as ``bindings`` say.

        The backend first unbinds what is still bound to this server
        elsewhere (the source of the move); a failed bind leaves nothing
        bound to the server.

        :raises DeviceNotUsable: the backend did not bind them.
        """
        by_node: dict[str, dict[str, str]] = {}
        for b in bindings:
            by_node.setdefault(b.nodename, {})[b.context_id] = b.rp_uuid
        for nodename, device_rps in sorted(by_node.items()):
            try:
                backends.get_backend().bind(context, instance, nodename,
                                            device_rps)
            except exception.BackendUnavailable as e:
                raise exception.DeviceNotUsable(
                    'device contexts %s could not be bound on node %s: %s'
                    % (', '.join(sorted(device_rps)), nodename, e))
            LOG.info('Bound device contexts %s to providers %s on node %s '
                     'for the move of the server',
                     ', '.join(sorted(device_rps)),
                     ', '.join(device_rps[c] for c in sorted(device_rps)),
                     nodename, instance=instance)

    def wait_for_backend(self, context, instance, virtapi) -> None:
        """ID-based contexts: wait for the backend; record attach handles.

        :raises DeviceNotUsable: not bound in time, bound elsewhere, or an
            attach handle nova-acc cannot attach.
        """
        bindings = binding.load(instance)
        pending = [b for b in bindings if b.context_id and not b.address]
        if not pending:
            return
        ids = [b.context_id for b in pending]
        try:
            handles = backends.get_backend().wait_bound(
                context, instance, virtapi,
                {b.context_id: b.rp_uuid for b in pending},
                hostname=self._host.nodename)
        except (exception.BackendUnavailable,
                nova_exc.InstanceEventTimeout) as e:
            raise exception.DeviceNotUsable(
                'device contexts %s were not bound: %s' % (
                    ', '.join(ids), e or 'timed out after %ss' %
                    CONF.nova_acc_cyborg.bind_timeout))
        unsupported = sorted(ctx for ctx, acc in handles.items()
                             if acc.interface_type not in ('pci', 'mdev'))
        if unsupported:
            backends.unbind_quietly(
                context, instance, ids, 'an attach handle nova-acc cannot '
                'attach', hostname=instance.node)
            raise exception.DeviceNotUsable(
                'attach handle type %s of device contexts %s is not '
                'supported yet' % (
                    ', '.join(sorted({handles[c].interface_type
                                      for c in unsupported})),
                    ', '.join(unsupported)))
        mdev_handles = {b.context_id: b for b in pending
                        if handles[b.context_id].interface_type == 'mdev'}
        if mdev_handles:
            self._record_backend_mdevs(context, instance, ids, mdev_handles,
                                       handles)
        binding.replace(instance, [
            dataclasses.replace(b, address=(
                handles[b.context_id].mdev_uuid
                if b.context_id in mdev_handles
                else handles[b.context_id].address))
            if b in pending else b for b in bindings])
        instance.save()

    def _record_backend_mdevs(self, context, instance, ids, pending,
                              handles) -> None:
        """Record the mdevs of the backend's MDEV attach handles.

        The backend chose the parent, type and UUID; nova-compute creates
        the mdev (when the guest is defined) as Nova does for Cyborg's
        mdevs, and removes it when the server lets go. The record is what
        ties it to the server until then.

        :raises DeviceNotUsable: another server holds that mdev here.
        """
        with self._host.ledger.transaction() as records:
            for ctx, b in sorted(pending.items()):
                acc = handles[ctx]
                rec = records.get(acc.mdev_uuid)
                if rec is not None and rec.instance_uuid != instance.uuid:
                    backends.unbind_quietly(
                        context, instance, ids, 'an mdev another server '
                        'holds', hostname=instance.node)
                    raise exception.DeviceNotUsable(
                        'mdev %s of device context %s: %s' % (
                            acc.mdev_uuid, ctx,
                            ledger.describe_unavailable(rec)))
                if rec is None:
                    rec = records[acc.mdev_uuid] = ledger.DeviceRecord(
                        address=acc.mdev_uuid, parent=acc.parent,
                        mdev_type=acc.mdev_type)
                    rec.claim(instance.uuid, b.rp_uuid, None, (), ctx,
                              b.requester_id)
