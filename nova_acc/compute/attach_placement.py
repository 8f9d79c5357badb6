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
"""Placement during an attach or a detach: the server's allocation grows
or shrinks in one PUT guarded by its consumer generation.

Candidates come from ``GET /allocation_candidates`` with one granular
group per context group, each restricted to the server's own compute
node tree (``in_tree``). The server's allocation is then written whole,
with the generation read before: a concurrent Nova operation on the
server (a move, a resize) changes the generation, so one of the two fails
cleanly with a conflict and nothing is half-done.

Attaches to different servers of one host race for the same free
devices: placement offers each the same candidate, and the PUT of all
but the first that fit is refused for capacity (a 409 that is no
generation conflict). Such an attach asks for candidates again: another
free device is taken, or it fails saying there is no free device on the
host, never that the server changed.
"""

from __future__ import annotations

import copy

from nova_acc import exception

#: in_tree<N> (1.31), mappings (1.34), consumer generations (1.28).
VERSION = '1.36'
#: Placement's error code of a generation conflict (its ``errors.py``).
CONCURRENT_UPDATE = 'placement.concurrent_update'
#: How often an attach asks for candidates again after another took
#: the device it was offered.
GROW_ATTEMPTS = 5


class PlacementRefused(exception.NovaAccException):
    """Placement did not give or take the devices; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CapacityTaken(PlacementRefused):
    """Placement refused the PUT for capacity: others took the devices."""


def _suffix(index: int) -> str:
    return '_ACC%d' % index


def candidate_query(groups, root_uuid: str) -> dict[str, str]:
    """The query of ``GET /allocation_candidates`` for ``groups``."""
    query = {'group_policy': 'none', 'limit': '1'}
    for index, rg in enumerate(groups):
        suffix = _suffix(index)
        query['resources' + suffix] = ','.join(
            '%s:%d' % item for item in sorted(rg.resources.items()))
        traits = sorted(rg.required_traits) + [
            '!' + t for t in sorted(rg.forbidden_traits)]
        if traits:
            query['required' + suffix] = ','.join(traits)
        query['in_tree' + suffix] = root_uuid
    return query


def _read(report, ctxt, url: str, what: str) -> dict:
    resp = report.get(url, version=VERSION,
                      global_request_id=ctxt.global_id)
    if not resp:
        raise PlacementRefused('placement could not %s (%s)'
                               % (what, resp.status_code))
    return resp.json()


def _error_code(resp) -> str | None:
    """The ``code`` of placement's first error, None if it has none."""
    try:
        return resp.json()['errors'][0]['code']
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _write(report, ctxt, server_uuid: str, current: dict,
           allocations: dict) -> bool:
    """PUT the server's allocation; False on a generation conflict."""
    body = {'allocations': allocations,
            'consumer_generation': current['consumer_generation'],
            'project_id': current['project_id'],
            'user_id': current['user_id']}
    resp = report.put('/allocations/%s' % server_uuid, body,
                      version=VERSION, global_request_id=ctxt.global_id)
    if resp.status_code == 409:
        if _error_code(resp) == CONCURRENT_UPDATE:
            return False
        raise CapacityTaken('placement has no room for the allocation of '
                            'server %s any more: %s' % (server_uuid,
                                                        resp.text))
    if not resp:
        raise PlacementRefused('placement refused the allocation of server '
                               '%s (%d): %s' % (server_uuid,
                                                resp.status_code, resp.text))
    return True


def _candidate(report, ctxt, groups, root_uuid: str, host: str) -> dict:
    """The first allocation request for ``groups`` on this host's tree.

    :raises PlacementRefused: there is none.
    """
    query = candidate_query(groups, root_uuid)
    found = _read(report, ctxt, '/allocation_candidates?' + '&'.join(
        '%s=%s' % item for item in sorted(query.items())),
        'list allocation candidates')
    if not found['allocation_requests']:
        raise PlacementRefused('no free device on host %s for it' % host)
    return found['allocation_requests'][0]


def grow(report, ctxt, server_uuid: str, host: str, root_uuid: str,
         groups) -> dict[str, dict[str, int]]:
    """Add ``groups`` to the server's allocation; map them to providers.

    Sets each group's ``provider_uuids``. A candidate that other attaches
    took meanwhile is replaced by a new one (:data:`GROW_ATTEMPTS`).

    :returns: what was added: provider -> resource class -> amount.
    :raises PlacementRefused: no candidate on this host, or the server's
        allocation changed meanwhile.
    """
    for _attempt in range(GROW_ATTEMPTS):
        current = _read(report, ctxt, '/allocations/%s' % server_uuid,
                        'read the allocation of server %s' % server_uuid)
        if not current.get('allocations'):
            raise PlacementRefused('server %s has no allocation in '
                                   'placement' % server_uuid)
        chosen = _candidate(report, ctxt, groups, root_uuid, host)
        added = {rp: dict(alloc['resources'])
                 for rp, alloc in chosen['allocations'].items()}
        allocations = copy.deepcopy(current['allocations'])
        for rp, resources in added.items():
            into = allocations.setdefault(rp, {'resources': {}})['resources']
            for rc, amount in resources.items():
                into[rc] = into.get(rc, 0) + amount
        for alloc in allocations.values():
            alloc.pop('generation', None)
        try:
            written = _write(report, ctxt, server_uuid, current, allocations)
        except CapacityTaken:
            continue  # another attach took it: ask placement again
        if not written:
            raise PlacementRefused(
                'the allocation of server %s changed meanwhile (another '
                'operation on the server); try again' % server_uuid)
        for index, rg in enumerate(groups):
            rg.provider_uuids = list(chosen['mappings'][_suffix(index)])
        return added
    raise PlacementRefused('no free device on host %s for it: other '
                           'attaches took those placement offered' % host)


def shrink(report, ctxt, server_uuid: str,
           removed: dict[str, dict[str, int]], attempts: int = 3) -> None:
    """Take ``removed`` out of the server's allocation.

    A conflict (the server's allocation changed meanwhile) is retried on
    the allocation read again: only these amounts are taken out.

    :raises PlacementRefused:
    """
    for _attempt in range(attempts):
        current = _read(report, ctxt, '/allocations/%s' % server_uuid,
                        'read the allocation of server %s' % server_uuid)
        if not current.get('allocations'):
            return  # the server is gone with its allocation
        allocations = copy.deepcopy(current['allocations'])
        for rp, resources in removed.items():
            held = allocations.get(rp, {}).get('resources', {})
            for rc, amount in resources.items():
                if rc in held:
                    held[rc] = max(0, held[rc] - amount)
                    if not held[rc]:
                        del held[rc]
            if rp in allocations and not held:
                del allocations[rp]
        for alloc in allocations.values():
            alloc.pop('generation', None)
        if _write(report, ctxt, server_uuid, current, allocations):
            return
    raise PlacementRefused('the allocation of server %s kept changing; the '
                           'devices stay allocated' % server_uuid)


def surplus(allocations: dict, pools: set[str],
            bindings) -> dict[str, dict[str, int]]:
    """What the server holds on ``pools`` beyond what its bindings bind.

    A compute that died between an attach's allocation PUT and saving the
    groups' bindings leaves such a surplus: no binding, so no device will
    ever be claimed for it, yet placement counts it as used. Every binding
    on a provider counts (a pool's ``amount``, a device's one), and a
    provider with more than one resource class of the server is left
    alone: only what is certainly unbound is given back.

    :param allocations: the server's allocations, provider -> {resources}.
    :returns: provider -> resource class -> amount, for ``shrink``.
    """
    bound: dict[str, int] = {}
    for b in bindings:
        bound[b.rp_uuid] = bound.get(b.rp_uuid, 0) + (b.amount or 1)
    result: dict[str, dict[str, int]] = {}
    for rp, alloc in allocations.items():
        resources = (alloc or {}).get('resources') or {}
        if rp not in pools or len(resources) != 1:
            continue
        (rc, amount), = resources.items()
        extra = amount - bound.get(rp, 0)
        if extra > 0:
            result[rp] = {rc: extra}
    return result


def allocations_of(report, ctxt, server_uuid: str) -> dict:
    """The server's allocations, provider -> {resources}.

    :raises PlacementRefused:
    """
    return _read(report, ctxt, '/allocations/%s' % server_uuid,
                 'read the allocation of server %s' % server_uuid
                 ).get('allocations') or {}
