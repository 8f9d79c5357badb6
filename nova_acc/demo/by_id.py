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
"""``--backend local``: one device context by ID, like a Neutron port.

After the demo's servers are deleted, a member of the demo's project
creates a device context in nova-acc-api (the demo's spec: resources and
a trait), boots a server with its ID, deletes the server, and boots a
second server with the same context. After each step the context is read
back from the API as its owner sees it: ``bound`` to the server and its
host with the devices the compute recorded in it, then ``unbound``.
Whatever disagrees is a problem of the run.

No config data: no ``device_spec`` entry of the demo allows ``accel:*``
keys (an entry allows them with a configurator; each key's trait is
required of the device), so a server of a context with them would find
no device.
"""

from __future__ import annotations

import typing as ty

from nova_acc.demo import report

SERVER_NAME = 'demo-id-%d'
CONTEXT_NAME = 'demo-context'
#: Why the demo's context has no config data.
NO_CONFIG = report.BY_ID_NO_CONFIG
#: How many servers boot with the context, one after the other.
SERVERS = 2
#: The progress steps this phase reports (one per server).
STEPS = SERVERS


def spec_of(options) -> tuple[str | None, str | None]:
    """The spec of the context by ID: the demo's groups, in one context.

    :returns: (spec, None), or (None, why the demo makes no context).
    """
    contexts = list(options.contexts)
    if any(c.startswith('profile:') for c in contexts):
        return None, 'the demo\'s contexts name a profile'
    return ';'.join(contexts), None


class Phase:
    """Create the context, boot and delete two servers with it."""

    def __init__(self, run: ty.Any) -> None:
        # run: the scenario's _Run (scenario imports this module).
        self.run = run
        self.entry = report.ContextById()
        run.result.context_by_id = self.entry

    def play(self) -> None:
        spec, why = spec_of(self.run.options)
        exp = self.run.result.expectation
        if spec is not None and exp is not None and exp.active < 1:
            why = 'no server of the demo\'s spec fits on a host'
        if spec is None or why:
            self.entry.skipped = why
            return
        client = self.run.case.contexts_client()
        ctx = client.create(spec, name=CONTEXT_NAME,
                            description='nova-acc demo: booted by ID')
        self.entry.id, self.entry.spec = ctx['id'], ctx['spec']
        self.entry.name = ctx.get('name') or ''
        self.entry.config = ctx.get('config') or {}
        self._look('creation', client, None)
        for i in range(SERVERS):
            name = SERVER_NAME % (i + 1)
            self.run.steps.next('device context by ID: booting %s with %s, '
                                'then deleting it' % (name, ctx['id']))
            server = self.run.boot(0, name=name, hint=ctx['id'])
            self.entry.servers.append(server)
            self._look('boot of %s' % name, client,
                       server if server.status == 'ACTIVE' else None)
            if server.id:
                self.run.delete_one(server.id)
            self._look('delete of %s' % name, client, None)

    def _look(self, after: str, client, bound_to: report.Server | None
              ) -> None:
        """Read the context; it must be bound to ``bound_to`` or unbound."""
        ctx = client.get(self.entry.id)
        names = {s.id: s.name for s in self.entry.servers}
        seen = report.ContextSnapshot(
            after, ctx.get('state'), ctx.get('server_id'),
            names.get(ctx.get('server_id')), ctx.get('host'),
            list(ctx.get('devices') or []))
        self.entry.snapshots.append(seen)
        if bound_to is None:
            expected = ('unbound', None, None)
        else:
            expected = ('bound', bound_to.id, bound_to.host)
        got = (seen.state, seen.server_id, seen.host)
        if got != expected:
            self.run.problem(
                'device context %s is %s after the %s; it should be %s' % (
                    self.entry.id, _binding(got), after,
                    _binding(expected)))
        if bound_to is not None and seen.devices:
            recorded = sorted(d.get('address') or d.get('mdev_uuid') or ''
                              for d in seen.devices)
            in_domain = sorted(d.address for d in bound_to.devices)
            if recorded != in_domain:
                self.run.problem(
                    'device context %s records devices %s; the domain of '
                    '%s has %s' % (self.entry.id, ', '.join(recorded),
                                   bound_to.name,
                                   ', '.join(in_domain) or 'none'))


def _binding(state: tuple[str | None, str | None, str | None]) -> str:
    name, server, host = state
    if server or host:
        return '%s to server %s on %s' % (name, server, host)
    return str(name)
