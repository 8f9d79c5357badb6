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
"""nova-acc's tempest plugin (entry point ``tempest.test_plugins``)."""

import os

from tempest import config
from tempest.test_discover import plugins

from nova_acc_tempest_plugin import config as plugin_config


class NovaAccTempestPlugin(plugins.TempestPlugin):

    def load_tests(self):
        base_path = os.path.split(os.path.dirname(
            os.path.abspath(__file__)))[0]
        test_dir = 'nova_acc_tempest_plugin/tests'
        full_test_dir = os.path.join(base_path, test_dir)
        return full_test_dir, base_path

    def register_opts(self, conf):
        config.register_opt_group(
            conf, config.service_available_group,
            plugin_config.service_available_opts)
        config.register_opt_group(
            conf, plugin_config.nova_acc_group, plugin_config.nova_acc_opts)
        config.register_opt_group(
            conf, plugin_config.device_context_group,
            plugin_config.device_context_opts)

    def get_opt_lists(self):
        return [
            (plugin_config.nova_acc_group.name, plugin_config.nova_acc_opts),
            (plugin_config.device_context_group.name,
             plugin_config.device_context_opts),
            ('service_available', plugin_config.service_available_opts),
        ]

    def get_service_clients(self):
        """nova-acc-api's client, as ``<credentials>.device_context``."""
        params = config.service_client_config(
            plugin_config.device_context_group.name)
        params.update({
            'name': 'device_context',
            'service_version': 'device_context.v1',
            'module_path': 'nova_acc_tempest_plugin.services',
            'client_names': ['DeviceContextClient'],
        })
        return [params]
