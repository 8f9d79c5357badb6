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
"""Validation of what callers send: bodies, query strings, IDs.

Everything a caller sends is checked here before it reaches the
database, and every refusal is a :class:`~.exception.BadRequest` that
names the bad field, key or token. The spec is parsed with os_acc's
grammar, the same parser the scheduler uses, so a context that is
accepted here can be scheduled.
"""

from __future__ import annotations

import re
import typing as ty

import os_acc
from os_acc import exception as os_acc_exception
from os_acc.internal import grammar
from oslo_utils import strutils
from oslo_utils import uuidutils

from nova_acc.api.db import models
from nova_acc.api import exception
from nova_acc import hint

#: The most ``accel:*`` keys one context's config may have.
MAX_CONFIG_KEYS = 64
#: The most devices a context may record: one context asks for at most
#: MAX_GROUPS groups of at most MAX_AMOUNT devices, far more than a host
#: has; this bounds the row.
MAX_DEVICES = 1024
#: The largest page a list call gives when asked for one.
MAX_LIMIT = 1000
_LIMIT_RE = re.compile('[0-9]{1,4}')


def _bad(message: str, *args: object) -> exception.BadRequest:
    return exception.BadRequest(message % args)


def context_id(value: str) -> str | None:
    """The canonical ID from a URL, or None (a 404) if it is no UUID."""
    return hint.context_id(value)


def body_object(body: object, key: str, allowed: ty.Collection[str],
                required: ty.Collection[str] = ()) -> dict[str, ty.Any]:
    """``body[key]`` as a dict with only ``allowed`` and all ``required``."""
    if not isinstance(body, dict) or set(body) != {key}:
        raise _bad('The body must be a JSON object with one key, %r', key)
    obj = body[key]
    if not isinstance(obj, dict):
        raise _bad('%r must be a JSON object', key)
    for field in obj:
        if field not in allowed:
            raise _bad('Unknown field %r in %r; allowed: %s', field, key,
                       ', '.join(sorted(allowed)))
    for field in required:
        if field not in obj:
            raise _bad('Missing field %r in %r', field, key)
    return obj


def text(obj: dict[str, ty.Any], field: str, limit: int,
         nullable: bool = False) -> str | None:
    """A printable string of at most ``limit`` characters."""
    value = obj[field]
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise _bad('%r must be a string%s', field,
                   ' or null' if nullable else '')
    if len(value) > limit:
        raise _bad('%r is longer than %d characters', field, limit)
    if not value.isprintable():
        raise _bad('%r has characters that are not printable', field)
    return value


def identifier(obj: dict[str, ty.Any], field: str, limit: int) -> str:
    """A non-empty printable string without blanks around it."""
    value = text(obj, field, limit)
    if not value or value != value.strip():
        raise _bad('%r must not be empty or have surrounding blanks',
                   field)
    return value


def uuid(obj: dict[str, ty.Any], field: str) -> str:
    value = obj[field]
    if not isinstance(value, str) or not uuidutils.is_uuid_like(value):
        raise _bad('%r must be a UUID', field)
    return str(hint.context_id(value))


def spec(value: object) -> str:
    """A spec: ``profile:NAME`` or an inline spec in os_acc's grammar."""
    if not isinstance(value, str):
        raise _bad("'spec' must be a string")
    if len(value) > models.SPEC_LENGTH:
        raise _bad("'spec' is longer than %d characters",
                   models.SPEC_LENGTH)
    kind = hint.kind_of(value)
    if kind == hint.ID:
        raise _bad("'spec' %r is a UUID: a device context cannot name "
                   "another one; give an inline spec such as %r or "
                   "profile:NAME", value, hint.EXAMPLE)
    if kind == hint.PROFILE:
        if not hint.PROFILE_NAME_RE.match(hint.profile_name(value)):
            raise _bad("Invalid profile name in 'spec' %r: NAME must "
                       "match %s", value, hint.PROFILE_NAME_RE.pattern)
        return value
    try:
        os_acc.parse_device_context(value)
    except os_acc_exception.InvalidDeviceContext as error:
        raise _bad("Invalid 'spec': %s", error)
    return value


def config(value: object) -> dict[str, str]:
    """``{"accel:NAME": "value"}``, as the grammar's accel tokens."""
    if not isinstance(value, dict):
        raise _bad("'config' must be a JSON object")
    if len(value) > MAX_CONFIG_KEYS:
        raise _bad("'config' has %d keys, more than %d", len(value),
                   MAX_CONFIG_KEYS)
    for key, item in value.items():
        name = key[len(grammar.ACCEL_PREFIX):]
        if not key.startswith(grammar.ACCEL_PREFIX) or not name:
            raise _bad("Invalid 'config' key %r: keys are %sNAME", key,
                       grammar.ACCEL_PREFIX)
        if not isinstance(item, str):
            raise _bad("The value of 'config' key %r must be a string", key)
        token = '%s=%s' % (key, item)
        try:
            grammar.check_accel_name(name, token)
            grammar.check_accel_value(item, token)
        except os_acc_exception.InvalidDeviceContext as error:
            raise _bad("Invalid 'config' key %r: %s", key, error)
    return dict(value)


def devices(value: object) -> list[dict[str, str]]:
    """The devices a compute picked: pool and PCI address or mdev UUID."""
    if not isinstance(value, list):
        raise _bad("'devices' must be a JSON list")
    if len(value) > MAX_DEVICES:
        raise _bad("'devices' has more than %d items", MAX_DEVICES)
    result = []
    for index, device in enumerate(value):
        where = "'devices' item %d" % index
        if not isinstance(device, dict):
            raise _bad('%s must be a JSON object', where)
        keys = set(device)
        if keys not in ({'pool', 'address'}, {'pool', 'mdev_uuid'}):
            raise _bad('%s must have the keys pool and address, or pool '
                       'and mdev_uuid', where)
        pool = identifier(device, 'pool', models.HOST_LENGTH)
        if 'address' in device:
            try:
                address = str(os_acc.PciAddress.parse(device['address']))
            except os_acc_exception.InvalidDeviceAddress as error:
                raise _bad('%s: %s', where, error)
            result.append({'pool': str(pool), 'address': address})
        else:
            result.append({'pool': str(pool),
                           'mdev_uuid': uuid(device, 'mdev_uuid')})
    return result


#: The highest boot-time context index a URL may name; the compute says
#: whether the server has a context there.
MAX_CONTEXT_INDEX = 9999


def path_uuid(value: str, what: str) -> str:
    """The canonical UUID from a URL; a 404 naming ``what`` if none."""
    if not uuidutils.is_uuid_like(value):
        # Not echoed: the URL's text is anyone's.
        raise exception.NotFound('%s could not be found: not a UUID' % what)
    return str(hint.context_id(value))


def context_index(value: str) -> int:
    """A boot-time context index from a URL: ASCII digits, 0 to
    :data:`MAX_CONTEXT_INDEX`."""
    if not _LIMIT_RE.fullmatch(value) or int(value) > MAX_CONTEXT_INDEX:
        raise _bad('The context index must be an integer from 0 to %d (its '
                   'place in the device_context values given at boot)',
                   MAX_CONTEXT_INDEX)
    return int(value)


def query(params: ty.Mapping[str, str], allowed: ty.Collection[str]
          ) -> dict[str, str]:
    """The query string as a dict; each parameter at most once."""
    result: dict[str, str] = {}
    for key, value in params.items():
        if key not in allowed:
            raise _bad('Unknown query parameter %r; allowed: %s', key,
                       ', '.join(sorted(allowed)) or 'none')
        if key in result:
            raise _bad('Query parameter %r is given more than once', key)
        result[key] = value
    return result


def query_uuid(params: dict[str, str], key: str) -> str | None:
    if key not in params:
        return None
    if not uuidutils.is_uuid_like(params[key]):
        raise _bad('Query parameter %r must be a UUID', key)
    return str(hint.context_id(params[key]))


def query_state(params: dict[str, str]) -> str | None:
    state = params.get('state')
    if state is not None and state not in models.STATES:
        raise _bad("Query parameter 'state' must be one of %s",
                   ', '.join(models.STATES))
    return state


def query_limit(params: dict[str, str]) -> int | None:
    """``limit``: 1 to MAX_LIMIT results per page."""
    if 'limit' not in params:
        return None
    value = params['limit']
    # ASCII digits only, and few: int() refuses '²' and 5000-digit text.
    if not _LIMIT_RE.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise _bad("Query parameter 'limit' must be an integer from 1 to %d",
                   MAX_LIMIT)
    return int(value)


def query_bool(params: dict[str, str], key: str) -> bool:
    if key not in params:
        return False
    try:
        return strutils.bool_from_string(params[key], strict=True)
    except ValueError:
        raise _bad('Query parameter %r must be a boolean', key)
