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
"""The upgrade reshape: per-device providers folded into device pools.

Before device pools, nova-acc reported one child provider per device
(``nova_acc.pools.legacy_*`` names them). The provider tree update
(``nova_acc.compute.inventory``) folds them into the pools their devices
belong to now: unallocated ones are removed; allocated ones are moved by
Nova's reshape (``ReshapeNeeded``, which Nova honours only when
nova-compute starts), their allocations added to the pool's; until then,
or when their device is gone, they stay fully reserved so nothing new
lands on them.

Also the few provider-tree helpers the inventory shares with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from nova import exception as nova_exc
import os_acc
from oslo_log import log as logging

from nova_acc import pools

LOG = logging.getLogger(__name__)


def children(provider_tree, nodename: str,
             owned: Callable[[str, str], bool]) -> dict[str, str]:
    """Children of ``nodename`` for which ``owned(name, uuid)``: uuid->name."""
    result = {}
    for uuid in provider_tree.get_provider_uuids_in_tree(nodename):
        name = provider_tree.data(uuid).name
        if uuid != provider_tree.data(nodename).uuid and owned(name, uuid):
            result[uuid] = name
    return result


def legacy_children(provider_tree, nodename: str) -> dict[str, str]:
    """The per-device providers of nova-acc before pools: uuid -> name."""
    return children(provider_tree, nodename,
                    lambda name, uuid: pools.legacy_device_address(
                        nodename, name, uuid) is not None)


def fully_reserved(inventory: dict) -> dict:
    """``inventory`` with every unit reserved."""
    return {rc: dict(record, reserved=record['total'])
            for rc, record in inventory.items()}


def fold_legacy_providers(provider_tree, nodename: str,
                          managed: Mapping[str, os_acc.Device],
                          device_pools: Mapping[str, pools.Pool],
                          has_allocations: Callable[[str], bool],
                          allocations: dict | None,
                          may_reshape: bool = True) -> dict[str, str]:
    """Remove the per-device providers of before pools; reshape if needed.

    A provider whose device is not on the host any more cannot be mapped
    to a pool: if allocated it stays, fully reserved, until it is freed.

    :raises nova.exception.ReshapeNeeded: see ``update_provider_tree``.
    :returns: per-device provider UUID -> the pool its allocations moved
        to.
    """
    legacy = legacy_children(provider_tree, nodename)
    if not legacy:
        return {}
    target = {}
    for uuid, name in legacy.items():
        address = pools.legacy_device_address(nodename, name, uuid)
        dev = managed.get(address or '')
        if dev is not None:
            target[uuid] = pools.pool_uuid(nodename, pools.PoolKey.of(dev))
    allocated = {u for u in legacy if has_allocations(u)}
    if allocated & set(target) and allocations is None:
        if may_reshape:
            LOG.info('Per-device providers of node %s have allocations: '
                     'asking Nova to reshape them into device pools.',
                     nodename)
            raise nova_exc.ReshapeNeeded()
        # Nova reshapes only at startup: until then, nothing new may land
        # on them, and their devices are kept out of the pools.
        LOG.warning('Per-device providers of node %s have allocations; they '
                    'are moved into device pools when nova-compute next '
                    'starts.', nodename)
        target = {}
    for pool_id in set(target.values()):
        pool = device_pools[pool_id]
        if not provider_tree.exists(pool_id):
            provider_tree.new_child(pool.name, nodename, uuid=pool_id)
    moved = _move_allocations(allocations or {}, target)
    _retire(provider_tree, legacy, target, moved, allocated, device_pools)
    return moved


def _move_allocations(allocations: dict, target: Mapping[str, str]
                      ) -> dict[str, str]:
    """Add each consumer's allocations of a per-device provider to its
    pool's (in place); provider UUID -> pool UUID of those moved."""
    moved = {}
    for consumer in allocations.values():
        allocs = consumer['allocations']
        for uuid in [u for u in allocs if u in target]:
            resources = allocs.pop(uuid)['resources']
            into = allocs.setdefault(target[uuid], {'resources': {}})[
                'resources']
            for rc, amount in resources.items():
                into[rc] = into.get(rc, 0) + amount
            moved[uuid] = target[uuid]
    return moved


def _retire(provider_tree, legacy: Mapping[str, str],
            target: Mapping[str, str], moved: Mapping[str, str],
            allocated: set[str], device_pools: Mapping[str, pools.Pool]
            ) -> None:
    """Remove the per-device providers that can go; reserve the others."""
    for uuid, name in legacy.items():
        if uuid in target and (uuid in moved or uuid not in allocated):
            LOG.info('Replacing per-device provider %s by device pool %s.',
                     name, device_pools[target[uuid]].name)
            provider_tree.remove(uuid)
        elif uuid in allocated:
            inv = provider_tree.data(uuid).inventory
            if fully_reserved(inv) != inv:
                LOG.warning('Per-device provider %s is allocated but its '
                            'device is gone; keeping it fully reserved '
                            'until its servers are deleted.', name)
                provider_tree.update_inventory(uuid, fully_reserved(inv))
        else:
            provider_tree.remove(uuid)
