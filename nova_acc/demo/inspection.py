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
"""One server after its build, as a user and an operator would see it.

An ACTIVE server: its domain's hostdevs (and vGPUs) against placement's
allocation, nova-acc's bindings, the host's ledger and, with Cyborg, its
ARQ; no other host with a domain for it. A server in ERROR: a fault that
names the device contexts, and nothing held anywhere.
"""

from __future__ import annotations

import collections

import os_acc

from nova_acc.compute import ledger
from nova_acc.demo import plan
from nova_acc.demo import report
from nova_acc.demo import state as demo_state
from nova_acc.demo.state import devices
from nova_acc.demo.state import FREE_ARQ_STATES
from nova_acc.demo.state import NODE_KEY

# What the nova-acc scheduler's NoValidHost fault says about device contexts.
FAULT_MARK = 'device context'


class ServerInspection(demo_state.Part):
    """Records as problems whatever about one server does not agree."""

    def inspect_active(self, server, entry: report.Server) -> None:
        exp = self.result.expectation
        name, host = entry.name, entry.host
        node = server.get(NODE_KEY) or host
        if entry.index >= exp.active:
            self.problem(
                '%s is ACTIVE, but only %d server(s) can get %s on %s' % (
                    name, exp.active, devices(exp.devices_per_server),
                    _plural_hosts(self.options)))
        if host not in self.case.computes:
            self.problem('%s is ACTIVE on unknown host %r' % (name, host))
            return
        # The provider of each hostdev, from what the hosts were given
        # (Cyborg's provider UUIDs are random, not derived from anything).
        for address, xml in self.case.domain_hostdev_xml(host, server):
            rp = self.device_rp.get((node, address))
            entry.devices.append(report.Device(
                address, rp or '-', xml,
                self.providers[rp].name if rp else ''))
        self._inspect_mdevs(server, entry, node)
        if len(entry.devices) != exp.devices_per_server:
            self.problem(
                'the domain of %s on %s has %d PCI hostdev(s); its device '
                'context(s) ask for %d device(s)' % (
                    name, host, len(entry.devices), exp.devices_per_server))
        for d in entry.devices:
            if (node, d.address) not in self.device_rp:
                self.problem('%s has hostdev %s, which is not a %s device '
                             'of %s' % (name, d.address, 'Cyborg-managed'
                                        if self.cyborg else 'nova-acc',
                                        node))
        in_domain = collections.Counter(
            d.resource_provider for d in entry.devices
            if d.resource_provider in self.providers)
        allocated = self.allocated(server)
        if allocated != in_domain:
            self.problem(
                'the domain of %s has %s but placement allocated %s to it'
                % (name, self.names(in_domain), self.names(allocated)))
        bindings = self.case.bindings(server)
        bound: collections.Counter = collections.Counter()
        for b in bindings:
            bound[b.rp_uuid] += b.amount
        if bound != in_domain:
            self.problem(
                'the domain of %s has %s but nova-acc bound %s to it' % (
                    name, self.names(in_domain), self.names(bound)))
        for other in self.domains_elsewhere(server, host):
            self.problem('%s is ACTIVE on %s but %s also has a domain with '
                         'hostdevs for it' % (name, host, other))
        if self.cyborg:
            bound_contexts = {b.context_id for b in bindings}
            if bound_contexts != {entry.context}:
                self.problem(
                    'nova-acc recorded bindings of %s for device context(s) '
                    '%s, not for its ARQ %s' % (
                        name, ', '.join(sorted(map(str, bound_contexts)))
                        or 'none', entry.context))
            self._check_bound_arq(server, entry, set(allocated))
        else:
            self._check_ledger(server, entry, node, bindings)

    def _inspect_mdevs(self, server, entry: report.Server, node: str
                       ) -> None:
        """The vGPUs of the server's domain: each an mdev of the host of the
        type and on the GPU its ledger record says, from the host's vGPU
        pool."""
        if not self.options.vgpus_per_host:
            return
        records = self.case.ledger(node)
        on_host = self.case.host_mdevs(node)
        for uuid, xml in self.case.domain_mdevs(node, server):
            rec = records.get(uuid)
            parent, mdev_type = on_host.get(uuid, (None, None))
            if parent is None:
                self.problem('the domain of %s has mdev %s, which does not '
                             'exist on %s' % (entry.name, uuid, node))
            elif rec is None or (rec.parent, rec.mdev_type) != (
                    parent, mdev_type):
                self.problem(
                    'mdev %s of %s is of type %s on %s, but the ledger of '
                    '%s records %s' % (
                        uuid, entry.name, mdev_type, parent, node,
                        'it as %s on %s' % (rec.mdev_type, rec.parent)
                        if rec else 'nothing of it'))
            rp = rec.rp_uuid if rec else None
            if rp not in self.providers:
                self.problem('mdev %s of %s is recorded for %s, not for a '
                             'vGPU pool of %s' % (uuid, entry.name,
                                                  self.name(rp), node))
            else:
                self.device_rp[(node, uuid)] = rp
            entry.devices.append(report.Device(
                uuid, rp or '-', xml,
                self.providers[rp].name if rp in self.providers else '',
                mdev_type=mdev_type, parent=parent))

    def _check_ledger(self, server, entry: report.Server, node: str,
                      bindings) -> None:
        """The host's ledger must give the server the devices in its
        domain, each from the pool its group is bound to, as many per
        group as the binding says."""
        name = entry.name
        held = {a: r for a, r in self.case.ledger(node).items()
                if r.instance_uuid == server['id'] and
                r.state in ledger.ACTIVE}
        in_domain = sorted(d.address for d in entry.devices)
        if sorted(held) != in_domain:
            self.problem('the ledger of %s gives %s device(s) %s; its domain '
                         'has %s' % (node, name, ', '.join(sorted(held))
                                     or 'none',
                                     ', '.join(in_domain) or 'none'))
        by_group = {b.requester_id: b for b in bindings}
        taken: collections.Counter = collections.Counter()
        for address, rec in sorted(held.items()):
            b = by_group.get(rec.requester_id)
            if b is None:
                self.problem('the ledger of %s gives device %s to %s for '
                             'group %s, which nova-acc did not bind' % (
                                 node, address, name, rec.requester_id))
                continue
            taken[b.requester_id] += 1
            pool = self.device_rp.get((node, address))
            if not (rec.rp_uuid == b.rp_uuid == pool):
                self.problem(
                    'device %s of %s serves its group %s, which is bound to '
                    '%s, but the device is %s (the ledger records %s)' % (
                        address, name, b.requester_id,
                        self.name(b.rp_uuid),
                        'in ' + self.name(pool) if pool
                        else 'in no pool', self.name(rec.rp_uuid)))
        for b in bindings:
            if taken[b.requester_id] != b.amount:
                self.problem(
                    'group %s of %s is bound to %s of %s; the ledger of %s '
                    'gives it %d' % (b.requester_id, name,
                                     devices(b.amount),
                                     self.name(b.rp_uuid), node,
                                     taken[b.requester_id]))

    def _check_bound_arq(self, server, entry: report.Server,
                         allocated: set[str]) -> None:
        """The ARQ of an ACTIVE server, as Cyborg has it, must match."""
        name, arq_uuid = entry.name, entry.context
        arq = self.case.get_arq(arq_uuid)
        if arq is None:
            self.problem('Cyborg has no ARQ %s, the device context of %s'
                         % (arq_uuid, name))
            return
        if (arq.get('state'), arq.get('instance_uuid')) != (
                'Bound', server['id']):
            self.problem('the ARQ %s of ACTIVE %s is %s%s, not Bound to it'
                         % (arq_uuid, name, arq.get('state'),
                            _to_server(arq)))
        if arq.get('hostname') != entry.host:
            self.problem('the ARQ %s of %s is bound to host %r; the server '
                         'is on %s' % (arq_uuid, name, arq.get('hostname'),
                                       entry.host))
        rp = arq.get('device_rp_uuid')
        if allocated != {rp}:
            self.problem('the ARQ %s of %s is bound to device provider %s '
                         'but placement allocated %s to the server' % (
                             arq_uuid, name, self.names({rp} - {None}),
                             self.names(allocated)))
        handle = _attach_handle_address(arq)
        in_domain = [d.address for d in entry.devices]
        if handle is None:
            self.problem('the ARQ %s of %s has no usable PCI attach handle: '
                         '%s %s' % (arq_uuid, name,
                                    arq.get('attach_handle_type'),
                                    arq.get('attach_handle_info')))
        elif in_domain != [handle]:
            self.problem('the domain of %s has hostdev(s) %s but the attach '
                         'handle of its ARQ %s is %s' % (
                             name, ', '.join(in_domain) or 'none', arq_uuid,
                             handle))

    def inspect_error(self, server, entry: report.Server) -> None:
        exp = self.result.expectation
        name = entry.name
        if not entry.fault:
            self.problem('%s is ERROR without a fault' % name)
        elif entry.index < exp.active:
            self.problem(
                '%s went to ERROR although %s were still free for it: %s'
                % (name, devices(exp.devices_per_server), entry.fault))
        elif FAULT_MARK not in entry.fault:
            self.problem(
                'the fault of %s does not say that no host had free devices '
                'for its device context: %s' % (name, entry.fault))
        allocated = self.allocated(server)
        if allocated:
            self.problem('%s is ERROR but holds an allocation of %s' % (
                name, self.names(allocated)))
        holders = self.domains_elsewhere(server, None)
        if holders:
            self.problem('%s is ERROR but has hostdevs in a domain on %s' % (
                name, ', '.join(holders)))
        if self.cyborg:
            arq = self.case.get_arq(entry.context)
            if arq is None:
                self.problem('Cyborg has no ARQ %s, the device context of %s'
                             % (entry.context, name))
            elif (arq.get('state') not in FREE_ARQ_STATES or
                    arq.get('instance_uuid')):
                self.problem('%s is ERROR but its ARQ %s is %s%s' % (
                    name, entry.context, arq.get('state'), _to_server(arq)))


def _attach_handle_address(arq: dict) -> str | None:
    """The PCI address of an ARQ's attach handle, as libvirt shows it."""
    if arq.get('attach_handle_type') != 'PCI':
        return None
    info = arq.get('attach_handle_info') or {}
    try:
        return str(os_acc.PciAddress.from_hex_fields(
            info['domain'], info['bus'], info['device'], info['function']))
    except (KeyError, ValueError):  # InvalidDeviceAddress is a ValueError
        return None


def _to_server(arq: dict) -> str:
    bound_to = arq.get('instance_uuid')
    return ' to server %s' % bound_to if bound_to else ''


def _plural_hosts(options: plan.Options) -> str:
    vfs = (' and %d VF%s' % (options.vfs_per_host,
                             '' if options.vfs_per_host == 1 else 's')
           if options.vfs_per_host else '')
    if options.vgpus_per_host:
        vfs += ' and %d vGPU%s' % (options.vgpus_per_host,
                                   '' if options.vgpus_per_host == 1 else 's')
    return '%d host%s with %d FPGA%s%s each' % (
        options.hosts, '' if options.hosts == 1 else 's',
        options.devices_per_host,
        '' if options.devices_per_host == 1 else 's', vfs)
