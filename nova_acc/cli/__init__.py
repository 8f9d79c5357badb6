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
"""Client-side pieces, now in the client-only distribution.

The code is :mod:`nova_acc_client` (``client/`` of this repository,
``pip install ./client`` where nova-acc is not installed; nova-acc ships
it too). These modules keep the old import paths and entry point targets
(``nova_acc.cli.osc:ServerCreateDeviceContextHook``,
``nova_acc.cli.novaclient_ext``) working:

* ``nova_acc.cli.device_context``: :mod:`nova_acc_client.device_context`;
* ``nova_acc.cli.osc``: :mod:`nova_acc_client.osc.server_create`;
* ``nova_acc.cli.novaclient_ext``: :mod:`nova_acc_client.novaclient_ext`.
"""
