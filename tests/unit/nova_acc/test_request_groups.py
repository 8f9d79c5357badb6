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

import logging
import uuid

import fixtures
from nova import objects
import os_acc
from oslo_config import fixture as config_fixture
from oslotest import base

from nova_acc import backends
from nova_acc.backends import base as backends_base
from nova_acc import conf
from nova_acc import exception
from nova_acc import hint
from nova_acc import request_groups

objects.register_all()


def spec_with(*values, requested=None):
    spec = objects.RequestSpec(
        scheduler_hints={hint.HINT: list(values)} if values else {})
    if requested is not None:
        spec.requested_resources = requested
    return spec


class ContextsTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))
        self.conf.config(
            group='nova_acc',
            profile=['gzip=resources:FPGA=1,trait:CUSTOM_GZIP=required'])

    def test_no_hint_no_groups(self):
        self.assertEqual([], request_groups.context_groups(spec_with()))

    def test_groups_are_numbered_by_context_and_group(self):
        groups = request_groups.context_groups(spec_with(
            'resources:FPGA=1;resources:VGPU=2', 'profile:gzip'))
        self.assertEqual(['nova_acc_0_0', 'nova_acc_0_1', 'nova_acc_1_0'],
                         [g.requester_id for g in groups])
        self.assertEqual({'VGPU': 2}, groups[1].group.resources)
        self.assertEqual({'CUSTOM_GZIP'}, groups[2].group.required_traits)
        self.assertEqual('profile:gzip', groups[2].hint_value)

    def test_request_group_requires_the_capability_trait(self):
        self.conf.config(group='nova_acc', capability_trait='CUSTOM_ACC_X')
        cg = request_groups.context_groups(spec_with(
            'resources:FPGA=1,trait:CUSTOM_SLOW=forbidden'))[0]
        rg = request_groups.to_request_group(cg)
        self.assertEqual('nova_acc_0_0', rg.requester_id)
        self.assertTrue(rg.use_same_provider)
        self.assertEqual({'FPGA': 1}, rg.resources)
        self.assertEqual({'CUSTOM_ACC_X'}, rg.required_traits)
        self.assertEqual({'CUSTOM_SLOW'}, rg.forbidden_traits)

    def test_config_keys_require_devices_that_allow_them(self):
        # Placement must not offer a device whose device_spec entry would
        # refuse the config data (os_acc.config_trait).
        self.conf.config(group='nova_acc', capability_trait='CUSTOM_ACC_X')
        cg = request_groups.context_groups(spec_with(
            'resources:FPGA=1,accel:bitstream_id=x,accel:mode=fast'))[0]
        rg = request_groups.to_request_group(cg)
        self.assertEqual({'CUSTOM_ACC_X', 'CUSTOM_ACC_CONFIG_BITSTREAM_ID',
                          'CUSTOM_ACC_CONFIG_MODE'}, rg.required_traits)

    def test_apply_is_idempotent_and_keeps_other_groups(self):
        port_group = objects.RequestGroup(
            requester_id='port-uuid',
            resources={'NET_BW_EGR_KILOBIT_PER_SEC': 1})
        spec = spec_with('resources:FPGA=1', requested=[port_group])
        groups = request_groups.context_groups(spec)
        request_groups.apply_request_groups(spec, groups)
        request_groups.apply_request_groups(spec, groups)
        self.assertEqual(['port-uuid', 'nova_acc_0_0'],
                         [rg.requester_id for rg in spec.requested_resources])

    def test_apply_on_spec_without_requested_resources(self):
        spec = spec_with('resources:FPGA=1')
        self.assertNotIn('requested_resources', spec)
        request_groups.apply_request_groups(
            spec, request_groups.context_groups(spec))
        self.assertEqual(1, len(spec.requested_resources))

    def test_errors_say_what_to_fix(self):
        cases = [
            ('resources:FPGA=1,trait:CUSTOM_X=maybe', 'CUSTOM_X=maybe'),
            ('profile:nope', "unknown profile 'nope'"),
            ('   ', 'is empty'),
        ]
        for value, expected in cases:
            e = self.assertRaises(exception.InvalidDeviceContextHint,
                                  request_groups.context_groups,
                                  spec_with(value))
            self.assertIn(expected, str(e))

    def test_group_limit(self):
        self.conf.config(group='nova_acc', max_groups_per_server=2)
        e = self.assertRaises(
            exception.InvalidDeviceContextHint, request_groups.context_groups,
            spec_with('resources:FPGA=1', 'resources:FPGA=1;resources:FPGA=1'))
        self.assertIn('ask for 3 device groups; at most 2', str(e))

    def test_unknown_profile_names_no_other_profile(self):
        # Profiles are the operator's: a user who mistypes one learns
        # nothing of the others; the log has them.
        self.conf.config(group='nova_acc', profile=[
            'gzip=resources:FPGA=1', 'secret-tenant-x=resources:FPGA=2'])
        log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        e = self.assertRaises(exception.InvalidDeviceContextHint,
                              request_groups.context_groups,
                              spec_with('profile:nope'))
        self.assertIn("unknown profile 'nope'", str(e))
        for other in ('gzip', 'secret-tenant-x', 'known profiles'):
            self.assertNotIn(other, str(e))
        self.assertIn('gzip, secret-tenant-x', log.output)

    def test_malformed_profile_line_goes_to_the_log_not_the_fault(self):
        line = 'internal-only resources:FPGA=1 (ticket OPS-1234)'
        self.conf.config(group='nova_acc', profile=[
            'gzip=resources:FPGA=1', line])
        log = self.useFixture(fixtures.FakeLogger(
            level=logging.INFO, format='%(levelname)s %(message)s'))
        e = self.assertRaises(exception.InvalidDeviceContextHint,
                              request_groups.context_groups,
                              spec_with('profile:gzip'))
        self.assertEqual("device_context 'profile:gzip': profile "
                         "configuration error, contact your operator",
                         str(e))
        self.assertIn('ERROR [nova_acc] profile has a malformed line %r'
                      % line, log.output)

    def test_not_a_device_class_names_the_token(self):
        # A compute node's own classes would be allocated on its root
        # provider (which has the capability trait): scheduled, then
        # refused at pre-bind on every host tried.
        self.conf.config(group='nova_acc', profile=[
            'cpu=resources:FPGA=1,resources:PCPU=2'])
        for value, token in (
                ('resources:VCPU=1', 'resources:VCPU=1'),
                ('resources:FPGA=1;resources:MEMORY_MB=512',
                 'resources:MEMORY_MB=512'),
                ('resources:DISK_GB=1', 'resources:DISK_GB=1'),
                ('resources:NET_BW_EGR_KILOBIT_PER_SEC=10',
                 'resources:NET_BW_EGR_KILOBIT_PER_SEC=10'),
                ('profile:cpu', 'resources:PCPU=2')):
            with self.subTest(value=value):
                e = self.assertRaises(exception.InvalidDeviceContextHint,
                                      request_groups.context_groups,
                                      spec_with(value))
                self.assertIn(repr(token), str(e))
                self.assertIn('is not a device class', str(e))


class _CountingBackend(backends_base.Backend):
    """Counts resolves; each ID is a one-group context."""

    def __init__(self):
        self.resolved = []

    def resolve(self, context, request_spec, context_id):
        self.resolved.append(context_id)
        return backends_base.ResolvedContext(
            context_id, os_acc.parse_device_context('resources:FPGA=1'))

    def bind(self, context, instance, hostname, device_rps):
        raise AssertionError('not bound here')

    def wait_bound(self, context, instance, virtapi, device_rps,
                   hostname=None):
        raise AssertionError('not bound here')

    def unbind(self, context, instance, context_ids, hostname=None):
        raise AssertionError('not bound here')


class HintLimitsTest(base.BaseTestCase):
    """Limits are checked before a backend resolves anything."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))
        self.backend = _CountingBackend()
        self.useFixture(fixtures.MockPatchObject(
            backends, 'get_backend', lambda: self.backend))

    def groups(self, *values):
        return request_groups.context_groups(spec_with(*values))

    def test_too_many_ids_are_refused_without_resolving_any(self):
        self.conf.config(group='nova_acc', max_groups_per_server=8)
        ids = [str(uuid.uuid4()) for _ in range(2500)]
        e = self.assertRaises(exception.InvalidDeviceContextHint,
                              self.groups, *ids)
        self.assertEqual([], self.backend.resolved)
        self.assertIn('at least 2500 device groups', str(e))
        self.assertIn('at most 8', str(e))
        self.assertIn('max_groups_per_server', str(e))

    def test_values_up_to_the_limit_are_resolved(self):
        self.conf.config(group='nova_acc', max_groups_per_server=3)
        ids = [str(uuid.uuid4()) for _ in range(3)]
        self.assertEqual(3, len(self.groups(*ids)))
        self.assertEqual(ids, self.backend.resolved)

    def test_resolving_stops_once_the_groups_are_too_many(self):
        self.conf.config(group='nova_acc', max_groups_per_server=3)
        ids = [str(uuid.uuid4()) for _ in range(2)]
        e = self.assertRaises(
            exception.InvalidDeviceContextHint, self.groups,
            'resources:FPGA=1;resources:FPGA=1;resources:FPGA=1;'
            'resources:FPGA=1', *ids)
        self.assertEqual([], self.backend.resolved)
        self.assertIn('ask for at least 6 device groups; at most 3', str(e))

    def test_hint_length_is_capped_before_resolving(self):
        ids = [str(uuid.uuid4())]
        # Within the group limit, each value a valid length for os_acc, but
        # all of them together over hint.MAX_HINT_LENGTH.
        long_spec = 'resources:CUSTOM_%s=1' % ('A' * 4000)
        self.conf.config(group='nova_acc', max_groups_per_server=16)
        values = ids + [long_spec] * 5
        self.assertGreater(sum(map(len, values)), hint.MAX_HINT_LENGTH)
        e = self.assertRaises(exception.InvalidDeviceContextHint,
                              self.groups, *values)
        self.assertEqual([], self.backend.resolved)
        self.assertIn('at most %d are allowed' % hint.MAX_HINT_LENGTH,
                      str(e))
        # Four of them are within it.
        self.assertEqual(5, len(self.groups(*values[:5])))

    def test_one_id_spelled_two_ways_is_a_duplicate(self):
        arq = str(uuid.uuid4())
        for spelling in (arq.upper(), 'urn:uuid:' + arq,
                         arq.replace('-', ''), '{%s}' % arq):
            with self.subTest(spelling=spelling):
                e = self.assertRaises(exception.InvalidDeviceContextHint,
                                      self.groups, arq, spelling)
                self.assertIn('more than once: %s' % arq, str(e))
                self.assertIn(repr(spelling), str(e))
        self.assertEqual([], self.backend.resolved)

    def test_backend_gets_the_canonical_id(self):
        arq, other = str(uuid.uuid4()), str(uuid.uuid4())
        groups = self.groups(arq.upper(), 'urn:uuid:' + other)
        self.assertEqual([arq, other], self.backend.resolved)
        self.assertEqual([arq, other], [g.context_id for g in groups])

    def test_is_ours(self):
        self.assertTrue(request_groups.is_ours('nova_acc_3_12'))
        for other in (None, '', 'nova_acc_x_1', 'port-uuid',
                      'device_profile_0'):
            self.assertFalse(request_groups.is_ours(other))


class RequesterIdTest(base.BaseTestCase):
    """The requester id carries the group's context, decoded not looked up."""

    def test_round_trip(self):
        arq = '3f0b6e4e-2d43-4f7e-8b61-7f3a9c0d5b22'
        for rid in (request_groups.RequesterId(0, 0),
                    request_groups.RequesterId(3, 12),
                    request_groups.RequesterId(1, 0, arq)):
            encoded = rid.encode()
            self.assertEqual(rid, request_groups.RequesterId.decode(encoded))
            # A valid placement group suffix.
            self.assertRegex(encoded, r'^[a-zA-Z0-9_-]{1,64}$')
        self.assertEqual('nova_acc_0_0',
                         request_groups.RequesterId(0, 0).encode())

    def test_context_id_comes_from_the_requester_id(self):
        arq = '3f0b6e4e-2d43-4f7e-8b61-7f3a9c0d5b22'
        rid = request_groups.RequesterId(1, 0, arq).encode()
        self.assertEqual(arq, request_groups.context_id_of(rid))
        self.assertIsNone(request_groups.context_id_of('nova_acc_1_0'))
        self.assertIsNone(request_groups.context_id_of('port-uuid'))

    def test_others_are_not_decoded(self):
        for other in ('nova_acc_1', 'nova_acc_x_0', 'nova_acc_0_0_zz',
                      'nova_acc_0_0_' + 'a' * 31, None, ''):
            self.assertIsNone(request_groups.RequesterId.decode(other))


class DetachedPlaceTest(base.BaseTestCase):
    """A detached context's place keeps the later values' indexes."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))

    def test_only_detached_followed_by_a_uuid_is_a_place(self):
        ctx = str(uuid.uuid4())
        self.assertTrue(hint.is_detached(hint.detached(ctx.upper())))
        self.assertEqual('detached:' + ctx, hint.detached(ctx.upper()))
        self.assertEqual('detached:' + hint.NO_CONTEXT,
                         hint.detached('gzip'))
        for value in ('detached:', 'detached:gzip', 'resources:FPGA=1',
                      ctx, None, 3):
            self.assertFalse(hint.is_detached(value), value)

    def test_a_detached_place_asks_for_nothing_and_keeps_indexes(self):
        groups = request_groups.context_groups(spec_with(
            hint.detached(str(uuid.uuid4())), 'resources:FPGA=1'))
        self.assertEqual(['nova_acc_1_0'], [g.requester_id for g in groups])

    def test_detached_places_do_not_count_against_the_limit(self):
        self.conf.config(group='nova_acc', max_groups_per_server=1)
        values = [hint.detached(str(uuid.uuid4())) for _ in range(3)]
        groups = request_groups.context_groups(spec_with(
            *values, 'resources:FPGA=1'))
        self.assertEqual(['nova_acc_3_0'], [g.requester_id for g in groups])

    def test_a_malformed_place_is_refused_as_a_spec(self):
        self.assertRaises(exception.InvalidDeviceContextHint,
                          request_groups.context_groups,
                          spec_with('detached:gzip'))

    def test_only_detached_places_drop_our_groups_from_the_request(self):
        ours = objects.RequestGroup(requester_id='nova_acc_0_0')
        spec = spec_with(hint.detached(str(uuid.uuid4())), requested=[ours])
        self.assertEqual([], request_groups.add_to_request(None, spec))
        self.assertEqual([], spec.requested_resources)
