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
"""What the demo's parts share: the cloud, the devices, the problems seen.

:class:`DemoState` holds the run's cloud, options and result, the device
providers the hosts were given (a pool, or one Cyborg device each) and
which provider each device is in, and the servers booted; its helpers
answer the questions every part asks (which providers placement has,
what placement allocated a server, how to name a provider in a message).
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import typing as ty

from nova_acc.demo import plan
from nova_acc.demo import report

if ty.TYPE_CHECKING:
    from nova_acc.demo import cloud

HOST_NAME = 'compute%d'
SERVER_NAME = 'demo-%d'
HOST_KEY = 'OS-EXT-SRV-ATTR:host'
NODE_KEY = 'OS-EXT-SRV-ATTR:hypervisor_hostname'
# ARQ states in which no server holds the device: never bound, unbound.
FREE_ARQ_STATES = ('Initial', 'Unbound')

Progress = ty.Callable[[int, int, str], None]


class Steps:
    """The progress messages of a run: step ``done`` of ``total``."""

    def __init__(self, total: int, progress: Progress | None):
        self.total = total
        self.done = 0
        self.progress = progress

    def next(self, message: str) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total, message)


@dataclasses.dataclass
class Provider:
    """A device provider as the hosts have it: a pool, or one Cyborg device.
    """

    host: str
    addresses: list[str] = dataclasses.field(default_factory=list)
    # Its name in placement (read before the first boot).
    name: str = ''
    # A pool of vGPUs: how many its GPU can create (it has no addresses:
    # the mdevs are made for the servers).
    vgpus: int = 0

    @property
    def size(self) -> int:
        """Units placement should count: devices, or vGPUs."""
        return self.vgpus or len(self.addresses)


@dataclasses.dataclass
class DemoState:
    case: cloud.DemoCloud
    options: plan.Options
    result: report.Result
    steps: Steps
    # --backend cyborg: the devices are Cyborg's, one ARQ per server.
    cyborg: bool
    # Device provider uuid -> its host and devices; (host, address) ->
    # the provider of that device.
    providers: dict[str, Provider] = dataclasses.field(default_factory=dict)
    device_rp: dict[tuple[str, str], str] = dataclasses.field(
        default_factory=dict)
    # The servers posted, as the API returned them.
    booted: list[dict] = dataclasses.field(default_factory=list)
    # --backend cyborg: one ARQ per server, in boot order.
    arqs: list[str] = dataclasses.field(default_factory=list)

    def problem(self, message: str) -> None:
        self.result.problems.append(message)

    def add_device(self, host: str, address: str, rp: str | None) -> None:
        if rp is None:
            self.problem('%s does not manage its device %s: nova-acc has no '
                         'device pool for it' % (host, address))
            return
        self.device_rp[(host, address)] = rp
        self.providers.setdefault(rp, Provider(host)).addresses.append(
            address)

    def placement_devices(self) -> dict[str, str]:
        """The device providers placement has: {uuid: name}.

        nova-acc's carry its capability trait. Cyborg's do not (they are
        Cyborg's, not nova-acc's): with Cyborg they are the children of
        the compute nodes, where nova-acc reports nothing.
        """
        if not self.cyborg:
            return self.case.device_providers()
        providers = {}
        for host in self.case.computes:
            providers.update({rp['uuid']: rp['name'] for rp in
                              self.case.host_device_providers(host).values()})
        return providers

    def allocated(self, server) -> collections.Counter:
        """Device provider -> units placement allocated the server there."""
        allocs = self.case._get_allocations_by_server_uuid(server['id'])
        return collections.Counter({
            rp: sum(alloc['resources'].values())
            for rp, alloc in allocs.items() if rp in self.providers})

    def domains_elsewhere(self, server, host) -> list[str]:
        return [h for h in self.case.computes if h != host and
                self.case.domain_hostdev_xml(h, server)]

    def name(self, rp: str | None) -> str:
        """A device provider for messages: its pool, or Cyborg's device."""
        prov = self.providers.get(rp or '')
        if prov is None:
            return 'provider %s' % rp
        if self.cyborg:
            return '%s on %s' % (prov.addresses[0], prov.host)
        return 'pool %s' % (prov.name or rp)

    def names(self, counts: ty.Mapping[str, int] | ty.Iterable[str]
              ) -> str:
        """``{provider: devices}`` (or providers of a device each) for
        messages."""
        if not isinstance(counts, collections.abc.Mapping):
            counts = collections.Counter(counts)
        if not counts:
            return 'no device'
        if self.cyborg:
            return ', '.join(self.name(rp) + ('' if n == 1 else ' x%d' % n)
                             for rp, n in sorted(counts.items()))
        return ', '.join('%s of %s' % (devices(n), self.name(rp))
                         for rp, n in sorted(counts.items()))


class Part:
    """One part of a run: the run's state under the names its checks use.

    The lists and dicts are the state's own (shared, never replaced).
    """

    def __init__(self, state: DemoState):
        self.state = state
        self.case = state.case
        self.options = state.options
        self.result = state.result
        self.steps = state.steps
        self.cyborg = state.cyborg
        self.providers = state.providers
        self.device_rp = state.device_rp
        self.arqs = state.arqs
        self.problem = state.problem
        self.add_device = state.add_device
        self.placement_devices = state.placement_devices
        self.allocated = state.allocated
        self.domains_elsewhere = state.domains_elsewhere
        self.name = state.name
        self.names = state.names


def devices(n: int) -> str:
    return '%d device%s' % (n, '' if n == 1 else 's')
