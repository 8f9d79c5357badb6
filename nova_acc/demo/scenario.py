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
(:mod:`nova_acc.demo.by_id`): created in nova-acc-api, it boots a
server, is unbound at the server's delete and boots a second one.
"""

from __future__ import annotations

import time
import traceback
import typing as ty

from nova_acc.demo import by_id
from nova_acc.demo import checks
from nova_acc.demo import hosts
from nova_acc.demo import inspection
from nova_acc.demo import plan
from nova_acc.demo import report
from nova_acc.demo import state as demo_state
from nova_acc.demo.state import HOST_KEY
from nova_acc.demo.state import SERVER_NAME

if ty.TYPE_CHECKING:
    from nova_acc.demo import cloud


def run(options: plan.Options, progress: demo_state.Progress | None = None,
        log_file: str | None = None) -> report.Result:
    """Run the demo on a fresh in-process cloud and return what it saw.

    An error part way (an API call failing, a helper timing out) ends the
    run with what was seen so far and the error as a problem, its traceback
    in ``result.traceback``. Only a cloud that cannot start raises.
    """
    started = time.monotonic()
    result = report.Result(options)
    cyborg = options.backend == 'cyborg'
    steps = demo_state.Steps(
        options.servers + (5 if cyborg else 4 + by_id.STEPS), progress)
    steps.next('starting the control plane (nova-api, conductor, scheduler, '
               'placement%s)' % (
                   '; Cyborg API and conductor in a child process' if cyborg
                   else ''))
    # Nova's test fixtures take seconds to import: after the first message.
    from nova_acc.demo import cloud
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
    """One run: the hosts set up, the servers booted and looked at, then
    deleted, and the cloud checked after each phase.

    The checks are in parts of their own (:mod:`~nova_acc.demo.hosts`,
    :mod:`~nova_acc.demo.inspection`, :mod:`~nova_acc.demo.checks`), which
    share the run's :class:`~nova_acc.demo.state.DemoState`.
    """

    def __init__(self, case: cloud.DemoCloud, options: plan.Options,
                 result: report.Result, steps: demo_state.Steps):
        self.case = case
        self.options = options
        self.result = result
        self.steps = steps
        self.cyborg = options.backend == 'cyborg'
        self.state = demo_state.DemoState(case, options, result, steps,
                                          self.cyborg)
        self.booted = self.state.booted
        self.problem = self.state.problem
        self.hosts = hosts.HostSetup(self.state)
        self.inspection = inspection.ServerInspection(self.state)
        self.checks = checks.AfterBoots(self.state)

    def run(self) -> None:
        o = self.options
        if self.cyborg:
            self.hosts.start_cyborg_hosts()
        else:
            self.hosts.start_hosts()
        self.hosts.check_providers()
        self.hosts.check_room()
        self.result.expectation = plan.expect(self.hosts.asked(),
                                              self.hosts.host_pools())
        if self.cyborg:
            self.hosts.create_arqs()

        for i in range(o.servers):
            self.steps.next('booting server %d of %d' % (i + 1, o.servers))
            self.result.servers.append(self.boot(i))
        self.checks.check_exclusive()

        self.steps.next('deleting %d server(s)' % len(self.booted))
        deleted = self._delete_all()
        if not self.cyborg:
            by_id.Phase(self).play()
        if self.cyborg:
            self.steps.next('checking that every device and every ARQ is '
                            'free again')
            free = self.checks.check_free()
            contexts_free = self.checks.check_contexts_free()
            self.result.devices_free_after_delete = (
                free and contexts_free and deleted)
        else:
            self.steps.next('checking that every device is free again')
            self.result.devices_free_after_delete = (
                self.checks.check_free() and deleted)

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
            hint = context = self.state.arqs[index]
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
            self.inspection.inspect_active(server, entry)
        elif server['status'] == 'ERROR':
            self.inspection.inspect_error(server, entry)
        else:
            self.problem('%s is still %s after 60 s' % (name,
                                                        server['status']))
        return entry

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

    def read_contexts_left_behind(self) -> None:
        """Best effort: the ARQ states of a run that ended early."""
        if not self.cyborg:
            return
        try:
            self.checks.read_contexts()
        except Exception:  # noqa: S110 - already reporting an error
            pass

    def delete_left_behind(self) -> None:
        """Best effort: delete the servers of a run that ended early."""
        for server in self.booted:
            try:
                self.case.delete_and_wait(server, timeout=30)
            except Exception:  # noqa: S110 - already reporting an error
                pass
