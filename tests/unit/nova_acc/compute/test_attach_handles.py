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
"""nova_acc.compute.attach_handles: the backend's contexts on this host."""

from unittest import mock

import fixtures
import os_acc
from oslotest import base

from nova_acc import backends
from nova_acc import binding
from nova_acc import exception
from nova_acc.compute import attach_handles
from tests.unit.nova_acc.compute import rooms


class AttachHandlesTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.fx = self.useFixture(rooms.HostFixture())
        self.backend = mock.Mock()
        self.useFixture(fixtures.MockPatchObject(
            attach_handles.backends, 'get_backend',
            return_value=self.backend))
        self.contexts = attach_handles.TeardownContexts()
        self.handles = attach_handles.AttachHandles(self.fx.host,
                                                    self.contexts)

    def test_release_unbinds_as_the_user_of_the_teardown(self):
        user = mock.Mock()
        self.contexts.remember(rooms.SERVER, user)
        self.handles.unbind_released(rooms.SERVER, ['arq'])
        self.backend.unbind.assert_called_once_with(
            user, mock.ANY, ['arq'], hostname=rooms.NODE)
        self.assertNotIn(rooms.SERVER, self.contexts)

    def test_release_without_teardown_unbinds_as_nova(self):
        self.handles.unbind_released(rooms.SERVER, ['arq'])
        self.backend.unbind_orphaned.assert_called_once_with(
            mock.ANY, rooms.SERVER, ['arq'], hostname=rooms.NODE)

    def test_forget_all_but_the_holders(self):
        self.contexts.remember('a', 1)
        self.contexts.remember('b', 2)
        self.contexts.forget_all_but({'b'})
        self.assertNotIn('a', self.contexts)
        self.assertEqual(2, self.contexts.take('b'))

    def test_unbind_quietly_logs_and_returns(self):
        self.backend.unbind.side_effect = RuntimeError('cyborg down')
        with self.assertLogs('nova_acc.backends', 'ERROR') as logs:
            backends.unbind_quietly(None, mock.Mock(), ['arq'],
                                    'a test says so', hostname='n')
        self.assertIn('Could not unbind device contexts arq (a test says '
                      'so): cyborg down', logs.output[0])
        self.backend.unbind.assert_called_once_with(
            None, mock.ANY, ['arq'], hostname='n')

    def test_unbind_quietly_without_contexts_calls_nobody(self):
        backends.unbind_quietly(None, mock.Mock(), [], 'nothing to do')
        self.backend.unbind.assert_not_called()

    def test_an_unsupported_attach_handle_is_unbound_and_refused(self):
        b = binding.Binding('g0', 'rp', None, rooms.NODE, context_id='arq')
        instance = rooms.server([b])
        self.backend.wait_bound.return_value = {
            'arq': os_acc.Accelerator(interface_type='vdpa')}
        e = self.assertRaises(exception.DeviceNotUsable,
                              self.handles.wait_for_backend, None, instance,
                              None)
        self.assertIn('attach handle type vdpa of device contexts arq',
                      str(e))
        self.backend.unbind.assert_called_once_with(
            None, instance, ['arq'], hostname=rooms.NODE)

    def test_a_pci_attach_handle_becomes_the_binding_address(self):
        b = binding.Binding('g0', 'rp', None, rooms.NODE, context_id='arq')
        instance = rooms.server([b])
        self.backend.wait_bound.return_value = {
            'arq': os_acc.Accelerator(interface_type='pci',
                                      address=rooms.A)}
        self.handles.wait_for_backend(None, instance, None)
        self.assertEqual([rooms.A],
                         [x.address for x in binding.load(instance)])
        instance.save.assert_called_once_with()

    def test_bind_backend_refusal_names_the_contexts(self):
        self.backend.bind.side_effect = exception.BackendUnavailable('no')
        b = binding.Binding('g0', 'rp', None, rooms.NODE, context_id='arq')
        e = self.assertRaises(exception.DeviceNotUsable,
                              self.handles.bind_backend, None, mock.Mock(),
                              [b])
        self.assertIn('device contexts arq could not be bound on node node1',
                      str(e))
