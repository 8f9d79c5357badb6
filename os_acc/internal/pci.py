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
"""PCI address and mdev UUID helpers shared by discovery, plugins and reset."""

from __future__ import annotations

import re

# Domain is 16 bits, bus 8 bits, slot 5 bits and function 3 bits: the slot
# pattern allows 0x00-0x1f only, so every string accepted here names an
# address that can exist.
_PCI_ADDRESS_RE = re.compile(
    r'(?P<domain>[0-9a-fA-F]{4}):(?P<bus>[0-9a-fA-F]{2}):'
    r'(?P<slot>[01][0-9a-fA-F])\.(?P<function>[0-7])')

_UUID_RE = re.compile(
    r'[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
    r'[0-9a-fA-F]{12}')


def parse_address(address: object) -> tuple[str, str, str, str] | None:
    """Split a ``DDDD:BB:SS.F`` PCI address into lowercase hex fields.

    :returns: ``(domain, bus, slot, function)`` or None if ``address`` is
        not a well-formed address string.
    """
    if not isinstance(address, str):
        return None
    m = _PCI_ADDRESS_RE.fullmatch(address)
    if m is None:
        return None
    return (m['domain'].lower(), m['bus'].lower(), m['slot'].lower(),
            m['function'])


def normalize_address(address: object) -> str | None:
    """Return ``address`` in sysfs form (lowercase), or None if malformed."""
    fields = parse_address(address)
    if fields is None:
        return None
    return '%s:%s:%s.%s' % fields


def normalize_uuid(value: object) -> str | None:
    """Return a canonical 8-4-4-4-12 UUID in lowercase, or None."""
    if not isinstance(value, str) or _UUID_RE.fullmatch(value) is None:
        return None
    return value.lower()
