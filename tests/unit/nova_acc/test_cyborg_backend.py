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
"""Small pieces of the Cyborg backend; the flow is tested against the real
Cyborg in tests/functional/test_cyborg_backend.py."""

from unittest import mock

import fixtures
from nova import context as nova_context
from nova import objects
import os_acc
from oslo_policy import policy as oslo_policy
from oslotest import base

from nova_acc.backends import base as backend_base
from nova_acc.backends import cyborg
from nova_acc import conf
from nova_acc import policy

objects.register_all()

PROJECT = 'a' * 32
ARQ = 'c9d3b7a8-0a4e-4a5e-9d61-0d3b2f1e7a10'
INSTANCE = '5b0f1b8e-2f5a-4c37-8a0e-3c1f2d4b6a77'
PROFILE = {'device_profiles': [{'name': 'p', 'groups': [
    {'resources:FPGA': '1', 'trait:CUSTOM_GZIP': 'required'}]}]}


class AttachHandleTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        os_acc.initialize()

    def arq(self, handle_type, info):
        return {'uuid': ARQ, 'attach_handle_type': handle_type,
                'attach_handle_info': info}

    def test_pci_handle(self):
        acc = cyborg._accelerator(self.arq('PCI', {
            'domain': '0000', 'bus': '81', 'device': '00', 'function': '1'}))
        self.assertEqual(('pci', '0000:81:00.1'),
                         (acc.interface_type, acc.address))

    def test_mdev_handle(self):
        acc = cyborg._accelerator(self.arq('MDEV', {'uuid': INSTANCE}))
        self.assertEqual(('mdev', INSTANCE), (acc.interface_type,
                                              acc.mdev_uuid))

    def test_malformed_handles_never_reach_libvirt(self):
        for handle_type, info in (
                ('PCI', {'domain': '0000', 'bus': "81'/><x", 'device': '00',
                         'function': '0'}),
                ('PCI', {'domain': '0000', 'bus': '81'}),
                ('MDEV', {'uuid': 'not-a-uuid'}),
                ('NVME', {})):
            e = self.assertRaises(backend_base.BackendUnavailable,
                                  cyborg._accelerator,
                                  self.arq(handle_type, info))
            self.assertIn('unusable attach handle', str(e))


class ResolveTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.backend = cyborg.CyborgBackend()
        self.arq = {'uuid': ARQ, 'project_id': PROJECT, 'state': 'Initial',
                    'instance_uuid': None, 'device_profile_name': 'p',
                    'device_profile_group_id': 0}
        responses = {
            '/accelerator_requests/%s' % ARQ: lambda: (200, self.arq),
            '/device_profiles': lambda: (200, PROFILE),
        }

        def call(context, method, url, what, expected=(200,), **kw):
            status, body = responses[url]()
            return mock.Mock(status_code=status, json=lambda: body)
        self.useFixture(fixtures.MockPatchObject(self.backend, '_call', call))
        # The policy defaults, without a policy file.
        enforcer = oslo_policy.Enforcer(conf.CONF, use_conf=False)
        enforcer.register_defaults(policy.list_rules())
        enforcer.set_rules(oslo_policy.Rules(
            {rule.name: rule.check for rule in policy.list_rules()}),
            use_conf=False)
        self.useFixture(fixtures.MockPatchObject(policy, '_ENFORCER',
                                                 enforcer))
        self.spec = objects.RequestSpec(project_id=PROJECT,
                                        instance_uuid=INSTANCE)
        self.ctx = nova_context.RequestContext('user', PROJECT,
                                               is_admin=False,
                                               roles=['member'])

    def resolve(self):
        return self.backend.resolve(self.ctx, self.spec, ARQ)

    def test_profile_group_becomes_the_context(self):
        group = self.resolve().device_context.groups[0]
        self.assertEqual({'FPGA': 1}, group.resources)
        self.assertEqual({'CUSTOM_GZIP'}, group.required_traits)

    def test_other_project_refused_without_admin(self):
        self.arq['project_id'] = 'b' * 32
        e = self.assertRaises(backend_base.ContextRefused, self.resolve)
        self.assertIn('belongs to another project', str(e))
        self.ctx.roles = ['admin']
        self.resolve()

    def test_bound_elsewhere_refused(self):
        self.arq.update(state='Bound', instance_uuid='other-server')
        e = self.assertRaises(backend_base.ContextRefused, self.resolve)
        self.assertIn('is Bound to server other-server', str(e))

    def test_half_bound_by_a_failed_bind_is_recoverable(self):
        for owner in (None, INSTANCE):
            self.arq.update(state='BindStarted', instance_uuid=owner)
            self.resolve()
        self.arq.update(state='BindStarted', instance_uuid='other-server')
        self.assertRaises(backend_base.ContextRefused, self.resolve)

    def test_group_amount_is_per_arq(self):
        group = PROFILE['device_profiles'][0]['groups'][0]
        group['resources:FPGA'] = '2'
        self.addCleanup(group.update, {'resources:FPGA': '1'})
        self.assertEqual({'FPGA': 1},
                         self.resolve().device_context.groups[0].resources)
