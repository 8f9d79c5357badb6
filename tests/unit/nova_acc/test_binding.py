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

from unittest import mock

from nova import objects
from oslotest import base

from nova_acc import binding
from nova_acc.conductor_hooks import prebind
from nova_acc import contexts

objects.register_all()


class BindingStoreTest(base.BaseTestCase):

    def test_round_trip_and_replace(self):
        instance = objects.Instance(system_metadata={'image_foo': 'bar'})
        first = [binding.Binding('nova_acc_0_0', 'rp-1', '0000:81:00.0', 'n1'),
                 binding.Binding('nova_acc_0_1', 'rp-2', '0000:81:01.0', 'n1')]
        binding.replace(instance, first)
        self.assertEqual(first, binding.load(instance))

        second = [binding.Binding('nova_acc_0_0', 'rp-3', '0000:82:00.0',
                                  'n2')]
        binding.replace(instance, second)
        self.assertEqual(second, binding.load(instance))
        self.assertEqual('bar', instance.system_metadata['image_foo'])
        for value in instance.system_metadata.values():
            # The system_metadata column holds 255 characters.
            self.assertLessEqual(len(value), 255)

    def test_error_is_recorded_and_cleared(self):
        instance = objects.Instance(system_metadata={})
        binding.replace(instance, [], error='x' * 300)
        self.assertEqual(255, len(binding.load_error(instance)))
        self.assertEqual([], binding.load(instance))
        binding.replace(instance, [])
        self.assertIsNone(binding.load_error(instance))

    def test_provider_uuid_is_stable_per_node_and_address(self):
        a = binding.provider_uuid('n1', '0000:81:00.0')
        self.assertEqual(a, binding.provider_uuid('n1', '0000:81:00.0'))
        self.assertNotEqual(a, binding.provider_uuid('n2', '0000:81:00.0'))


class ComputeBindingsTest(base.BaseTestCase):
    """The conductor's checks on what placement allocated."""

    def spec(self, provider_uuids):
        spec = objects.RequestSpec(
            scheduler_hints={'device_context': ['resources:FPGA=1']})
        cg = contexts.context_groups(spec)[0]
        contexts.apply_request_groups(spec, [cg])
        spec.requested_resources[0].provider_uuids = provider_uuids
        return spec

    def placement(self, name):
        resp = mock.Mock(status_code=200)
        resp.__bool__ = lambda self: True
        resp.json.return_value = {'name': name}
        client = mock.Mock()
        client.get.return_value = resp
        return client

    def test_binds_the_device_of_the_node(self):
        rp = binding.provider_uuid('n1', '0000:81:00.0')
        result = prebind.compute_bindings(
            self.placement('n1_0000:81:00.0'), mock.Mock(), self.spec([rp]),
            'n1')
        self.assertEqual([binding.Binding('nova_acc_0_0', rp, '0000:81:00.0',
                                          'n1')], result)

    def test_refuses_a_provider_of_another_node(self):
        rp = binding.provider_uuid('n2', '0000:81:00.0')
        e = self.assertRaises(
            prebind.BindingFailed, prebind.compute_bindings,
            self.placement('n2_0000:81:00.0'), mock.Mock(), self.spec([rp]),
            'n1')
        self.assertIn('is not a nova-acc device of node n1', str(e))

    def test_refuses_a_look_alike_provider(self):
        # Right name, but not a provider nova-acc's compute created.
        e = self.assertRaises(
            prebind.BindingFailed, prebind.compute_bindings,
            self.placement('n1_0000:81:00.0'), mock.Mock(),
            self.spec(['0f8bd7ad-8f2e-4e0b-9a55-5b0e6d0b0a77']), 'n1')
        self.assertIn('0f8bd7ad-8f2e-4e0b-9a55-5b0e6d0b0a77', str(e))

    def test_refuses_unmapped_group(self):
        e = self.assertRaises(
            prebind.BindingFailed, prebind.compute_bindings,
            self.placement('x'), mock.Mock(), self.spec([]), 'n1')
        self.assertIn('to 0 providers, expected exactly one', str(e))
