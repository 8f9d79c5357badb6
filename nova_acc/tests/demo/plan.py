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
are booted, so the outcome is fully determined: every server needs one
device per group of its device contexts, all on one host (a server lands on
one compute node), each device serves one group (its inventory is 1), so a
host takes ``devices_per_host // devices_per_server`` servers and the first
``hosts`` times that many servers are ACTIVE, the rest ERROR.
"""

from __future__ import annotations

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

# name: (min, max, why the maximum).
LIMITS = {
    'hosts': (1, 8, 'each host is a full nova-compute service in this '
                    'process; more would make the demo slow'),
    'devices_per_host': (1, 16, 'a fake host has room (CPU, RAM, disk) for '
                                'at least 16 servers of the demo flavor, so '
                                'devices, not the host, are what runs out'),
    'servers': (0, 64, 'servers boot one at a time, one to two seconds '
                       'each, so 64 already take about two minutes'),
}
OPTION_NAMES = {'hosts': '--hosts', 'devices_per_host': '--devices-per-host',
                'servers': '--servers'}

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


def check_count(name: str, value: int) -> str | None:
    """Why ``value`` is not allowed for option ``name``, or None."""
    low, high, why = LIMITS[name]
    if value < low:
        if name == 'servers':
            return 'must be 0 or more, got %d' % value
        return 'must be at least %d, got %d (the demo needs %s)' % (
            low, value, 'a compute host' if name == 'hosts'
            else 'a device on each host')
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
class DeviceKind:
    """What each demo device offers, as placement reports it."""

    inventory: dict[str, int]
    traits: frozenset[str]


def _unfit_reason(group: os_acc.DeviceContextGroup,
                  kind: DeviceKind) -> str | None:
    for rc, amount in sorted(group.resources.items()):
        have = kind.inventory.get(rc, 0)
        if amount > have:
            return 'asks for %s=%d, a device has %s=%d' % (
                rc, amount, rc, have)
    missing = set(group.required_traits) - kind.traits
    if missing:
        return 'requires trait(s) %s, which the devices lack' % ', '.join(
            sorted(missing))
    present = set(group.forbidden_traits) & kind.traits
    if present:
        return 'forbids trait(s) %s, which the devices have' % ', '.join(
            sorted(present))
    return None


@dataclasses.dataclass(frozen=True)
class Expectation:
    devices_per_server: int
    active: int
    # Why no server can get its devices, when that is so.
    unsatisfiable: str | None = None


def expect(options: Options, kind: DeviceKind) -> Expectation:
    groups = [g for c in options.contexts
              for g in parse_context(c).groups]
    per_server = len(groups)
    for i, group in enumerate(groups):
        reason = _unfit_reason(group, kind)
        if reason:
            return Expectation(per_server, 0,
                               'device group %d %s' % (i + 1, reason))
    if per_server == 0:
        return Expectation(0, options.servers)
    if per_server > options.devices_per_host:
        return Expectation(
            per_server, 0,
            'a server needs %d devices on one host, a host has %d' % (
                per_server, options.devices_per_host))
    fits = options.hosts * (options.devices_per_host // per_server)
    return Expectation(per_server, min(options.servers, fits))
