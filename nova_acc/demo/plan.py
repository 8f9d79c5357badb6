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
"""What a demo run asks for and what it must therefore show.

Servers are booted one at a time and nothing is freed until all of them
are booted, so the outcome is fully determined. A server lands on one
compute node, and each group of its device contexts takes its amount of
devices from one provider of that node: with nova-acc's own devices a
*device pool* (the host's FPGAs are one pool, the VFs of its PF another;
several groups of a server may share a pool), with Cyborg one provider per
device. A host therefore takes as many servers as fit into its pools one
after the other, and the first ``hosts`` times that many servers are
ACTIVE, the rest ERROR.

That count is exact because, on a demo host, the providers that can serve
a group are interchangeable for it: each pool has its own resource class,
and Cyborg's providers are alike. Whichever provider placement picks, what
is left for the next server is the same.
"""

from __future__ import annotations

import collections
import dataclasses

import os_acc
from os_acc import exception as acc_exc

from nova_acc import conf
from nova_acc import hint

DEFAULT_CONTEXT = 'resources:FPGA=1,trait:CUSTOM_GZIP=required'

# --backend: 'local' (nova-acc's own devices, device contexts given as
# specs) or 'cyborg' (the real Cyborg in a child process owns the devices;
# each server gets its own ARQ, made from the demo's device profile).
BACKENDS = ('local', 'cyborg')
DEFAULT_BACKEND = 'local'

# The resource class of the demo's VFs (--vfs-per-host): nova-acc's
# device_spec of the demo cloud selects them by vendor and product.
VF_RESOURCE_CLASS = 'CUSTOM_NIC_VF'

# The demo's vGPUs (--vgpus-per-host): mdevs of this type of a fake GPU
# (Nova's fake libvirt's mdev-capable device), a pool of this class.
VGPU_RESOURCE_CLASS = 'VGPU'
VGPU_TRAIT = 'CUSTOM_DEMO_VGPU'
VGPU_TYPE = 'nvidia-11'

# The most servers the demo boots (--servers), and how many servers of the
# demo flavor (m1.tiny: 1 VCPU, 512 MB, 1 GB) a fake host has room for:
# its 16 VCPUs at Nova's allocation ratio of 4 (its RAM and its 128 GB of
# disk hold more).
MAX_SERVERS = 64
HOST_ROOM = 64

# name: (min, max, why the maximum).
LIMITS = {
    'hosts': (1, 8, 'each host is a full nova-compute service in this '
                    'process; more would make the demo slow'),
    'devices_per_host': (1, 32, 'the FPGAs of a fake host fill the 32 slots '
                                'of one PCI bus (the host has room for the '
                                '%d servers the demo boots at most, so '
                                'devices, not the host, are what runs out)'
                         % HOST_ROOM),
    'vfs_per_host': (0, 64, 'as many as servers of one VF each can use up '
                            '(--servers is at most %d; a host has room for '
                            '%d of them, so VFs, not the host, are what runs '
                            'out)' % (MAX_SERVERS, HOST_ROOM)),
    'vgpus_per_host': (0, 16, 'the vGPU type of the fake GPU has at most '
                              '16 instances'),
    'servers': (0, MAX_SERVERS, 'servers boot one at a time, one to two '
                                'seconds each, so 64 already take about two '
                                'minutes'),
}
OPTION_NAMES = {'hosts': '--hosts', 'devices_per_host': '--devices-per-host',
                'vfs_per_host': '--vfs-per-host',
                'vgpus_per_host': '--vgpus-per-host', 'servers': '--servers'}
# What the demo needs at least, for the error message of a value too low.
_NEEDS = {'hosts': 'a compute host', 'devices_per_host': 'an FPGA on each '
          'host'}

# [nova_acc] max_groups_per_server in the demo's (default) configuration.
MAX_GROUPS_PER_SERVER = conf.CONF.nova_acc.max_groups_per_server


@dataclasses.dataclass(frozen=True)
class Options:
    hosts: int = 2
    devices_per_host: int = 2
    servers: int = 3
    contexts: tuple[str, ...] = (DEFAULT_CONTEXT,)
    # With 'cyborg', ``contexts`` is empty: the device profile of the ARQs
    # says what each server asks for.
    backend: str = DEFAULT_BACKEND
    # A PF with this many VFs on each host (0: none), local backend only.
    vfs_per_host: int = 0
    # A GPU that can create this many vGPUs on each host (0: none), local
    # backend only.
    vgpus_per_host: int = 0


def check_count(name: str, value: int) -> str | None:
    """Why ``value`` is not allowed for option ``name``, or None."""
    low, high, why = LIMITS[name]
    if value < low:
        if low == 0:
            return 'must be 0 or more, got %d' % value
        return 'must be at least %d, got %d (the demo needs %s)' % (
            low, value, _NEEDS[name])
    if value > high:
        return 'must be at most %d, got %d: %s' % (high, value, why)
    return None


def parse_context(value: str) -> os_acc.DeviceContext:
    """Parse one ``--context`` value.

    :raises ValueError: with what to fix.
    """
    if hint.kind_of(value) == hint.PROFILE:
        raise ValueError(
            '%r names an operator profile; the demo cloud configures no '
            '[nova_acc] profile, pass the spec itself (for example %r)'
            % (value, DEFAULT_CONTEXT))
    try:
        return os_acc.parse_device_context(value)
    except acc_exc.InvalidDeviceContext as e:
        raise ValueError('%r is not a valid device context: %s'
                         % (value, e)) from e


def check_contexts(contexts: tuple[str, ...]) -> str | None:
    """Why the contexts of one server cannot be requested, or None."""
    groups = sum(len(parse_context(c).groups) for c in contexts)
    if groups > MAX_GROUPS_PER_SERVER:
        return ('the contexts ask for %d device groups per server; nova-acc '
                'allows at most %d ([nova_acc] max_groups_per_server)'
                % (groups, MAX_GROUPS_PER_SERVER))
    return None


@dataclasses.dataclass(frozen=True)
class PoolKind:
    """One device provider of a host, as placement reports it.

    A pool of nova-acc (``devices`` units of one resource class), or one
    of Cyborg's per-device providers (1 unit).
    """

    resource_class: str
    devices: int
    traits: frozenset[str]
    # The most a group may take from it (placement's max_unit).
    max_unit: int | None = None
    # Its provider's name, for messages; alike providers are one choice.
    name: str = dataclasses.field(default='', compare=False)

    @property
    def largest_group(self) -> int:
        return self.devices if self.max_unit is None else min(
            self.devices, self.max_unit)


# What each host offers: its providers, in a stable order.
Host = tuple[PoolKind, ...]


def _fits(group: os_acc.DeviceContextGroup, pool: PoolKind) -> bool:
    return (set(group.resources) == {pool.resource_class} and
            set(group.required_traits) <= pool.traits and
            not set(group.forbidden_traits) & pool.traits)


def _unfit_reason(group: os_acc.DeviceContextGroup,
                  pools: Host) -> str | None:
    """Why no provider of a host can serve ``group`` even when all free."""
    classes = sorted({p.resource_class for p in pools})
    have = ', '.join(classes) or 'none'
    if len(group.resources) != 1:
        return ('asks for %s from one provider; each device provider of '
                'the demo has one resource class (%s)' % (
                    ' and '.join(sorted(group.resources)), have))
    (rc, amount), = group.resources.items()
    same_class = [p for p in pools if p.resource_class == rc]
    if not same_class:
        return 'asks for %s, which no demo device has (they have %s)' % (
            rc, have)
    traits = frozenset().union(*(p.traits for p in same_class))
    missing = set(group.required_traits) - traits
    if missing:
        return 'requires trait(s) %s, which the %s devices lack' % (
            ', '.join(sorted(missing)), rc)
    fitting = [p for p in same_class if _fits(group, p)]
    if not fitting:
        present = set(group.forbidden_traits) & traits
        return 'forbids trait(s) %s, which the %s devices have' % (
            ', '.join(sorted(present)), rc)
    largest = max(p.largest_group for p in fitting)
    if amount > largest:
        if len(same_class) > 1 and largest == 1:
            where = 'a host has them in providers of one device each'
        else:
            where = 'the largest %s pool of a host has %d' % (rc, largest)
        return 'asks for %d %s devices from one provider; %s' % (
            amount, rc, where)
    return None


def _place(groups: list[os_acc.DeviceContextGroup], pools: Host,
           free: list[int]) -> list[int] | None:
    """Providers (indexes) for the groups of one server, or None."""
    def assign(i: int) -> list[int] | None:
        if i == len(groups):
            return []
        group = groups[i]
        amount = sum(group.resources.values())
        tried = set()
        for j, pool in enumerate(pools):
            # Alike providers with as much free are the same choice.
            if (pool, free[j]) in tried:
                continue
            tried.add((pool, free[j]))
            if (_fits(group, pool) and amount <= free[j] and
                    amount <= pool.largest_group):
                free[j] -= amount
                rest = assign(i + 1)
                if rest is not None:
                    return [j] + rest
                free[j] += amount
        return None

    return assign(0)


def servers_per_host(groups: list[os_acc.DeviceContextGroup],
                     pools: Host, limit: int) -> int:
    """How many servers asking for ``groups`` a host takes, at most limit."""
    free = [p.devices for p in pools]
    count = 0
    while count < limit and _place(groups, pools, free) is not None:
        count += 1
    return count


@dataclasses.dataclass(frozen=True)
class Expectation:
    devices_per_server: int
    active: int
    # Why no server can get its devices, when that is so.
    unsatisfiable: str | None = None
    # resource class -> devices each server takes of it.
    per_class: dict[str, int] = dataclasses.field(default_factory=dict)
    # How many servers each host takes when they keep coming (in the order
    # of the hosts).
    per_host: tuple[int, ...] = ()


def groups_of(options: Options) -> list[os_acc.DeviceContextGroup]:
    return [g for c in options.contexts for g in parse_context(c).groups]


def expect(options: Options, hosts: list[Host]) -> Expectation:
    """What booting ``options.servers`` servers one at a time gives.

    :param hosts: the device providers of each host, as placement has
        them before the first boot.
    """
    groups = groups_of(options)
    per_class: dict[str, int] = collections.Counter()
    for group in groups:
        per_class.update(group.resources)
    per_server = sum(per_class.values())
    result = dict(devices_per_server=per_server, per_class=dict(per_class))
    if not groups:
        return Expectation(active=options.servers, **result)
    pools = max(hosts, key=len) if hosts else ()
    for i, group in enumerate(groups):
        reason = _unfit_reason(group, pools)
        if reason:
            return Expectation(active=0, unsatisfiable='device group %d %s'
                               % (i + 1, reason), **result)
    per_host = tuple(servers_per_host(groups, h, HOST_ROOM) for h in hosts)
    if not any(per_host):
        return Expectation(
            active=0, per_host=per_host, unsatisfiable=(
                'a server needs %s on one host; a host has %s' % (
                    _amounts(per_class), _amounts(_totals(pools)))),
            **result)
    return Expectation(active=min(options.servers, sum(per_host)),
                       per_host=per_host, **result)


def _totals(pools: Host) -> dict[str, int]:
    totals: dict[str, int] = collections.Counter()
    for p in pools:
        totals[p.resource_class] += p.devices
    return totals


def _amounts(counts: dict[str, int]) -> str:
    return ' and '.join('%d x %s' % (n, rc)
                        for rc, n in sorted(counts.items())) or 'nothing'
