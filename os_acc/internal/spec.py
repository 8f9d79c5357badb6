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
"""Parser and serializer of device-context specs.

A spec is what a user puts in a flavor or a Cyborg device profile to ask for
accelerators. The string form is::

    resources:FPGA=1,trait:CUSTOM_GZIP=required,accel:bitstream_id=abc;...

and the list form is Cyborg's device-profile ``groups``: one dict per group
with the same keys. The spec comes from users, so every defect must surface
as ``InvalidDeviceContext`` naming what is wrong, never as another
exception.
"""

from __future__ import annotations

import functools
import re
import typing as ty

import os_resource_classes
import os_traits

from os_acc import exception
from os_acc import objects

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

Spec = ty.Union[str, ty.List[ty.Dict[str, ty.Union[str, int]]]]
# (key, value, token): key and value stripped, token as shown in errors.
_Pair = ty.Tuple[str, str, str]


@functools.lru_cache(maxsize=None)
def _standard_traits() -> frozenset[str]:
    # os_traits walks its modules to build this list; do it once.
    return frozenset(os_traits.get_traits())


def is_valid_resource_class(name: object) -> bool:
    """True if ``name`` is a standard or ``CUSTOM_`` resource class."""
    return isinstance(name, str) and (
        name in _STANDARD_RESOURCE_CLASSES or
        _CUSTOM_NAME_RE.fullmatch(name) is not None)


def is_valid_trait(name: object) -> bool:
    """True if ``name`` is a standard (os-traits) or ``CUSTOM_`` trait."""
    return isinstance(name, str) and (
        name in _standard_traits() or
        _CUSTOM_NAME_RE.fullmatch(name) is not None)


def _error(msg: str, *args: object) -> exception.InvalidDeviceContext:
    return exception.InvalidDeviceContext(msg % args)


def _quote(value: object) -> str:
    """repr() of a caller's object that is not a token, for messages."""
    try:
        text = repr(value)
    except Exception:
        # repr() of an int of more than 4300 digits raises ValueError, and
        # an error about a bad value must not fail on that value.
        return '<%s>' % type(value).__name__
    return text if len(text) <= 80 else text[:77] + '...'


def _check_resource_class(name: str, token: str) -> None:
    if not is_valid_resource_class(name):
        raise _error('Invalid resource class %r in %r: expected a standard '
                     'resource class or CUSTOM_[A-Z0-9_]+', name, token)


def _check_amount(value: str, token: str) -> int:
    if _AMOUNT_RE.fullmatch(value) is None:
        raise _error('Invalid amount %r in %r: expected a positive decimal '
                     'integer', value, token)
    # The spec length limit keeps this far below int()'s digit limit.
    amount = int(value)
    _check_amount_range(amount, token)
    return amount


def _check_amount_range(amount: int, token: str) -> None:
    if amount < 1:
        raise _error('Invalid amount in %r: must be at least 1', token)
    if amount > MAX_AMOUNT:
        raise _error('Invalid amount in %r: exceeds MAX_AMOUNT (%d)',
                     token, MAX_AMOUNT)


def _check_trait(name: str, token: str) -> None:
    if not is_valid_trait(name):
        raise _error('Invalid trait %r in %r: expected a standard trait or '
                     'CUSTOM_[A-Z0-9_]+', name, token)


def _check_trait_value(value: str, token: str) -> None:
    if value not in (REQUIRED, FORBIDDEN):
        raise _error('Invalid trait value %r in %r: expected %r or %r',
                     value, token, REQUIRED, FORBIDDEN)


def _check_accel_name(name: str, token: str) -> None:
    if _ACCEL_NAME_RE.fullmatch(name) is None:
        raise _error('Invalid accel key %r in %r: the name must match '
                     '[A-Za-z0-9_.-]+', name, token)


def _check_accel_value(value: str, token: str) -> None:
    if not value:
        raise _error('Empty accel value in %r', token)
    if len(value) > MAX_CONFIG_VALUE_LENGTH:
        raise _error('Accel value in %r is longer than %d characters',
                     token, MAX_CONFIG_VALUE_LENGTH)
    # Surrounding blanks are stripped by the parser, so a value keeping
    # them would not survive a round trip.
    if (not value.isprintable() or value != value.strip() or
            _RESERVED_VALUE_CHARS.intersection(value)):
        raise _error('Invalid accel value %r in %r: it must be printable, '
                     'without surrounding blanks and without any of %r',
                     value, token, ''.join(sorted(_RESERVED_VALUE_CHARS)))


def _split_string(spec: str) -> list[tuple[str, list[_Pair]]]:
    if len(spec) > MAX_SPEC_LENGTH:
        raise _error('Device context is %d characters long, more than '
                     'MAX_SPEC_LENGTH (%d)', len(spec), MAX_SPEC_LENGTH)
    if not spec.strip():
        raise _error('Device context %r is empty', spec)
    group_texts = spec.split(GROUP_SEPARATOR)
    if len(group_texts) > MAX_GROUPS:
        raise _error('Device context has %d request groups, more than '
                     'MAX_GROUPS (%d)', len(group_texts), MAX_GROUPS)
    groups = []
    for index, text in enumerate(group_texts, 1):
        text = text.strip()
        if not text:
            raise _error('Request group %d of %r is empty', index, spec)
        pairs = []
        for token in text.split(TOKEN_SEPARATOR):
            token = token.strip()
            if not token:
                raise _error('Empty token in request group %r', text)
            key, sep, value = token.partition(KEY_VALUE_SEPARATOR)
            if not sep:
                raise _error('Token %r is not of the form key=value', token)
            pairs.append((key.strip(), value.strip(), token))
        groups.append((text, pairs))
    return groups


def _split_list(spec: list[ty.Any]) -> list[tuple[str, list[_Pair]]]:
    if not spec:
        raise _error('Device context %r has no request groups', spec)
    if len(spec) > MAX_GROUPS:
        raise _error('Device context has %d request groups, more than '
                     'MAX_GROUPS (%d)', len(spec), MAX_GROUPS)
    # Hold the list form to the same size budget as the string form, so
    # that every accepted context can be written back by to_spec().
    length = len(spec) - 1
    groups = []
    for index, group in enumerate(spec, 1):
        if not isinstance(group, dict):
            raise _error('Request group %d must be a dict, not %s',
                         index, _quote(group))
        if not group:
            raise _error('Request group %d is empty', index)
        length += len(group) - 1
        pairs = []
        for key, value in group.items():
            if not isinstance(key, str):
                raise _error('Key %s in request group %d is not a string',
                             _quote(key), index)
            # Cyborg device profiles written as JSON may carry amounts as
            # numbers. bool is an int subclass but never an amount.
            if (isinstance(value, int) and not isinstance(value, bool) and
                    key.strip().startswith(RESOURCES_PREFIX)):
                # Range check first: str() of a huge int is itself an error.
                _check_amount_range(value, key)
                value = str(value)
            elif not isinstance(value, str):
                raise _error('Value %s of key %r in request group %d is not '
                             'a string', _quote(value), key, index)
            token = '%s%s%s' % (key, KEY_VALUE_SEPARATOR, value)
            length += len(token)
            if length > MAX_SPEC_LENGTH:
                raise _error('Device context is longer than MAX_SPEC_LENGTH '
                             '(%d) characters', MAX_SPEC_LENGTH)
            pairs.append((key.strip(), value.strip(), token))
        groups.append((TOKEN_SEPARATOR.join(p[2] for p in pairs), pairs))
    return groups


def _parse_group(text: str, pairs: list[_Pair]) -> objects.DeviceContextGroup:
    group = objects.DeviceContextGroup()
    seen: dict[str, str] = {}
    for key, value, token in pairs:
        prefix, sep, name = key.partition(':')
        prefix += sep
        if prefix == RESOURCES_PREFIX:
            _check_resource_class(name, token)
            group.resources[name] = _check_amount(value, token)
        elif prefix == TRAIT_PREFIX:
            _check_trait(name, token)
            _check_trait_value(value, token)
        elif prefix == ACCEL_PREFIX:
            _check_accel_name(name, token)
            _check_accel_value(value, token)
            group.config[name] = value
        else:
            raise _error('Unknown key %r in %r: keys start with %r, %r or %r',
                         key, token, RESOURCES_PREFIX, TRAIT_PREFIX,
                         ACCEL_PREFIX)
        # Checked once the token is known to be valid, so that a clash of
        # two valid trait tokens can be reported as the conflict it is.
        if key in seen:
            if prefix == TRAIT_PREFIX and seen[key] != value:
                raise _error('Trait %r is both required and forbidden in '
                             'request group %r', name, text)
            raise _error('Duplicate key %r in request group %r', key, text)
        seen[key] = value
        if prefix == TRAIT_PREFIX:
            traits = (group.required_traits if value == REQUIRED
                      else group.forbidden_traits)
            traits.add(name)
    if not group.resources:
        raise _error('Request group %r requests no resources: every group '
                     'needs at least one %s<CLASS>=<AMOUNT>', text,
                     RESOURCES_PREFIX)
    return group


def parse_device_context(spec: Spec) -> objects.DeviceContext:
    """Parse a device-context spec.

    :param spec: the string form, or a list of dicts (Cyborg device-profile
        ``groups``) with the same keys.
    :raises os_acc.exception.InvalidDeviceContext: for any malformed or
        invalid input; the message names the offending token.
    """
    if isinstance(spec, str):
        raw_groups = _split_string(spec)
    elif isinstance(spec, list):
        raw_groups = _split_list(spec)
    else:
        raise _error('Device context must be a string or a list of dicts, '
                     'not %s', type(spec).__name__)
    return objects.DeviceContext(
        groups=[_parse_group(text, pairs) for text, pairs in raw_groups])


def _sorted_names(names: object, what: str, where: str) -> list[str]:
    if not isinstance(names, (set, frozenset, dict)):
        raise _error('%s of request group %s must be a set or dict, not %s',
                     what, where, type(names).__name__)
    for name in names:
        if not isinstance(name, str):
            raise _error('%s of request group %s contain %s, which is not a '
                         'string', what, where, _quote(name))
    return sorted(names)


def _group_to_spec(group: objects.DeviceContextGroup, where: str) -> str:
    if not isinstance(group, objects.DeviceContextGroup):
        raise _error('Request group %s is a %s, not a DeviceContextGroup',
                     where, type(group).__name__)
    tokens = []
    for rc in _sorted_names(group.resources, 'Resources', where):
        amount = group.resources[rc]
        key = RESOURCES_PREFIX + rc
        _check_resource_class(rc, key)
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise _error('Amount of %r is %s, not an int', key,
                         _quote(amount))
        _check_amount_range(amount, key)
        tokens.append('%s=%d' % (key, amount))
    if not tokens:
        raise _error('Request group %s requests no resources', where)

    required = _sorted_names(group.required_traits, 'Required traits', where)
    forbidden = _sorted_names(
        group.forbidden_traits, 'Forbidden traits', where)
    both = set(required) & set(forbidden)
    if both:
        raise _error('Trait %r is both required and forbidden in request '
                     'group %s', min(both), where)
    for trait in sorted(required + forbidden):
        value = REQUIRED if trait in group.required_traits else FORBIDDEN
        token = '%s%s=%s' % (TRAIT_PREFIX, trait, value)
        _check_trait(trait, token)
        tokens.append(token)

    for name in _sorted_names(group.config, 'Config keys', where):
        value = group.config[name]
        key = ACCEL_PREFIX + name
        _check_accel_name(name, key)
        if not isinstance(value, str):
            raise _error('Value of %r is %s, not a string', key,
                         _quote(value))
        token = '%s=%s' % (key, value)
        _check_accel_value(value, token)
        tokens.append(token)
    return TOKEN_SEPARATOR.join(tokens)


def to_spec(ctx: objects.DeviceContext) -> str:
    """Return the canonical string form of a device context.

    Resources, then traits, then ``accel:`` keys, each sorted by name; groups
    in order, joined by ``;``. The context is validated with the parser's
    rules, so the result always parses back to an equal context.

    :raises os_acc.exception.InvalidDeviceContext: if ``ctx`` is not valid.
    """
    if not isinstance(ctx, objects.DeviceContext):
        raise _error('Expected a DeviceContext, not %s', type(ctx).__name__)
    if not isinstance(ctx.groups, list) or not ctx.groups:
        raise _error('Device context has no request groups')
    if len(ctx.groups) > MAX_GROUPS:
        raise _error('Device context has %d request groups, more than '
                     'MAX_GROUPS (%d)', len(ctx.groups), MAX_GROUPS)
    spec = GROUP_SEPARATOR.join(
        _group_to_spec(group, '#%d' % index)
        for index, group in enumerate(ctx.groups, 1))
    if len(spec) > MAX_SPEC_LENGTH:
        raise _error('Device context is %d characters long, more than '
                     'MAX_SPEC_LENGTH (%d)', len(spec), MAX_SPEC_LENGTH)
    return spec
