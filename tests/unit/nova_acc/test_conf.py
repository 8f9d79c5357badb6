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
"""nova-acc's options register on any ConfigOpts, as oslo.config tools do."""

from oslo_config import cfg
from oslotest import base

from nova_acc import conf


class RegisterOptsTest(base.BaseTestCase):

    def test_registers_on_more_than_one_config(self):
        # oslo-config-generator, nova-status and tests each build their
        # own ConfigOpts; the option groups are module-level objects.
        for _ in range(2):
            config = cfg.ConfigOpts()
            conf.register_opts(config)
            config([])
            self.assertEqual('device-context',
                             config.device_context_api.service_type)
            self.assertIsNone(config.device_context_api.version)
