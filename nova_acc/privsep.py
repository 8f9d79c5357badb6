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
"""The one thing nova-compute does for nova-acc as root: reset a device.

nova-compute runs as an unprivileged user, and a PCI function's sysfs
``reset`` file is root's. As Nova does for its own privileged operations
(``nova.privsep``), the reset runs in an oslo.privsep daemon with the single
capability it needs; the daemon is started through rootwrap with the filter
nova-acc ships (``etc/nova/rootwrap.d/nova-acc.filters``; see the operator
guide). ``os_acc.reset_device`` itself validates the address and keeps the
write inside the sysfs root.
"""

from oslo_privsep import capabilities
from oslo_privsep import priv_context

import os_acc

sys_admin_pctxt = priv_context.PrivContext(
    'nova_acc',
    cfg_section='nova_acc_sys_admin',
    pypath=__name__ + '.sys_admin_pctxt',
    # Writing a root-owned sysfs attribute.
    capabilities=[capabilities.CAP_DAC_OVERRIDE],
)


@sys_admin_pctxt.entrypoint
def reset_device(address: str, sysfs_root: str) -> bool:
    """``os_acc.reset_device`` as root; see there."""
    return os_acc.reset_device(address, sysfs_root=sysfs_root)
