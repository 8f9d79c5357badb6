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

from nova import objects
from oslo_config import fixture as config_fixture
from oslotest import base

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
            ('profile:nope', 'known profiles: gzip'),
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

    def test_malformed_profile_config_is_reported(self):
        self.conf.config(group='nova_acc', profile=['no-equals-sign'])
        e = self.assertRaises(exception.InvalidDeviceContextHint,
                              request_groups.context_groups,
                              spec_with('profile:x'))
        self.assertIn("[nova_acc] profile has a malformed line "
                      "'no-equals-sign'", str(e))

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
