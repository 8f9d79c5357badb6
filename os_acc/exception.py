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
"""Exceptions raised by os_acc.

Every error a caller can cause with bad input is a ``ValueError`` subclass,
so a service can turn it into a 400-style message without knowing os_acc.
"""


class OsAccException(Exception):
    """Base class of every os_acc exception."""


class InvalidDeviceContext(OsAccException, ValueError):
    """A device-context spec could not be parsed or failed validation.

    The message names the offending token.
    """


class InvalidDeviceSpec(OsAccException, ValueError):
    """A ``device_spec`` entry (operator configuration) is malformed."""


class InvalidNodeDevice(OsAccException, ValueError):
    """libvirt described a PCI node device without a usable address or IDs.

    Raised by ``device_from_nodedev_xml``; ``discover_from_nodedevs`` logs
    it and leaves the device out.
    """


class InvalidAccelerator(OsAccException, ValueError):
    """An Accelerator has a malformed address, UUID or interface type."""


class PluginNotFound(OsAccException):
    """No os_acc plugin is registered for an interface type."""


class DeviceNotFound(OsAccException):
    """A device is not present in sysfs."""


class ResetNotSupported(OsAccException):
    """The device offers no function-level reset through sysfs."""


class ResetFailed(OsAccException):
    """The kernel failed the reset of a device (the device's verdict).

    Distinct from an error that kept the reset from being attempted at
    all (no privilege, a privsep daemon that is down): such a device may
    be fine and is reset again later, while one whose reset failed stays
    out of service until an operator clears it.
    """


class DeviceNotManaged(OsAccException):
    """A reset was asked for a device no ``device_spec`` entry selects.

    The privileged side checks this itself, so a caller cannot have any
    other PCI function of the host reset.
    """


class InvalidDeviceAddress(OsAccException, ValueError):
    """Something given as a PCI address is not one.

    A string not of the form DDDD:BB:SS.F, or a ``PciAddress`` field out of
    its range.
    """


class LibraryNotInitialized(OsAccException):
    """os_acc.initialize() must be called before using plugins."""


class InvalidConfig(OsAccException, ValueError):
    """A device context's config data is not what the device allows.

    The message names the key (and the value, when the key is allowed) and
    what the operator's ``device_spec`` allows instead.
    """


class ConfiguratorNotFound(OsAccException):
    """A ``device_spec`` entry names a configurator that is not installed."""


class ConfigureFailed(OsAccException):
    """A configurator could not configure a device.

    The message says why in words fit for the user's fault.
    """
