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
"""Base class of os_acc plugins.

A plugin handles one accelerator interface type (``pci``, ``mdev``, ...). It
is registered as a setuptools entry point in the ``os_acc`` namespace under
the name of that interface type, and loaded by ``os_acc.initialize()``.
"""

from __future__ import annotations

import abc
import typing as ty

if ty.TYPE_CHECKING:
    from nova.virt.libvirt import config as vconfig
    from nova.virt.libvirt import guest as libvirt_guest
    from nova.virt.libvirt import host as libvirt_host

    from os_acc import objects


class PluginBase(metaclass=abc.ABCMeta):
    """Attach and detach accelerators of one interface type."""

    @abc.abstractmethod
    def describe(self) -> objects.PluginInfo:
        """Return what this plugin is, for logs and diagnostics."""

    @abc.abstractmethod
    def get_config(
            self, acc: objects.Accelerator) -> vconfig.LibvirtConfigObject:
        """Return the libvirt config of the device ``acc`` describes.

        :raises os_acc.exception.InvalidAccelerator: if ``acc`` is
            malformed.
        """

    @abc.abstractmethod
    def attach(self, acc: objects.Accelerator,
               guest: libvirt_guest.Guest,
               host: libvirt_host.Host,
               instance: ty.Any) -> None:
        """Attach ``acc`` to ``guest``.

        :param instance: the Nova instance, used for logging only.
        """

    @abc.abstractmethod
    def detach(self, acc: objects.Accelerator,
               guest: libvirt_guest.Guest,
               host: libvirt_host.Host,
               instance: ty.Any) -> None:
        """Detach ``acc`` from ``guest``.

        :param instance: the Nova instance, used for logging only.
        """
