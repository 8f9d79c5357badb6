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
"""Every exception nova-acc raises, one name per distinct failure.

Nothing here imports Nova, so the command-line hooks can use it where Nova
is not installed. Where Nova must see one of its own exceptions (a
``ComputeResourcesUnavailable`` makes nova-compute reschedule a server),
the seam that overrides Nova translates (``nova_acc.seams``).
"""


class NovaAccException(Exception):
    """Base class of nova-acc's exceptions; the message says what to fix."""


# ---- step 1: the hint -------------------------------------------------------

class InvalidDeviceContextHint(NovaAccException, ValueError):
    """A ``device_context`` hint value cannot be used (becomes the fault)."""


# ---- ID-based contexts: backends -------------------------------------------

class ContextRefused(NovaAccException, ValueError):
    """The user may not use this device context; the message says why."""


class BackendUnavailable(NovaAccException):
    """The backend service cannot be reached or answered unexpectedly."""


# ---- step 3: binding (conductor) -------------------------------------------

class PrebindFailed(NovaAccException):
    """The devices placement allocated cannot be bound on the chosen node.

    Recorded on the instance, not raised to Nova: the compute turns it into
    a reschedule of this one server.
    """


class BindingCannotMove(PrebindFailed):
    """A server's groups cannot be bound to its move's allocation.

    Raised on the destination compute of a move (``binding.for_move``),
    which fails the move with it (``DeviceNotUsable``); nothing is
    recorded. A kind of PrebindFailed: the same matcher says it.
    """


# ---- inventory and the device ledger (compute) ------------------------------

class InvalidDeviceSpecConfig(NovaAccException, ValueError):
    """A ``[nova_acc] device_spec`` line is not a JSON object."""


class ConflictingDeviceSpec(NovaAccException):
    """A device is selected by both ``[nova_acc]`` and ``[pci]`` specs."""

    def __init__(self, address: str):
        super().__init__(
            'Device %s is selected by both [nova_acc] device_spec and [pci] '
            'device_spec; one service must own it.' % address)
        self.address = address


class ConflictingMdevConfig(NovaAccException):
    """Nova's own vGPU support and nova-acc's mdev types on one host."""

    def __init__(self):
        super().__init__(
            '[devices] enabled_mdev_types is set and [nova_acc] device_spec '
            'has mdev_type entries: Nova would hand out mdevs nova-acc '
            'created for other servers. Use one of them on a host.')


class MdevError(NovaAccException):
    """A mediated device could not be created or removed; says why."""


class LedgerError(NovaAccException):
    """The ledger file cannot be read or written; the message says why."""


class LedgerUnreadable(LedgerError):
    """The ledger cannot be read now: an I/O error (EIO), too many open
    files (EMFILE), no permission, or a link or special file where the
    ledger or its lock file should be.

    It says nothing of the devices: the file is kept as it is, the
    operation fails, and nothing is released or handed out on the strength
    of it (fail closed). The next attempt reads it again.
    """


class LedgerCorrupt(LedgerError):
    """The ledger file holds something that is not a ledger: not JSON, not
    this version, or a bad record.

    nova-compute moves it aside (``<node>.json.corrupt-<time>``) and
    rebuilds the ledger from the servers and guests of the host, resetting
    every device no server is known to hold before it is handed out.
    """


class DeviceNotFree(NovaAccException):
    """The ledger cannot give a device to a server: who holds it, or why."""


class DeviceNotUsable(NovaAccException):
    """A server's bound device cannot be used on this host.

    Raised by the compute-side steps; the libvirt seam turns it into Nova's
    ``ComputeResourcesUnavailable`` so the server is rescheduled.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class DeviceListingFailed(DeviceNotUsable):
    """libvirt could not list the host's PCI devices (it timed out, say).

    Nova's own ``Host.list_all_devices`` logs such an error and returns no
    device; nova-acc must not read that as "every device is gone" (fail
    closed): a build reschedules, and a resource update leaves the device
    pools as last reported and releases nothing.
    """


# ---- operator command ------------------------------------------------------

class CommandFailed(NovaAccException):
    """``nova-acc-manage`` could not do what it was asked; says why."""
