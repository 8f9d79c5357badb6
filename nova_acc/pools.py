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
"""Pool identity: which devices form a pool, and its provider's name and UUID.

Interchangeable devices - the same resource class and traits, and for VFs
the same PF (``PoolKey``) - form one *pool*, reported to placement as one
child provider of the compute node (``nova_acc.compute.inventory``). A pool's
provider is named ``<nodename>_<label>_<digest>`` (``pool_name``; the label
is the resource class, prefixed by the PF's address for VFs and followed by
``numaN`` when ``[nova_acc] pool_by_numa`` is set; the digest is of the
whole key, traits included) and its UUID is derived from that name
(``pool_uuid``), so both are stable across restarts and can be checked by
anyone holding the name (``is_pool_provider``).

This module is the one home of that naming, and of the per-device naming
nova-acc used before pools (``legacy_*``), which the upgrade reshape reads.
The conductor checks that the provider placement chose is a pool of the
chosen node (``nova_acc.binding``) and nova-compute reports and claims
pools by the same rules, so it is shared by both: it imports neither
libvirt nor anything that runs only in nova-compute (the ledger, the host's
devices), which ``tests/unit/nova_acc/test_control_plane_imports.py``
checks for the conductor's and scheduler's modules.
"""

from __future__ import annotations

from collections.abc import Iterable
import dataclasses
import functools
import hashlib
import uuid as uuid_lib

import os_acc
from oslo_serialization import jsonutils

from nova_acc import conf

CONF = conf.CONF

# Fixed namespaces so a provider's UUID is the same after every restart of
# nova-compute and can be recomputed from its name. Pools and the
# per-device providers of nova-acc before pools use different ones, so a
# name can never be mistaken for the other kind.
_PROVIDER_NAMESPACE = uuid_lib.UUID('a7f4b0b2-3c1e-4f6e-9a55-6f1d2b9c0e11')
_POOL_NAMESPACE = uuid_lib.UUID('0d9d5f36-4f0e-4a8e-8d0b-3b6f7e2a51c4')


@dataclasses.dataclass(frozen=True, order=True)
class PoolKey:
    """What makes devices interchangeable: they serve the same groups.

    :ivar parent: the PF's PCI address for VFs (each PF's VFs are a pool of
        their own, as in Nova), None otherwise.
    :ivar numa_node: set only with ``[nova_acc] pool_by_numa``.
    :ivar mdev_type: for a pool of mediated devices: their type (the pool's
        devices are then the parents that can create them).
    """

    resource_class: str
    traits: tuple[str, ...]
    parent: str | None = None
    numa_node: int | None = None
    mdev_type: str | None = None

    @classmethod
    def of(cls, dev: os_acc.Device, by_numa: bool | None = None) -> PoolKey:
        """The key of ``dev``'s pool.

        :param by_numa: ``[nova_acc] pool_by_numa``, read when not given
            (a caller keying many devices reads it once).
        """
        if by_numa is None:
            by_numa = CONF.nova_acc.pool_by_numa
        return cls(resource_class=str(dev.resource_class),
                   traits=tuple(sorted(dev.traits)),
                   # The mdevs of a type form one pool whatever the parent.
                   parent=dev.physfn if dev.mdev_type is None else None,
                   numa_node=dev.numa_node if by_numa else None,
                   mdev_type=dev.mdev_type)

    def digest(self) -> str:
        fields = dataclasses.astuple(self)
        if self.mdev_type is None:
            # The key before mdev pools existed: pools of whole devices
            # keep their provider names and UUIDs across the upgrade.
            fields = fields[:4]
        text = jsonutils.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def label(self) -> str:
        parts = [self.parent, self.resource_class] if self.parent else [
            self.resource_class]
        if self.mdev_type is not None:
            parts.append(self.mdev_type)
        if self.numa_node is not None:
            parts.append('numa%d' % self.numa_node)
        return '_'.join(parts)


# A pool's name and UUID are pure functions of the node and the key, and a
# host has a few pools: computed once each, not once per device and update.
# Bounded, for a process that serves many nodes or sees device_spec change.
_POOL_IDENTITY_CACHE = 1024


@functools.lru_cache(maxsize=_POOL_IDENTITY_CACHE)
def pool_name(nodename: str, key: PoolKey) -> str:
    """The name of the provider of pool ``key`` of ``nodename``."""
    return '%s_%s_%s' % (nodename, key.label(), key.digest())


@functools.lru_cache(maxsize=_POOL_IDENTITY_CACHE)
def pool_uuid(nodename: str, key: PoolKey) -> str:
    """The UUID of that provider: stable, and derived from its name."""
    return str(uuid_lib.uuid5(_POOL_NAMESPACE, pool_name(nodename, key)))


def is_pool_provider(nodename: str, name: str, rp_uuid: str) -> bool:
    """Is this provider one of nova-acc's pools of ``nodename``?

    False for a look-alike provider someone else made: its UUID is not the
    one derived from its name.
    """
    return (name.startswith(nodename + '_') and
            str(uuid_lib.uuid5(_POOL_NAMESPACE, name)) == rp_uuid)


@dataclasses.dataclass
class Pool:
    """One pool of a node: its provider and the addresses of its devices."""

    key: PoolKey
    name: str
    uuid: str
    addresses: list[str] = dataclasses.field(default_factory=list)


def pools_of(nodename: str, devices: Iterable[os_acc.Device]
             ) -> dict[str, Pool]:
    """The pools ``devices`` form on ``nodename``: pool UUID -> Pool.

    Each pool's addresses are sorted, so a claim picks devices in a stable
    order (the lowest free address first).
    """
    by_numa = CONF.nova_acc.pool_by_numa
    by_key: dict[PoolKey, list[str]] = {}
    # The few distinct keys of many devices: a PoolKey is made once per
    # combination of the fields it is made of, not once per device.
    keys: dict[tuple, PoolKey] = {}
    for dev in devices:
        fields = (dev.resource_class, dev.physfn, dev.mdev_type,
                  dev.numa_node if by_numa else None, tuple(dev.traits))
        key = keys.get(fields)
        if key is None:
            key = keys[fields] = PoolKey.of(dev, by_numa)
        by_key.setdefault(key, []).append(dev.address)
    result: dict[str, Pool] = {}
    for key, addresses in by_key.items():
        uuid = pool_uuid(nodename, key)
        result[uuid] = Pool(key, pool_name(nodename, key), uuid,
                            sorted(addresses))
    return result


def pool_of_address(nodename: str, devices: Iterable[os_acc.Device]
                    ) -> dict[str, str]:
    """address -> the UUID of the pool the device belongs to now."""
    return {a: p.uuid for p in pools_of(nodename, devices).values()
            for a in p.addresses}


# ---- the per-device providers of nova-acc before pools ----------------------


def legacy_provider_name(nodename: str, address: str) -> str:
    """The name of the per-device provider nova-acc reported before pools."""
    return '%s_%s' % (nodename, address)


def legacy_provider_uuid(nodename: str, address: str) -> str:
    """Its UUID, derived from that name (in a namespace of its own)."""
    return str(uuid_lib.uuid5(_PROVIDER_NAMESPACE,
                              legacy_provider_name(nodename, address)))


def legacy_device_address(nodename: str, name: str, rp_uuid: str
                          ) -> str | None:
    """The PCI address of a per-device provider of nova-acc before pools.

    None when the provider is not one (another name, or a UUID that was
    not derived from the name).
    """
    prefix = nodename + '_'
    if not name.startswith(prefix):
        return None
    address = name[len(prefix):]
    if legacy_provider_uuid(nodename, address) != rp_uuid:
        return None
    return address
