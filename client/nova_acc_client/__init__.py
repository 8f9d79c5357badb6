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
"""nova-acc-client: the user side of nova-acc, without Nova or libvirt.

* :mod:`nova_acc_client.contexts`: ``DeviceContextClient``, the Python
  client of nova-acc-api (the ``device-context`` service);
* :mod:`nova_acc_client.osc`: the python-openstackclient plugin
  (``openstack device context create|list|show|set|delete``) and the
  ``openstack server create --device-context`` hook;
* :mod:`nova_acc_client.novaclient_ext`: ``nova boot --device-context-id``
  and ``--device-context``;
* :mod:`nova_acc_client.hint` and :mod:`nova_acc_client.device_context`:
  the ``device_context`` hint's vocabulary and the checks made before a
  request is sent.

The package lives at the repository's top level, beside ``nova_acc`` and
``os_acc``: nova-acc (the server distribution, built by pbr from git)
ships it too, and re-exports it as ``nova_acc.api.client``,
``nova_acc.cli`` and ``nova_acc.hint``. ``client/`` holds the client-only
distribution's metadata (``setup.cfg``, plain setuptools) and a link to
this package, so that ``pip install ./client`` (pip 21.3 or later, which
builds in place) builds nothing else. Nothing here imports Nova, libvirt,
nova_acc or os_acc (``tests/unit/nova_acc/test_packaging.py`` checks it).
"""
