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
"""Step 1 of the flow: the ``device_context`` hint -> placement request groups.

A hint value (``nova_acc.hint``: an inline spec, ``profile:NAME`` or the
UUID of a device context object, resolved by the ``[nova_acc] backend``) is
turned into a DeviceContext, and each of its groups into one granular
placement request group. The group's requester id is also its suffix in
the placement query, so the provider placement picks for it can be read
back from the allocation request's ``mappings``; it carries everything the
later steps need to know of the group (see ``RequesterId``), so nothing is
looked up again from the hint.

Whatever can be checked without resolving a value is checked first, since
resolving an ID costs backend calls: the number of values (each is a group
at least), their length together, and the same ID given twice (in any
spelling of the UUID). Faults name only what the user gave: an unknown
profile's fault lists no other profile, and a broken operator profile
line goes to the log, not to the user.
"""

from __future__ import annotations

import dataclasses
import re
import uuid as uuid_lib

from nova import objects
import os_acc
from os_acc import exception as acc_exc
from oslo_log import log as logging

from nova_acc import backends
from nova_acc import conf
from nova_acc import exception
from nova_acc import hint

CONF = conf.CONF
LOG = logging.getLogger(__name__)

REQUESTER_PREFIX = 'nova_acc_'
# nova_acc_<context index>_<group index>[_<context id as 32 hex digits>]:
# at most 45 characters, within placement's 64 for a group suffix.
_REQUESTER_RE = re.compile(r'^nova_acc_(\d+)_(\d+)(?:_([0-9a-f]{32}))?$')


@dataclasses.dataclass(frozen=True)
class RequesterId:
    """What a requester id says: which group of which context.

    ``context_id`` is the ID of the device context object (a Cyborg ARQ)
    the group comes from, None for inline specs and profiles.
    """

    context_index: int
    group_index: int
    context_id: str | None = None

    def encode(self) -> str:
        text = '%s%d_%d' % (REQUESTER_PREFIX, self.context_index,
                            self.group_index)
        if self.context_id:
            text += '_' + uuid_lib.UUID(self.context_id).hex
        return text

    @classmethod
    def decode(cls, requester: str | None) -> RequesterId | None:
        """The RequesterId of one of nova-acc's groups; None for others."""
        match = _REQUESTER_RE.match(requester or '')
        if match is None:
            return None
        ctx, group, hex_id = match.groups()
        return cls(int(ctx), int(group),
                   str(uuid_lib.UUID(hex_id)) if hex_id else None)


def is_ours(requester: str | None) -> bool:
    return RequesterId.decode(requester) is not None


def context_id_of(requester: str) -> str | None:
    """The context ID a group of ours came from; None for inline specs."""
    decoded = RequesterId.decode(requester)
    return decoded.context_id if decoded else None


@dataclasses.dataclass(frozen=True)
class ContextGroup:
    """One group of one device context with its placement requester id."""

    context_index: int
    group_index: int
    hint_value: str
    group: os_acc.DeviceContextGroup
    #: The ID of a device context object, None for inline specs/profiles.
    context_id: str | None = None

    @property
    def requester_id(self) -> str:
        return RequesterId(self.context_index, self.group_index,
                           self.context_id).encode()


def hint_values(request_spec) -> list[str]:
    """The ``device_context`` hint values of a RequestSpec, in order.

    With the places of detached contexts (``hint.is_detached``): the
    index of a value is the context index of its requester ids.
    """
    return hint.values_of(request_spec.scheduler_hints if (
        'scheduler_hints' in request_spec) else None)


def requested_values(request_spec) -> list[str]:
    """The values that ask for devices: without detached contexts."""
    return [v for v in hint_values(request_spec) if not hint.is_detached(v)]


def _profile_spec(value: str) -> str:
    """The operator's spec of a ``profile:NAME`` value.

    A fault a user sees names only the profile the user asked for: the
    names of the others and the operator's configuration lines go to the
    log.
    """
    name = hint.profile_name(value)
    profiles = {}
    for line in CONF.nova_acc.profile:
        profile, sep, spec = line.partition('=')
        profile = profile.strip()
        if not sep or not hint.PROFILE_NAME_RE.match(profile):
            # A broken line may be the very profile asked for (a missing
            # '='): no profile is used until the operator fixes it.
            LOG.error('[nova_acc] profile has a malformed line %r; '
                      'expected NAME=SPEC. Servers that name a profile '
                      'fail until it is fixed.', line)
            raise exception.InvalidDeviceContextHint(
                'device_context %r: profile configuration error, contact '
                'your operator' % (value,))
        profiles[profile] = spec.strip()
    if name not in profiles:
        LOG.info('device_context %r names no profile of [nova_acc] '
                 'profile; the configured ones are: %s', value,
                 ', '.join(sorted(profiles)) or 'none')
        raise exception.InvalidDeviceContextHint(
            'device_context %r names an unknown profile %r; ask your '
            'operator which profiles this cloud offers' % (value, name))
    return profiles[name]


def resolve(value: str, context=None,
            request_spec=None) -> os_acc.DeviceContext:
    """Turn one hint value into a DeviceContext or raise with what to fix.

    :param context: the user's RequestContext; needed for context IDs.
    """
    if not isinstance(value, str) or not value.strip():
        raise exception.InvalidDeviceContextHint(
            'device_context hint value %r is empty' % (value,))
    context_id = hint.context_id(value)
    if context_id is not None:
        try:
            return backends.get_backend().resolve(
                context, request_spec, context_id).device_context
        except (exception.ContextRefused,
                exception.BackendUnavailable) as e:
            raise exception.InvalidDeviceContextHint(str(e)) from e
    is_profile = hint.kind_of(value) == hint.PROFILE
    spec = _profile_spec(value) if is_profile else value
    try:
        return os_acc.parse_device_context(spec)
    except acc_exc.InvalidDeviceContext as e:
        if is_profile:
            LOG.error('The [nova_acc] profile of %r is invalid: %s',
                      value, e)
        raise exception.InvalidDeviceContextHint(
            'device_context %r is invalid: %s' % (value, e)) from e


def _check_size(values: list) -> None:
    """Refuse a hint that is too big before anything is resolved.

    Resolving an ID costs backend calls (two Cyborg GETs each), in the
    conductor and again in the scheduler: a hint with thousands of IDs
    is refused from its size alone. Each value is one group at least.
    """
    # The place of a detached context asks for nothing.
    values = [v for v in values if not hint.is_detached(v)]
    limit = CONF.nova_acc.max_groups_per_server
    if len(values) > limit:
        raise exception.InvalidDeviceContextHint(
            'the device contexts of this server ask for at least %d device '
            'groups (one per device_context value); at most %d are allowed '
            '([nova_acc] max_groups_per_server)' % (len(values), limit))
    length = sum(len(v) for v in values if isinstance(v, str))
    if length > hint.MAX_HINT_LENGTH:
        raise exception.InvalidDeviceContextHint(
            'the device_context values of this server are %d characters '
            'long together; at most %d are allowed'
            % (length, hint.MAX_HINT_LENGTH))


def _check_unique_ids(values: list) -> None:
    """Refuse one device context object given twice, however spelled."""
    spellings: dict[str, list[str]] = {}
    for value in values:
        context_id = hint.context_id(value)
        if context_id is not None:
            spellings.setdefault(context_id, []).append(value)
    twice = sorted((c, v) for c, v in spellings.items() if len(v) > 1)
    if twice:
        raise exception.InvalidDeviceContextHint(
            'device_context names the same device context more than once: '
            '%s' % '; '.join(
                '%s (given as %s)' % (c, ', '.join(repr(s) for s in v))
                for c, v in twice))


def context_groups(request_spec, context=None) -> list[ContextGroup]:
    """Resolve every hint value of the request into numbered groups.

    The size of the hint and duplicate IDs are checked before any value is
    resolved, and resolving stops as soon as the groups are too many.

    :param context: the user's RequestContext; needed for context IDs.
    :raises InvalidDeviceContextHint: with a message meant for the user.
    """
    result: list[ContextGroup] = []
    values = hint_values(request_spec)
    _check_size(values)
    _check_unique_ids(values)
    limit = CONF.nova_acc.max_groups_per_server
    for ctx_index, value in enumerate(values):
        if hint.is_detached(value):
            # Keeps its index (the later values' requester ids encode
            # theirs) and asks for nothing.
            continue
        ctx = resolve(value, context, request_spec)
        # One spelling of an ID from here on, the one backends use.
        context_id = hint.context_id(value)
        for group_index, group in enumerate(ctx.groups):
            result.append(ContextGroup(ctx_index, group_index, value, group,
                                       context_id=context_id))
        if len(result) > limit:
            # Each value not resolved yet is one group at least.
            unresolved = sum(1 for v in values[ctx_index + 1:]
                             if not hint.is_detached(v))
            raise exception.InvalidDeviceContextHint(
                'the device contexts of this server ask for %s%d device '
                'groups; at most %d are allowed ([nova_acc] '
                'max_groups_per_server)' % (
                    'at least ' if unresolved else '',
                    len(result) + unresolved, limit))
    return result


def to_request_group(cg: ContextGroup) -> objects.RequestGroup:
    required = set(cg.group.required_traits)
    forbidden = set(cg.group.forbidden_traits)
    if cg.context_id is None:
        # The capability trait keeps the group off providers that nova-acc
        # does not manage (Cyborg's, or Nova's own PCI-in-placement ones)
        # even when they expose the same resource class.
        required.add(CONF.nova_acc.capability_trait)
    else:
        backend = backends.get_backend()
        required |= backend.required_traits
        forbidden |= backend.forbidden_traits
    if cg.context_id is None or not backend.picks_devices:
        # The group goes to nova-acc's pools. Only devices whose device_spec
        # entry allows each accel: key carry its trait, so placement offers
        # no device that would refuse the config data.
        required |= {os_acc.config_trait(key) for key in cg.group.config}
    return objects.RequestGroup(
        use_same_provider=True,
        requester_id=cg.requester_id,
        resources=dict(cg.group.resources),
        required_traits=required,
        forbidden_traits=forbidden,
        aggregates=[],
        forbidden_aggregates=set(),
        provider_uuids=[])


def _requested_resources(request_spec) -> list:
    if 'requested_resources' not in request_spec:
        return []
    return request_spec.requested_resources or []


def our_request_groups(request_spec) -> list:
    """nova-acc's RequestGroups on a RequestSpec (with provider mapping)."""
    return [rg for rg in _requested_resources(request_spec)
            if is_ours(rg.requester_id)]


def apply_request_groups(request_spec, groups: list[ContextGroup]) -> None:
    """Replace nova-acc's groups in ``request_spec.requested_resources``.

    Idempotent: the conductor and the scheduler both call it, and a
    reschedule sends the same RequestSpec through again.
    """
    existing = [rg for rg in _requested_resources(request_spec)
                if not is_ours(rg.requester_id)]
    request_spec.requested_resources = existing + [
        to_request_group(cg) for cg in groups]


def add_to_request(ctxt, request_spec) -> list[ContextGroup]:
    """The scheduler's request filter: hint -> groups on the RequestSpec.

    Also requires the capability trait on the compute node, which only
    hosts running nova-acc's driver have.

    :raises InvalidDeviceContextHint: the hint is unusable.
    """
    if not hint_values(request_spec):
        return []
    if not requested_values(request_spec):
        # Only the places of detached contexts: no group of ours.
        apply_request_groups(request_spec, [])
        return []
    groups = context_groups(request_spec, ctxt)
    apply_request_groups(request_spec, groups)
    request_spec.root_required.add(CONF.nova_acc.capability_trait)
    return groups
