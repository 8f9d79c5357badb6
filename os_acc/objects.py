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
"""Typed objects of the os_acc API.

These are plain dataclasses: os_acc runs on the hypervisor side and has no
need for oslo.versionedobjects' RPC versioning.
"""

from __future__ import annotations

import dataclasses

from os_acc.internal import grammar


@dataclasses.dataclass
class DeviceContextGroup:
    """One request group of a device context: what must land on one device.

    :ivar resources: resource class -> positive amount.
    :ivar required_traits: traits the device must have.
    :ivar forbidden_traits: traits the device must not have.
    :ivar config: ``accel:`` keys without the prefix -> value, passed to
        the backend (for example a bitstream to program).
    """

    resources: dict[str, int] = dataclasses.field(default_factory=dict)
    required_traits: set[str] = dataclasses.field(default_factory=set)
    forbidden_traits: set[str] = dataclasses.field(default_factory=set)
    config: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DeviceContext:
    """A per-request accelerator request: one or more groups."""

    groups: list[DeviceContextGroup] = dataclasses.field(default_factory=list)

    def to_spec(self) -> str:
        """Return the canonical string form.

        Resources, then traits, then ``accel:`` keys, each sorted by name;
        groups in order, joined by ``;``. The context is validated with the
        parser's rules, so ``parse_device_context`` of the result is equal
        to this context.

        :raises os_acc.exception.InvalidDeviceContext: if it is not valid.
        """
        groups: object = self.groups
        if not isinstance(groups, list):
            raise grammar.error('Device context has no request groups')
        grammar.check_group_count(len(groups))
        group_specs = []
        for index, group in enumerate(groups, 1):
            where = '#%d' % index
            if not isinstance(group, DeviceContextGroup):
                raise grammar.error(
                    'Request group %s is a %s, not a DeviceContextGroup',
                    where, type(group).__name__)
            group_specs.append(grammar.format_group(
                group.resources, group.required_traits,
                group.forbidden_traits, group.config, where))
        return grammar.join_groups(group_specs)


@dataclasses.dataclass
class Device:
    """A PCI function found on the host (sysfs or libvirt node devices).

    ``vendor_id``/``product_id`` are 4 lowercase hex digits without ``0x``;
    ``class_code`` is 6 lowercase hex digits. ``mdev_types`` maps an mdev
    type name to the instances still available. ``resource_class`` and
    ``traits`` are what the matching ``device_spec`` entry assigns;
    ``mdev_type`` is set when that entry offers mediated devices of that
    type on this parent rather than the whole function.
    """

    address: str
    vendor_id: str
    product_id: str
    class_code: str | None = None
    numa_node: int | None = None
    iommu_group: int | None = None
    driver: str | None = None
    physfn: str | None = None
    sriov_totalvfs: int | None = None
    sriov_numvfs: int | None = None
    mdev_types: dict[str, int] = dataclasses.field(default_factory=dict)
    resource_class: str | None = None
    traits: set[str] = dataclasses.field(default_factory=set)
    mdev_type: str | None = None

    @property
    def is_vf(self) -> bool:
        return self.physfn is not None

    @property
    def is_pf(self) -> bool:
        return bool(self.sriov_totalvfs)


@dataclasses.dataclass(frozen=True)
class MediatedDevice:
    """A mediated device (vGPU, ...) that exists on the host.

    :ivar uuid: canonical lowercase UUID, what a guest's
        ``<hostdev type='mdev'>`` names.
    :ivar parent: PCI address of its parent device (the GPU).
    :ivar mdev_type: its type (``nvidia-35``).
    """

    uuid: str
    parent: str | None
    mdev_type: str | None


@dataclasses.dataclass
class Accelerator:
    """What to attach to a guest.

    :ivar interface_type: ``pci`` (VFIO passthrough of ``address``) or
        ``mdev`` (mediated device ``mdev_uuid``).
    :ivar parent, mdev_type: for an mdev, where and of what type it is (or
        is to be created); not part of the guest's XML.
    """

    interface_type: str
    address: str | None = None
    mdev_uuid: str | None = None
    parent: str | None = None
    mdev_type: str | None = None


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """What ``PluginBase.describe()`` returns.

    :ivar plugin_name: the entry point name, which is also the
        ``Accelerator.interface_type`` the plugin handles.
    """

    plugin_name: str
    description: str
