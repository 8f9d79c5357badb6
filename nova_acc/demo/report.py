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
"""What a demo run saw, and its human and JSON forms."""

from __future__ import annotations

import dataclasses
import json
import textwrap

from nova_acc.demo import plan

#: What the report says of a context by ID without config data.
BY_ID_NO_CONFIG = ('none (no device_spec entry of the demo allows accel:* '
                   'keys: a server asking for them would find no device)')


@dataclasses.dataclass
class Device:
    address: str
    # The provider the device is counted in: its pool (--backend local),
    # or the device's own provider (Cyborg).
    resource_provider: str
    # The <hostdev> element of the domain XML, pretty-printed.
    hostdev_xml: str = ''
    # The provider's name in placement.
    resource_provider_name: str = ''
    # For a vGPU (``address`` is then the mdev's UUID): its type and the
    # PCI address of its GPU.
    mdev_type: str | None = None
    parent: str | None = None


@dataclasses.dataclass
class Pool:
    """--backend local: one device pool of a host, before the first boot."""

    host: str
    name: str
    resource_provider: str
    resource_class: str
    devices: int
    # The devices' traits (not OWNER_NOVA and nova-acc's capability trait,
    # which every pool has).
    traits: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Server:
    index: int
    name: str
    id: str | None
    status: str
    host: str | None = None
    fault: str | None = None
    devices: list[Device] = dataclasses.field(default_factory=list)
    # --backend cyborg: the UUID of the server's ARQ (its device context).
    context: str | None = None


@dataclasses.dataclass
class Context:
    """--backend cyborg: one server's ARQ and what Cyborg says after delete."""

    id: str
    server: Server
    # The ARQ's state once every server was deleted; 'gone' when Cyborg no
    # longer has it, None when it could not be read.
    state_after_delete: str | None = None


@dataclasses.dataclass
class ContextSnapshot:
    """A device context by ID as its owner read it from nova-acc-api."""

    # The step it was read after, e.g. 'boot of demo-id-1'.
    after: str
    state: str | None
    server_id: str | None
    # The demo's name of that server, when it is one of the demo's.
    server: str | None
    host: str | None
    # As the API has them: {'pool', 'address'} or {'pool', 'mdev_uuid'};
    # what the compute recorded after its claim (none once unbound).
    devices: list[dict] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ContextById:
    """--backend local: the context by ID and the servers it booted."""

    id: str | None = None
    name: str = ''
    spec: str | None = None
    config: dict = dataclasses.field(default_factory=dict)
    # Why the run made no context by ID (None: it made one).
    skipped: str | None = None
    snapshots: list[ContextSnapshot] = dataclasses.field(
        default_factory=list)
    servers: list[Server] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Result:
    options: plan.Options
    expectation: plan.Expectation | None = None
    servers: list[Server] = dataclasses.field(default_factory=list)
    device_providers: int = 0
    # --backend local: the device pools placement has.
    pools: list[Pool] = dataclasses.field(default_factory=list)
    devices_free_after_delete: bool = False
    problems: list[str] = dataclasses.field(default_factory=list)
    # --backend cyborg: the device profile of the ARQs (name, spec) and the
    # ARQs, one per server.
    profile: str | None = None
    profile_spec: str | None = None
    contexts: list[Context] = dataclasses.field(default_factory=list)
    # --backend local: the device context by ID (nova-acc-api).
    context_by_id: ContextById | None = None
    # Of an error that ended the run early.
    traceback: str | None = None
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for s in self.servers if s.status == status)

    @property
    def ok(self) -> bool:
        return not self.problems


def _cyborg(result: Result) -> bool:
    return result.options.backend == 'cyborg'


def _server_json(s: Server) -> dict:
    return {
        'id': s.id,
        'status': s.status,
        'host': s.host,
        'fault': s.fault,
        'devices': [dict({'address': d.address,
                          'resource_provider': d.resource_provider,
                          'resource_provider_name': d.resource_provider_name},
                         **({'mdev_uuid': d.address,
                             'mdev_type': d.mdev_type,
                             'parent': d.parent} if d.mdev_type else {}))
                    for d in s.devices],
    }


def _context_by_id_json(c: ContextById) -> dict:
    return {'id': c.id, 'name': c.name, 'spec': c.spec, 'config': c.config,
            'skipped': c.skipped,
            'seen': [dataclasses.asdict(s) for s in c.snapshots],
            'servers': [dict(_server_json(s), name=s.name)
                        for s in c.servers]}


def to_json(result: Result) -> str:
    servers = []
    for s in result.servers:
        server = _server_json(s)
        if _cyborg(result):
            server['context'] = s.context
        servers.append(server)
    data: dict = {'servers': servers}
    if not _cyborg(result):
        data['pools'] = [dataclasses.asdict(p) for p in result.pools]
    if _cyborg(result):
        data['contexts'] = [{'id': c.id, 'server': c.server.id,
                             'state_after_delete': c.state_after_delete}
                            for c in result.contexts]
    if result.context_by_id is not None:
        data['context_by_id'] = _context_by_id_json(result.context_by_id)
    data['devices_free_after_delete'] = result.devices_free_after_delete
    # Empty when the exit code is 0: what was inconsistent otherwise.
    data['problems'] = list(result.problems)
    return json.dumps(data, indent=2)


def _plural(n: int, word: str) -> str:
    return '%d %s%s' % (n, word, '' if n == 1 else 's')


def summary(result: Result) -> str:
    """One line, e.g. ``4 servers ACTIVE, 1 ERROR; devices free ...: yes``."""
    active, error = result.count('ACTIVE'), result.count('ERROR')
    parts = ['%s ACTIVE' % _plural(active, 'server'), '%d ERROR' % error]
    other = len(result.servers) - active - error
    if other:
        parts.append('%d in another state' % other)
    line = '%s; devices free after delete: %s' % (
        ', '.join(parts), 'yes' if result.devices_free_after_delete else 'NO')
    if result.problems:
        n = len(result.problems)
        line += '; %d inconsistenc%s (see above)' % (
            n, 'y' if n == 1 else 'ies')
    return line


def _header(result: Result) -> list[str]:
    o = result.options
    if not _cyborg(result):
        devices = _plural(o.devices_per_host, 'FPGA')
        if o.vfs_per_host:
            devices = '(%s + a PF with %s)' % (devices,
                                               _plural(o.vfs_per_host, 'VF'))
        if o.vgpus_per_host:
            devices = '(%s + a GPU of %s)' % (
                devices, _plural(o.vgpus_per_host, 'vGPU'))
        lines = ['nova-acc demo: %s x %s, %s, device context%s %s' % (
            _plural(o.hosts, 'host'), devices,
            _plural(o.servers, 'server'), '' if len(o.contexts) == 1
            else 's', ' + '.join(o.contexts))]
        if result.pools:
            lines.append('device pools (each one resource provider, its '
                         'inventory the number of devices):')
        for p in result.pools:
            lines.append('  %s  %d x %s%s' % (
                p.name, p.devices, p.resource_class,
                ', traits %s' % ','.join(p.traits) if p.traits else ''))
            lines.append('    resource provider %s' % p.resource_provider)
        return lines
    lines = ['nova-acc demo (--backend cyborg): %s x %s managed by Cyborg, '
             '%s, each with its own ARQ' % (
                 _plural(o.hosts, 'host'),
                 _plural(o.devices_per_host, 'FPGA'),
                 _plural(o.servers, 'server'))]
    if result.profile:
        lines.append('device profile of the ARQs: %s (%s)' % (
            result.profile, result.profile_spec or 'no groups'))
    return lines


def _context_line(c: Context) -> str:
    state = c.state_after_delete or 'UNKNOWN (could not read it)'
    if c.state_after_delete == 'Initial':
        state += ' (never bound)'
    return 'context %s of %s: %s' % (c.id, c.server.name, state)


def _snapshot_lines(s: ContextSnapshot, server: Server | None
                    ) -> list[str]:
    """What the context was after a step; the server it booted, if any."""
    what = s.state or 'UNKNOWN'
    if s.server_id or s.host:
        what += ' to %s on %s' % (s.server or 'server %s' % s.server_id,
                                  s.host)
    lines = ['  after %s: %s' % (s.after, what)]
    if s.state == 'bound' and not s.devices:
        lines.append('    recorded devices: none')
    # One line each: a pool's name or UUID is long.
    for d in s.devices:
        lines.append('    recorded device %s  pool %s' % (
            d.get('address') or d.get('mdev_uuid'), d.get('pool')))
    if server is not None:
        lines.append('    server %s %s %s' % (
            server.name, server.id or '-', server.status))
        if server.devices:
            lines.append(textwrap.fill('in its domain: %s' % ', '.join(
                '%s (pool %s)' % (d.address, d.resource_provider_name or
                                  d.resource_provider)
                for d in server.devices), width=79,
                initial_indent='    ', subsequent_indent='      '))
        if server.fault:
            lines.append(textwrap.fill(
                server.fault, width=79, initial_indent='    fault: ',
                subsequent_indent='      '))
    return lines


def _context_by_id_lines(c: ContextById) -> list[str]:
    if c.skipped:
        return ['device context by ID (nova-acc-api): not made, %s'
                % c.skipped]
    lines = ['device context by ID (nova-acc-api): %s %s' % (c.id, c.name),
             '  spec %s' % c.spec,
             textwrap.fill('config data: %s' % (
                 ', '.join('%s=%s' % i for i in sorted(c.config.items()))
                 if c.config else BY_ID_NO_CONFIG), width=79,
                 initial_indent='  ', subsequent_indent='    ')]
    servers = {s.name: s for s in c.servers}
    for snap in c.snapshots:
        booted = snap.after.partition('boot of ')[2]
        lines.extend(_snapshot_lines(snap, servers.get(booted)))
    return lines


def to_text(result: Result) -> str:
    lines = _header(result)
    lines.extend(_expectation_lines(result))
    for s in result.servers:
        lines.append('')
        lines.extend(_server_lines(result, s))
    if result.context_by_id is not None:
        lines.append('')
        lines.extend(_context_by_id_lines(result.context_by_id))
    lines.append('')
    lines.extend(_after_delete_lines(result))
    for c in result.contexts:
        lines.append(_context_line(c))
    if result.problems:
        lines.append('')
        lines.append('INCONSISTENT (%d):' % len(result.problems))
        for p in result.problems:
            lines.append(textwrap.fill(p, width=79, initial_indent='  - ',
                                       subsequent_indent='    '))
    lines.append('')
    lines.append(summary(result))
    return '\n'.join(lines)


def _expectation_lines(result: Result) -> list[str]:
    exp = result.expectation
    if exp is None:
        return []
    why = ' (%s)' % exp.unsatisfiable if exp.unsatisfiable else ''
    per_class = ' (%s)' % ', '.join(
        '%s=%d' % item for item in sorted(exp.per_class.items())
    ) if exp.per_class else ''
    per_host = ''
    if exp.per_host and not exp.unsatisfiable and len(
            set(exp.per_host)) == 1:
        per_host = ', %s per host' % _plural(exp.per_host[0], 'server')
    return ['expected: %s per server%s%s, %d ACTIVE, %d ERROR%s' % (
        _plural(exp.devices_per_server, 'device'), per_class, per_host,
        exp.active, result.options.servers - exp.active, why)]


def _server_lines(result: Result, s: Server) -> list[str]:
    where = 'on %s' % s.host if s.host else 'not scheduled'
    lines = ['server %d/%d  %s  %s  %s  %s' % (
        s.index + 1, result.options.servers, s.name, s.id or '-', s.status,
        where)]
    if s.context:
        lines.append('  device context %s (Cyborg ARQ)' % s.context)
    for d in s.devices:
        if d.mdev_type:
            lines.append('  vGPU mdev %s  type %s on GPU %s  pool %s' % (
                d.address, d.mdev_type, d.parent,
                d.resource_provider_name or d.resource_provider))
        elif _cyborg(result) or not d.resource_provider_name:
            lines.append('  device %s  resource provider %s' % (
                d.address, d.resource_provider))
        else:
            lines.append('  device %s  pool %s' % (
                d.address, d.resource_provider_name))
        if d.hostdev_xml:
            lines.append(textwrap.indent(d.hostdev_xml, '    '))
    if s.fault:
        lines.append(textwrap.fill(
            s.fault, width=79, initial_indent='  fault: ',
            subsequent_indent='         '))
    return lines


def _after_delete_lines(result: Result) -> list[str]:
    if not result.devices_free_after_delete:
        return ['after delete: devices are NOT all free (see below)']
    n = result.device_providers
    if _cyborg(result):
        return ['after delete: usage 0 on %s; no hostdev left in any '
                'domain; no ARQ bound' % (
                    'the device provider' if n == 1 else
                    'all %d device providers' % n)]
    vgpus = any(d.mdev_type for s in result.servers for d in s.devices)
    return [textwrap.fill(
        'after delete: usage 0 on %s; every used device reset and '
        "free in its host's ledger; no hostdev left in any domain%s"
        % ('the device pool' if n == 1 else 'all %d device pools' % n,
           '; every vGPU mdev removed from its GPU' if vgpus else ''),
        width=79, subsequent_indent='  ')]
