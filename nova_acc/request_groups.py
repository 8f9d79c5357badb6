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
"""

from __future__ import annotations

import dataclasses
import re
import uuid as uuid_lib

from nova import objects
import os_acc
from os_acc import exception as acc_exc

from nova_acc import backends
from nova_acc import conf
from nova_acc import exception
from nova_acc import hint

CONF = conf.CONF

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
    """The ``device_context`` hint values of a RequestSpec, in order."""
    return hint.values_of(request_spec.scheduler_hints if (
        'scheduler_hints' in request_spec) else None)


def _profiles() -> dict[str, str]:
    profiles = {}
    for line in CONF.nova_acc.profile:
        name, sep, spec = line.partition('=')
        name = name.strip()
        if not sep or not hint.PROFILE_NAME_RE.match(name):
            # A broken profile line is the operator's mistake; ignoring it
            # silently would make every boot naming it fail as "unknown".
            raise exception.InvalidDeviceContextHint(
                'operator configuration [nova_acc] profile has a malformed '
                'line %r; expected NAME=SPEC' % line)
        profiles[name] = spec.strip()
    return profiles


def resolve(value: str, context=None,
            request_spec=None) -> os_acc.DeviceContext:
    """Turn one hint value into a DeviceContext or raise with what to fix.

    :param context: the user's RequestContext; needed for context IDs.
    """
    if not isinstance(value, str) or not value.strip():
        raise exception.InvalidDeviceContextHint(
            'device_context hint value %r is empty' % (value,))
    kind = hint.kind_of(value)
    if kind == hint.ID:
        try:
            return backends.get_backend().resolve(
                context, request_spec, value).device_context
        except (exception.ContextRefused,
                exception.BackendUnavailable) as e:
            raise exception.InvalidDeviceContextHint(str(e)) from e
    if kind == hint.PROFILE:
        name = hint.profile_name(value)
        profiles = _profiles()
        if name not in profiles:
            known = ', '.join(sorted(profiles)) or 'none are configured'
            raise exception.InvalidDeviceContextHint(
                'device_context %r names an unknown profile %r (known '
                'profiles: %s)' % (value, name, known))
        value_to_parse = profiles[name]
    else:
        value_to_parse = value
    try:
        return os_acc.parse_device_context(value_to_parse)
    except acc_exc.InvalidDeviceContext as e:
        raise exception.InvalidDeviceContextHint(
            'device_context %r is invalid: %s' % (value, e)) from e


def context_groups(request_spec, context=None) -> list[ContextGroup]:
    """Resolve every hint value of the request into numbered groups.

    :param context: the user's RequestContext; needed for context IDs.
    :raises InvalidDeviceContextHint: with a message meant for the user.
    """
    result = []
    values = hint_values(request_spec)
    ids = [v for v in values if hint.is_context_id(v)]
    if len(set(ids)) != len(ids):
        raise exception.InvalidDeviceContextHint(
            'device_context names the same device context more than once: '
            '%s' % ', '.join(sorted({v for v in ids if ids.count(v) > 1})))
    for ctx_index, value in enumerate(values):
        ctx = resolve(value, context, request_spec)
        # One spelling of an ID from here on, the one backends use.
        context_id = str(uuid_lib.UUID(value)) if hint.is_context_id(
            value) else None
        for group_index, group in enumerate(ctx.groups):
            result.append(ContextGroup(ctx_index, group_index, value, group,
                                       context_id=context_id))
    limit = CONF.nova_acc.max_groups_per_server
    if len(result) > limit:
        raise exception.InvalidDeviceContextHint(
            'the device contexts of this server ask for %d device groups; '
            'at most %d are allowed ([nova_acc] max_groups_per_server)'
            % (len(result), limit))
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
    groups = context_groups(request_spec, ctxt)
    apply_request_groups(request_spec, groups)
    request_spec.root_required.add(CONF.nova_acc.capability_trait)
    return groups
