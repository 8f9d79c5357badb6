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
"""Boot servers with device contexts, look at them, delete them.

Each server is looked at the way a user and an operator would: the API
(status, host, fault), placement (allocations and usages of the device
pools), the cell database (the bindings nova-acc recorded: a pool and a
number of devices per group), the host's device ledger (which devices of
the pool the host picked for which group) and libvirt (the hostdevs in the
domain XML). Whatever does not agree is recorded as a problem; the run
itself only stops early for errors of the demo machinery.

With ``--backend cyborg`` the devices are Cyborg's (reported to placement
and to Cyborg as cyborg-agent would), each server boots with its own ARQ,
and Cyborg is looked at too: each ARQ must be Bound to its server with the
device placement allocated and an attach handle equal to the hostdev in
the domain, and no ARQ may stay bound once the servers are deleted. Cyborg
reports one provider per device, so there each provider has one device.

With the local backend the run ends with a device context by ID
(:mod:`nova_acc.tests.demo.by_id`): created in nova-acc-api, it boots a
server, is unbound at the server's delete and boots a second one.
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import time
import traceback
import typing as ty

import os_acc
import os_traits

from nova_acc import conf
from nova_acc.compute import ledger
from nova_acc.tests.demo import by_id
from nova_acc.tests.demo import plan
from nova_acc.tests.demo import report

if ty.TYPE_CHECKING:
    from nova_acc.tests.demo import cloud

HOST_NAME = 'compute%d'
SERVER_NAME = 'demo-%d'
HOST_KEY = 'OS-EXT-SRV-ATTR:host'
NODE_KEY = 'OS-EXT-SRV-ATTR:hypervisor_hostname'
# What the nova-acc scheduler's NoValidHost fault says about device contexts.
FAULT_MARK = 'device context'
# --backend cyborg: devices of host ``i`` (from 0) are on bus FIRST_BUS + i,
# away from the buses of start_fpga_host's own devices.
CYBORG_FIRST_BUS = 0x90
# ARQ states in which no server holds the device: never bound, unbound.
FREE_ARQ_STATES = ('Initial', 'Unbound')

# Traits every nova-acc pool has besides its devices' own.
_PROVIDER_TRAITS = frozenset({os_traits.OWNER_NOVA,
                              conf.CONF.nova_acc.capability_trait})

Progress = ty.Callable[[int, int, str], None]


class _Steps:
    def __init__(self, total: int, progress: Progress | None):
        self.total = total
        self.done = 0
        self.progress = progress

    def next(self, message: str) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total, message)


def run(options: plan.Options, progress: Progress | None = None,
        log_file: str | None = None) -> report.Result:
    """Run the demo on a fresh in-process cloud and return what it saw.

    An error part way (an API call failing, a helper timing out) ends the
    run with what was seen so far and the error as a problem, its traceback
    in ``result.traceback``. Only a cloud that cannot start raises.
    """
    started = time.monotonic()
    result = report.Result(options)
    cyborg = options.backend == 'cyborg'
    steps = _Steps(options.servers + (5 if cyborg else 4 + by_id.STEPS),
                   progress)
    steps.next('starting the control plane (nova-api, conductor, scheduler, '
               'placement%s)' % (
                   '; Cyborg API and conductor in a child process' if cyborg
                   else ''))
    # Nova's test fixtures take seconds to import: after the first message.
    from nova_acc.tests.demo import cloud
    with cloud.running(options.backend) as case:
        demo_run = _Run(case, options, result, steps)
        try:
            demo_run.run()
        except Exception as e:
            result.devices_free_after_delete = False
            result.problems.append('the demo could not complete: %s: %s' % (
                type(e).__name__, e))
            result.traceback = traceback.format_exc()
            # Servers left behind keep Nova's executors busy, and stopping
            # the cloud waits for them.
            demo_run.delete_left_behind()
            demo_run.read_contexts_left_behind()
        finally:
            if log_file:
                with open(log_file, 'w') as f:
                    f.write(case.nova_log())
    result.seconds = time.monotonic() - started
    return result


@dataclasses.dataclass
class _Provider:
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


class _Run:
    def __init__(self, case: cloud.DemoCloud, options: plan.Options,
                 result: report.Result, steps: _Steps):
        self.case = case
        self.options = options
        self.result = result
        self.steps = steps
        # Device provider uuid -> its host and devices; (host, address) ->
        # the provider of that device.
        self.providers: dict[str, _Provider] = {}
        self.device_rp: dict[tuple[str, str], str] = {}
        self.booted: list[dict] = []
        # --backend cyborg: one ARQ per server, in boot order.
        self.cyborg = options.backend == 'cyborg'
        self.arqs: list[str] = []

    def problem(self, message: str) -> None:
        self.result.problems.append(message)

    def run(self) -> None:
        o = self.options
        if self.cyborg:
            self._start_cyborg_hosts()
        else:
            self._start_hosts()
        self._check_providers()
        self._check_room()
        self.result.expectation = plan.expect(self._asked(),
                                              self._host_pools())
        if self.cyborg:
            self._create_arqs()

        for i in range(o.servers):
            self.steps.next('booting server %d of %d' % (i + 1, o.servers))
            self.result.servers.append(self.boot(i))
        self._check_exclusive()

        self.steps.next('deleting %d server(s)' % len(self.booted))
        deleted = self._delete_all()
        if not self.cyborg:
            by_id.Phase(self).play()
        if self.cyborg:
            self.steps.next('checking that every device and every ARQ is '
                            'free again')
            free = self._check_free()
            contexts_free = self._check_contexts_free()
            self.result.devices_free_after_delete = (
                free and contexts_free and deleted)
        else:
            self.steps.next('checking that every device is free again')
            self.result.devices_free_after_delete = (
                self._check_free() and deleted)

    def _add_device(self, host: str, address: str, rp: str | None) -> None:
        if rp is None:
            self.problem('%s does not manage its device %s: nova-acc has no '
                         'device pool for it' % (host, address))
            return
        self.device_rp[(host, address)] = rp
        self.providers.setdefault(rp, _Provider(host)).addresses.append(
            address)

    def _start_hosts(self) -> None:
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
                self._add_device(host, address,
                                 self.case.device_rp(host, address))
            if o.vgpus_per_host:
                rp = self.case.vgpu_pool(host)
                if rp is None:
                    self.problem('%s has no vGPU pool for its GPU %s' % (
                        host, self.case.host_gpus.get(host)))
                else:
                    self.providers[rp] = _Provider(
                        host, vgpus=o.vgpus_per_host)

    # ---- --backend cyborg: hosts, profile, ARQs ----------------------------

    def _start_cyborg_hosts(self) -> None:
        o = self.options
        self.steps.next('starting %d compute host(s) with %d Cyborg-managed '
                        'FPGA(s) each' % (o.hosts, o.devices_per_host))
        for i in range(o.hosts):
            host = HOST_NAME % (i + 1)
            self.case.start_fpga_host(host, num_fpgas=0)
            for slot in range(o.devices_per_host):
                address = str(os_acc.PciAddress(
                    0, CYBORG_FIRST_BUS + i, slot, 0))
                self._add_device(host, address,
                                 self.case.add_cyborg_device(host, address))

    def _asked(self) -> plan.Options:
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

    def _create_arqs(self) -> None:
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

    # ---- before booting ----------------------------------------------

    def _placement_devices(self) -> dict[str, str]:
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

    def _check_providers(self) -> None:
        providers = self._placement_devices()
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

    def _check_room(self) -> None:
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

    def _host_pools(self) -> list[plan.Host]:
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
                            prov.host, _devices(prov.size)))
                kind = plan.PoolKind(rc, inv['total'] - inv['reserved'],
                                     traits, inv.get('max_unit'), prov.name)
                hosts.setdefault(prov.host, []).append(kind)
                if not self.cyborg:
                    self.result.pools.append(report.Pool(
                        prov.host, prov.name, rp, rc, inv['total'],
                        sorted(traits - _PROVIDER_TRAITS)))
        return [tuple(pools) for pools in hosts.values()]

    # ---- one server ------------------------------------------------------

    def boot(self, index: int, name: str | None = None,
             hint: str | None = None) -> report.Server:
        """Boot a server, wait for it to end its build, look at it.

        :param index: the server's place among the demo's servers (only
            the first ``expectation.active`` ones can get devices).
        :param name: the server's name, else the demo's ``demo-<n>``.
        :param hint: its ``device_context`` hint, else the demo's (the
            index-th ARQ with Cyborg).
        """
        from nova.tests.functional.api import client

        name = name or SERVER_NAME % (index + 1)
        context = None
        if hint is None and self.cyborg:
            hint = context = self.arqs[index]
        elif hint is None:
            contexts = list(self.options.contexts)
            hint = contexts[0] if len(contexts) == 1 else contexts
        body = {'server': self.case._build_server(name=name,
                                                  networks='none'),
                'os:scheduler_hints': {'device_context': hint}}
        try:
            server = self.case.api.post_server(body)
        except client.OpenStackApiException as e:
            self.problem('the API refused to create %s: %s' % (name, e))
            return report.Server(index, name, None, 'REFUSED', fault=str(e),
                                 context=context)
        self.booted.append(server)
        server = self.case.wait_for_final_state(server)
        entry = report.Server(index, name, server['id'], server['status'],
                              host=server.get(HOST_KEY), context=context)
        if 'fault' in server:
            entry.fault = server['fault'].get('message')
        if server['status'] == 'ACTIVE':
            self._inspect_active(server, entry)
        elif server['status'] == 'ERROR':
            self._inspect_error(server, entry)
        else:
            self.problem('%s is still %s after 60 s' % (name,
                                                        server['status']))
        return entry

    def _allocated(self, server) -> collections.Counter:
        """Device provider -> units placement allocated the server there."""
        allocs = self.case._get_allocations_by_server_uuid(server['id'])
        return collections.Counter({
            rp: sum(alloc['resources'].values())
            for rp, alloc in allocs.items() if rp in self.providers})

    def _domains_elsewhere(self, server, host) -> list[str]:
        return [h for h in self.case.computes if h != host and
                self.case.domain_hostdev_xml(h, server)]

    def _inspect_active(self, server, entry: report.Server) -> None:
        exp = self.result.expectation
        name, host = entry.name, entry.host
        node = server.get(NODE_KEY) or host
        if entry.index >= exp.active:
            self.problem(
                '%s is ACTIVE, but only %d server(s) can get %s on %s' % (
                    name, exp.active, _devices(exp.devices_per_server),
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
        allocated = self._allocated(server)
        if allocated != in_domain:
            self.problem(
                'the domain of %s has %s but placement allocated %s to it'
                % (name, self._names(in_domain), self._names(allocated)))
        bindings = self.case.bindings(server)
        bound: collections.Counter = collections.Counter()
        for b in bindings:
            bound[b.rp_uuid] += b.amount
        if bound != in_domain:
            self.problem(
                'the domain of %s has %s but nova-acc bound %s to it' % (
                    name, self._names(in_domain), self._names(bound)))
        for other in self._domains_elsewhere(server, host):
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
                                                  self._name(rp), node))
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
                        self._name(b.rp_uuid),
                        'in ' + self._name(pool) if pool
                        else 'in no pool', self._name(rec.rp_uuid)))
        for b in bindings:
            if taken[b.requester_id] != b.amount:
                self.problem(
                    'group %s of %s is bound to %s of %s; the ledger of %s '
                    'gives it %d' % (b.requester_id, name,
                                     _devices(b.amount),
                                     self._name(b.rp_uuid), node,
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
                             arq_uuid, name, self._names({rp} - {None}),
                             self._names(allocated)))
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

    def _inspect_error(self, server, entry: report.Server) -> None:
        exp = self.result.expectation
        name = entry.name
        if not entry.fault:
            self.problem('%s is ERROR without a fault' % name)
        elif entry.index < exp.active:
            self.problem(
                '%s went to ERROR although %s were still free for it: %s'
                % (name, _devices(exp.devices_per_server), entry.fault))
        elif FAULT_MARK not in entry.fault:
            self.problem(
                'the fault of %s does not say that no host had free devices '
                'for its device context: %s' % (name, entry.fault))
        allocated = self._allocated(server)
        if allocated:
            self.problem('%s is ERROR but holds an allocation of %s' % (
                name, self._names(allocated)))
        holders = self._domains_elsewhere(server, None)
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

    # ---- all servers -------------------------------------------------

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

    def _check_exclusive(self) -> None:
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
                             'has %d' % (used, self._name(rp), prov.size))
            elif used != in_domains[rp]:
                self.problem('placement counts %d devices of %s in use, but '
                             'the domains on %s have %d of them' % (
                                 used, self._name(rp), prov.host,
                                 in_domains[rp]))
        exp = self.result.expectation
        active = self.result.count('ACTIVE')
        units = sum(p.size for p in self.providers.values())
        if active * exp.devices_per_server > units:
            self.problem('%d servers are ACTIVE although each needs %s and '
                         'the cloud has only %d' % (
                             active, _devices(exp.devices_per_server),
                             units))

    def _delete_all(self) -> bool:
        ok = True
        for server in self.booted:
            if not self.case.delete_and_wait(server):
                ok = False
                self.problem('server %s was not gone 60 s after its delete'
                             % server['id'])
        return ok

    def delete_one(self, server_id: str) -> None:
        """Delete one booted server now (not with the others)."""
        server, = [s for s in self.booted if s['id'] == server_id]
        self.booted.remove(server)
        if not self.case.delete_and_wait(server):
            self.problem('server %s was not gone 60 s after its delete'
                         % server_id)

    def _read_contexts(self) -> None:
        self.result.contexts = []
        for entry in self.result.servers:
            if not entry.context:
                continue
            arq = self.case.get_arq(entry.context)
            self.result.contexts.append(report.Context(
                entry.context, entry,
                'gone' if arq is None else arq.get('state')))

    def _check_contexts_free(self) -> bool:
        """Every ARQ is free (never bound or unbound) after the deletes."""
        self._read_contexts()
        free = True
        for c in self.result.contexts:
            if c.state_after_delete not in FREE_ARQ_STATES:
                free = False
                self.problem('the ARQ %s of %s is %s after its server was '
                             'deleted; deleting a server must unbind it' % (
                                 c.id, c.server.name, c.state_after_delete))
        return free

    def read_contexts_left_behind(self) -> None:
        """Best effort: the ARQ states of a run that ended early."""
        if not self.cyborg:
            return
        try:
            self._read_contexts()
        except Exception:  # noqa: S110 - already reporting an error
            pass

    def delete_left_behind(self) -> None:
        """Best effort: delete the servers of a run that ended early."""
        for server in self.booted:
            try:
                self.case.delete_and_wait(server, timeout=30)
            except Exception:  # noqa: S110 - already reporting an error
                pass

    def _check_free(self) -> bool:
        free = True
        for rp, name in sorted(self._placement_devices().items()):
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

    def _name(self, rp: str | None) -> str:
        """A device provider for messages: its pool, or Cyborg's device."""
        prov = self.providers.get(rp or '')
        if prov is None:
            return 'provider %s' % rp
        if self.cyborg:
            return '%s on %s' % (prov.addresses[0], prov.host)
        return 'pool %s' % (prov.name or rp)

    def _names(self, counts: ty.Mapping[str, int] | ty.Iterable[str]
               ) -> str:
        """``{provider: devices}`` (or providers of a device each) for
        messages."""
        if not isinstance(counts, collections.abc.Mapping):
            counts = collections.Counter(counts)
        if not counts:
            return 'no device'
        if self.cyborg:
            return ', '.join(self._name(rp) + ('' if n == 1 else ' x%d' % n)
                             for rp, n in sorted(counts.items()))
        return ', '.join('%s of %s' % (_devices(n), self._name(rp))
                         for rp, n in sorted(counts.items()))


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


def _devices(n: int) -> str:
    return '%d device%s' % (n, '' if n == 1 else 's')


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
