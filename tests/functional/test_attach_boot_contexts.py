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
"""Detach a device context given at boot without an ID (an inline spec, a
profile) from its running server, by its index (issue 23 item 5), and the
refusals of Cyborg ARQs (item 6), in Nova's harness with casts as casts.

``DELETE /v1/servers/{server_id}/boot-contexts/{index}`` answers 202; the
compute's work shows in the server's instance action
``detach_boot_context``, whose event details (compute API 2.84) say why
it failed.
"""

import time

import fixtures

from nova_acc import hint
from tests.functional import test_attach
from tests.functional import test_moves

INLINE = 'resources:FPGA=1'
NIL = hint.detached(None)


class BootContextMixin:

    def boot_detach(self, server, index, status=202):
        """DELETE the boot-time context; the finished event if 202."""
        before = len(self.boot_detach_events(server)) if status == 202 \
            else 0
        resp = self.contexts_api.adapter(self.project).delete(
            '/v1/servers/%s/boot-contexts/%s' % (server['id'], index),
            raise_exc=False)
        self.assertEqual(status, resp.status_code, resp.text)
        if status != 202:
            return resp.json()
        deadline = time.monotonic() + 30
        while True:
            events = self.boot_detach_events(server)
            if len(events) > before and events[-1]['result']:
                return events[-1]
            if time.monotonic() > deadline:
                self.fail('detach_boot_context of %s did not finish: %s'
                          % (server['id'], events))
            time.sleep(0.1)

    def boot_detach_events(self, server):
        """The server's detach_boot_context events, oldest first, with
        the details its users see."""
        self.api.microversion = '2.84'
        try:
            found = []
            for action in reversed(self.api.get_instance_actions(
                    server['id'])):
                if action['action'] != 'detach_boot_context':
                    continue
                found.extend(self.api.get_instance_action_details(
                    server['id'], action['request_id'])['events'])
            return found
        finally:
            self.api.microversion = None

    def devices_of(self, host, server, index):
        """The ledger's devices of the server's context ``index``."""
        prefix = 'nova_acc_%d_' % index
        return sorted(a for a, r in self.ledger(host).items()
                      if r.instance_uuid == server['id'] and
                      (r.requester_id or '').startswith(prefix))


class BootContextDetachTest(BootContextMixin, test_attach.AttachTestBase):

    def _two_inline(self):
        self.start_fpga_host('compute1', num_fpgas=2)
        server = self.boot(INLINE, INLINE)
        gone, = self.devices_of('compute1', server, 0)
        kept, = self.devices_of('compute1', server, 1)
        return server, gone, kept

    def test_detach_one_of_two_inline_contexts_the_other_stays(self):
        server, gone, kept = self._two_inline()

        event = self.boot_detach(server, 0)

        self.assertEqual('Success', event['result'], event)
        self.assert_agree(server, 'compute1', [kept])
        self.assertEqual(('free', None), self.ledger_state('compute1', gone))
        self.assertEqual(1, self.reset_count(gone))
        self.assertEqual(0, self.reset_count(kept))
        # One pool of both FPGAs: only the kept one is used.
        self.assertEqual({'FPGA': 1}, self.provider_usage(
            self.device_rp('compute1', gone)))
        self.assertEqual([NIL, INLINE], self.spec_values(server))
        self.assertEqual(['nova_acc_1_0'], [
            b.requester_id for b in self.server_bindings(server)])

        # Nothing brings it back, and the kept one is never reset.
        self._reboot_server(server, hard=True)
        self.assert_agree(server, 'compute1', [kept])
        server = self._stop_server(server)
        server = self._start_server(server)
        self.assert_agree(server, 'compute1', [kept])
        self.assertEqual((1, 0), (self.reset_count(gone),
                                  self.reset_count(kept)))

    def test_detach_of_a_shut_off_server_then_start(self):
        server, gone, kept = self._two_inline()
        server = self._stop_server(server)

        self.assertEqual('Success', self.boot_detach(server, 1)['result'])

        self.assertEqual([INLINE], self.spec_values(server))
        server = self._start_server(server)
        self.assert_agree(server, 'compute1', [gone])
        self.assertEqual((0, 1), (self.reset_count(gone),
                                  self.reset_count(kept)))

    def test_profile_context_is_detached_and_its_index_reused(self):
        self.flags(profile=['gzip=' + INLINE], group='nova_acc')
        self.start_fpga_host('compute1', num_fpgas=2)
        server = self.boot('profile:gzip', INLINE)
        gone, = self.devices_of('compute1', server, 0)
        kept, = self.devices_of('compute1', server, 1)

        self.assertEqual('Success', self.boot_detach(server, 0)['result'])
        self.assert_agree(server, 'compute1', [kept])

        # A context attached now takes the free place, and its device.
        ctx = self.create()
        self.attach(ctx, server)
        self.assertEqual([ctx, INLINE], self.spec_values(server))
        self.assert_agree(server, 'compute1', sorted([gone, kept]))

    def boot_contexts(self, server, project=None, status=200):
        resp = self.contexts_api.adapter(project or self.project).get(
            '/v1/servers/%s/boot-contexts' % server['id'], raise_exc=False)
        self.assertEqual(status, resp.status_code, resp.text)
        return resp.json()

    def test_the_listing_names_each_context_by_its_index(self):
        self.flags(profile=['gzip=' + INLINE], group='nova_acc')
        self.start_fpga_host('compute1', num_fpgas=3)
        ctx = self.create()
        server = self.boot(INLINE, 'profile:gzip', ctx)

        def listed():
            return [(c['index'], c['kind'], c['value'], c['groups'])
                    for c in self.boot_contexts(server)['boot_contexts']]

        self.assertEqual([(0, 'spec', INLINE, 1),
                          (1, 'profile', 'profile:gzip', 1),
                          (2, 'id', ctx, 1)], listed())
        self.assertEqual('Success', self.boot_detach(server, 1)['result'])
        self.assertEqual([(0, 'spec', INLINE, 1),
                          (1, 'detached', None, 0),
                          (2, 'id', ctx, 1)], listed())
        # Another project's server is missing, as a context would be.
        body = self.boot_contexts(server, project='other-project',
                                  status=404)
        self.assertNotIn(INLINE, str(body))

    def test_guest_that_keeps_the_device_then_a_retry(self):
        server, gone, kept = self._two_inline()
        with fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.Domain.detachDeviceFlags',
                lambda dom, xml, flags: None):
            event = self.boot_detach(server, 0)

        self.assertEqual('Error', event['result'])
        self.assertIn('did not release device %s of device context #0 '
                      '(an inline spec)' % gone, event['details'])
        self.assert_agree(server, 'compute1', [gone, kept])
        self.assertEqual(0, self.reset_count(gone))
        self.assertEqual([INLINE, INLINE], self.spec_values(server))

        self.assertEqual('Success', self.boot_detach(server, 0)['result'])
        self.assert_agree(server, 'compute1', [kept])
        self.assertEqual(1, self.reset_count(gone))


class BootContextRefusalTest(BootContextMixin, test_attach.AttachTestBase):
    """Refusals the server's compute decides at once (nova-acc-api asks it
    before casting the detach): an error answer naming the context."""

    def assert_refused(self, server, index, status, *why):
        body = self.boot_detach(server, index, status=status)
        for text in why:
            self.assertIn(text, body['error']['message'])
        self.assertEqual([], self.boot_detach_events(server))

    def test_no_context_at_that_index_changes_nothing(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(INLINE)

        self.assert_refused(server, 1, 404, 'server %s has no device '
                            'context #1' % server['id'])
        self.assert_agree(server, 'compute1', [fpga])
        self.assertEqual('Success', self.boot_detach(server, 0)['result'])
        # Detached once: a second detach finds nothing there.
        body = self.boot_detach(server, 0, status=404)
        self.assertIn('has no device context #0', body['error']['message'])
        self.assert_agree(server, 'compute1', [])
        self.assertEqual(1, self.reset_count(fpga))

    def test_a_context_with_an_id_is_detached_by_its_id(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        ctx = self.create()
        server = self.boot(ctx)

        self.assert_refused(server, 0, 409, 'device context %s of server %s '
                            'has an ID' % (ctx, server['id']),
                            '/v1/device-contexts/%s/attachment' % ctx)
        self.assert_agree(server, 'compute1', [fpga])
        self.assertEqual('bound', self.context(ctx)['state'])
        self.assertEqual([ctx], self.spec_values(server))

    def test_a_compute_that_does_not_answer_changes_nothing(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(INLINE)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_acc.api.attachment.CHECK_TIMEOUT', 1))
        self.computes['compute1'].stop()

        body = self.boot_detach(server, 0, status=409)

        self.assertIn('device context #0 of server %s: host compute1 did '
                      'not answer' % server['id'], body['error']['message'])
        self.assertEqual([INLINE], self.spec_values(server))
        self.assertEqual([fpga], self.held_devices('compute1', server))
        self.assertEqual(0, self.reset_count(fpga))

    def test_bad_requests_are_refused_by_the_api(self):
        self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(INLINE)
        for index in ('-1', 'x', '10000', '1.0', '\u0661'):
            body = self.boot_detach(server, index, status=400)
            self.assertIn('context index', body['error']['message'])
        self.boot_detach({'id': 'not-a-server'}, 0, status=404)
        other = self.contexts_api.adapter('other-project').delete(
            '/v1/servers/%s/boot-contexts/0' % server['id'],
            raise_exc=False)
        self.assertEqual(404, other.status_code)
        self.api.post_server_action(server['id'], {'pause': None})
        self._wait_for_state_change(server, 'PAUSED')
        body = self.boot_detach(server, 0, status=409)
        self.assertIn('is PAUSED', body['error']['message'])

    def test_a_boot_arq_is_not_detached_with_the_cyborg_backend(self):
        """Refused before Cyborg is asked (doc/source/cyborg.rst, *Attach
        and detach*): the refusal is the backend's, so no Cyborg runs."""
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        boot_ctx = self.create()
        server = self.boot(boot_ctx)
        self.flags(backend='cyborg', group='nova_acc')

        self.assert_refused(server, 0, 409, 'device context %s of server '
                            '%s: device contexts by ID are Cyborg ARQs'
                            % (boot_ctx, server['id']))

        self.assertEqual([boot_ctx], self.spec_values(server))
        self.assert_agree(server, 'compute1', [fpga])
        self.assertEqual(0, self.reset_count(fpga))

    def test_no_attach_by_id_with_the_cyborg_backend(self):
        """A later move would resolve the ID as an ARQ: refused before
        anything changed, the fault on the context."""
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot()
        ctx = self.create()
        self.flags(backend='cyborg', group='nova_acc')

        refused = self.attach(ctx, server, 'bound', 'unbound')

        self.assertEqual('unbound', refused['state'])
        self.assertIn('device context %s of server %s: device contexts by '
                      'ID are Cyborg ARQs on this cloud, and Cyborg binds no '
                      'ARQ to a server that already has one' % (
                          ctx, server['id']), refused['fault'])
        self.assertEqual([], self.spec_values(server))
        self.assert_agree(server, 'compute1', [])
        self.assertEqual({'FPGA': 0}, self.provider_usage(
            self.device_rp('compute1', fpga)))


class BootContextMoveTest(BootContextMixin, test_moves.MoveTestMixin,
                          test_attach.AttachTestBase):

    def test_cold_migration_after_the_detach_does_not_bring_it_back(self):
        hosts = self.start_hosts(num_fpgas=2)
        server = self.boot(INLINE, INLINE, flavor_id=self.small)
        self.assertEqual('compute1', self.host_of(server))
        self.assertEqual('Success', self.boot_detach(server, 0)['result'])

        server = self._migrate_server(server)
        server = self._confirm_resize(server)

        moved = self.domain_hostdevs('compute2', server)
        self.assertEqual(1, len(moved))
        self.assertEqual(self.devices_of('compute2', server, 1), moved)
        self.assertEqual([], self.devices_of('compute2', server, 0))
        self.assert_released('compute1', hosts['compute1'])
        self.assert_consistent()
        self.assertEqual([NIL, INLINE], self.spec_values(server))
