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

import fixtures
from nova import exception as nova_exc
from nova import objects
from oslo_config import fixture as config_fixture
from os_acc.internal import grammar
from oslotest import base

from nova_acc import binding
from nova_acc import conf
from nova_acc import exception
from nova_acc import matching
from nova_acc import pools
from nova_acc import request_groups
from tests.unit.nova_acc import test_matching

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

    def test_pool_binding_round_trips_with_its_amount(self):
        instance = objects.Instance(system_metadata={})
        bound = [binding.Binding('nova_acc_0_0', 'pool-1', None, 'n1',
                                 amount=8),
                 # Made before pools: one device, honoured as it is.
                 binding.Binding('nova_acc_1_0', 'rp-2', '0000:81:01.0',
                                 'n1')]
        binding.replace(instance, bound)
        loaded = binding.load(instance)
        self.assertEqual(bound, loaded)
        self.assertEqual([True, False], [b.is_pool for b in loaded])
        self.assertEqual([8, 1], [b.amount for b in loaded])


def pool_rp(node, traits=()):
    return pools.pool_uuid(node, pools.PoolKey('FPGA', tuple(traits)))


def pool_name(node, traits=()):
    return pools.pool_name(node, pools.PoolKey('FPGA', tuple(traits)))


class ForMoveTest(base.BaseTestCase):
    """The destination of a move binds the groups to its own pools."""

    def test_groups_go_to_the_pools_of_the_allocation(self):
        before = [binding.Binding('nova_acc_0_0', 'src-a', None, 'n1',
                                  amount=2, resource_class='FPGA'),
                  binding.Binding('nova_acc_0_1', 'src-b', None, 'n1',
                                  amount=1, resource_class='PGPU')]
        allocations = {'root': {'resources': {'VCPU': 2}},
                       'dst-fpga': {'resources': {'FPGA': 2}},
                       'dst-gpu': {'resources': {'PGPU': 1}},
                       'src-a': {'resources': {'FPGA': 2}}}
        moved = binding.for_move(before, allocations,
                                 {'dst-fpga': 'FPGA', 'dst-gpu': 'PGPU'},
                                 'n2')
        self.assertEqual(
            [binding.Binding('nova_acc_0_0', 'dst-fpga', None, 'n2',
                             amount=2, resource_class='FPGA'),
             binding.Binding('nova_acc_0_1', 'dst-gpu', None, 'n2',
                             amount=1, resource_class='PGPU')], moved)

    def test_an_allocation_without_room_for_a_group_is_refused(self):
        before = [binding.Binding('nova_acc_0_0', 'src', None, 'n1',
                                  amount=3, resource_class='FPGA')]
        self.assertRaises(exception.PrebindFailed, binding.for_move, before,
                          {'dst': {'resources': {'FPGA': 2}}},
                          {'dst': 'FPGA'}, 'n2')

    def test_single_devices_do_not_move(self):
        before = [binding.Binding('nova_acc_0_0', 'rp', '0000:81:00.0',
                                  'n1')]
        e = self.assertRaises(exception.PrebindFailed, binding.for_move,
                              before, {}, {}, 'n2')
        self.assertIn('0000:81:00.0, which cannot move', str(e))

    def test_backend_contexts_move_to_a_provider_of_their_class(self):
        before = [
            binding.Binding('nova_acc_0_0', 'src-arq', '0000:90:00.0', 'n1',
                            context_id='arq1', resource_class='FPGA'),
            binding.Binding('nova_acc_1_0', 'src-pool', None, 'n1',
                            amount=1, resource_class='FPGA')]
        # Evacuation: the allocation holds the source's providers too; the
        # node roots and a bandwidth provider are never a device's.
        allocations = {
            'src-root': {'resources': {'VCPU': 1, 'MEMORY_MB': 512}},
            'src-arq': {'resources': {'FPGA': 1}},
            'src-pool': {'resources': {'FPGA': 1}},
            'dst-root': {'resources': {'VCPU': 1, 'MEMORY_MB': 512}},
            'dst-bw': {'resources': {'NET_BW_EGR_KILOBIT_PER_SEC': 10}},
            'dst-arq': {'resources': {'FPGA': 1}},
            'dst-pool': {'resources': {'FPGA': 1}}}
        moved = binding.for_move(before, allocations, {'dst-pool': 'FPGA'},
                                 'n2')
        self.assertEqual(
            [binding.Binding('nova_acc_0_0', 'dst-arq', None, 'n2',
                             context_id='arq1', resource_class='FPGA'),
             binding.Binding('nova_acc_1_0', 'dst-pool', None, 'n2',
                             amount=1, resource_class='FPGA')], moved)

    def test_a_backend_context_without_a_recorded_class(self):
        # Bound before nova-acc recorded the class of backend groups.
        before = [binding.Binding('nova_acc_0_0', 'src', '0000:90:00.0',
                                  'n1', context_id='arq1')]
        moved = binding.for_move(
            before, {'dst-root': {'resources': {'DISK_GB': 1}},
                     'dst': {'resources': {'PGPU': 1}}}, {}, 'n2')
        self.assertEqual([binding.Binding(
            'nova_acc_0_0', 'dst', None, 'n2', context_id='arq1',
            resource_class='PGPU')], moved)

    def test_a_backend_context_without_a_provider_is_refused(self):
        before = [binding.Binding('nova_acc_0_0', 'src', '0000:90:00.0',
                                  'n1', context_id='arq1',
                                  resource_class='FPGA')]
        e = self.assertRaises(
            exception.PrebindFailed, binding.for_move, before,
            {'src': {'resources': {'FPGA': 1}},
             'dst': {'resources': {'PGPU': 1}}}, {}, 'n2')
        self.assertIn('no device provider for every device group', str(e))

    def test_sixteen_groups_and_fifteen_pools_are_refused_at_once(self):
        # Each group fits each pool, the 16th none: the backtracking this
        # replaced tried 15! orders (a hung evacuate or resize). Counted
        # in Python calls, not timed; the old code is stopped at the limit.
        pools = {'dst-%02d' % i: 'FPGA' for i in range(15)}
        before = [binding.Binding('nova_acc_%d_0' % i, 'src', None, 'n1',
                                  amount=1, resource_class='FPGA')
                  for i in range(16)]
        allocations = {rp: {'resources': {'FPGA': 1}} for rp in pools}
        result, _calls = test_matching.calls_within(
            50000, binding.for_move, before, allocations, pools, 'n2')
        self.assertIsInstance(result, exception.PrebindFailed)
        self.assertIn('no device provider for every device group',
                      str(result))
        # With a 16th pool all fit, one group per pool.
        pools['dst-15'] = 'FPGA'
        allocations['dst-15'] = {'resources': {'FPGA': 1}}
        moved, _calls = test_matching.calls_within(
            50000, binding.for_move, before, allocations, pools, 'n2')
        self.assertEqual(sorted(pools), sorted(b.rp_uuid for b in moved))

    def test_sixteen_backend_contexts_where_the_last_needs_the_first(self):
        # ARQs bound before nova-acc recorded their class fit a provider
        # of any class; the last one, of class PGPU, fits only the first
        # provider, which the others were given first: the backtracking
        # this replaced tried every order of the 15 others (15!).
        before = [binding.Binding('nova_acc_%02d_0' % i, 'src-%02d' % i,
                                  '0000:90:%02x.0' % i, 'n1',
                                  context_id='arq%02d' % i)
                  for i in range(15)]
        before.append(binding.Binding('nova_acc_15_0', 'src-15',
                                      '0000:90:0f.0', 'n1',
                                      context_id='arq15',
                                      resource_class='PGPU'))
        allocations = {'dst-00': {'resources': {'PGPU': 1}}}
        allocations.update({'dst-%02d' % i: {'resources': {'FPGA': 1}}
                            for i in range(1, 16)})
        moved, _calls = test_matching.calls_within(
            50000, binding.for_move, before, allocations, {}, 'n2')
        self.assertEqual(('dst-00', 'PGPU'),
                         (moved[-1].rp_uuid, moved[-1].resource_class))
        self.assertEqual(sorted(allocations),
                         sorted(b.rp_uuid for b in moved))
        self.assertEqual({'FPGA'}, {b.resource_class for b in moved[:-1]})

    def test_groups_of_different_amounts_share_pools_of_one_class(self):
        # 5+4+3+3+3+2 into two pools of 10: only {5,3,2} and {4,3,3} fit
        # (first-fit by size would put 5 and 4 together and fail). The
        # pools are "mixed" (groups of different amounts may use them):
        # the matcher's bounded search, not its flow, finds this.
        before = [binding.Binding('nova_acc_%d_0' % i, 'src', None, 'n1',
                                  amount=a, resource_class='FPGA')
                  for i, a in enumerate([5, 4, 3, 3, 3, 2])]
        moved = binding.for_move(
            before, {'dst-a': {'resources': {'FPGA': 10}},
                     'dst-b': {'resources': {'FPGA': 10}}},
            {'dst-a': 'FPGA', 'dst-b': 'FPGA'}, 'n2')
        per_pool = {}
        for b in moved:
            per_pool[b.rp_uuid] = per_pool.get(b.rp_uuid, 0) + b.amount
        self.assertEqual({'dst-a': 10, 'dst-b': 10}, per_pool)
        self.assertEqual([b.requester_id for b in before],
                         [b.requester_id for b in moved])

    def test_a_search_that_reaches_its_bound_is_refused_clearly(self):
        self.useFixture(fixtures.MockPatchObject(matching, 'MAX_STEPS', 2))
        before = [binding.Binding('nova_acc_%d_0' % i, 'src', None, 'n1',
                                  amount=a, resource_class='FPGA')
                  for i, a in enumerate([2, 1, 1])]
        e = self.assertRaises(
            exception.PrebindFailed, binding.for_move, before,
            {'dst-a': {'resources': {'FPGA': 2}},
             'dst-b': {'resources': {'FPGA': 2}}},
            {'dst-a': 'FPGA', 'dst-b': 'FPGA'}, 'n2')
        self.assertIn('could not be matched to the providers of its '
                      'allocation on node n2', str(e))
        self.assertIn('gave up', str(e))

    def test_kept_for_revert_round_trip(self):
        inst = objects.Instance(system_metadata={})
        arq = binding.Binding('nova_acc_0_0', 'src', '0000:90:00.0', 'n1',
                              context_id='arq1', resource_class='FPGA')
        pool = binding.Binding('nova_acc_1_0', 'pool', None, 'n1')
        binding.keep_for_revert(inst, [arq, pool])
        binding.replace(inst, [])
        # Only the backend's: the ledger keeps the pools' devices.
        self.assertEqual([arq], binding.kept_for_revert(inst, 'n1'))
        self.assertEqual([], binding.kept_for_revert(inst, 'n2'))
        self.assertEqual([], binding.load(inst))
        binding.forget_kept(inst)
        self.assertEqual({}, inst.system_metadata)


class ComputeBindingsTest(base.BaseTestCase):
    """The conductor's checks on what placement allocated."""

    def setUp(self):
        super().setUp()
        self.addCleanup(binding._known_pools.clear)
        binding._known_pools.clear()

    def groups(self, provider_uuids, spec='resources:FPGA=1'):
        spec = objects.RequestSpec(
            scheduler_hints={'device_context': [spec]})
        rg = request_groups.to_request_group(
            request_groups.context_groups(spec)[0])
        rg.provider_uuids = provider_uuids
        return [rg]

    def placement(self, name):
        resp = mock.Mock(status_code=200)
        resp.__bool__ = lambda self: True
        resp.json.return_value = {'name': name}
        client = mock.Mock()
        client.get.return_value = resp
        return client

    def test_binds_the_pool_of_the_node_with_the_amount(self):
        rp = pool_rp('n1')
        result = binding.compute_bindings(
            self.placement(pool_name('n1')), mock.Mock(),
            self.groups([rp], 'resources:FPGA=4'), 'n1')
        # The host picks the 4 devices when it claims them.
        self.assertEqual([binding.Binding('nova_acc_0_0', rp, None, 'n1',
                                          amount=4, resource_class='FPGA')],
                         result)

    def test_a_pool_is_read_from_placement_once(self):
        rp = pool_rp('n1')
        client = self.placement(pool_name('n1'))
        for _ in range(2):
            binding.compute_bindings(client, mock.Mock(), self.groups([rp]),
                                     'n1')
        client.get.assert_called_once_with(
            '/resource_providers/%s' % rp, version='1.14',
            global_request_id=mock.ANY)
        # Known for its node only.
        self.assertRaises(
            exception.PrebindFailed, binding.compute_bindings,
            client, mock.Mock(), self.groups([rp]), 'n2')

    def test_a_provider_that_is_no_pool_is_read_each_time(self):
        client = self.placement(pool_name('n1'))
        look_alike = '0f8bd7ad-8f2e-4e0b-9a55-5b0e6d0b0a77'
        for _ in range(2):
            self.assertRaises(
                exception.PrebindFailed, binding.compute_bindings,
                client, mock.Mock(), self.groups([look_alike]), 'n1')
        self.assertEqual(2, client.get.call_count)

    def test_refuses_a_provider_of_another_node(self):
        rp = pool_rp('n2')
        e = self.assertRaises(
            exception.PrebindFailed, binding.compute_bindings,
            self.placement(pool_name('n2')), mock.Mock(), self.groups([rp]),
            'n1')
        self.assertIn('is not a nova-acc device pool of node n1', str(e))

    def test_refuses_a_look_alike_provider(self):
        # Right name, but not a provider nova-acc's compute created.
        e = self.assertRaises(
            exception.PrebindFailed, binding.compute_bindings,
            self.placement(pool_name('n1')), mock.Mock(),
            self.groups(['0f8bd7ad-8f2e-4e0b-9a55-5b0e6d0b0a77']), 'n1')
        self.assertIn('0f8bd7ad-8f2e-4e0b-9a55-5b0e6d0b0a77', str(e))

    def test_refuses_a_per_device_provider_of_before_pools(self):
        rp = pools.legacy_provider_uuid('n1', '0000:81:00.0')
        e = self.assertRaises(
            exception.PrebindFailed, binding.compute_bindings,
            self.placement('n1_0000:81:00.0'), mock.Mock(),
            self.groups([rp]), 'n1')
        self.assertIn('not a nova-acc device pool', str(e))

    def test_refuses_unmapped_group(self):
        e = self.assertRaises(
            exception.PrebindFailed, binding.compute_bindings,
            self.placement('x'), mock.Mock(), self.groups([]), 'n1')
        self.assertIn('to 0 providers, expected exactly one', str(e))


class MapFromAllocationTest(base.BaseTestCase):
    """Unshelve/evacuate: which allocated pool serves which group."""

    def setUp(self):
        super().setUp()
        self.rp_gzip = pool_rp('n1', ['CUSTOM_GZIP'])
        self.rp_plain = pool_rp('n1')
        self.rp_other_node = pool_rp('n0')
        names = {self.rp_gzip: pool_name('n1', ['CUSTOM_GZIP']),
                 self.rp_plain: pool_name('n1'),
                 self.rp_other_node: pool_name('n0'),
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
            self.rp_plain: {'resources': {'FPGA': 3}},
            self.rp_gzip: {'resources': {'FPGA': 1}},
        }}

    def groups(self, *values):
        spec = objects.RequestSpec(scheduler_hints={'device_context':
                                                    list(values)})
        return [request_groups.to_request_group(cg)
                for cg in request_groups.context_groups(spec)]

    def test_traits_and_amounts_decide_which_pool_serves_which_group(self):
        groups = self.groups('resources:FPGA=2,trait:CUSTOM_GZIP=forbidden',
                             'resources:FPGA=1',
                             'resources:FPGA=1,trait:CUSTOM_GZIP=required')
        binding.map_from_allocation(self.client, mock.Mock(), 'inst', 'n1',
                                    groups)
        # Two groups share the plain pool (2 + 1 of its 3 units); the
        # second group could also fit the GZIP pool, but then the third
        # would have none.
        self.assertEqual([[self.rp_plain], [self.rp_plain], [self.rp_gzip]],
                         [rg.provider_uuids for rg in groups])

    def test_no_consistent_assignment(self):
        groups = self.groups('resources:FPGA=1,trait:CUSTOM_GZIP=required',
                             'resources:FPGA=1,trait:CUSTOM_GZIP=required')
        e = self.assertRaises(exception.PrebindFailed,
                              binding.map_from_allocation, self.client,
                              mock.Mock(), 'inst', 'n1', groups)
        self.assertIn('does not match its device groups', str(e))

    def test_amount_beyond_the_allocation_is_refused(self):
        groups = self.groups('resources:FPGA=4')
        self.assertRaises(exception.PrebindFailed,
                          binding.map_from_allocation, self.client,
                          mock.Mock(), 'inst', 'n1', groups)


class MapFromAllocationScaleTest(base.BaseTestCase):
    """Unshelve/evacuate with as many groups as a server may have."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))

    def client(self, pools, allocated):
        """Placement with a pool per traits of ``pools`` on node n1.

        :returns: the client and the pools' UUIDs, sorted.
        """
        ours = {'CUSTOM_NOVA_ACC', 'OWNER_NOVA'}
        rps = {pool_rp('n1', traits):
               (pool_name('n1', traits), set(traits) | ours)
               for traits in pools}

        def get(url, **kw):
            resp = mock.Mock()
            resp.__bool__ = lambda self: True
            if url == '/resource_providers?name=n1':
                resp.json.return_value = {'resource_providers': [
                    {'uuid': 'root'}]}
            else:
                rp = url.rsplit('/', 1)[1]
                resp.json.return_value = {'name': rps[rp][0],
                                          'root_provider_uuid': 'root'}
            return resp

        client = mock.Mock()
        client.get.side_effect = get
        client.get_provider_traits.side_effect = (
            lambda ctx, rp: mock.Mock(traits=rps[rp][1]))
        client.get_allocs_for_consumer.return_value = {'allocations': dict(
            {'root': {'resources': {'VCPU': 1}}},
            **{rp: {'resources': {'FPGA': allocated}} for rp in rps})}
        return client, sorted(rps)

    def groups(self, values):
        spec = objects.RequestSpec(scheduler_hints={'device_context':
                                                    list(values)})
        return [request_groups.to_request_group(cg)
                for cg in request_groups.context_groups(spec)]

    def test_sixteen_groups_without_an_assignment_fail_at_once(self):
        # The documented maximum: 16 groups, each fitting each of 15
        # pools of one device, none left for the 16th. The backtracking
        # this replaced tried 15! orders (8 groups 1 s, 9 groups 10 s).
        self.conf.config(max_groups_per_server=16, group='nova_acc')
        client, _rps = self.client(
            [('CUSTOM_T%02d' % i,) for i in range(15)], 1)
        groups = self.groups(['resources:FPGA=1'] * 16)
        result, _calls = test_matching.calls_within(
            100000, binding.map_from_allocation, client, mock.Mock(), 'inst',
            'n1', groups)
        self.assertIsInstance(result, exception.PrebindFailed)
        self.assertIn('does not match its device groups', str(result))

    def test_sixteen_groups_where_the_last_needs_the_first_pool(self):
        # 16 pools of one device; 15 groups fit any, the last one needs
        # the trait of the pool that sorts first, which the others were
        # given first: the backtracking this replaced had to try every
        # order of the 15 before it moved the first (15! of them).
        self.conf.config(max_groups_per_server=16, group='nova_acc')
        traits = [('CUSTOM_T%02d' % i,) for i in range(16)]
        client, rps = self.client(traits, 1)
        first = next(t for t in traits if pool_rp('n1', t) == rps[0])
        groups = self.groups(['resources:FPGA=1'] * 15 + [
            'resources:FPGA=1,trait:%s=required' % first[0]])
        result, _calls = test_matching.calls_within(
            100000, binding.map_from_allocation, client, mock.Mock(), 'inst',
            'n1', groups)
        self.assertIsNone(result)
        chosen = [rg.provider_uuids[0] for rg in groups]
        self.assertEqual(rps[0], chosen[-1])
        self.assertEqual(sorted(rps), sorted(chosen))


class PrebindIsolationTest(base.BaseTestCase):
    """Whatever goes wrong binding one server stays with that server."""

    def setUp(self):
        super().setUp()
        self.instance = objects.Instance(uuid='11111111-1111-4111-8111-'
                                         '111111111111', system_metadata={})
        self.save = self.useFixture(fixtures.MockPatchObject(
            binding, '_save')).mock
        self.bind = self.useFixture(fixtures.MockPatchObject(
            binding, '_bind')).mock
        self.backend = mock.Mock()
        self.useFixture(fixtures.MockPatchObject(
            binding.backends, 'get_backend', return_value=self.backend))

    def prebind(self):
        return binding.prebind(mock.Mock(), mock.Mock(), self.instance,
                               'n1', mock.Mock())

    def test_unexpected_error_is_recorded_not_raised(self):
        self.bind.side_effect = RuntimeError('boom')
        self.assertEqual([], self.prebind())
        self.assertIn('binding on node n1 failed: boom',
                      binding.load_error(self.instance))
        self.save.assert_called_once()

    def test_server_deleted_while_binding_is_skipped_and_unbound(self):
        bound = [binding.Binding('nova_acc_0_0', 'rp-1', None, 'n1',
                                 context_id='arq-1')]
        self.bind.return_value = (bound, {})
        self.save.side_effect = nova_exc.InstanceNotFound(
            instance_id=self.instance.uuid)
        self.assertEqual([], self.prebind())
        self.backend.unbind.assert_called_once_with(
            mock.ANY, self.instance, ['arq-1'], hostname=None)

    def test_server_deleted_before_binding_is_skipped(self):
        self.bind.side_effect = nova_exc.InstanceNotFound(
            instance_id=self.instance.uuid)
        self.assertEqual([], self.prebind())
        self.save.assert_not_called()

    def test_record_that_cannot_be_saved_becomes_an_error(self):
        bound = [binding.Binding('nova_acc_0_0', 'rp-1', '0000:81:00.0',
                                 'n1')]
        self.bind.return_value = (bound, {})
        self.save.side_effect = [ValueError('value too long'), None]
        self.assertEqual([], self.prebind())
        self.assertEqual([], binding.load(self.instance))
        self.assertIn('could not be recorded',
                      binding.load_error(self.instance))
        self.assertEqual(2, self.save.call_count)


class ConfigStorageTest(base.BaseTestCase):
    """A group's config data travels to the compute in system metadata."""

    def setUp(self):
        super().setUp()
        self.instance = objects.Instance(uuid='11111111-1111-4111-8111-'
                                         '111111111111', system_metadata={})
        self.pool = binding.Binding('nova_acc_0_0', 'rp-1', None, 'n1')
        self.other = binding.Binding('nova_acc_1_0', 'rp-2', None, 'n1')

    def test_one_key_per_group_and_accel_key(self):
        binding.replace(self.instance, [self.pool, self.other], config={
            'nova_acc_0_0': {'mode': 'fast', 'bitstream_id': 'b' * 255}})
        self.assertEqual('fast', self.instance.system_metadata[
            'nova_acc_cfg:nova_acc_0_0:mode'])
        self.assertEqual({'nova_acc_0_0': {'mode': 'fast',
                                           'bitstream_id': 'b' * 255}},
                         binding.load_config(self.instance))
        # Config keys are not bindings.
        self.assertEqual([self.pool, self.other],
                         binding.load(self.instance))

    def test_the_longest_key_fits_the_column(self):
        longest_requester = request_groups.RequesterId(
            999, 999, '11111111-1111-4111-8111-111111111111').encode()
        binding.replace(self.instance, [binding.Binding(
            longest_requester, 'rp', None, 'n1')], config={
                longest_requester: {
                    'k' * grammar.MAX_CONFIG_KEY_LENGTH:
                        'v' * grammar.MAX_CONFIG_VALUE_LENGTH}})
        for key, value in self.instance.system_metadata.items():
            self.assertLessEqual(len(key), 255)
            self.assertLessEqual(len(value), 255)

    def test_a_move_keeps_the_config_of_the_same_groups(self):
        binding.replace(self.instance, [self.pool, self.other], config={
            'nova_acc_0_0': {'mode': 'fast'},
            'nova_acc_1_0': {'mode': 'slow'}})
        moved = binding.Binding('nova_acc_0_0', 'rp-dest', None, 'n2')
        binding.replace(self.instance, [moved])
        self.assertEqual({'nova_acc_0_0': {'mode': 'fast'}},
                         binding.load_config(self.instance))

    def test_a_failure_drops_the_config_with_the_bindings(self):
        binding.replace(self.instance, [self.pool],
                        config={'nova_acc_0_0': {'mode': 'fast'}})
        binding.replace(self.instance, [], error='no luck')
        self.assertEqual({}, binding.load_config(self.instance))
        self.assertEqual({'nova_acc_binding_error': 'no luck'},
                         self.instance.system_metadata)

    def test_a_new_prebind_replaces_the_config(self):
        binding.replace(self.instance, [self.pool],
                        config={'nova_acc_0_0': {'mode': 'fast',
                                                 'x': 'y'}})
        binding.replace(self.instance, [self.pool],
                        config={'nova_acc_0_0': {'mode': 'slow'}})
        self.assertEqual({'nova_acc_0_0': {'mode': 'slow'}},
                         binding.load_config(self.instance))


class PrebindConfigTest(base.BaseTestCase):
    """The pre-bind records the config data of the groups it binds."""

    def setUp(self):
        super().setUp()
        self.instance = objects.Instance(uuid='11111111-1111-4111-8111-'
                                         '111111111111', system_metadata={})
        self.useFixture(fixtures.MockPatchObject(binding, '_save'))
        self.bind_groups = self.useFixture(fixtures.MockPatchObject(
            binding, '_bind_groups')).mock

    def prebind(self, *hints):
        spec = objects.RequestSpec(scheduler_hints={'device_context':
                                                    list(hints)})
        groups = request_groups.context_groups(spec)
        spec.requested_resources = [request_groups.to_request_group(cg)
                                    for cg in groups]
        return binding.prebind(mock.Mock(), mock.Mock(), self.instance,
                               'n1', spec)

    def test_pool_groups_get_their_config(self):
        self.bind_groups.return_value = [
            binding.Binding('nova_acc_0_0', 'rp-1', None, 'n1'),
            binding.Binding('nova_acc_0_1', 'rp-1', None, 'n1'),
            binding.Binding('nova_acc_1_0', 'rp-2', None, 'n1')]
        self.prebind('resources:FPGA=1,accel:mode=fast;resources:FPGA=1',
                     'resources:FPGA=1,accel:bitstream_id=abc')
        self.assertEqual({'nova_acc_0_0': {'mode': 'fast'},
                          'nova_acc_1_0': {'bitstream_id': 'abc'}},
                         binding.load_config(self.instance))

    def test_groups_of_a_backend_that_picks_devices_get_none(self):
        # A Cyborg ARQ's config is the ARQ's own business.
        self.bind_groups.return_value = [
            binding.Binding('nova_acc_0_0', 'rp-1', '0000:81:00.0', 'n1',
                            context_id='arq-1')]
        self.prebind('resources:FPGA=1,accel:mode=fast')
        self.assertEqual({}, binding.load_config(self.instance))
        self.assertEqual(1, len(binding.load(self.instance)))
