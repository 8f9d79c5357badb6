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
"""nova-conductor with device contexts (``nova-acc-conductor``).

Started by the ``nova-acc-conductor`` console script. Two seams:

* ``schedule_and_build_instances`` (RPC API): puts the device-context
  request groups on each RequestSpec before Nova schedules, so Nova's own
  ``fill_provider_mapping`` records which provider each group got. The
  scheduler adds the same groups again (idempotently): a change the
  scheduler makes to its copy of the spec never travels back here.
* ``_create_and_bind_arq_for_instance`` (private; Nova calls it after host
  selection on first boot and on every reschedule, where it binds Cyborg
  ARQs): binds our groups too (step 3, ``nova_acc.binding.prebind``).
  Private, hence the pinned Nova range in requirements.txt and
  tests/unit/nova_acc/test_nova_seams.py.
* ``_build_live_migrate_task`` and ``_build_cold_migrate_task`` (private):
  the task of a move ``nova_acc.moves`` refuses (for a live migration,
  from the traits of the server's pools in placement) raises
  ``MigrationPreCheckError`` before anything moves; Nova's own handling of
  a failed pre-check then keeps the server as it was, marks the migration
  failed and records the reason as the action's fault.
* ``build_instances`` (RPC API; a compute that refused a build asks for a
  reschedule through it) and ``_cleanup_when_reschedule_fails`` (private;
  Nova records the server's fault there when the reschedule gives up):
  when no host is left for a server with device contexts, the fault says
  which context the last host refused and why (``refusal_fault``), not
  only Nova's "Exhausted all hosts available for retrying build
  failures". Nova keeps the last host's reason in
  ``filter_properties['retry']['exc_reason']`` and drops it
  (``populate_retry``) before it gives up, so ``build_instances`` reads it
  first. Both pinned in tests/unit/nova_acc/test_nova_seams.py.
"""

from __future__ import annotations

import re
import uuid as uuid_lib

from nova.conductor import manager
from nova import exception as nova_exc
from oslo_log import log as logging

from nova_acc import backends
from nova_acc import binding
from nova_acc import exception
from nova_acc import hint
from nova_acc import moves
from nova_acc import request_groups

LOG = logging.getLogger(__name__)

# What a compute's ComputeResourcesUnavailable (the libvirt seam's
# DeviceNotUsable) puts around the reason it was given.
_UNAVAILABLE_PREFIX = nova_exc.ComputeResourcesUnavailable.msg_fmt.split(
    '%(reason)s')[0]
# The room a MaxRetriesExceeded's reason has in a fault message: the
# instance_faults column holds 255 characters.
_FAULT_ROOM = 255 - len(nova_exc.MaxRetriesExceeded.msg_fmt.replace(
    '%(reason)s', ''))
# A hint value this long is shortened in a fault (os_acc accepts specs of
# up to 4096 characters).
_LONGEST_VALUE = 60
_UUID = r'[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}'
# A group named by its requester id (nova_acc.request_groups.RequesterId),
# as the compute's claim failures name it.
_GROUP_RE = re.compile(
    r'(?:device group )?(nova_acc_\d+_\d+(?:_[0-9a-f]{32})?)')
_SERVER_RE = re.compile(r'\bserver (%s)' % _UUID)
_GUEST_RE = re.compile(r'\bguest (?!of\b)[^\s,;()]+')
_POOL_RE = re.compile(r'\bpool (%s)' % _UUID)
_ANY_UUID_RE = re.compile(_UUID)


def _context_label(value: str, group_index: int, groups: int) -> str:
    """A device context as the user gave it (shortened if very long)."""
    if len(value) > _LONGEST_VALUE:
        value = value[:_LONGEST_VALUE - 3] + '...'
    label = 'device context %r' % value
    if groups > 1:
        label = 'group %d of %s' % (group_index + 1, label)
    return label


def refusal_fault(reason: str, hint_values: list[str], groups_per_context:
                  dict[int, int], own_ids: set[str], nodes: list[str]
                  ) -> str:
    """The fault of a server whose last host refused it, none left.

    Names the device contexts as the user gave them (a group the host
    names by its requester id becomes its hint value) and says what the
    host found, without what is not the user's: other servers' UUIDs and
    guests, the host's node names and provider UUIDs.

    :param reason: the host's reason (``retry['exc_reason']``).
    :param hint_values: the server's ``device_context`` values, in order.
    :param groups_per_context: context index -> its number of groups.
    :param own_ids: the server's UUID and its contexts' IDs (canonical).
    :param nodes: the nodes the server was tried on.
    """
    text = reason.strip()
    if text.startswith(_UNAVAILABLE_PREFIX):
        text = text[len(_UNAVAILABLE_PREFIX):]
    text = text.rstrip('.').strip()
    named = []

    def name_group(match):
        decoded = request_groups.RequesterId.decode(match.group(1))
        if decoded is None or decoded.context_index >= len(hint_values):
            return 'a device group'
        named.append(decoded.context_index)
        return _context_label(
            hint_values[decoded.context_index], decoded.group_index,
            groups_per_context.get(decoded.context_index, 1))

    text = _GROUP_RE.sub(name_group, text)

    def own(uuid: str) -> bool:
        return str(uuid_lib.UUID(uuid)) in own_ids

    text = _SERVER_RE.sub(lambda m: 'server %s' % m.group(1) if own(
        m.group(1)) else 'another server', text)
    text = _GUEST_RE.sub('a guest', text)
    text = _POOL_RE.sub('its pool', text)
    text = _ANY_UUID_RE.sub(
        lambda m: m.group(0) if own(m.group(0)) else '(not shown)', text)
    for node in sorted(set(nodes), key=len, reverse=True):
        text = text.replace('node %s' % node, 'the host')
    if named:
        fault = 'No host is left to try; the last one refused: %s.' % text
    else:
        fault = ('No host is left to try; the last one refused the server '
                 'with %s: %s.' % (', '.join(
                     _context_label(v, 0, 1) for v in hint_values), text))
    if len(fault) > _FAULT_ROOM:
        fault = fault[:_FAULT_ROOM - 3] + '...'
    return fault


def _refusal_of(filter_properties, request_spec, instances
                ) -> tuple[str, str] | None:
    """(the host's reason, the fault to give if this reschedule gives up).

    Only for a server with device contexts whose last host gave a reason;
    None: Nova's own fault.
    """
    retry = (filter_properties or {}).get('retry') or {}
    reason = retry.get('exc_reason')
    if not reason or request_spec is None or len(instances) != 1:
        return None
    values = request_groups.hint_values(request_spec)
    if not values:
        return None
    groups_per_context: dict[int, int] = {}
    for rg in request_groups.our_request_groups(request_spec):
        decoded = request_groups.RequesterId.decode(rg.requester_id)
        if decoded is not None:
            groups_per_context[decoded.context_index] = \
                groups_per_context.get(decoded.context_index, 0) + 1
    own_ids = {str(uuid_lib.UUID(instances[0].uuid))}
    own_ids |= {hint.context_id(v) for v in values if hint.is_context_id(v)}
    nodes = [h[1] for h in retry.get('hosts') or [] if len(h) > 1 and h[1]]
    return str(reason), refusal_fault(str(reason), values,
                                      groups_per_context, own_ids, nodes)


def _context_ids_of(request_spec) -> list[str]:
    """The IDs of the device context objects a server was booted with."""
    if request_spec is None:
        return []
    return sorted({hint.context_id(v)
                   for v in request_groups.hint_values(request_spec)
                   if hint.is_context_id(v)})


class ComputeTaskManager(manager.ComputeTaskManager):

    def __init__(self):
        super().__init__()
        # Server UUID -> (its last host's reason, the fault for it if its
        # reschedule gives up), while build_instances handles it.
        self._refusals: dict[str, tuple[str, str]] = {}
        # Server UUID -> the IDs of its device contexts, while
        # build_instances reschedules it.
        self._context_ids: dict[str, list[str]] = {}

    def schedule_and_build_instances(self, context, build_requests,
                                     request_specs, image, admin_password,
                                     injected_files, requested_networks,
                                     block_device_mapping, tags=None):
        for spec in request_specs:
            try:
                groups = request_groups.context_groups(spec, context)
            except exception.InvalidDeviceContextHint:
                # The scheduler's request filter rejects it with the same
                # message, which Nova records as the server's fault.
                continue
            if groups:
                request_groups.apply_request_groups(spec, groups)
        return super().schedule_and_build_instances(
            context, build_requests, request_specs, image, admin_password,
            injected_files, requested_networks, block_device_mapping,
            tags=tags)

    def build_instances(self, context, instances, image, filter_properties,
                        admin_password, injected_files, requested_networks,
                        security_groups, block_device_mapping=None,
                        legacy_bdm=True, request_spec=None, host_lists=None):
        try:
            refusal = _refusal_of(filter_properties, request_spec, instances)
        except Exception:
            # A better fault is not worth a failed reschedule.
            LOG.exception('Could not word the fault of a refused build.')
            refusal = None
        if refusal is not None:
            self._refusals[instances[0].uuid] = refusal
        context_ids = _context_ids_of(request_spec)
        for instance in instances if context_ids else ():
            self._context_ids[instance.uuid] = context_ids
        try:
            return super().build_instances(
                context, instances, image, filter_properties, admin_password,
                injected_files, requested_networks, security_groups,
                block_device_mapping=block_device_mapping,
                legacy_bdm=legacy_bdm, request_spec=request_spec,
                host_lists=host_lists)
        finally:
            if refusal is not None:
                self._refusals.pop(instances[0].uuid, None)
            for instance in instances:
                self._context_ids.pop(instance.uuid, None)

    def _cleanup_when_reschedule_fails(self, context, instance, exception,
                                       legacy_request_spec,
                                       requested_networks):
        # "exception" as Nova names it; nova_acc's module is not used here.
        refusal = self._refusals.get(instance.uuid)
        if refusal is not None and isinstance(
                exception, nova_exc.MaxRetriesExceeded):
            reason, fault = refusal
            # The whole reason, for the operator; the user's fault leaves
            # out what is not theirs.
            LOG.warning('%s The last host refused the server: %s', exception,
                        reason, instance=instance)
            exception = nova_exc.MaxRetriesExceeded(reason=fault)
        # The server ends in ERROR on no host: it lets go of its device
        # contexts wherever a host bound them (a failed build on a host
        # before its claim leaves nothing on that host to release them).
        backends.unbind_quietly(
            context, instance, self._context_ids.get(instance.uuid, []),
            'the build failed on every host tried')
        return super()._cleanup_when_reschedule_fails(
            context, instance, exception, legacy_request_spec,
            requested_networks)

    def _create_and_bind_arq_for_instance(self, context, instance, hostname,
                                          request_spec,
                                          requested_networks=None):
        binding.prebind(self.report_client, context, instance, hostname,
                        request_spec)
        return super()._create_and_bind_arq_for_instance(
            context, instance, hostname, request_spec,
            requested_networks=requested_networks)

    def _build_live_migrate_task(self, context, instance, destination,
                                 block_migration, disk_over_commit, migration,
                                 request_spec=None):
        reason = moves.live_migration_refusal(
            instance, lambda rp: self._pool_traits(context, rp))
        if reason:
            return _Refused(reason, instance)
        return super()._build_live_migrate_task(
            context, instance, destination, block_migration,
            disk_over_commit, migration, request_spec=request_spec)

    def _pool_traits(self, context, rp_uuid: str) -> set[str]:
        """A pool's traits in placement; none when they cannot be read.

        Fails closed: a pool whose traits are unknown does not allow a
        live migration (the refusal says which group).
        """
        try:
            return set(self.report_client.get_provider_traits(
                context, rp_uuid).traits)
        except Exception as e:  # placement's errors, a provider gone
            LOG.warning('Could not read the traits of pool %s: %s',
                        rp_uuid, e)
            return set()

    def _build_cold_migrate_task(self, context, instance, flavor,
                                 request_spec, clean_shutdown, host_list):
        reason = moves.cold_migration_refusal(instance)
        if reason:
            return _Refused(reason, instance)
        return super()._build_cold_migrate_task(
            context, instance, flavor, request_spec, clean_shutdown,
            host_list)


class _Refused:
    """A conductor task that refuses its operation before anything moves."""

    def __init__(self, reason: str, instance):
        self.reason = reason
        self.instance = instance

    def execute(self):
        LOG.info('Refused: %s', self.reason, instance=self.instance)
        raise nova_exc.MigrationPreCheckError(reason=self.reason)


class ConductorManager(manager.ConductorManager):
    """Nova's ConductorManager serving nova-acc's ComputeTaskManager."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.additional_endpoints.remove(self.compute_task_mgr)
        self.compute_task_mgr = ComputeTaskManager()
        self.additional_endpoints.append(self.compute_task_mgr)
