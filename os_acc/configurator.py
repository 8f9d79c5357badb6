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
"""Device configurators: what a device context's config data does.

A device context's ``accel:`` keys (``accel:bitstream_id=<image>``) ask for
something to be done to the device before the guest gets it: program an
FPGA image, set a mode. Which configurator does it is chosen by the device,
not by the user: the operator names it in the ``device_spec`` entry that
selects the device (``"configurator": "fpga_bitstream"``) together with the
keys and values that entry allows (``"config": {"bitstream_id":
"uuid"}``); see ``os_acc.internal.device_spec``.

A configurator is registered as a setuptools entry point in the
``os_acc.configurators`` namespace under its name, as attach plugins are
in ``os_acc``. The host calls ``configure`` after it has claimed the device
in its ledger and before the guest is defined with it, and ``unconfigure``
when the device is released, before it is reset: a failed ``configure``
fails the build on this host (it is rescheduled) and must leave nothing
configured; ``unconfigure`` is best effort, the reset that follows is what
protects the next tenant.
"""

from __future__ import annotations

import abc
import dataclasses
import typing as ty

from stevedore import driver

from os_acc import exception

NAMESPACE = 'os_acc.configurators'


@dataclasses.dataclass(frozen=True)
class ConfigureRequest:
    """What to configure, on which device, for whom.

    :ivar address: the PCI address of the claimed device (for an mdev, of
        its parent).
    :ivar config: ``accel:`` keys without the prefix -> value, already
        checked against the ``device_spec`` entry's allowed values.
    :ivar context_id: the device context (for messages and logs).
    :ivar instance_uuid: the server the device is configured for.
    :ivar request_context: the caller's request context, for configurators
        that fetch data on the user's behalf (an image from Glance); opaque
        to os_acc.
    """

    address: str
    config: ty.Mapping[str, str]
    context_id: str
    instance_uuid: str
    request_context: ty.Any = None


class ConfiguratorBase(metaclass=abc.ABCMeta):
    """Apply and remove a device context's config data on a device."""

    @abc.abstractmethod
    def configure(self, request: ConfigureRequest) -> None:
        """Configure the device as ``request.config`` says.

        :raises os_acc.exception.ConfigureFailed: saying why, in words fit
            for the user's fault (no host paths, no other tenant's data).
        """

    @abc.abstractmethod
    def unconfigure(self, address: str) -> None:
        """Undo what ``configure`` did to ``address``, as far as possible.

        Called before the device is reset on release; must not raise for a
        device that was never configured.
        """


_LOADED: dict[str, ConfiguratorBase] = {}


def load(name: str) -> ConfiguratorBase:
    """The configurator registered as ``name`` (loaded once per process).

    :raises os_acc.exception.ConfiguratorNotFound: none is registered.
    """
    if name not in _LOADED:
        try:
            manager: driver.DriverManager[ConfiguratorBase] = \
                driver.DriverManager(NAMESPACE, name, invoke_on_load=True)
        except Exception as e:  # stevedore raises several kinds
            raise exception.ConfiguratorNotFound(
                'No device configurator %r is installed (entry point '
                'namespace %s): %s' % (name, NAMESPACE, e)) from e
        configurator = manager.driver
        if not isinstance(configurator, ConfiguratorBase):
            raise exception.ConfiguratorNotFound(
                'Device configurator %r is a %s, not a ConfiguratorBase' %
                (name, type(configurator).__name__))
        _LOADED[name] = configurator
    return _LOADED[name]
