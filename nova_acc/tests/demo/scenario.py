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
providers), the cell database (the bindings nova-acc recorded) and libvirt
(the hostdevs in the domain XML). Whatever does not agree is recorded as a
problem; the run itself only stops early for errors of the demo machinery.

With ``--backend cyborg`` the devices are Cyborg's (reported to placement
and to Cyborg as cyborg-agent would), each server boots with its own ARQ,
and Cyborg is looked at too: each ARQ must be Bound to its server with the
device placement allocated and an attach handle equal to the hostdev in
the domain, and no ARQ may stay bound once the servers are deleted.
"""

from __future__ import annotations

import collections
import dataclasses
import time
import traceback
import typing as ty

import os_acc

from nova_acc import inventory
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
    steps = _Steps(options.servers + (5 if cyborg else 4), progress)
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


class _Run:
    def __init__(self, case: cloud.DemoCloud, options: plan.Options,
                 result: report.Result, steps: _Steps):
        self.case = case
        self.options = options
        self.result = result
        self.steps = steps
        # Device provider uuid -> (host, address), as the hosts have them.
        self.devices: dict[str, tuple[str, str]] = {}
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
            self.steps.next('starting %d compute host(s) with %d FPGA(s) '
                            'each' % (o.hosts, o.devices_per_host))
            for i in range(o.hosts):
                host = HOST_NAME % (i + 1)
                for address in self.case.start_fpga_host(
                        host, num_fpgas=o.devices_per_host):
                    self.devices[inventory.provider_uuid(host, address)] = (
                        host, address)
        self._check_providers()
        self.result.expectation = plan.expect(self._asked(),
                                              self._device_kind())
        if self.cyborg:
            self._create_arqs()

        for i in range(o.servers):
            self.steps.next('booting server %d of %d' % (i + 1, o.servers))
            self.result.servers.append(self._boot(i))
        self._check_exclusive()

        self.steps.next('deleting %d server(s)' % len(self.booted))
        deleted = self._delete_all()
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
                rp = self.case.add_cyborg_device(host, address)
                self.devices[rp] = (host, address)

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
        if self.cyborg:
            ours = self.case.device_providers()
            if ours:
                self.problem(
                    'nova-acc reported device provider(s) %s although its '
                    'device_spec is empty and Cyborg owns the devices' %
                    ', '.join('%s (%s)' % item for item in sorted(
                        ours.items())))
        missing = sorted(set(self.devices) - set(providers))
        extra = sorted(set(providers) - set(self.devices))
        if missing:
            self.problem(
                'placement has no resource provider for device(s) %s' %
                ', '.join('%s on %s' % self.devices[rp][::-1]
                          for rp in missing))
        if extra:
            self.problem(
                'placement has device provider(s) no host reported: %s' %
                ', '.join('%s (%s)' % (rp, providers[rp]) for rp in extra))

    def _device_kind(self) -> plan.DeviceKind:
        if not self.devices:
            return plan.DeviceKind({}, frozenset())
        rp = sorted(self.devices)[0]
        inventories = self.case.placement.get(
            '/resource_providers/%s/inventories' % rp).body['inventories']
        traits = self.case.placement.get(
            '/resource_providers/%s/traits' % rp, version='1.6').body[
            'traits']
        return plan.DeviceKind(
            {rc: inv['total'] - inv['reserved']
             for rc, inv in inventories.items()}, frozenset(traits))

    # ---- one server ------------------------------------------------------

    def _boot(self, index: int) -> report.Server:
        from nova.tests.functional.api import client

        name = SERVER_NAME % (index + 1)
        if self.cyborg:
            hint = context = self.arqs[index]
        else:
            context = None
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

    def _allocated_devices(self, server) -> set[str]:
        allocs = self.case._get_allocations_by_server_uuid(server['id'])
        return {rp for rp in allocs if rp in self.devices}

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
        if self.cyborg:
            # Cyborg's provider UUIDs are random, not derived from the
            # address: look the device up in what the hosts were given.
            at = {dev: rp for rp, dev in self.devices.items()}
            entry.devices = [
                report.Device(address, at.get((node, address), '-'), xml)
                for address, xml in self.case.domain_hostdev_xml(host,
                                                                 server)]
        else:
            entry.devices = [
                report.Device(address, inventory.provider_uuid(node, address),
                              xml)
                for address, xml in self.case.domain_hostdev_xml(host,
                                                                 server)]
        in_domain = {d.resource_provider for d in entry.devices}
        if len(entry.devices) != exp.devices_per_server:
            self.problem(
                'the domain of %s on %s has %d PCI hostdev(s); its device '
                'context(s) ask for %d device(s)' % (
                    name, host, len(entry.devices), exp.devices_per_server))
        for d in entry.devices:
            if self.devices.get(d.resource_provider) != (node, d.address):
                self.problem('%s has hostdev %s, which is not a %s device '
                             'of %s' % (name, d.address, 'Cyborg-managed'
                                        if self.cyborg else 'nova-acc',
                                        node))
        allocated = self._allocated_devices(server)
        if allocated != in_domain:
            self.problem(
                'the domain of %s has device(s) %s but placement allocated '
                '%s to it' % (name, self._names(in_domain),
                              self._names(allocated)))
        bindings = self.case.bindings(server)
        bound = {b.rp_uuid for b in bindings}
        if bound != in_domain:
            self.problem(
                'the domain of %s has device(s) %s but nova-acc bound %s to '
                'it' % (name, self._names(in_domain), self._names(bound)))
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
            self._check_bound_arq(server, entry, allocated)

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
        allocated = self._allocated_devices(server)
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
        return owners

    def _check_exclusive(self) -> None:
        names = {s.id: s.name for s in self.result.servers if s.id}
        for (host, address), uuids in sorted(self._hostdev_owners().items()):
            if len(uuids) > 1:
                self.problem('device %s on %s is in the domains of %s' % (
                    address, host, ', '.join(names.get(u, u) for u in uuids)))
        for rp, (host, address) in sorted(self.devices.items()):
            used = sum(self.case.provider_usage(rp).values())
            if used > 1:
                self.problem('placement counts %d allocations of device %s on '
                             '%s, which has one' % (used, address, host))
        exp = self.result.expectation
        active = self.result.count('ACTIVE')
        if active * exp.devices_per_server > len(self.devices):
            self.problem('%d servers are ACTIVE although each needs %s and '
                         'the cloud has only %d' % (
                             active, _devices(exp.devices_per_server),
                             len(self.devices)))

    def _delete_all(self) -> bool:
        ok = True
        for server in self.booted:
            if not self.case.delete_and_wait(server):
                ok = False
                self.problem('server %s was not gone 60 s after its delete'
                             % server['id'])
        return ok

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
        used = {(d.resource_provider, d.address)
                for s in self.result.servers for d in s.devices}
        for rp, address in sorted(used):
            host = self.devices.get(rp, ('?',))[0]
            try:
                resets = self.case.reset_count(address)
            except OSError:
                resets = 0
            if resets < 1:
                self.problem('device %s on %s was not reset after its server '
                             'was deleted ([nova_acc] reset_on_release)' % (
                                 address, host))
        return free

    def _names(self, rps: set[str]) -> str:
        if not rps:
            return 'none'
        return ', '.join(
            '%s on %s' % self.devices[rp][::-1] if rp in self.devices
            else rp for rp in sorted(rps))


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
    return '%d host%s with %d device%s each' % (
        options.hosts, '' if options.hosts == 1 else 's',
        options.devices_per_host, '' if options.devices_per_host == 1 else 's')
