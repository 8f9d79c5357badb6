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
"""PCI addresses and mdev UUIDs: the one place that parses and formats them.

A PCI address reaches os_acc and nova-acc in several spellings: sysfs names
(``0000:3b:02.1``), libvirt ``<address domain='0x0000' bus='0x3b'
slot='0x02' function='0x1'/>`` attributes, the decimal ``<domain>``,
``<bus>``, ``<slot>`` and ``<function>`` of a node device, and Cyborg attach
handles. :class:`PciAddress` reads each of them and writes the sysfs form,
so that two spellings of one function always compare equal as strings.
"""

from __future__ import annotations

import dataclasses
import re
import typing as ty

from os_acc import exception

# Domain is 16 bits, bus 8 bits, slot 5 bits and function 3 bits: the slot
# pattern allows 0x00-0x1f only, so every string accepted here names an
# address that can exist.
_PCI_ADDRESS_RE = re.compile(
    r'(?P<domain>[0-9a-fA-F]{4}):(?P<bus>[0-9a-fA-F]{2}):'
    r'(?P<slot>[01][0-9a-fA-F])\.(?P<function>[0-7])')
# One field of libvirt's <address> element or of a Cyborg attach handle.
_HEX_FIELD_RE = re.compile(r'(?:0[xX])?([0-9a-fA-F]{1,4})')

#: Field name -> largest value, in address order.
_LIMITS = {'domain': 0xffff, 'bus': 0xff, 'slot': 0x1f, 'function': 0x7}

_UUID_RE = re.compile(
    r'[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
    r'[0-9a-fA-F]{12}')


def _invalid(msg: str, *args: object) -> exception.InvalidDeviceAddress:
    return exception.InvalidDeviceAddress(msg % args)


@dataclasses.dataclass(frozen=True, order=True)
class PciAddress:
    """The address of a PCI function: ``DDDD:BB:SS.F``.

    ``str()`` gives the sysfs form, lowercase and zero-padded
    (``0000:3b:02.1``), which is the form of ``Device.address``,
    ``Device.physfn`` and ``Accelerator.address``. Instances are immutable,
    hashable and ordered as the addresses are.

    :raises os_acc.exception.InvalidDeviceAddress: if a field is not an int
        in its range (domain 0-0xffff, bus 0-0xff, slot 0-0x1f, function
        0-7).
    """

    domain: int
    bus: int
    slot: int
    function: int

    def __post_init__(self) -> None:
        for name, limit in _LIMITS.items():
            value = getattr(self, name)
            # bool is an int, but never a field of an address.
            if (not isinstance(value, int) or isinstance(value, bool) or
                    not 0 <= value <= limit):
                raise _invalid('Invalid PCI %s %r: expected an int from 0 '
                               'to %#x', name, value, limit)

    def __str__(self) -> str:
        return '%04x:%02x:%02x.%x' % (
            self.domain, self.bus, self.slot, self.function)

    @classmethod
    def parse(cls, text: object) -> PciAddress:
        """Parse ``DDDD:BB:SS.F`` (hexadecimal, either case).

        The form is strict: exactly 4, 2, 2 and 1 digits, nothing around
        them. The short form ``BB:SS.F`` is not accepted.

        :raises os_acc.exception.InvalidDeviceAddress: naming ``text``.
        """
        m = (_PCI_ADDRESS_RE.fullmatch(text) if isinstance(text, str)
             else None)
        if m is None:
            raise _invalid('Invalid PCI address %r: expected DDDD:BB:SS.F '
                           'in hex, with slot at most 1f and function 0-7',
                           text)
        return cls(*(int(m[name], 16) for name in _LIMITS))

    @classmethod
    def from_hex_fields(cls, domain: object, bus: object, slot: object,
                        function: object) -> PciAddress:
        """Build an address from its fields as hexadecimal strings.

        Each field is 1 to 4 hex digits with an optional ``0x``, as libvirt
        writes them (``'0x3b'``) and as Cyborg attach handles and Nova's
        ``pci_utils.parse_address`` give them (``'3b'``).

        :raises os_acc.exception.InvalidDeviceAddress: naming the field.
        """
        values = []
        for name, text in zip(_LIMITS, (domain, bus, slot, function)):
            m = (_HEX_FIELD_RE.fullmatch(text) if isinstance(text, str)
                 else None)
            if m is None:
                raise _invalid('Invalid PCI %s %r: expected hexadecimal '
                               'digits', name, text)
            values.append(int(m[1], 16))
        return cls(*values)

    @classmethod
    def from_libvirt_attrs(
            cls, attrs: ty.Mapping[str, str]) -> PciAddress:
        """Read the attributes of a libvirt ``<address type='pci'>``.

        :param attrs: the element's attributes, for example
            ``element.attrib`` of ``<address domain='0x0000' bus='0x3b'
            slot='0x02' function='0x1'/>``; other attributes are ignored.
        :raises os_acc.exception.InvalidDeviceAddress: if one of the four
            is missing or malformed.
        """
        return cls.from_hex_fields(
            *(attrs.get(name) for name in _LIMITS))

    def hex_fields(self) -> tuple[str, str, str, str]:
        """The fields as zero-padded lowercase hex, without ``0x``.

        ``('0000', '3b', '02', '1')``: what Nova's
        ``pci_utils.parse_address`` returns and what its libvirt driver
        puts in ``LibvirtConfigGuestHostdevPCI``.
        """
        return ('%04x' % self.domain, '%02x' % self.bus,
                '%02x' % self.slot, '%x' % self.function)

    def nodedev_name(self) -> str:
        """libvirt's node-device name of the function: ``pci_0000_3b_02_1``.
        """
        return 'pci_%04x_%02x_%02x_%x' % (self.domain, self.bus, self.slot,
                                          self.function)

    @classmethod
    def from_nodedev_name(cls, name: object) -> PciAddress:
        """The reverse of :meth:`nodedev_name`.

        :raises os_acc.exception.InvalidDeviceAddress: naming ``name``.
        """
        parts = name.split('_') if isinstance(name, str) else []
        if len(parts) != 5 or parts[0] != 'pci':
            raise _invalid('Invalid PCI node device name %r: expected '
                           'pci_DDDD_BB_SS_F', name)
        return cls.from_hex_fields(*parts[1:])

    def libvirt_attrs(self) -> dict[str, str]:
        """The attributes of libvirt's ``<address>`` for this function.

        ``{'domain': '0x0000', 'bus': '0x3b', 'slot': '0x02',
        'function': '0x1'}``, the reverse of :meth:`from_libvirt_attrs`.
        """
        return {name: '0x' + value
                for name, value in zip(_LIMITS, self.hex_fields())}


def normalize_address(address: object) -> str | None:
    """Return ``address`` in sysfs form (lowercase), or None if malformed."""
    try:
        return str(PciAddress.parse(address))
    except exception.InvalidDeviceAddress:
        return None


def normalize_uuid(value: object) -> str | None:
    """Return a canonical 8-4-4-4-12 UUID in lowercase, or None."""
    if not isinstance(value, str) or _UUID_RE.fullmatch(value) is None:
        return None
    return value.lower()
