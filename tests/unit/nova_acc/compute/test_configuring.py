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
"""nova_acc.compute.configuring, through GuestDevices.prepare.

A real ledger in a temp dir and a recording configurator; the host's
listing is the rooms' fake.
"""

from unittest import mock

import fixtures
from oslo_config import fixture as config_fixture
from oslo_serialization import jsonutils
from oslotest import base

import os_acc
from nova_acc import binding
from nova_acc import conf
from nova_acc import exception
from nova_acc.compute import claiming
from nova_acc.compute import configuring
from nova_acc.compute import guest
from nova_acc.compute import ledger
from nova_acc.tests.fixtures import configurators
from tests.unit.nova_acc.compute import rooms

CTX = '33333333-3333-4333-8333-333333333333'
GROUP = 'nova_acc_0_0_' + CTX.replace('-', '')


class ConfigureTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch('os_acc._EXT_MANAGER', None))
        os_acc.initialize()
        self.recorder = self.useFixture(
            configurators.RecordingConfigurator('recorder')).plugin
        self.spec(configurator='recorder', config={'mode': ['fast', 'slow']})
        self.fx = self.useFixture(rooms.HostFixture())
        self.guests = guest.GuestDevices(
            self.fx.host, claiming.Claims(self.fx.host, mock.Mock()))

    def spec(self, **entry):
        self.useFixture(config_fixture.Config(conf.CONF)).config(
            group='nova_acc', device_spec=[jsonutils.dumps(
                dict({'vendor_id': '1172'}, **entry))])

    def server(self, amount=1, config=None):
        instance = rooms.server()
        binding.replace(instance, [rooms.pool_binding(
            self.fx.pool, amount=amount, group=GROUP)],
            config={GROUP: config or {'mode': 'fast'}})
        return instance

    def prepare(self, instance):
        return self.guests.prepare(instance, self.fx.host.snapshot(),
                                   request_context='user-ctx')

    def test_claimed_devices_are_configured_and_marked_once(self):
        seen = []

        def at_configure(request):
            # Intent before action: the mark is in the ledger already.
            seen.append(self.fx.host.ledger.read()[request.address]
                        .configured_by)
        self.recorder.on_configure = at_configure
        instance = self.server(amount=2)
        self.prepare(instance)
        self.assertEqual(['recorder', 'recorder'], seen)
        self.assertEqual(
            [('configure', rooms.A, {'mode': 'fast'}, CTX, rooms.SERVER),
             ('configure', rooms.B, {'mode': 'fast'}, CTX, rooms.SERVER)],
            sorted(self.recorder.calls))
        self.assertEqual({'user-ctx'}, {r.request_context
                                        for r in self.recorder.requests})
        # A second definition of the guest (hard reboot): nothing again.
        self.prepare(instance)
        self.assertEqual(2, len(self.recorder.calls))

    def test_groups_without_config_are_not_configured(self):
        instance = rooms.server([rooms.pool_binding(self.fx.pool)])
        self.prepare(instance)
        self.assertEqual([], self.recorder.calls)
        self.assertIsNone(self.fx.host.ledger.read()[rooms.A].configured_by)

    def test_a_failure_unconfigures_what_was_configured(self):
        self.recorder.fail_on = {rooms.B}
        self.recorder.reason = 'bitstream rejected'
        e = self.assertRaises(exception.DeviceNotUsable, self.prepare,
                              self.server(amount=2))
        self.assertIn('device group %s:' % GROUP, str(e))
        self.assertIn('bitstream rejected', str(e))
        self.assertEqual(set(), self.recorder.configured())
        self.assertEqual([('configure-failed', rooms.B),
                          ('unconfigure', rooms.B), ('unconfigure', rooms.A)],
                         self.recorder.calls[1:])
        # Marks cleared: the release will not unconfigure again. The
        # claim itself is released by the seam's cleanup.
        self.assertEqual({None}, {r.configured_by for r in
                                  self.fx.host.ledger.read().values()})

    def test_a_value_the_entry_does_not_allow_configures_nothing(self):
        e = self.assertRaises(exception.DeviceNotUsable, self.prepare,
                              self.server(config={'mode': 'turbo'}))
        self.assertIn('device group %s:' % GROUP, str(e))
        self.assertIn('accel:mode=turbo', str(e))
        self.assertEqual([], self.recorder.calls)
        self.assertEqual({None}, {r.configured_by for r in
                                  self.fx.host.ledger.read().values()})

    def test_a_device_without_rules_configures_nothing(self):
        self.spec()
        e = self.assertRaises(exception.DeviceNotUsable, self.prepare,
                              self.server())
        self.assertIn('accepts no config data', str(e))
        self.assertEqual([], self.recorder.calls)

    def test_a_configurator_not_installed_fails_with_its_name(self):
        self.spec(configurator='nowhere', config={'mode': ['fast']})
        e = self.assertRaises(exception.DeviceNotUsable, self.prepare,
                              self.server())
        self.assertIn("'nowhere'", str(e))
        self.assertEqual({None}, {r.configured_by for r in
                                  self.fx.host.ledger.read().values()})

    def test_an_unexpected_error_fails_without_its_details(self):
        def boom(request):
            raise RuntimeError('/secret/path')
        self.recorder.on_configure = boom
        e = self.assertRaises(exception.DeviceNotUsable, self.prepare,
                              self.server())
        self.assertIn('failed unexpectedly (RuntimeError)', str(e))
        self.assertNotIn('/secret/path', str(e))

    def test_groups_are_named_as_the_conductor_renames_them(self):
        self.assertEqual('device group nova_acc_1_0',
                         configuring.describe_context('nova_acc_1_0'))

    def test_a_failed_unconfigure_keeps_the_mark_for_the_release(self):
        self.recorder.fail_on = {rooms.B}
        self.recorder.fail_unconfigure = True
        self.assertRaises(exception.DeviceNotUsable, self.prepare,
                          self.server(amount=2))
        marks = {a: r.configured_by
                 for a, r in self.fx.host.ledger.read().items()}
        self.assertEqual({rooms.A: 'recorder', rooms.B: 'recorder'}, marks)
        self.assertEqual(ledger.CLAIMED,
                         self.fx.host.ledger.read()[rooms.A].state)
