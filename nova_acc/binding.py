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
"""Step 3 of the flow, binding: each context group -> its allocated pool.

Runs in the conductor after placement picked a host, on the first boot, on
every reschedule and on unshelve (``prebind``, called from the conductor
seam). The RequestSpec's request groups carry the provider that placement
chose for each of them (Nova's ``fill_provider_mapping``), so binding means
checking that provider is a device pool of the chosen node and recording
it, with how many devices the group takes from it, with the instance. The
concrete devices are picked by the host when it claims them, under its
ledger lock (``nova_acc.compute.claiming``): a conductor cannot know which
devices of a pool are free on the host at that moment, and several conductors
could pick the same one. For ID-based contexts the backend binds them
here too: Cyborg's attach handle names the device; a context of
nova-acc-api (the local backend) is marked bound to the server and host,
and its groups are pool bindings whose devices the host picks.

Where bindings live: the instance's system metadata in the cell database.
The conductor writes them; the compute reads them on build and on every
guest definition, and its reconcile reads them to tell which servers still
hold which devices (who holds a device *now* is the device ledger's fact,
``nova_acc.compute.ledger``). System metadata travels with the Instance object,
needs no schema of our own, and is soft-deleted with the server. One key
per group keeps each value far below the 255-character column.

A binding that cannot be made is recorded as an error instead of raised:
raising here would make Nova fail every server of a multi-create, while
the compute turns the recorded error into a reschedule of this server only.
"""

from __future__ import annotations

import dataclasses

from nova import context as nova_context
from nova import exception as nova_exc
from nova import objects
from oslo_db import exception as db_exc
from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_acc import backends
from nova_acc import exception
from nova_acc import matching
from nova_acc import pools
from nova_acc import request_groups

LOG = logging.getLogger(__name__)

KEY_PREFIX = 'nova_acc_binding_'
ERROR_KEY = 'nova_acc_binding_error'
#: Not under KEY_PREFIX: these are not bindings of the server now.
BEFORE_MOVE_PREFIX = 'nova_acc_before_move_'
#: A group's config data (``accel:`` keys): one key per group and accel
#: key, ``nova_acc_cfg:<requester id>:<accel key>`` -> the value. Not in the
#: binding's JSON: a value may be 255 characters, the column's size; the
#: key is at most 13 + 45 (a requester id) + 1 + 64 (the grammar's longest
#: accel key) characters.
CONFIG_PREFIX = 'nova_acc_cfg:'


@dataclasses.dataclass(frozen=True)
class Binding:
    """Group ``requester_id`` of a server is bound to one provider.

    Three kinds:

    * a pool of nova-acc (``is_pool``): ``amount`` devices of pool
      ``rp_uuid``; which ones is the host's ledger's fact;
    * an ID-based context (``context_id``, a Cyborg ARQ) on its backend's
      provider; ``address`` is known once the backend reports the attach
      handle, on the compute;
    * one device (``address``, no ``context_id``): bindings made before
      device pools, honoured as they are.
    """

    requester_id: str
    rp_uuid: str
    address: str | None
    nodename: str
    context_id: str | None = None
    amount: int = 1
    #: The resource class of the group (a pool's, or what the backend's
    #: object asks for), so that a move can find the group's provider among
    #: the destination's allocations.
    resource_class: str | None = None

    @property
    def is_pool(self) -> bool:
        return self.context_id is None and self.address is None

    def to_json(self) -> str:
        data: dict = {'rp': self.rp_uuid, 'address': self.address,
                      'node': self.nodename}
        if self.context_id:
            data['ctx'] = self.context_id
        if self.is_pool:
            data['n'] = self.amount
        if self.resource_class:
            data['rc'] = self.resource_class
        return jsonutils.dumps(data)


def _key(requester_id: str) -> str:
    return KEY_PREFIX + requester_id


def _from_json(requester_id: str, value: str) -> Binding:
    data = jsonutils.loads(value)
    return Binding(requester_id=requester_id, rp_uuid=data['rp'],
                   address=data['address'], nodename=data['node'],
                   context_id=data.get('ctx'), amount=data.get('n', 1),
                   resource_class=data.get('rc'))


def load(instance) -> list[Binding]:
    """The bindings recorded on the instance, ordered by requester id."""
    return [_from_json(key[len(KEY_PREFIX):], value)
            for key, value in sorted(instance.system_metadata.items())
            if key.startswith(KEY_PREFIX) and key != ERROR_KEY]


def keep_for_revert(instance, bindings: list[Binding]) -> None:
    """Record the backend bindings a move replaces (in memory).

    The source gets them back if the move is reverted; the devices of
    nova-acc's own pools need no record here: the source's ledger keeps
    them for the server until the move is confirmed. One key per group, as
    for the bindings (a value holds 255 characters).
    """
    forget_kept(instance)
    sysmeta = instance.system_metadata
    for b in bindings:
        if b.context_id:
            sysmeta[BEFORE_MOVE_PREFIX + b.requester_id] = b.to_json()
    instance.system_metadata = sysmeta


def kept_for_revert(instance, nodename: str) -> list[Binding]:
    """The backend bindings ``keep_for_revert`` recorded for ``nodename``."""
    kept = [_from_json(key[len(BEFORE_MOVE_PREFIX):], value)
            for key, value in sorted(instance.system_metadata.items())
            if key.startswith(BEFORE_MOVE_PREFIX)]
    return [b for b in kept if b.nodename == nodename]


def forget_kept(instance) -> None:
    """Drop the record of ``keep_for_revert`` (in memory)."""
    sysmeta = instance.system_metadata
    for key in [k for k in sysmeta if k.startswith(BEFORE_MOVE_PREFIX)]:
        del sysmeta[key]
    instance.system_metadata = sysmeta


def load_config(instance) -> dict[str, dict[str, str]]:
    """The config data of the server's groups: requester id -> key -> value.

    Only groups with config data appear.
    """
    result: dict[str, dict[str, str]] = {}
    for key, value in instance.system_metadata.items():
        if key.startswith(CONFIG_PREFIX):
            requester_id, _sep, name = key[len(CONFIG_PREFIX):].partition(':')
            result.setdefault(requester_id, {})[name] = value
    return result


def _replace_config(sysmeta, groups: set[str],
                    config: dict[str, dict[str, str]] | None) -> None:
    """Keep the config data of ``groups`` only; set ``config`` if given.

    A move rewrites the bindings of the same groups: their config data
    stays. A failure (no bindings) drops it with them.
    """
    for key in [k for k in sysmeta if k.startswith(CONFIG_PREFIX)]:
        requester_id = key[len(CONFIG_PREFIX):].partition(':')[0]
        if config is not None or requester_id not in groups:
            del sysmeta[key]
    for requester_id, values in (config or {}).items():
        if requester_id not in groups:
            continue
        for name, value in values.items():
            sysmeta['%s%s:%s' % (CONFIG_PREFIX, requester_id, name)] = value


def load_error(instance) -> str | None:
    return instance.system_metadata.get(ERROR_KEY)


def replace(instance, bindings: list[Binding],
            error: str | None = None,
            config: dict[str, dict[str, str]] | None = None) -> None:
    """Set the instance's bindings (in memory; the caller saves).

    All of a server's bindings are replaced at once so a reschedule never
    leaves a mix of old-host and new-host records.

    :param config: the groups' config data (requester id -> accel key ->
        value), given by the pre-bind; None keeps that of the groups still
        bound (a move) and drops the others'.
    """
    sysmeta = instance.system_metadata
    for key in [k for k in sysmeta if k.startswith(KEY_PREFIX)]:
        del sysmeta[key]
    for b in bindings:
        sysmeta[_key(b.requester_id)] = b.to_json()
    _replace_config(sysmeta, {b.requester_id for b in bindings}, config)
    if error:
        # The column holds 255 characters.
        sysmeta[ERROR_KEY] = error[:255]
    instance.system_metadata = sysmeta


def add_groups(instance, bindings: list[Binding],
               config: dict[str, dict[str, str]]) -> None:
    """Add one attached context's bindings (in memory; the caller saves).

    An attach to a running server (``nova_acc.compute.attach``): the
    server's other bindings and their config data are left as they are.
    """
    sysmeta = instance.system_metadata
    for b in bindings:
        sysmeta[_key(b.requester_id)] = b.to_json()
        for name, value in config.get(b.requester_id, {}).items():
            sysmeta['%s%s:%s' % (CONFIG_PREFIX, b.requester_id, name)] = value
    instance.system_metadata = sysmeta


def remove_groups(instance, requester_ids: set[str]) -> None:
    """Drop the bindings and config data of these groups (in memory).

    A detach, or an attach undone; the other groups stay.
    """
    sysmeta = instance.system_metadata
    for key in list(sysmeta):
        if key.startswith(KEY_PREFIX) and \
                key[len(KEY_PREFIX):] in requester_ids:
            del sysmeta[key]
        elif key.startswith(CONFIG_PREFIX) and key[len(CONFIG_PREFIX):
                                                   ].partition(':')[0] \
                in requester_ids:
            del sysmeta[key]
    instance.system_metadata = sysmeta


# ---- moves (resize, cold migration) --------------------------------------


#: Resource classes of a compute node's own provider, never of a device.
_NODE_CLASSES = frozenset({'VCPU', 'PCPU', 'MEMORY_MB', 'DISK_GB'})


def _backend_classes(allocations: dict, exclude: set) -> dict[str, set]:
    """Providers of the allocation that may be a backend's: UUID -> classes.

    Neither nova-acc's pools (``exclude``) nor a compute node's root, nor
    Neutron's bandwidth providers.
    """
    result = {}
    for rp, alloc in allocations.items():
        classes = set(alloc['resources'])
        if rp in exclude or classes & _NODE_CLASSES or any(
                c.startswith('NET_') for c in classes):
            continue
        result[rp] = classes
    return result


def for_move(bindings: list[Binding], allocations: dict,
             pool_classes: dict[str, str], nodename: str) -> list[Binding]:
    """The bindings of a server on the destination of a move.

    :param bindings: the server's bindings before the move (source node).
    :param allocations: the server's allocations, as Nova passes them to
        ``finish_migration`` (this node's) or to ``spawn`` on evacuation
        (this node's and the source's): provider UUID -> {'resources': ...}.
    :param pool_classes: this node's pool UUID -> resource class.
    :raises BindingCannotMove: the allocation has no provider for some
        group, a binding cannot move (one device, bound before pools), or
        the matcher's bound was reached (``matching.SearchTooLarge``).

    Placement chose, for each group, a provider that satisfies it; which
    group lands in which pool of the same class does not change which
    devices the server gets, so groups are matched to pools by class and
    amount (``nova_acc.matching``: polynomial where the groups that may
    share a pool ask the same amount, bounded otherwise). A group of a
    backend's object (a Cyborg ARQ) gets a provider of the allocation that
    is neither a pool, nor a node, nor one it is bound to now (on
    evacuation those are the source's), of its class; the backend is asked
    to bind it there (``nova_acc.compute.moves``).
    """
    for b in bindings:
        if not b.is_pool and not b.context_id:
            raise exception.BindingCannotMove(
                'device group %s is bound to %s, which cannot move' % (
                    b.requester_id, b.address))
    current = {b.rp_uuid for b in bindings}
    backend = _backend_classes(allocations, set(pool_classes) | current)
    capacity = {rp: dict(alloc['resources']) for rp, alloc in
                allocations.items() if rp in pool_classes or rp in backend}

    def classes_for(b, rp):
        if b.is_pool:
            return [pool_classes[rp]] if rp in pool_classes else []
        if rp not in backend:
            return []
        if b.resource_class:
            return [b.resource_class]
        return sorted(backend[rp])  # recorded before classes were

    demands = [matching.Demand(b.requester_id, tuple(
        matching.Option.of(rp, {rc: b.amount})
        for rp in sorted(capacity) for rc in classes_for(b, rp)
        if b.resource_class in (None, rc))) for b in bindings]
    assignment = _match(demands, capacity, nodename, (
        'the allocation of the server on node %s has no device provider '
        'for every device group' % nodename),
        error=exception.BindingCannotMove)
    by_group = {b.requester_id: b for b in bindings}
    return sorted((Binding(name, option.provider, None, nodename,
                           context_id=by_group[name].context_id,
                           amount=by_group[name].amount,
                           resource_class=option.resources[0][0])
                   for name, option in assignment.items()),
                  key=lambda b: b.requester_id)


def _match(demands, capacity, nodename: str, no_match: str,
           error: type[exception.PrebindFailed] = exception.PrebindFailed
           ) -> dict[str, matching.Option]:
    """``matching.match`` with its failures as ``error``."""
    try:
        return matching.match(demands, capacity).assignment
    except matching.NoMatch as e:
        if e.unserved:
            no_match += ' (none of its providers can serve %s)' % (
                ', '.join(e.unserved))
        raise error(no_match) from None
    except matching.SearchTooLarge as e:
        raise error(
            'the device groups of the server could not be matched to the '
            'providers of its allocation on node %s: %s' % (nodename, e)
        ) from None


# ---- the conductor's part ------------------------------------------------


def compute_bindings(report_client, context, groups, nodename: str,
                     context_ids=None) -> list[Binding]:
    """Bindings for request groups whose ``provider_uuids`` are mapped.

    :param context_ids: requester id -> ID of the device context object the
        group comes from, for ID-based request_groups.
    :raises PrebindFailed: a group has no provider, or the provider is not
        one of ``nodename``'s device pools.
    """
    context_ids = context_ids or {}
    result = []
    for rg in groups:
        providers = rg.provider_uuids or []
        if len(providers) != 1:
            raise exception.PrebindFailed(
                'placement mapped device group %s to %d providers, expected '
                'exactly one' % (rg.requester_id, len(providers)))
        rp_uuid = providers[0]
        context_id = context_ids.get(rg.requester_id)
        if context_id:
            # The backend's providers: their attach handle, and so the
            # address, is known once the backend has bound them.
            address = None
            if not _in_tree_of(report_client, context, nodename, rp_uuid):
                raise exception.PrebindFailed(
                    'resource provider %s allocated for device context %s '
                    'is not in the provider tree of node %s' % (
                        rp_uuid, context_id, nodename))
        else:
            address = None
            if not _is_pool_of(report_client, context, nodename, rp_uuid):
                raise exception.PrebindFailed(
                    'resource provider %s allocated for device group %s is '
                    'not a nova-acc device pool of node %s' % (
                        rp_uuid, rg.requester_id, nodename))
        result.append(Binding(
            requester_id=rg.requester_id, rp_uuid=rp_uuid, address=address,
            nodename=nodename, context_id=context_id,
            amount=sum(rg.resources.values()),
            resource_class=(next(iter(rg.resources)) if len(rg.resources) == 1
                            else None)))
    return result


def _node_root(report_client, context, nodename: str) -> str | None:
    nodes = _get(report_client, context, '/resource_providers?name=%s'
                 % nodename)['resource_providers']
    return nodes[0]['uuid'] if nodes else None


def _in_tree_of(report_client, context, nodename: str, rp_uuid: str) -> bool:
    provider = _get(report_client, context,
                    '/resource_providers/%s' % rp_uuid)
    root = _node_root(report_client, context, nodename)
    return root is not None and provider['root_provider_uuid'] == root


def _get(report_client, context, url):
    resp = report_client.get(url, version='1.14',
                             global_request_id=context.global_id)
    if not resp:
        raise exception.PrebindFailed('cannot read %s from placement: %s' % (
            url, resp.text))
    return resp.json()


def map_from_allocation(report_client, context, instance_uuid: str,
                        nodename: str, groups) -> None:
    """Fill ``provider_uuids`` of ``groups`` from the instance's allocation.

    Nova also calls the pre-bind seam for unshelve and evacuate, with a
    RequestSpec loaded from the database, where request groups and their
    mapping are not stored. The scheduler allocated the groups' resources
    on ``nodename``, several groups possibly from one pool; this finds
    which provider serves which group, checking resource classes, amounts
    and required and forbidden traits (``nova_acc.matching``, the matcher
    ``for_move`` uses too).

    :raises PrebindFailed: no consistent assignment exists, or the
        matcher's bound was reached (``matching.SearchTooLarge``).
    """
    allocations = report_client.get_allocs_for_consumer(
        context, instance_uuid)['allocations']
    root = _node_root(report_client, context, nodename)
    providers = {}
    for rp_uuid, alloc in allocations.items():
        # Evacuate keeps the source node's allocation: only this node's
        # providers count. The traits then tell nova-acc's pools (the
        # capability trait) from a backend's (no OWNER_NOVA) for the groups.
        if rp_uuid != root and _get(
                report_client, context, '/resource_providers/%s' % rp_uuid
        )['root_provider_uuid'] == root:
            traits = report_client.get_provider_traits(context, rp_uuid).traits
            providers[rp_uuid] = (dict(alloc['resources']), set(traits))

    def fits(rg, traits):
        return (rg.required_traits <= traits and
                not (rg.forbidden_traits & traits))

    # Units left over are the flavor's (Nova's own PCI or vGPU providers in
    # the same tree), not the groups': a provider may keep some.
    demands = [matching.Demand(rg.requester_id, tuple(
        matching.Option.of(rp, rg.resources)
        for rp, (_res, traits) in sorted(providers.items())
        if fits(rg, traits))) for rg in groups]
    assignment = _match(
        demands, {rp: res for rp, (res, _t) in providers.items()}, nodename,
        'the allocation of the server on node %s does not match its device '
        'groups' % nodename)
    for rg in groups:
        rg.provider_uuids = [assignment[rg.requester_id].provider]


# (node, provider UUID) of providers placement showed to be nova-acc pools
# of that node. A pool's UUID is derived from its name, which starts with
# its node's, so the answer cannot change for the UUID: later builds skip
# the placement read (one per device group per build). Only pools, a few
# per node, are kept; a provider that is not one is asked about each time.
_known_pools: set[tuple[str, str]] = set()


def _is_pool_of(report_client, context, nodename: str, rp_uuid: str) -> bool:
    if (nodename, rp_uuid) in _known_pools:
        return True
    name = _get(report_client, context,
                '/resource_providers/%s' % rp_uuid)['name']
    if not pools.is_pool_provider(nodename, name, rp_uuid):
        return False
    _known_pools.add((nodename, rp_uuid))
    return True


def _cell_of(context, instance):
    """The instance's cell, or None where the API database is unreachable.

    The superconductor (first boot) must target the cell explicitly; a cell
    conductor (reschedule) already talks to the cell database and may have
    no API database configured at all.
    """
    try:
        return objects.InstanceMapping.get_by_instance_uuid(
            context, instance.uuid).cell_mapping
    except (nova_exc.InstanceMappingNotFound, db_exc.CantStartEngineError):
        return None


def _save(context, instance) -> None:
    cell = _cell_of(context, instance)
    if cell is None:
        instance.save()
    else:
        with nova_context.target_cell(context, cell) as cctxt:
            with instance.obj_alternate_context(cctxt):
                instance.save()


def _bind(report_client, context, instance, nodename: str,
          request_spec) -> tuple[list[Binding], dict[str, dict[str, str]]]:
    """(the bindings, the config data of their groups by requester id)."""
    groups = request_groups.our_request_groups(request_spec)
    context_groups = request_groups.context_groups(
        request_spec, context) if request_groups.hint_values(
            request_spec) else []
    config = {cg.requester_id: dict(cg.group.config)
              for cg in context_groups if cg.group.config}
    if not groups and context_groups:
        groups = [request_groups.to_request_group(cg)
                  for cg in context_groups]
        map_from_allocation(report_client, context, instance.uuid,
                            nodename, groups)
    if not groups:
        return [], {}
    return _bind_groups(report_client, context, instance, nodename,
                        groups), config


def _bind_groups(report_client, context, instance, nodename: str,
                 groups) -> list[Binding]:
    context_ids = {
        rg.requester_id: request_groups.context_id_of(rg.requester_id)
        for rg in groups}
    if not any(context_ids.values()):
        return compute_bindings(report_client, context, groups, nodename)
    backend = backends.get_backend()
    # A backend that does not pick devices (local) has its groups bound to
    # nova-acc's pools, as inline ones: the host picks their devices.
    bindings = compute_bindings(
        report_client, context, groups, nodename,
        context_ids if backend.picks_devices else None)
    backend.bind(context, instance, nodename, backend_contexts(bindings))
    return bindings


def backend_contexts(bindings) -> dict[str, str]:
    """Context ID -> provider, for the bindings of ID-based contexts.

    The pool bindings of a local context carry no ``context_id``, but
    their group's requester id names it.
    """
    result: dict[str, str] = {}
    for b in bindings:
        context_id = b.context_id or request_groups.context_id_of(
            b.requester_id)
        if context_id:
            result.setdefault(context_id, b.rp_uuid)
    return result


def _unbind_quietly(context, instance, bindings, why: str) -> None:
    backends.unbind_quietly(context, instance, backend_contexts(bindings),
                            'bindings of a server %s' % why)


def prebind(report_client, context, instance, nodename: str,
            request_spec) -> list[Binding]:
    """Bind and record; a failure is recorded for the compute to act on.

    Nothing raised here may escape: Nova fails every server of a
    multi-create when this seam raises for one of them.
    """
    error = None
    config: dict[str, dict[str, str]] = {}
    try:
        bindings, config = _bind(report_client, context, instance, nodename,
                                 request_spec)
    except (exception.PrebindFailed, exception.InvalidDeviceContextHint,
            exception.BackendUnavailable) as e:
        LOG.warning('Device-context binding on node %s failed: %s; the '
                    'compute will reschedule the server.', nodename, e,
                    instance=instance)
        bindings, error = [], 'binding on node %s failed: %s' % (nodename, e)
    except nova_exc.InstanceNotFound:
        LOG.info('The server was deleted while its devices were being '
                 'bound on node %s.', nodename, instance=instance)
        return []
    except Exception as e:
        LOG.exception('Unexpected error binding devices on node %s; the '
                      'compute will reschedule the server.', nodename,
                      instance=instance)
        bindings, error = [], 'binding on node %s failed: %s' % (nodename, e)
    if not bindings and error is None:
        return []
    # Config data only for the groups whose devices this host picks and
    # configures (nova-acc's pools); a backend's objects carry their own.
    replace(instance, bindings, error=error, config={
        b.requester_id: config[b.requester_id] for b in bindings
        if b.is_pool and b.requester_id in config})
    try:
        _save(context, instance)
    except nova_exc.InstanceNotFound:
        # Deleted by its user meanwhile: nothing will run, so nothing may
        # stay bound; the other servers of the request carry on.
        LOG.info('The server was deleted while its devices were being '
                 'bound on node %s; releasing its bindings.', nodename,
                 instance=instance)
        _unbind_quietly(context, instance, bindings, 'deleted meanwhile')
        return []
    except Exception:
        LOG.exception('Could not record the device bindings on node %s; '
                      'the compute will reschedule the server.', nodename,
                      instance=instance)
        _unbind_quietly(context, instance, bindings, 'not recorded')
        replace(instance, [], error='binding on node %s could not be '
                'recorded' % nodename)
        try:
            _save(context, instance)
        except Exception:
            LOG.exception('Could not record the binding failure either.',
                          instance=instance)
        return []
    for b in bindings:
        if b.is_pool:
            # The host picks which devices of the pool when it claims them.
            LOG.info('Bound device group %s to %d device(s) of pool %s on '
                     'node %s', b.requester_id, b.amount, b.rp_uuid,
                     nodename, instance=instance)
        else:
            LOG.info('Bound device group %s to device context %s (provider '
                     '%s) on node %s', b.requester_id, b.context_id,
                     b.rp_uuid, nodename, instance=instance)
    return bindings
