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
"""Parser of device-context specs.

A spec is what a user puts in a flavor or a Cyborg device profile to ask for
accelerators. The string form is::

    resources:FPGA=1,trait:CUSTOM_GZIP=required,accel:bitstream_id=abc;...

and the list form is Cyborg's device-profile ``groups``: one dict per group
with the same keys. The spec comes from users, so every defect must surface
as ``InvalidDeviceContext`` naming what is wrong, never as another
exception.

The rules and limits (``MAX_GROUPS``...) are in
:mod:`os_acc.internal.grammar`, shared with the writer,
``DeviceContext.to_spec()``.
"""

from __future__ import annotations

import typing as ty

from os_acc.internal import grammar
from os_acc import objects

Spec = ty.Union[str, ty.List[ty.Dict[str, ty.Union[str, int]]]]
# (key, value, token): key and value stripped, token as shown in errors.
_Pair = ty.Tuple[str, str, str]


def _split_string(spec: str) -> list[tuple[str, list[_Pair]]]:
    if len(spec) > grammar.MAX_SPEC_LENGTH:
        raise grammar.error(
            'Device context is %d characters long, more than '
            'MAX_SPEC_LENGTH (%d)', len(spec), grammar.MAX_SPEC_LENGTH)
    if not spec.strip():
        raise grammar.error('Device context %r is empty', spec)
    group_texts = spec.split(grammar.GROUP_SEPARATOR)
    if len(group_texts) > grammar.MAX_GROUPS:
        raise grammar.error(
            'Device context has %d request groups, more than '
            'MAX_GROUPS (%d)', len(group_texts), grammar.MAX_GROUPS)
    groups = []
    for index, text in enumerate(group_texts, 1):
        text = text.strip()
        if not text:
            raise grammar.error('Request group %d of %r is empty',
                                index, spec)
        pairs = []
        for token in text.split(grammar.TOKEN_SEPARATOR):
            token = token.strip()
            if not token:
                raise grammar.error('Empty token in request group %r', text)
            key, sep, value = token.partition(grammar.KEY_VALUE_SEPARATOR)
            if not sep:
                raise grammar.error('Token %r is not of the form key=value',
                                    token)
            pairs.append((key.strip(), value.strip(), token))
        groups.append((text, pairs))
    return groups


def _split_list(spec: list[ty.Any]) -> list[tuple[str, list[_Pair]]]:
    if not spec:
        raise grammar.error('Device context %r has no request groups', spec)
    if len(spec) > grammar.MAX_GROUPS:
        raise grammar.error(
            'Device context has %d request groups, more than '
            'MAX_GROUPS (%d)', len(spec), grammar.MAX_GROUPS)
    # Hold the list form to the same size budget as the string form, so
    # that every accepted context can be written back by to_spec().
    length = len(spec) - 1
    groups = []
    for index, group in enumerate(spec, 1):
        if not isinstance(group, dict):
            raise grammar.error('Request group %d must be a dict, not %s',
                                index, grammar.quote(group))
        if not group:
            raise grammar.error('Request group %d is empty', index)
        length += len(group) - 1
        pairs = []
        for key, value in group.items():
            if not isinstance(key, str):
                raise grammar.error(
                    'Key %s in request group %d is not a string',
                    grammar.quote(key), index)
            # Cyborg device profiles written as JSON may carry amounts as
            # numbers. bool is an int subclass but never an amount.
            if (isinstance(value, int) and not isinstance(value, bool) and
                    key.strip().startswith(grammar.RESOURCES_PREFIX)):
                # Range check first: str() of a huge int is itself an error.
                grammar.check_amount_range(value, key)
                value = str(value)
            elif not isinstance(value, str):
                raise grammar.error(
                    'Value %s of key %r in request group %d is not a string',
                    grammar.quote(value), key, index)
            token = '%s%s%s' % (key, grammar.KEY_VALUE_SEPARATOR, value)
            length += len(token)
            if length > grammar.MAX_SPEC_LENGTH:
                raise grammar.error(
                    'Device context is longer than MAX_SPEC_LENGTH (%d) '
                    'characters', grammar.MAX_SPEC_LENGTH)
            pairs.append((key.strip(), value.strip(), token))
        text = grammar.TOKEN_SEPARATOR.join(p[2] for p in pairs)
        groups.append((text, pairs))
    return groups


def _parse_group(text: str, pairs: list[_Pair]) -> objects.DeviceContextGroup:
    group = objects.DeviceContextGroup()
    seen: dict[str, str] = {}
    for key, value, token in pairs:
        prefix, sep, name = key.partition(':')
        prefix += sep
        if prefix == grammar.RESOURCES_PREFIX:
            grammar.check_resource_class(name, token)
            group.resources[name] = grammar.check_amount(value, token)
        elif prefix == grammar.TRAIT_PREFIX:
            grammar.check_trait(name, token)
            grammar.check_trait_value(value, token)
        elif prefix == grammar.ACCEL_PREFIX:
            grammar.check_accel_name(name, token)
            grammar.check_accel_value(value, token)
            group.config[name] = value
        else:
            raise grammar.error(
                'Unknown key %r in %r: keys start with %r, %r or %r',
                key, token, grammar.RESOURCES_PREFIX, grammar.TRAIT_PREFIX,
                grammar.ACCEL_PREFIX)
        # Checked once the token is known to be valid, so that a clash of
        # two valid trait tokens can be reported as the conflict it is.
        if key in seen:
            if prefix == grammar.TRAIT_PREFIX and seen[key] != value:
                raise grammar.error(
                    'Trait %r is both required and forbidden in request '
                    'group %r', name, text)
            raise grammar.error('Duplicate key %r in request group %r',
                                key, text)
        seen[key] = value
        if prefix == grammar.TRAIT_PREFIX:
            traits = (group.required_traits if value == grammar.REQUIRED
                      else group.forbidden_traits)
            traits.add(name)
    if not group.resources:
        raise grammar.error(
            'Request group %r requests no resources: every group needs at '
            'least one %s<CLASS>=<AMOUNT>', text, grammar.RESOURCES_PREFIX)
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
        raise grammar.error(
            'Device context must be a string or a list of dicts, not %s',
            type(spec).__name__)
    return objects.DeviceContext(
        groups=[_parse_group(text, pairs) for text, pairs in raw_groups])
