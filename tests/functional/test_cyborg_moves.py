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
"""Moves of servers whose device context is a Cyborg ARQ, with real Cyborg.

Resize, cold migration and evacuate move the ARQ with the server: the
destination has Cyborg bind it to the provider of the move's allocation
there; a revert binds it back to the source's provider. The ARQ stays in
its owner's project whoever moves the server.
"""

from nova.tests.fixtures import libvirt as fakelibvirt

from nova_acc.tests.fixtures.cyborg import cloud as cyborg_cloud
from tests.functional import base
from tests.functional import test_moves

GiB_in_kB = 1024 * 1024


class CyborgMoveTestMixin(test_moves.MoveTestMixin,
                          cyborg_cloud.CyborgCloudMixin):
    #: The FPGA of compute2 at the same PCI address as compute1's.
    SAME_ADDRESSES = False
    # Moves are casts: the API answers before the computes act, and the
    # Cyborg child's events reach Nova's API while a move is under way.
    CAST_AS_CALL = False

    def setUp(self):
        super().setUp()
        # Nova's RAM weigher makes compute1 (more memory) the first choice.
        self.rps = {
            'compute1': self.start_cyborg_host(
                'compute1', '0000:90:00.0',
                host_info=fakelibvirt.HostInfo(kB_mem=32 * GiB_in_kB)),
            'compute2': self.start_cyborg_host(
                'compute2',
                '0000:90:00.0' if self.SAME_ADDRESSES else '0000:91:00.0',
                host_info=fakelibvirt.HostInfo(kB_mem=16 * GiB_in_kB)),
        }
        self.address = {h: '0000:90:00.0' if h == 'compute1' or
                        self.SAME_ADDRESSES else '0000:91:00.0'
                        for h in self.rps}
        self.ctx = self.create_context()
        self.server = self.boot(self.ctx, flavor_id=self.small)
        self.assertEqual('compute1', self.host_of(self.server))
        self.assert_bound_on('compute1')

    def assert_bound_on(self, host):
        """The ARQ, the guests and placement agree: the server is on host."""
        arq = self.member.get_arq(self.ctx)
        self.assertEqual(
            ('Bound', self.server['id'], host, self.rps[host],
             self.project),
            (arq['state'], arq['instance_uuid'], arq['hostname'],
             arq['device_rp_uuid'], arq['project_id']))
        self.assertEqual([self.address[host]],
                         self.domain_hostdevs(host, self.server))
        self.assertIn(self.rps[host], self._get_allocations_by_server_uuid(
            self.server['id']))

    def assert_gone_from(self, host):
        self.assertEqual([], self.domain_hostdevs(host, self.server))
        self.assertEqual({'FPGA': 0}, self.provider_usage(self.rps[host]))

    def assert_no_device_in_two_guests(self):
        for host in self.computes:
            used = [a for addresses in self.domain_hostdevs(host).values()
                    for a in addresses]
            self.assertEqual(len(used), len(set(used)), host)

    def assert_context_boots_again_after_delete(self):
        self._delete_server(self.server)
        # Nova's resource tracker on a move's destination tracks the moved
        # server from its next resource update on: a delete before that
        # releases the server's ARQ at that update, as Nova frees the PCI
        # devices of such a server.
        self._run_periodics()
        arq = self.member.get_arq(self.ctx)
        self.assertEqual(('Unbound', None, self.project),
                         (arq['state'], arq['instance_uuid'],
                          arq['project_id']))
        for host in self.rps:
            self.assert_gone_from(host)
        # Like a port: the ARQ boots the next server.
        self.server = self.boot(self.ctx, flavor_id=self.small)
        self.assert_bound_on(self.host_of(self.server))


class CyborgResizeTest(CyborgMoveTestMixin, base.DeviceContextTestBase):

    def resize_away(self):
        self.server = self._resize_server(self.server, self.bigger)
        self.assertEqual('compute2', self.host_of(self.server))
        self.assert_bound_on('compute2')
        # The source's guest is shut off with its device until confirm;
        # the migration's allocation keeps the source's FPGA for it, so no
        # other server can be given it meanwhile.
        self.assertEqual([self.address['compute1']],
                         self.domain_hostdevs('compute1', self.server))
        self.assertEqual({'FPGA': 1},
                         self.provider_usage(self.rps['compute1']))
        self.assert_no_device_in_two_guests()

    def test_resize_and_confirm(self):
        self.resize_away()

        self._confirm_resize(self.server)

        self.assert_bound_on('compute2')
        self.assert_gone_from('compute1')
        # The source's cleanup did not unbind the ARQ bound on compute2.
        self._run_periodics()
        self.assert_bound_on('compute2')
        self.assert_context_boots_again_after_delete()

    def test_resize_and_revert(self):
        self.resize_away()

        self._revert_resize(self.server)

        self.assertEqual('compute1', self.host_of(self.server))
        self.assert_bound_on('compute1')
        self.assert_gone_from('compute2')
        self._run_periodics()
        self.assert_bound_on('compute1')
        self.assert_context_boots_again_after_delete()

    def test_cold_migration_by_the_admin_keeps_the_owner(self):
        # Cold migration is the admin's: a real admin sends a token of
        # their own, and Nova passes it on to Cyborg.
        with self.acting_as_admin():
            self._migrate_server(self.server)
        self._wait_for_state_change(self.server, 'VERIFY_RESIZE')
        self.assert_bound_on('compute2')

        self._confirm_resize(self.server)

        self.assert_bound_on('compute2')
        self.assert_gone_from('compute1')
        self.assert_context_boots_again_after_delete()

    def test_destination_bind_failure_leaves_nothing_bound(self):
        # Another server takes compute2's FPGA; then compute2 gets a second
        # provider whose device Cyborg does not know: a bind there fails,
        # and it is the only free FPGA left for the move.
        other_ctx = self.create_context()
        other = self.boot(other_ctx, flavor_id=self.small)
        self.assertEqual('compute2', self.host_of(other))
        self.rps['compute2b'] = self.add_cyborg_device(
            'compute2', '0000:92:00.0', known_to_cyborg=False)

        self.api.post_server_action(
            self.server['id'], {'resize': {'flavorRef': self.bigger}})
        server = self._wait_for_state_change(self.server, 'ERROR')

        # As Nova fails any finish_resize: ERROR on the destination, with
        # what went wrong; the ARQ is bound nowhere, no guest has it.
        self.assertIn('could not be bound on node compute2',
                      self.fault_message(server))
        arq = self.member.get_arq(self.ctx)
        self.assertEqual(('Unbound', None, self.project),
                         (arq['state'], arq['instance_uuid'],
                          arq['project_id']))
        self.assertEqual([], self.domain_hostdevs('compute2', server))
        self.assert_no_device_in_two_guests()
        # The other server on compute2 keeps its ARQ and its device.
        arq = self.member.get_arq(other_ctx)
        self.assertEqual(('Bound', other['id'], 'compute2'),
                         (arq['state'], arq['instance_uuid'],
                          arq['hostname']))
        self.assertEqual([self.address['compute2']],
                         self.domain_hostdevs('compute2', other))


class CyborgResizeSameAddressesTest(CyborgResizeTest):
    SAME_ADDRESSES = True


class CyborgEvacuateTest(CyborgMoveTestMixin, base.DeviceContextTestBase):

    def service_id(self, host):
        return next(s['id'] for s in self.api.get_services(
            binary='nova-compute', host=host))

    def test_evacuate_then_the_source_comes_back(self):
        self.computes['compute1'].stop()
        self.api.put_service_force_down(self.service_id('compute1'), True)

        # From microversion 2.95 on an evacuated server is stopped on its
        # new host; its guest is defined there with the new host's device.
        with self.acting_as_admin():
            self.server = self._evacuate_server(
                self.server, expected_host='compute2',
                expected_state='SHUTOFF')
        # (Starting it is test_moves.EvacuateTest's: with casts as casts,
        # fake libvirt has no disk file for a guest rebuilt from image.)
        self.assert_bound_on('compute2')

        # As Nova asks: restart the source first, then force it up. Nova
        # destroys the evacuated guest there; the ARQ, bound on compute2,
        # stays bound.
        self.restart_compute_service('compute1')
        self.api.put_service_force_down(self.service_id('compute1'), False)
        self.assert_gone_from('compute1')
        self.assert_bound_on('compute2')
        self.assert_no_device_in_two_guests()
        self.assert_context_boots_again_after_delete()


class CyborgEvacuateSameAddressesTest(CyborgEvacuateTest):
    SAME_ADDRESSES = True
