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
"""Makes nova-acc's driver reachable by ``[DEFAULT] compute_driver``.

Nova only loads compute drivers from the ``nova.virt`` package
(``nova.virt.driver.load_compute_driver`` prefixes the option with
``nova.virt.``), so out-of-tree drivers ship a module there, as nova-powervm
and nova-zvm did. Enable with::

    [DEFAULT]
    compute_driver = nova_acc.LibvirtAccDriver

Nothing else lives here: the driver is ``nova_acc.seams.libvirt``.
"""

from nova_acc.seams.libvirt import LibvirtAccDriver  # noqa: F401
