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
"""The ``device_context`` hint's vocabulary, without Nova.

One home for the words of the hint, shared by the command-line clients
(this package, which runs where Nova is not installed) and the cloud
(``nova_acc.hint`` re-exports it for the scheduler, the conductor,
nova-acc-api and the demo). A hint value is one
of:

* the UUID of a device context object (for example a Cyborg accelerator
  request), resolved by the cloud's ``[nova_acc] backend``;
* ``profile:NAME``, an operator-defined spec (``[nova_acc] profile``);
* an inline spec such as ``resources:FPGA=1,trait:CUSTOM_GZIP=required``,
  in os_acc's grammar.

The list of values is positional: the requester ids of a server's
placement groups encode the index of the value they come from. A device
context detached from a running server leaves ``detached:ID`` in its
place (:func:`detached`): the value asks for nothing, and the values after
it keep their indexes.

A UUID may be spelled several ways (upper case, without dashes,
``urn:uuid:``, braces); :func:`context_id` gives the one spelling used for
everything that compares or looks up IDs.
"""

from __future__ import annotations

import re
import typing as ty
import uuid as uuid_lib

from oslo_utils import uuidutils

#: The scheduler hint nova-acc reads.
HINT = 'device_context'
#: A value naming an operator-defined profile: ``profile:NAME``.
PROFILE_PREFIX = 'profile:'
#: What NAME in ``profile:NAME`` (and in ``[nova_acc] profile``) may be.
PROFILE_NAME_RE = re.compile(r'^[A-Za-z0-9_.-]{1,64}$')
#: An inline spec shown in messages that say what a value should be.
EXAMPLE = 'resources:FPGA=1,trait:CUSTOM_GZIP=required'
#: The most characters a server's values may have together, checked
#: before any value is resolved. One value may be as long as the longest
#: spec os_acc accepts (4096 characters, its ``MAX_SPEC_LENGTH``); all
#: together get four times that: far more than the at most 16 groups of a
#: server need, and little enough that the conductor and the scheduler
#: never parse megabytes of hint.
MAX_HINT_LENGTH = 16384

#: The place of a device context detached from the server: ``detached:ID``.
DETACHED_PREFIX = 'detached:'
#: What keeps a place no context ever held (padding; see ``detached``).
NO_CONTEXT = '00000000-0000-0000-0000-000000000000'

#: The kinds of value, as ``kind_of`` returns them.
ID = 'id'
PROFILE = 'profile'
SPEC = 'spec'


def is_context_id(value: str) -> bool:
    """Is ``value`` the ID of a device context object (a UUID)?"""
    return uuidutils.is_uuid_like(value)


def context_id(value: str) -> str | None:
    """The canonical spelling of an ID value; None if it is not an ID.

    ``U``, ``U.upper()``, ``urn:uuid:U``, ``{U}`` and ``U`` without dashes
    are one device context object: lower case with dashes, as backends
    (Cyborg) spell it.
    """
    if not is_context_id(value):
        return None
    return str(uuid_lib.UUID(value))


def detached(value: str | None) -> str:
    """The value that keeps the place of ``value``, a context ID, once
    that context is detached from the server (any other value: a place
    no context holds)."""
    return DETACHED_PREFIX + (context_id(value or '') or NO_CONTEXT)


def is_detached(value: object) -> bool:
    """Does ``value`` only keep a detached context's place?

    Only ``detached:`` followed by a UUID: anything else after the prefix
    is no tombstone, and is refused as a spec where it is resolved.
    """
    return (isinstance(value, str) and value.startswith(DETACHED_PREFIX)
            and context_id(value[len(DETACHED_PREFIX):]) is not None)


def kind_of(value: str) -> str:
    """:data:`ID`, :data:`PROFILE` or :data:`SPEC`; the form is not checked."""
    if is_context_id(value):
        return ID
    if value.startswith(PROFILE_PREFIX):
        return PROFILE
    return SPEC


def profile_name(value: str) -> str:
    """NAME of a ``profile:NAME`` value."""
    return value[len(PROFILE_PREFIX):]


def values_of(scheduler_hints: dict[str, ty.Any] | None) -> list[str]:
    """The ``device_context`` values of a server's hints, in order.

    A single value may be given as a string or as a one-item list.
    """
    values = (scheduler_hints or {}).get(HINT) or []
    if isinstance(values, str):
        values = [values]
    return list(values)
