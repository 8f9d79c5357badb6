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
"""Which moves of a server with device contexts are refused, and why."""

from nova import objects
from oslotest import base

from nova_acc import binding
from nova_acc import moves

objects.register_all()


def server(*bindings):
    instance = objects.Instance(system_metadata={})
    binding.replace(instance, list(bindings))
    return instance


POOL = binding.Binding('nova_acc_0_0', 'pool', None, 'n1', amount=2,
                       resource_class='FPGA')
ARQ = binding.Binding('nova_acc_1_0', 'rp', None, 'n1',
                      context_id='3f1a2b4c-0000-4000-8000-000000000001')
SINGLE = binding.Binding('nova_acc_2_0', 'rp', '0000:81:00.0', 'n1')


class MoveRefusalTest(base.BaseTestCase):

    def test_servers_without_device_contexts_move_freely(self):
        self.assertIsNone(moves.live_migration_refusal(server(), None))
        self.assertIsNone(moves.cold_migration_refusal(server()))

    def test_live_migration_is_refused_without_replug(self):
        for bound in (POOL, ARQ, SINGLE):
            self.assertIn('cold migrate the server instead',
                          moves.live_migration_refusal(server(bound),
                                                       lambda rp: set()))
        self.assertIn('device group(s) nova_acc_0_0: their devices cannot '
                      'move', moves.live_migration_refusal(
                          server(POOL), lambda rp: {'CUSTOM_OTHER'}))

    def test_live_migration_of_pools_that_allow_replug(self):
        replug = {'CUSTOM_ACC_LIVE_MIGRATION_REPLUG'}
        self.assertIsNone(moves.live_migration_refusal(
            server(POOL), lambda rp: replug))
        # Never for the contexts of a backend or single devices.
        for bound in (ARQ, SINGLE):
            self.assertIsNotNone(moves.live_migration_refusal(
                server(bound), lambda rp: replug))

    def test_live_migration_of_pools_whose_vgpus_migrate(self):
        migrate = {'CUSTOM_ACC_LIVE_MIGRATION_MIGRATE'}
        self.assertIsNone(moves.live_migration_refusal(
            server(POOL), lambda rp: migrate))

    def test_a_server_mixing_migrate_and_replug_is_refused(self):
        other = binding.Binding('nova_acc_3_0', 'pool2', None, 'n1',
                                amount=1, resource_class='VGPU')
        traits = {'pool': {'CUSTOM_ACC_LIVE_MIGRATION_REPLUG'},
                  'pool2': {'CUSTOM_ACC_LIVE_MIGRATION_MIGRATE'}}
        reason = moves.live_migration_refusal(server(POOL, other),
                                              traits.__getitem__)
        self.assertIn('device groups nova_acc_3_0 whose devices migrate with '
                      'the guest and groups nova_acc_0_0 whose devices are '
                      'unplugged', reason)

    def test_pool_bindings_resize_and_cold_migrate(self):
        self.assertIsNone(moves.cold_migration_refusal(server(POOL)))

    def test_backend_contexts_resize_and_cold_migrate(self):
        self.assertIsNone(moves.cold_migration_refusal(server(POOL, ARQ)))

    def test_single_device_bindings_are_refused(self):
        reason = moves.cold_migration_refusal(server(SINGLE))
        self.assertIn('bound to single devices before device pools '
                      '(nova_acc_2_0)', reason)
