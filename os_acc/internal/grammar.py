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
"""The rules of the device-context language, and its canonical writer.

Both directions share these rules: the parser (:mod:`os_acc.internal.spec`)
reads specs with them, and ``DeviceContext.to_spec()`` writes one with
them, so whatever is written parses back to an equal context.

This module works on plain values and knows nothing of
:mod:`os_acc.objects`. That is what lets ``objects`` use the writer while
the parser builds ``objects``, without the two importing each other.
"""

from __future__ import annotations

import functools
import re
import typing as ty

import os_resource_classes
import os_traits

from os_acc import exception

RESOURCES_PREFIX = 'resources:'
TRAIT_PREFIX = 'trait:'
ACCEL_PREFIX = 'accel:'

REQUIRED = 'required'
FORBIDDEN = 'forbidden'

#: Largest amount of one resource class a group may request.
MAX_AMOUNT = 2048
#: Largest number of request groups in one spec.
MAX_GROUPS = 64
#: Longest spec accepted, in characters of the string form.
MAX_SPEC_LENGTH = 4096
#: Longest ``accel:`` value.
MAX_CONFIG_VALUE_LENGTH = 255
#: Longest ``accel:`` key name. nova-acc stores each key of a server's
#: config data in one Nova system metadata key (255 characters with its
#: prefix and the group's requester id), and each allowed key becomes a
#: trait name (``CUSTOM_ACC_CONFIG_<KEY>``, at most 255 characters too).
MAX_CONFIG_KEY_LENGTH = 64

GROUP_SEPARATOR = ';'
TOKEN_SEPARATOR = ','
KEY_VALUE_SEPARATOR = '='

_CUSTOM_NAME_RE = re.compile(r'CUSTOM_[A-Z0-9_]+')
_ACCEL_NAME_RE = re.compile(r'[A-Za-z0-9_.-]+')
# Only ASCII digits: str.isdigit() would also accept '²' or Arabic digits.
_AMOUNT_RE = re.compile(r'[0-9]+')
# These are the separators of the string form; a value containing one could
# not be written back by to_spec() and parsed to the same context.
_RESERVED_VALUE_CHARS = frozenset(GROUP_SEPARATOR + TOKEN_SEPARATOR +
                                  KEY_VALUE_SEPARATOR)

_STANDARD_RESOURCE_CLASSES = frozenset(os_resource_classes.STANDARDS)

#: The standard resource classes a device context may ask for, besides
#: ``CUSTOM_`` ones: those that count devices. The other standard classes
#: are a compute node's own (VCPU, PCPU, MEMORY_MB, DISK_GB, NUMA_*,
#: MEM_ENCRYPTION_CONTEXT), Neutron's (bandwidth, packet rate,
#: IPV4_ADDRESS), or a property of a device rather than a device
#: (VGPU_DISPLAY_HEAD). A group asking for one of them lands on no device:
#: on the compute node's own provider, or nowhere. They come with the
#: flavor or the server's ports. A class added to os-resource-classes later
#: is refused until it is listed here.
DEVICE_RESOURCE_CLASSES = frozenset({
    os_resource_classes.FPGA,
    os_resource_classes.PGPU,
    os_resource_classes.VGPU,
    os_resource_classes.PCI_DEVICE,
    os_resource_classes.SRIOV_NET_VF,
})


@functools.lru_cache(maxsize=None)
def _standard_traits() -> frozenset[str]:
    # os_traits walks its modules to build this list; do it once.
    return frozenset(os_traits.get_traits())


def is_valid_resource_class(name: object) -> bool:
    """True if ``name`` is a standard or ``CUSTOM_`` resource class."""
    return isinstance(name, str) and (
        name in _STANDARD_RESOURCE_CLASSES or
        _CUSTOM_NAME_RE.fullmatch(name) is not None)


def is_device_resource_class(name: object) -> bool:
    """True if a device context may ask for ``name``.

    One of :data:`DEVICE_RESOURCE_CLASSES` or a ``CUSTOM_`` class.
    """
    return isinstance(name, str) and (
        name in DEVICE_RESOURCE_CLASSES or
        _CUSTOM_NAME_RE.fullmatch(name) is not None)


def is_valid_trait(name: object) -> bool:
    """True if ``name`` is a standard (os-traits) or ``CUSTOM_`` trait."""
    return isinstance(name, str) and (
        name in _standard_traits() or
        _CUSTOM_NAME_RE.fullmatch(name) is not None)


def error(msg: str, *args: object) -> exception.InvalidDeviceContext:
    """The exception to raise; ``msg % args`` is its message."""
    return exception.InvalidDeviceContext(msg % args)


def quote(value: object) -> str:
    """repr() of a caller's object that is not a token, for messages."""
    try:
        text = repr(value)
    except Exception:
        # repr() of an int of more than 4300 digits raises ValueError, and
        # an error about a bad value must not fail on that value.
        return '<%s>' % type(value).__name__
    return text if len(text) <= 80 else text[:77] + '...'


def check_resource_class(name: str, token: str) -> None:
    """Refuse a name that is no resource class, or not a device's."""
    if not is_valid_resource_class(name):
        raise error('Invalid resource class %r in %r: expected a standard '
                    'resource class or CUSTOM_[A-Z0-9_]+', name, token)
    if not is_device_resource_class(name):
        raise error('Resource class %r in %r is not a device class: a '
                    'device context asks only for devices (%s or '
                    'CUSTOM_[A-Z0-9_]+); ask for %s with the server\'s '
                    'flavor or ports', name, token,
                    ', '.join(sorted(DEVICE_RESOURCE_CLASSES)), name)


def check_amount(value: str, token: str) -> int:
    if _AMOUNT_RE.fullmatch(value) is None:
        raise error('Invalid amount %r in %r: expected a positive decimal '
                    'integer', value, token)
    # The spec length limit keeps this far below int()'s digit limit.
    amount = int(value)
    check_amount_range(amount, token)
    return amount


def check_amount_range(amount: int, token: str) -> None:
    if amount < 1:
        raise error('Invalid amount in %r: must be at least 1', token)
    if amount > MAX_AMOUNT:
        raise error('Invalid amount in %r: exceeds MAX_AMOUNT (%d)',
                    token, MAX_AMOUNT)


def check_trait(name: str, token: str) -> None:
    if not is_valid_trait(name):
        raise error('Invalid trait %r in %r: expected a standard trait or '
                    'CUSTOM_[A-Z0-9_]+', name, token)


def check_trait_value(value: str, token: str) -> None:
    if value not in (REQUIRED, FORBIDDEN):
        raise error('Invalid trait value %r in %r: expected %r or %r',
                    value, token, REQUIRED, FORBIDDEN)


def check_accel_name(name: str, token: str) -> None:
    if _ACCEL_NAME_RE.fullmatch(name) is None:
        raise error('Invalid accel key %r in %r: the name must match '
                    '[A-Za-z0-9_.-]+', name, token)
    if len(name) > MAX_CONFIG_KEY_LENGTH:
        raise error('Accel key in %r is longer than %d characters',
                    token, MAX_CONFIG_KEY_LENGTH)


def check_accel_value(value: str, token: str) -> None:
    if not value:
        raise error('Empty accel value in %r', token)
    if len(value) > MAX_CONFIG_VALUE_LENGTH:
        raise error('Accel value in %r is longer than %d characters',
                    token, MAX_CONFIG_VALUE_LENGTH)
    # Surrounding blanks are stripped by the parser, so a value keeping
    # them would not survive a round trip.
    if (not value.isprintable() or value != value.strip() or
            _RESERVED_VALUE_CHARS.intersection(value)):
        raise error('Invalid accel value %r in %r: it must be printable, '
                    'without surrounding blanks and without any of %r',
                    value, token, ''.join(sorted(_RESERVED_VALUE_CHARS)))


def _names(names: object, what: str, where: str) -> list[str]:
    """The sorted string keys of a set or dict, or an error naming them."""
    if not isinstance(names, (set, frozenset, dict)):
        raise error('%s of request group %s must be a set or dict, not %s',
                    what, where, type(names).__name__)
    for name in names:
        if not isinstance(name, str):
            raise error('%s of request group %s contain %s, which is not a '
                        'string', what, where, quote(name))
    return sorted(names)


def _dict(values: object, what: str, where: str) -> dict[object, object]:
    if not isinstance(values, dict):
        raise error('%s of request group %s must be a dict, not %s',
                    what, where, type(values).__name__)
    return values


def format_group(resources: object, required_traits: object,
                 forbidden_traits: object, config: object,
                 where: str) -> str:
    """Return the canonical string form of one request group.

    The arguments are the fields of a ``DeviceContextGroup``. They are
    checked with the parser's rules, as if they came from a user: a caller
    may have built the group by hand.

    :param where: how messages name the group, for example ``'#2'``.
    :raises os_acc.exception.InvalidDeviceContext: naming the bad value.
    """
    amounts = _dict(resources, 'Resources', where)
    tokens = []
    for rc in _names(amounts, 'Resources', where):
        amount = amounts[rc]
        key = RESOURCES_PREFIX + rc
        check_resource_class(rc, key)
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise error('Amount of %r is %s, not an int', key,
                        quote(amount))
        check_amount_range(amount, key)
        tokens.append('%s=%d' % (key, amount))
    if not tokens:
        raise error('Request group %s requests no resources', where)

    required = _names(required_traits, 'Required traits', where)
    forbidden = _names(forbidden_traits, 'Forbidden traits', where)
    both = set(required) & set(forbidden)
    if both:
        raise error('Trait %r is both required and forbidden in request '
                    'group %s', min(both), where)
    for trait in sorted(required + forbidden):
        value = REQUIRED if trait in required else FORBIDDEN
        token = '%s%s=%s' % (TRAIT_PREFIX, trait, value)
        check_trait(trait, token)
        tokens.append(token)

    values = _dict(config, 'Config keys', where)
    for name in _names(values, 'Config keys', where):
        config_value = values[name]
        key = ACCEL_PREFIX + name
        check_accel_name(name, key)
        if not isinstance(config_value, str):
            raise error('Value of %r is %s, not a string', key,
                        quote(config_value))
        token = '%s=%s' % (key, config_value)
        check_accel_value(config_value, token)
        tokens.append(token)
    return TOKEN_SEPARATOR.join(tokens)


def check_group_count(count: int) -> None:
    """Refuse a context without groups or with more than MAX_GROUPS."""
    if count < 1:
        raise error('Device context has no request groups')
    if count > MAX_GROUPS:
        raise error('Device context has %d request groups, more than '
                    'MAX_GROUPS (%d)', count, MAX_GROUPS)


def join_groups(group_specs: ty.Sequence[str]) -> str:
    """Join the :func:`format_group` results of a context's groups.

    :raises os_acc.exception.InvalidDeviceContext: if there are none, too
        many, or the result is longer than MAX_SPEC_LENGTH.
    """
    check_group_count(len(group_specs))
    spec = GROUP_SEPARATOR.join(group_specs)
    if len(spec) > MAX_SPEC_LENGTH:
        raise error('Device context is %d characters long, more than '
                    'MAX_SPEC_LENGTH (%d)', len(spec), MAX_SPEC_LENGTH)
    return spec
