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
"""Client-side pieces: device-context options for the openstack and nova CLIs.

* ``nova_acc.cli.osc``: a cliff command hook adding ``--device-context``
  to ``openstack server create`` (entry point namespace
  ``openstack.cli.server_create``).
* ``nova_acc.cli.novaclient_ext``: a novaclient extension adding
  ``--device-context-id`` and ``--device-context`` to ``nova boot``
  (entry point namespace ``novaclient.extension``).

Both only put the values into the ``device_context`` scheduler hint (sent
as ``os:scheduler_hints``), after checking them with
:mod:`nova_acc.cli.device_context`. Nothing here imports Nova: these run on
users' machines, where only the clients (``pip install nova-acc[cli]``)
are installed.
"""
