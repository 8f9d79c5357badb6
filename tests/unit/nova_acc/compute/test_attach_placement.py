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
"""The allocation arithmetic of an attach and a detach, against a small
in-memory placement (GET/PUT of one consumer's allocation with its
generation, and one allocation candidate); the real placement is
exercised in tests/functional/test_attach.py."""

import copy

from nova import objects
from oslo_utils import uuidutils
from oslotest import base

from nova_acc.compute import attach_placement
from nova_acc import binding

NODE, POOL = uuidutils.generate_uuid(), uuidutils.generate_uuid()
SERVER = uuidutils.generate_uuid()


class _Response:
    def __init__(self, status, body=None):
        self.status_code = status
        self._body = body
        self.text = str(body)

    def __bool__(self):
        return self.status_code < 400

    def json(self):
        return self._body


class OneConsumerPlacement:
    """A consumer's allocation with a generation, and fixed candidates."""

    def __init__(self, candidates):
        self.allocations = {NODE: {'resources': {'VCPU': 1}}}
        self.generation = 1
        self.candidates = candidates
        self.queries = []
        #: Writes that another operation makes between a read and a PUT.
        self.interleaved = 0
        #: PUTs refused for capacity: other consumers took the devices.
        self.taken = 0

    def get(self, url, version=None, global_request_id=None):
        if url.startswith('/allocation_candidates'):
            self.queries.append(url)
            return _Response(200, {'allocation_requests': self.candidates})
        return _Response(200, {
            'allocations': copy.deepcopy(self.allocations),
            'consumer_generation': self.generation,
            'project_id': 'p', 'user_id': 'u'})

    def put(self, url, body, version=None, global_request_id=None):
        if self.interleaved:
            self.interleaved -= 1
            self.generation += 1
        if body['consumer_generation'] != self.generation:
            # Placement's shape (its handlers/allocation.py).
            return _Response(409, {'errors': [{
                'status': 409, 'code': 'placement.concurrent_update',
                'title': 'Conflict', 'detail': 'consumer generation'}]})
        if self.taken:
            self.taken -= 1
            return _Response(409, {'errors': [{
                'status': 409, 'code': 'placement.undefined_code',
                'title': 'Conflict',
                'detail': 'Unable to allocate inventory: capacity'}]})
        self.allocations = body['allocations']
        self.generation += 1
        return _Response(204)


class _Context:
    global_id = 'req-1'


def _group():
    return objects.RequestGroup(
        requester_id='nova_acc_1_0', resources={'FPGA': 1},
        required_traits={'CUSTOM_NOVA_ACC'},
        forbidden_traits={'CUSTOM_SLOW'}, provider_uuids=[])


CANDIDATE = {'allocations': {POOL: {'resources': {'FPGA': 1}}},
             'mappings': {'_ACC0': [POOL]}}


class GrowShrinkTestCase(base.BaseTestCase):

    def test_query_is_restricted_to_the_nodes_tree(self):
        query = attach_placement.candidate_query([_group()], NODE)
        self.assertEqual({
            'group_policy': 'none', 'limit': '1',
            'resources_ACC0': 'FPGA:1',
            'required_ACC0': 'CUSTOM_NOVA_ACC,!CUSTOM_SLOW',
            'in_tree_ACC0': NODE}, query)

    def test_grow_adds_and_maps_then_shrink_takes_out(self):
        placement = OneConsumerPlacement([CANDIDATE])
        group = _group()

        added = attach_placement.grow(placement, _Context(), SERVER, 'h1',
                                      NODE, [group])

        self.assertEqual({POOL: {'FPGA': 1}}, added)
        self.assertEqual([POOL], group.provider_uuids)
        self.assertEqual({NODE: {'resources': {'VCPU': 1}},
                          POOL: {'resources': {'FPGA': 1}}},
                         placement.allocations)

        attach_placement.shrink(placement, _Context(), SERVER, added)

        self.assertEqual({NODE: {'resources': {'VCPU': 1}}},
                         placement.allocations)

    def test_no_candidate_changes_nothing(self):
        placement = OneConsumerPlacement([])
        error = self.assertRaises(
            attach_placement.PlacementRefused, attach_placement.grow,
            placement, _Context(), SERVER, 'h1', NODE, [_group()])
        self.assertIn('no free device on host h1', error.reason)
        self.assertEqual(1, placement.generation)

    def test_a_concurrent_change_fails_the_grow_cleanly(self):
        placement = OneConsumerPlacement([CANDIDATE])
        placement.interleaved = 1
        error = self.assertRaises(
            attach_placement.PlacementRefused, attach_placement.grow,
            placement, _Context(), SERVER, 'h1', NODE, [_group()])
        self.assertIn('changed meanwhile', error.reason)
        self.assertEqual({NODE: {'resources': {'VCPU': 1}}},
                         placement.allocations)

    def test_a_device_taken_by_another_attach_is_asked_for_again(self):
        placement = OneConsumerPlacement([CANDIDATE])
        placement.taken = 1
        added = attach_placement.grow(placement, _Context(), SERVER, 'h1',
                                      NODE, [_group()])
        self.assertEqual({POOL: {'FPGA': 1}}, added)
        self.assertEqual(2, len(placement.queries))

    def test_devices_always_taken_fail_saying_none_is_free(self):
        placement = OneConsumerPlacement([CANDIDATE])
        placement.taken = attach_placement.GROW_ATTEMPTS
        error = self.assertRaises(
            attach_placement.PlacementRefused, attach_placement.grow,
            placement, _Context(), SERVER, 'h1', NODE, [_group()])
        self.assertIn('no free device on host h1 for it', error.reason)
        self.assertEqual({NODE: {'resources': {'VCPU': 1}}},
                         placement.allocations)

    def test_shrink_retries_on_the_allocation_read_again(self):
        placement = OneConsumerPlacement([CANDIDATE])
        added = attach_placement.grow(placement, _Context(), SERVER, 'h1',
                                      NODE, [_group()])
        placement.interleaved = 1
        attach_placement.shrink(placement, _Context(), SERVER, added)
        self.assertEqual({NODE: {'resources': {'VCPU': 1}}},
                         placement.allocations)


class _Instance:
    def __init__(self, sysmeta):
        self.system_metadata = sysmeta


class BindingGroupsTestCase(base.BaseTestCase):

    def test_add_and_remove_one_contexts_groups_only(self):
        boot = binding.Binding('nova_acc_0_0', POOL, None, 'h1')
        attached = binding.Binding('nova_acc_1_0', POOL, None, 'h1')
        instance = _Instance({'other': 'x'})
        binding.replace(instance, [boot], config={'nova_acc_0_0': {'a': '1'}})

        binding.add_groups(instance, [attached],
                           {'nova_acc_1_0': {'b': '2'}})

        self.assertEqual(['nova_acc_0_0', 'nova_acc_1_0'],
                         [b.requester_id for b in binding.load(instance)])
        self.assertEqual({'nova_acc_0_0': {'a': '1'},
                          'nova_acc_1_0': {'b': '2'}},
                         binding.load_config(instance))

        binding.remove_groups(instance, {'nova_acc_1_0'})

        self.assertEqual([boot], binding.load(instance))
        self.assertEqual({'nova_acc_0_0': {'a': '1'}},
                         binding.load_config(instance))
        self.assertEqual('x', instance.system_metadata['other'])


class SurplusTestCase(base.BaseTestCase):
    """What a server holds on the host's pools beyond its bindings."""

    POOL, OTHER_POOL, NODE = 'pool-1', 'pool-2', 'node'

    def bound(self, rp, amount=1, address=None):
        return binding.Binding('nova_acc_0_0', rp, address, 'host1',
                               amount=amount)

    def test_an_unbound_grown_allocation_is_surplus(self):
        allocations = {self.NODE: {'resources': {'VCPU': 1, 'MEMORY_MB': 8}},
                       self.POOL: {'resources': {'FPGA': 3}},
                       self.OTHER_POOL: {'resources': {'FPGA': 1}}}
        self.assertEqual(
            {self.POOL: {'FPGA': 1}, self.OTHER_POOL: {'FPGA': 1}},
            attach_placement.surplus(
                allocations, {self.POOL, self.OTHER_POOL},
                [self.bound(self.POOL, 2)]))

    def test_what_bindings_account_for_is_kept(self):
        allocations = {self.POOL: {'resources': {'FPGA': 2}}}
        # A pool binding of one and a single-device binding of one.
        self.assertEqual({}, attach_placement.surplus(
            allocations, {self.POOL},
            [self.bound(self.POOL), self.bound(self.POOL,
                                               address='0000:81:00.0')]))

    def test_other_providers_and_ambiguous_ones_are_left_alone(self):
        allocations = {self.NODE: {'resources': {'VCPU': 1}},
                       self.POOL: {'resources': {'FPGA': 1, 'VGPU': 1}}}
        self.assertEqual({}, attach_placement.surplus(
            allocations, {self.POOL}, []))
