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
"""Before the first boot: the demo's hosts and what placement has of them.

Starts the compute hosts with their devices (nova-acc's, or Cyborg's with
``--backend cyborg``, with one ARQ per server), then checks that placement
has a provider for every device pool and nothing else, that each host has
room for the servers (so devices run out first), and reads the pools the
expectation of the run is computed from.
"""

from __future__ import annotations

import dataclasses

import os_acc
import os_traits

from nova_acc import conf
from nova_acc.demo import plan
from nova_acc.demo import report
from nova_acc.demo import state as demo_state
from nova_acc.demo.state import devices
from nova_acc.demo.state import HOST_NAME
from nova_acc.demo.state import SERVER_NAME

# --backend cyborg: devices of host ``i`` (from 0) are on bus FIRST_BUS + i,
# away from the buses of start_fpga_host's own devices.
CYBORG_FIRST_BUS = 0x90

# Traits every nova-acc pool has besides its devices' own.
_PROVIDER_TRAITS = frozenset({os_traits.OWNER_NOVA,
                              conf.CONF.nova_acc.capability_trait})


class HostSetup(demo_state.Part):
    """Starts the hosts and checks what placement has before any boot."""

    def start_hosts(self) -> None:
        o = self.options
        vfs = (' and a PF with %d VF(s)' % o.vfs_per_host
               if o.vfs_per_host else '')
        if o.vgpus_per_host:
            vfs += ' and a GPU of %d vGPU(s)' % o.vgpus_per_host
        self.steps.next('starting %d compute host(s) with %d FPGA(s)%s each'
                        % (o.hosts, o.devices_per_host, vfs))
        self.case.vgpu_instances = o.vgpus_per_host
        for i in range(o.hosts):
            host = HOST_NAME % (i + 1)
            fpgas, vfs = self.case.start_demo_host(
                host, o.devices_per_host, o.vfs_per_host, o.vgpus_per_host)
            for address in fpgas + vfs:
                self.add_device(host, address,
                                self.case.device_rp(host, address))
            if o.vgpus_per_host:
                rp = self.case.vgpu_pool(host)
                if rp is None:
                    self.problem('%s has no vGPU pool for its GPU %s' % (
                        host, self.case.host_gpus.get(host)))
                else:
                    self.providers[rp] = demo_state.Provider(
                        host, vgpus=o.vgpus_per_host)

    def start_cyborg_hosts(self) -> None:
        o = self.options
        self.steps.next('starting %d compute host(s) with %d Cyborg-managed '
                        'FPGA(s) each' % (o.hosts, o.devices_per_host))
        for i in range(o.hosts):
            host = HOST_NAME % (i + 1)
            self.case.start_fpga_host(host, num_fpgas=0)
            for slot in range(o.devices_per_host):
                address = str(os_acc.PciAddress(
                    0, CYBORG_FIRST_BUS + i, slot, 0))
                self.add_device(host, address,
                                self.case.add_cyborg_device(host, address))

    def asked(self) -> plan.Options:
        """The options with what each server asks for as device contexts.

        With Cyborg that is the group of the ARQs' device profile, as
        Cyborg has it (an ARQ asks for one device of its group).
        """
        if not self.cyborg:
            return self.options
        groups = self.case.profile_groups()
        self.result.profile = self.case.PROFILE
        self.result.profile_spec = ' + '.join(
            ','.join('%s=%s' % item for item in sorted(g.items()))
            for g in groups) or None
        if len(groups) != 1:
            raise RuntimeError('device profile %s has %d groups; the demo '
                               'needs exactly one' % (self.case.PROFILE,
                                                      len(groups)))
        return dataclasses.replace(self.options,
                                   contexts=(self.result.profile_spec,))

    def create_arqs(self) -> None:
        o = self.options
        self.steps.next('creating %d ARQ(s) from device profile %s, one per '
                        'server' % (o.servers, self.case.PROFILE))
        for i in range(o.servers):
            arq = self.case.create_context()
            self.arqs.append(arq)
            state = (self.case.get_arq(arq) or {}).get('state', 'gone')
            if state != 'Initial':
                self.problem('the new ARQ %s for %s is %s, not Initial' % (
                    arq, SERVER_NAME % (i + 1), state))

    def check_providers(self) -> None:
        providers = self.placement_devices()
        self.result.device_providers = len(providers)
        for rp, name in providers.items():
            if rp in self.providers:
                self.providers[rp].name = name
        if self.cyborg:
            ours = self.case.device_providers()
            if ours:
                self.problem(
                    'nova-acc reported device provider(s) %s although its '
                    'device_spec is empty and Cyborg owns the devices' %
                    ', '.join('%s (%s)' % item for item in sorted(
                        ours.items())))
        missing = sorted(set(self.providers) - set(providers))
        extra = sorted(set(providers) - set(self.providers))
        if missing:
            self.problem(
                'placement has no resource provider for device(s) %s' %
                ', '.join('%s on %s' % (a, self.providers[rp].host)
                          for rp in missing
                          for a in self.providers[rp].addresses or
                          ['the vGPUs']))
        if extra:
            self.problem(
                'placement has device provider(s) no host reported: %s' %
                ', '.join('%s (%s)' % (rp, providers[rp]) for rp in extra))

    def check_room(self) -> None:
        """Each host has room for plan.HOST_ROOM servers of the flavor.

        plan.expect counts devices only: that is right while no host runs
        out of VCPUs, RAM or disk first.
        """
        flavor = self.case.api.get_flavors()[0]
        need = {'VCPU': flavor['vcpus'], 'MEMORY_MB': flavor['ram'],
                'DISK_GB': flavor['disk']}
        for host in sorted(self.case.computes):
            inventories = self.case.provider_inventory(
                self.case.compute_rp_uuids[host])
            room = min(
                int((inv['total'] - inv['reserved']) *
                    inv['allocation_ratio']) // need[rc]
                for rc, inv in inventories.items() if need.get(rc))
            if room < plan.HOST_ROOM:
                self.problem('%s has room for %d servers of flavor %s; the '
                             'demo expects room for %d, so that devices run '
                             'out first' % (host, room, flavor['name'],
                                            plan.HOST_ROOM))

    def host_pools(self) -> list[plan.Host]:
        """The providers of each host as placement has them, and the
        report's list of pools; a provider whose inventory does not count
        its devices is a problem."""
        hosts: dict[str, list[plan.PoolKind]] = {
            HOST_NAME % (i + 1): [] for i in range(self.options.hosts)}
        for rp, prov in sorted(self.providers.items(),
                               key=lambda item: (item[1].host, item[1].name,
                                                 item[0])):
            if not prov.name:
                continue  # not in placement: a problem already
            inventories = self.case.provider_inventory(rp)
            traits = frozenset(self.case.provider_traits(rp))
            for rc, inv in sorted(inventories.items()):
                if (inv['total'], inv['reserved']) != (prov.size, 0):
                    self.problem(
                        'device provider %s has inventory %s=%d (%d reserved) '
                        'before any boot; %s has %s for it' % (
                            prov.name, rc, inv['total'], inv['reserved'],
                            prov.host, devices(prov.size)))
                kind = plan.PoolKind(rc, inv['total'] - inv['reserved'],
                                     traits, inv.get('max_unit'), prov.name)
                hosts.setdefault(prov.host, []).append(kind)
                if not self.cyborg:
                    self.result.pools.append(report.Pool(
                        prov.host, prov.name, rp, rc, inv['total'],
                        sorted(traits - _PROVIDER_TRAITS)))
        return [tuple(pools) for pools in hosts.values()]
