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
"""Hints an adversary would send (issue 19, items 6, 7, 8 and 10).

Each bad hint fails the server as every invalid hint does (``ERROR``, a
fault naming the value and why, nothing allocated, no host tried), and the
fault shows the user nothing that is not theirs: no other profile, no
operator configuration line, nothing of another project's ARQs. Limits are
applied before any backend call.
"""

import uuid

import fixtures
from oslo_policy import policy as oslo_policy
import testtools

from nova_acc.backends import cyborg as cyborg_backend
from nova_acc.backends import local as local_backend
from nova_acc.cli import device_context as cli_device_context
from nova_acc import conf
from nova_acc import policy
from nova_acc.tests.fixtures.cyborg import cloud as cyborg_cloud
from tests.functional import base

GZIP = 'gzip=resources:FPGA=1,trait:CUSTOM_GZIP=required'
# Profiles of the operator a user who mistypes a name must not learn of.
OTHER_PROFILES = ['tenant-acme-only=resources:FPGA=1',
                  'beta-bitstream=resources:FPGA=1,accel:bitstream_id=b7']


class HintFaultsMixin:

    def assert_refused_when_scheduled(self, server, *expected_in_fault,
                                      absent=()):
        """ERROR with a fault naming what to fix; nothing tried or held."""
        fault = self.fault_message(server)
        for text in expected_in_fault:
            self.assertIn(text, fault)
        for text in absent:
            self.assertNotIn(text, fault)
        # Refused by the scheduler's request filter: no host was tried
        # (so none refused a pre-bind and rescheduled), nothing allocated.
        self.assertEqual([], self.hosts_tried(server))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        return fault


class HintHardeningTest(HintFaultsMixin, base.DeviceContextTestBase):
    """The default (local) backend: inline specs and profiles."""

    def setUp(self):
        self.flags(profile=[GZIP] + OTHER_PROFILES, group='nova_acc')
        super().setUp()
        self.fpgas = self.start_fpga_host('compute1', num_fpgas=2)
        self.rp = self.device_rp('compute1', self.fpgas[0])

    def boot_refused(self, *contexts):
        server = self.boot(*contexts, expected_state='ERROR')
        self.assertEqual({'FPGA': 0}, self.provider_usage(self.rp))
        self.assertEqual({}, self.domain_hostdevs('compute1'))
        return server

    # ---- item 7: compute-node classes in a context ------------------------

    def test_compute_node_classes_are_refused_naming_the_token(self):
        # These were allocated on the compute node's own provider (it has
        # the capability trait): the server was scheduled, refused at
        # pre-bind and rescheduled until the retries ran out, with Nova's
        # bare "Exceeded maximum number of retries" as its fault.
        for context, token in (
                ('resources:VCPU=1', 'resources:VCPU=1'),
                ('resources:FPGA=1,resources:MEMORY_MB=512',
                 'resources:MEMORY_MB=512'),
                ('resources:FPGA=1;resources:DISK_GB=1',
                 'resources:DISK_GB=1'),
                ('resources:PCPU=1', 'resources:PCPU=1')):
            with self.subTest(context=context):
                server = self.boot_refused(context)
                self.assert_refused_when_scheduled(
                    server, "device_context %r is invalid" % context,
                    "%r is not a device class" % token)

    def test_profile_with_a_compute_node_class_names_the_token(self):
        self.flags(profile=[GZIP, 'cpu=resources:FPGA=1,resources:VCPU=2'],
                   group='nova_acc')
        server = self.boot_refused('profile:cpu')
        self.assert_refused_when_scheduled(
            server, "device_context 'profile:cpu' is invalid",
            "'resources:VCPU=2' is not a device class")

    # ---- item 10: faults show the user only what is theirs -----------------

    def test_unknown_profile_names_only_the_profile_asked_for(self):
        server = self.boot_refused('profile:nope')
        self.assert_refused_when_scheduled(
            server, "device_context 'profile:nope' names an unknown "
            "profile 'nope'",
            absent=['gzip', 'known profiles'] + [
                p.partition('=')[0] for p in OTHER_PROFILES])
        # The operator's log has them.
        self.assertIn('tenant-acme-only', self.stdlog.logger.output)

    def test_malformed_profile_line_is_logged_not_shown(self):
        line = 'ops-only resources:FPGA=1 # see ticket OPS-1234'
        self.flags(profile=[GZIP, line], group='nova_acc')
        server = self.boot_refused('profile:gzip')
        fault = self.assert_refused_when_scheduled(
            server, "device_context 'profile:gzip': profile configuration "
            "error, contact your operator",
            absent=['ops-only', 'OPS-1234', 'malformed', 'NAME=SPEC'])
        self.assertNotIn(line, fault)
        self.assertIn('ERROR [nova_acc.request_groups] [nova_acc] profile '
                      'has a malformed line %r' % line,
                      self.stdlog.logger.output)

    # ---- item 6: limits before the expensive work --------------------------

    def count_resolves(self, backend_class):
        resolved = []
        original = backend_class.resolve

        def counting(backend, context, request_spec, context_id):
            resolved.append(context_id)
            return original(backend, context, request_spec, context_id)
        self.useFixture(fixtures.MockPatchObject(
            backend_class, 'resolve', counting))
        return resolved

    def test_more_values_than_groups_allowed_resolve_nothing(self):
        resolved = self.count_resolves(local_backend.LocalBackend)
        ids = [str(uuid.uuid4()) for _ in range(9)]

        server = self.boot_refused(*ids)

        self.assert_refused_when_scheduled(
            server, 'ask for at least 9 device groups', 'at most 8 are '
            'allowed ([nova_acc] max_groups_per_server)')
        # Neither the conductor nor the scheduler asked the backend.
        self.assertEqual([], resolved)

    def test_hint_too_long_resolves_nothing(self):
        resolved = self.count_resolves(local_backend.LocalBackend)
        # Each value a length os_acc accepts; together more than 16384.
        long_spec = 'resources:CUSTOM_%s=1' % ('A' * 4000)

        server = self.boot_refused(str(uuid.uuid4()), *[long_spec] * 5)

        self.assert_refused_when_scheduled(
            server, 'characters long together; at most 16384 are allowed')
        self.assertEqual([], resolved)


def _deny_any_project_policy():
    """nova_acc's policy with use_any_project refused to everyone."""
    enforcer = oslo_policy.Enforcer(conf.CONF, use_conf=False)
    enforcer.register_defaults(policy.list_rules())
    enforcer.set_rules(oslo_policy.Rules.from_dict(
        {policy.USE_ANY_PROJECT: '!'}), use_conf=False)
    return enforcer


class CyborgHintHardeningTest(HintFaultsMixin, cyborg_cloud.CyborgCloudMixin,
                              base.DeviceContextTestBase):
    """ARQ UUIDs against the real Cyborg 17."""

    def setUp(self):
        super().setUp()
        self.rp = self.start_cyborg_host('compute1', '0000:90:00.0')
        self.cyborg_gets = []
        original = cyborg_backend.CyborgBackend._call

        def counting(backend, context, method, url, *args, **kwargs):
            if method == 'get':
                self.cyborg_gets.append(url)
            return original(backend, context, method, url, *args, **kwargs)
        self.useFixture(fixtures.MockPatchObject(
            cyborg_backend.CyborgBackend, '_call', counting))

    # ---- item 6 ---------------------------------------------------------

    def test_too_many_arqs_are_refused_without_a_cyborg_call(self):
        self.flags(max_groups_per_server=2, group='nova_acc')
        arqs = [self.create_context() for _ in range(3)]

        server = self.boot(*arqs, expected_state='ERROR')

        self.assert_refused_when_scheduled(
            server, 'ask for at least 3 device groups',
            'max_groups_per_server')
        # Each ARQ resolved used to cost two GETs, in the conductor and in
        # the scheduler, before the limit refused the server.
        self.assertEqual([], self.cyborg_gets)
        for arq in arqs:
            self.assertEqual('Initial', self.member.get_arq(arq)['state'])

    # ---- item 8 ---------------------------------------------------------

    def test_one_arq_spelled_two_ways_is_refused(self):
        arq = self.create_context()
        for spelling in (arq.upper(), 'urn:uuid:' + arq,
                         arq.replace('-', '')):
            with self.subTest(spelling=spelling):
                server = self.boot(arq, spelling, expected_state='ERROR')
                self.assert_refused_when_scheduled(
                    server, 'names the same device context more than once: '
                    '%s' % arq, repr(spelling))
        self.assertEqual([], self.cyborg_gets)
        self.assertEqual('Initial', self.member.get_arq(arq)['state'])

    def test_arq_in_another_spelling_boots(self):
        # Canonicalised where the hint is read: Cyborg is asked for the
        # ARQ as it spells it, and binds it.
        arq = self.create_context()
        server = self.boot('urn:uuid:' + arq.upper())
        self.assertEqual(('Bound', server['id']), (
            self.member.get_arq(arq)['state'],
            self.member.get_arq(arq)['instance_uuid']))

    # ---- item 10 ----------------------------------------------------------

    def test_another_projects_arq_reads_as_one_that_does_not_exist(self):
        # The admin's token shows Cyborg's ARQs of every project; the
        # policy lets no one use another project's here.
        self.useFixture(fixtures.MockPatchObject(
            policy, '_ENFORCER', _deny_any_project_policy()))
        theirs = self.create_context()
        missing = str(uuid.uuid4())

        with self.acting_as_admin():
            refused = self.boot(theirs, expected_state='ERROR')
            unknown = self.boot(missing, expected_state='ERROR')

        fault = self.assert_refused_when_scheduled(
            refused, 'device context %s does not exist in your project'
            % theirs, absent=['another project', self.project])
        self.assertEqual(
            self.fault_message(unknown).replace(missing, '<id>'),
            fault.replace(theirs, '<id>'))
        self.assertEqual('Initial', self.member.get_arq(theirs)['state'])
        # The operator's log says why.
        self.assertIn('it belongs to project %s' % self.project,
                      self.stdlog.logger.output)


class CommandLineTest(testtools.TestCase):
    """The command-line hooks check what the cloud checks, the same way."""

    def test_one_arq_spelled_two_ways_is_refused_before_sending(self):
        arq = str(uuid.uuid4())
        for spelling in (arq.upper(), 'urn:uuid:' + arq,
                         arq.replace('-', '')):
            with self.subTest(spelling=spelling):
                e = self.assertRaises(
                    cli_device_context.InvalidDeviceContextValue,
                    cli_device_context.check_all,
                    [('--device-context-id', arq),
                     ('--device-context', spelling)])
                self.assertIn('device context %s is given more than once'
                              % arq, str(e))
                self.assertIn(repr(spelling), str(e))

    def test_compute_node_class_is_refused_before_sending(self):
        e = self.assertRaises(
            cli_device_context.InvalidDeviceContextValue,
            cli_device_context.check, 'resources:FPGA=1,resources:VCPU=2')
        self.assertIn("'resources:VCPU=2' is not a device class", str(e))
