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
"""Checks over all servers: no device in two guests, and all free after.

Once every server has ended its build, the devices in domains must be
exactly what placement counts as used, and no device may be in two
domains. Once every server is deleted, nothing may be left: no usage, no
hostdev, no mdev, every ledger record free, every device a server had
reset, and with Cyborg every ARQ unbound.
"""

from __future__ import annotations

import collections

from nova_acc.compute import ledger
from nova_acc.demo import report
from nova_acc.demo import state as demo_state
from nova_acc.demo.state import devices
from nova_acc.demo.state import FREE_ARQ_STATES


class AfterBoots(demo_state.Part):
    """The checks of the whole cloud, after the boots and after the deletes.
    """

    def _hostdev_owners(self) -> dict[tuple[str, str], list[str]]:
        owners = collections.defaultdict(list)
        for host in self.case.computes:
            for uuid, addrs in self.case.domain_hostdevs(host).items():
                for address in addrs:
                    owners[(host, address)].append(uuid)
            if self.options.vgpus_per_host:
                for uuid, mdevs in self.case.domain_mdevs(host).items():
                    for mdev_uuid, _ in mdevs:
                        owners[(host, mdev_uuid)].append(uuid)
        return owners

    def check_exclusive(self) -> None:
        names = {s.id: s.name for s in self.result.servers if s.id}
        for (host, address), uuids in sorted(self._hostdev_owners().items()):
            if len(uuids) > 1:
                self.problem('device %s on %s is in the domains of %s' % (
                    address, host, ', '.join(names.get(u, u) for u in uuids)))
        # Every server is ACTIVE or ERROR now: the devices in domains are
        # exactly what placement counts as used.
        in_domains = collections.Counter(
            self.device_rp[key] for key in self._hostdev_owners()
            if key in self.device_rp)
        for rp, prov in sorted(self.providers.items()):
            used = sum(self.case.provider_usage(rp).values())
            if used > prov.size:
                self.problem('placement counts %d devices of %s in use; it '
                             'has %d' % (used, self.name(rp), prov.size))
            elif used != in_domains[rp]:
                self.problem('placement counts %d devices of %s in use, but '
                             'the domains on %s have %d of them' % (
                                 used, self.name(rp), prov.host,
                                 in_domains[rp]))
        exp = self.result.expectation
        active = self.result.count('ACTIVE')
        units = sum(p.size for p in self.providers.values())
        if active * exp.devices_per_server > units:
            self.problem('%d servers are ACTIVE although each needs %s and '
                         'the cloud has only %d' % (
                             active, devices(exp.devices_per_server),
                             units))

    def read_contexts(self) -> None:
        self.result.contexts = []
        for entry in self.result.servers:
            if not entry.context:
                continue
            arq = self.case.get_arq(entry.context)
            self.result.contexts.append(report.Context(
                entry.context, entry,
                'gone' if arq is None else arq.get('state')))

    def check_contexts_free(self) -> bool:
        """Every ARQ is free (never bound or unbound) after the deletes."""
        self.read_contexts()
        free = True
        for c in self.result.contexts:
            if c.state_after_delete not in FREE_ARQ_STATES:
                free = False
                self.problem('the ARQ %s of %s is %s after its server was '
                             'deleted; deleting a server must unbind it' % (
                                 c.id, c.server.name, c.state_after_delete))
        return free

    def check_free(self) -> bool:
        free = True
        for rp, name in sorted(self.placement_devices().items()):
            usage = {rc: n for rc, n in
                     self.case.provider_usage(rp).items() if n}
            if usage:
                free = False
                self.problem('device provider %s (%s) still has usage %s '
                             'after every server was deleted' % (
                                 rp, name, usage))
        for (host, address), uuids in sorted(self._hostdev_owners().items()):
            free = False
            self.problem('device %s on %s is still in the domain of %s after '
                         'every server was deleted' % (
                             address, host, ', '.join(uuids)))
        if self.cyborg:
            # Cyborg owns its devices; nova-acc does not reset them.
            return free
        servers = list(self.result.servers)
        if self.result.context_by_id:
            servers += self.result.context_by_id.servers
        used = {(s.host, d.address) for s in servers for d in s.devices
                if not d.mdev_type}  # vGPUs are removed, not reset
        for host in sorted(self.case.computes):
            if not self.options.vgpus_per_host:
                break
            for uuid, (parent, mdev_type) in sorted(
                    self.case.host_mdevs(host).items()):
                free = False
                self.problem('mdev %s (%s on %s) is still on %s after every '
                             'server was deleted' % (uuid, mdev_type, parent,
                                                     host))
        for host, address in sorted(used):
            try:
                resets = self.case.reset_count(address)
            except OSError:
                resets = 0
            if resets < 1:
                self.problem('device %s on %s was not reset after its server '
                             'was deleted ([nova_acc] reset_on_release)' % (
                                 address, host))
        for host in sorted(self.case.computes):
            for address, rec in sorted(self.case.ledger(host).items()):
                if rec.state != ledger.FREE:
                    free = False
                    self.problem(
                        'the ledger of %s has device %s %s%s after every '
                        'server was deleted' % (
                            host, address, rec.state,
                            ' (%s)' % rec.holder if rec.holder else ''))
        return free
