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
"""Check ``device_context`` hint values on the client, before any request.

The vocabulary is the cloud's own (:mod:`nova_acc_client.hint`):

* the UUID of a device context object (for example a Cyborg accelerator
  request), resolved by the cloud's ``[nova_acc] backend``;
* ``profile:NAME``, an operator-defined spec; whether NAME exists is only
  known to the cloud, so only its form is checked;
* an inline spec such as ``resources:FPGA=1,trait:CUSTOM_GZIP=required``,
  parsed with :func:`os_acc.parse_device_context`.

The cloud checks everything again; checking here only turns a malformed
value into an immediate error instead of a server in ERROR. An inline
spec's grammar is os_acc's: where os_acc is installed (with nova-acc) it
is checked here; the client-only distribution has no os_acc and leaves
the grammar to the cloud, which refuses a bad spec naming its token.
"""

from __future__ import annotations

import typing as ty

from nova_acc_client import hint

# The names the command-line hooks and their tests use.
HINT = hint.HINT
PROFILE_PREFIX = hint.PROFILE_PREFIX
PROFILE_NAME_RE = hint.PROFILE_NAME_RE
EXAMPLE = hint.EXAMPLE
ID = hint.ID
PROFILE = hint.PROFILE
SPEC = hint.SPEC
is_context_id = hint.is_context_id


class InvalidDeviceContextValue(ValueError):
    """The command line refuses a value before any request is sent."""


def check(value: str, option: str = '--device-context') -> str:
    """Check one value given with ``option``; return its kind.

    :returns: :data:`ID`, :data:`PROFILE` or :data:`SPEC`.
    :raises InvalidDeviceContextValue: naming the value and the problem.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidDeviceContextValue(
            'invalid %s %r: the value is empty; give the UUID of a device '
            'context object, profile:NAME or a spec such as %r'
            % (option, value, EXAMPLE))
    kind = hint.kind_of(value)
    if kind == ID:
        return ID
    if kind == PROFILE:
        name = hint.profile_name(value)
        if not PROFILE_NAME_RE.match(name):
            raise InvalidDeviceContextValue(
                'invalid %s %r: profile name %r must be 1 to 64 letters, '
                "digits, '_', '.' or '-'" % (option, value, name))
        return PROFILE
    # Imported here: os_acc loads oslo.log and stevedore, which only the
    # commands that are given a spec need.
    try:
        import os_acc
        from os_acc import exception as acc_exc
    except ImportError:
        # The client-only distribution: the cloud checks the grammar.
        return SPEC
    try:
        os_acc.parse_device_context(value)
    except acc_exc.InvalidDeviceContext as e:
        raise InvalidDeviceContextValue(
            'invalid %s %r: %s (expected the UUID of a device context '
            'object, profile:NAME or a spec such as %r)'
            % (option, value, e, EXAMPLE)) from None
    return SPEC


def check_id(value: str, option: str = '--device-context-id') -> str:
    """Check a value that must be the UUID of a device context object."""
    if not isinstance(value, str) or not is_context_id(value):
        raise InvalidDeviceContextValue(
            'invalid %s %r: not a UUID; %s takes the UUID of a device '
            'context object (such as a Cyborg accelerator request); give an '
            'inline spec or profile:NAME with --device-context instead'
            % (option, value, option))
    return ID


def check_all(values: ty.Iterable[tuple[str, str]]) -> list[str]:
    """Check ``(option, value)`` pairs of one server; return the values.

    Also refuses the same device context object twice, as the cloud does
    (however its UUID is spelled: upper case, ``urn:uuid:``, without
    dashes).
    """
    result = []
    seen: dict[str, tuple[str, str]] = {}
    for option, value in values:
        if option.endswith('-id'):
            check_id(value, option)
        else:
            check(value, option)
        context_id = hint.context_id(value)
        if context_id is not None:
            if context_id in seen:
                first_option, first_value = seen[context_id]
                raise InvalidDeviceContextValue(
                    'device context %s is given more than once (%s %r and '
                    '%s %r); a server can use a device context object only '
                    'once' % (context_id, first_option, first_value, option,
                              value))
            seen[context_id] = (option, value)
        result.append(value)
    return result
