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

    def groups(self, provider_uuids):
        spec = objects.RequestSpec(
            scheduler_hints={'device_context': ['resources:FPGA=1']})
        rg = contexts.to_request_group(contexts.context_groups(spec)[0])
        rg.provider_uuids = provider_uuids
        return [rg]

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
            self.placement('n1_0000:81:00.0'), mock.Mock(),
            self.groups([rp]), 'n1')
        self.assertEqual([binding.Binding('nova_acc_0_0', rp, '0000:81:00.0',
                                          'n1')], result)

    def test_refuses_a_provider_of_another_node(self):
        rp = binding.provider_uuid('n2', '0000:81:00.0')
        e = self.assertRaises(
            prebind.BindingFailed, prebind.compute_bindings,
            self.placement('n2_0000:81:00.0'), mock.Mock(), self.groups([rp]),
            'n1')
        self.assertIn('is not a nova-acc device of node n1', str(e))

    def test_refuses_a_look_alike_provider(self):
        # Right name, but not a provider nova-acc's compute created.
        e = self.assertRaises(
            prebind.BindingFailed, prebind.compute_bindings,
            self.placement('n1_0000:81:00.0'), mock.Mock(),
            self.groups(['0f8bd7ad-8f2e-4e0b-9a55-5b0e6d0b0a77']), 'n1')
        self.assertIn('0f8bd7ad-8f2e-4e0b-9a55-5b0e6d0b0a77', str(e))

    def test_refuses_unmapped_group(self):
        e = self.assertRaises(
            prebind.BindingFailed, prebind.compute_bindings,
            self.placement('x'), mock.Mock(), self.groups([]), 'n1')
        self.assertIn('to 0 providers, expected exactly one', str(e))


class MapFromAllocationTest(base.BaseTestCase):
    """Unshelve/evacuate: which allocated device serves which group."""

    def setUp(self):
        super().setUp()
        self.rp_gzip = binding.provider_uuid('n1', '0000:81:00.0')
        self.rp_plain = binding.provider_uuid('n1', '0000:81:01.0')
        self.rp_other_node = binding.provider_uuid('n0', '0000:81:00.0')
        names = {self.rp_gzip: 'n1_0000:81:00.0',
                 self.rp_plain: 'n1_0000:81:01.0',
                 self.rp_other_node: 'n0_0000:81:00.0',
                 'root': 'n1'}
        ours = {'CUSTOM_NOVA_ACC', 'OWNER_NOVA'}
        traits = {self.rp_gzip: {'CUSTOM_GZIP'} | ours, self.rp_plain: ours}

        roots = {self.rp_gzip: 'root', self.rp_plain: 'root',
                 self.rp_other_node: 'root-n0', 'root': 'root'}

        def get(url, **kw):
            resp = mock.Mock()
            resp.__bool__ = lambda self: True
            if url == '/resource_providers?name=n1':
                resp.json.return_value = {'resource_providers': [
                    {'uuid': 'root'}]}
            else:
                rp = url.rsplit('/', 1)[1]
                resp.json.return_value = {'name': names[rp],
                                          'root_provider_uuid': roots[rp]}
            return resp

        self.client = mock.Mock()
        self.client.get.side_effect = get
        self.client.get_provider_traits.side_effect = (
            lambda ctx, rp: mock.Mock(traits=traits[rp]))
        self.client.get_allocs_for_consumer.return_value = {'allocations': {
            # Evacuate keeps the source node's allocation: ignored.
            self.rp_other_node: {'resources': {'FPGA': 1}},
            'root': {'resources': {'VCPU': 1}},
            self.rp_plain: {'resources': {'FPGA': 1}},
            self.rp_gzip: {'resources': {'FPGA': 1}},
        }}

    def groups(self, *values):
        spec = objects.RequestSpec(scheduler_hints={'device_context':
                                                    list(values)})
        return [contexts.to_request_group(cg)
                for cg in contexts.context_groups(spec)]

    def test_traits_decide_which_device_serves_which_group(self):
        groups = self.groups('resources:FPGA=1,trait:CUSTOM_GZIP=forbidden',
                             'resources:FPGA=1,trait:CUSTOM_GZIP=required')
        prebind.map_from_allocation(self.client, mock.Mock(), 'inst', 'n1',
                                    groups)
        self.assertEqual([[self.rp_plain], [self.rp_gzip]],
                         [rg.provider_uuids for rg in groups])

    def test_no_consistent_assignment(self):
        groups = self.groups('resources:FPGA=1,trait:CUSTOM_GZIP=required',
                             'resources:FPGA=1,trait:CUSTOM_GZIP=required')
        e = self.assertRaises(prebind.BindingFailed,
                              prebind.map_from_allocation, self.client,
                              mock.Mock(), 'inst', 'n1', groups)
        self.assertIn('does not hold a device for every device group',
                      str(e))
