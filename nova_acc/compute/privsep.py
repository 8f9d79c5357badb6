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
guide), which gives it root's ``/etc/nova/nova.conf`` to read.

The daemon trusts nothing from its caller but a PCI address, and checks
that: the sysfs root (``[nova_acc] sysfs_root``) and the devices it may
reset (the whole-device entries of ``[nova_acc] device_spec``) come from
its own configuration, and it resets only a device those entries select,
as sysfs describes it. ``os_acc.reset_device`` follows no link on the way
but the device's own entry in ``bus/pci/devices``. Whoever speaks for
nova-compute's user can so reset the devices nova-acc manages, and nothing
else.
"""

from oslo_privsep import capabilities
from oslo_privsep import priv_context

import os_acc

from nova_acc import conf

CONF = conf.CONF

sys_admin_pctxt = priv_context.PrivContext(
    'nova_acc',
    cfg_section='nova_acc_sys_admin',
    pypath=__name__ + '.sys_admin_pctxt',
    # Writing a root-owned sysfs attribute.
    capabilities=[capabilities.CAP_DAC_OVERRIDE],
)


def reset_managed_device(address: str) -> bool:
    """Reset ``address`` if this process's configuration manages it.

    What the daemon runs for ``reset_device``; ``nova-acc-manage`` runs it
    in its own process when it need not give up root.

    :returns: as ``os_acc.reset_device``.
    :raises os_acc.exception.DeviceNotManaged: no whole-device entry of
        ``[nova_acc] device_spec`` selects the device.
    :raises: the other errors of ``os_acc.reset_device``.
    """
    return os_acc.reset_device(address, sysfs_root=CONF.nova_acc.sysfs_root,
                               device_specs=conf.device_specs())


@sys_admin_pctxt.entrypoint
def reset_device(address: str) -> bool:
    """``reset_managed_device`` as root: only the address crosses over."""
    return reset_managed_device(address)


def reset_for_release(address: str, sysfs_root: str) -> bool:
    """``reset_device`` as a ``nova_acc.compute.release.Resetter``.

    ``sysfs_root`` is not passed on: the daemon uses its own.
    """
    return reset_device(address)
