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
"""The server's RequestSpec names the contexts it has now (issue 23).

Every later scheduling of the server (resize, cold migration, evacuate,
unshelve after shelve offload) asks placement for the groups of its
RequestSpec's ``device_context`` hint values, and ``binding.for_move``
maps those groups to the server's bindings by their requester ids, which
encode the value's index. So the hint values are the one list of the
server's contexts, by index:

* an attach puts the context's ID at the index its groups' requester ids
  carry: the first place of a detached context that no binding uses, else
  the end of the list;
* a detach replaces the context's ID by ``detached:ID``
  (``hint.detached``), which asks for nothing and keeps the indexes of the
  values after it; places at the end of the list are dropped;
* a detach of a context given at boot as an inline spec or a profile
  (named by its index: it has no ID) replaces the value by
  ``detached:<nil UUID>`` the same way.

nova-compute reads and saves the RequestSpec through the conductor
(remotable methods); the RequestSpec lives in the API database, so the
conductor this compute talks to must reach it (the superconductor, or a
cell conductor with ``[api_database]``). When it cannot, the attach or
detach fails before anything else changed.
"""

from __future__ import annotations

from nova import exception as nova_exc
from nova import objects

from nova_acc import hint
from nova_acc import request_groups


class SpecNotUpdated(Exception):
    """The RequestSpec could not be read or saved; says why."""


class NotDetachable(Exception):
    """The value at an index is no boot-time inline or profile context;
    says why and what to do instead."""


def _load(ctxt, instance_uuid: str):
    try:
        return objects.RequestSpec.get_by_instance_uuid(ctxt, instance_uuid)
    except Exception as e:  # RequestSpecNotFound, the conductor's, the DB's
        raise SpecNotUpdated(
            'the request spec of server %s could not be read (%s)' % (
                instance_uuid, e)) from e


def _save(request_spec, values: list[str]) -> None:
    hints = dict(request_spec.scheduler_hints
                 if 'scheduler_hints' in request_spec else {})
    # Trailing places of detached contexts index nothing after them.
    while values and hint.is_detached(values[-1]):
        values = values[:-1]
    if values:
        hints[hint.HINT] = list(values)
    else:
        hints.pop(hint.HINT, None)
    request_spec.scheduler_hints = hints
    try:
        request_spec.save()
    except Exception as e:
        raise SpecNotUpdated(
            'the request spec of server %s could not be saved (%s)' % (
                request_spec.instance_uuid, e)) from e


def slot_for(values: list[str], used: set[int]) -> int:
    """The context index of a context attached now.

    :param values: the server's hint values, with detached places.
    :param used: the context indexes of the server's bindings.
    """
    for index, value in enumerate(values):
        if hint.is_detached(value) and index not in used:
            return index
    return max([len(values)] + [i + 1 for i in used])


def record_attached(ctxt, instance_uuid: str, context_id: str,
                    used: set[int]) -> tuple[int, list[str]]:
    """Name the context in the RequestSpec: (its index, the old values).

    :raises SpecNotUpdated: nothing changed.
    """
    spec = _load(ctxt, instance_uuid)
    old = request_groups.hint_values(spec)
    index = slot_for(old, used)
    values = list(old) + [hint.detached(None)] * (index + 1 - len(old))
    values[index] = hint.context_id(context_id) or context_id
    _save(spec, values)
    return index, old


def record_detached(ctxt, instance_uuid: str,
                    context_id: str) -> list[str] | None:
    """Keep only the context's place: the old values, None if unnamed.

    :raises SpecNotUpdated: nothing changed.
    """
    wanted = hint.context_id(context_id)
    spec = _load(ctxt, instance_uuid)
    old = request_groups.hint_values(spec)
    values = [hint.detached(v) if wanted and hint.context_id(v) == wanted
              else v for v in old]
    if values == old:
        return None
    _save(spec, values)
    return old


def boot_value_label(index: int, value: str) -> str:
    """How a fault names a boot-time context without an ID."""
    if hint.kind_of(value) == hint.PROFILE:
        return 'device context #%d (%s)' % (index, value)
    return 'device context #%d (an inline spec)' % index


class NoSuchContext(NotDetachable):
    """No boot-time context at that index (or it is detached already)."""


def _boot_value(values: list[str], instance_uuid: str, index: int,
                refuse_id) -> str:
    """The value at ``index`` if it is a boot-time context without ID.

    :raises NotDetachable:
    """
    if index >= len(values) or hint.is_detached(values[index]):
        raise NoSuchContext(
            'server %s has no device context #%d (the device_context '
            'values given at boot are numbered from 0; a detached one '
            'stays detached)' % (instance_uuid, index))
    value = values[index]
    found_id = hint.context_id(value)
    if found_id is not None:
        raise NotDetachable(refuse_id(found_id))
    return value


def values_of(ctxt, instance_uuid: str) -> list[str]:
    """The server's device_context values, read only.

    :raises SpecNotUpdated: the RequestSpec could not be read.
    """
    return request_groups.hint_values(_load(ctxt, instance_uuid))


def check_boot_detachable(ctxt, instance_uuid: str, index: int,
                          refuse_id) -> str:
    """The value at ``index``, read only, if it can be detached now.

    :raises NotDetachable:
    :raises SpecNotUpdated: the RequestSpec could not be read.
    """
    return _boot_value(request_groups.hint_values(
        _load(ctxt, instance_uuid)), instance_uuid, index, refuse_id)


def record_boot_detached(ctxt, instance_uuid: str, index: int,
                         refuse_id) -> tuple[str, list[str]]:
    """Keep only the place of the boot-time context at ``index``:
    (its value, the old values).

    :param refuse_id: called with an ID value: the reason it is not
        detached here (an object of nova-acc-api, a Cyborg ARQ).
    :raises NotDetachable: no such context, already detached, or an ID.
    :raises SpecNotUpdated: nothing changed.
    """
    spec = _load(ctxt, instance_uuid)
    old = request_groups.hint_values(spec)
    value = _boot_value(old, instance_uuid, index, refuse_id)
    values = list(old)
    values[index] = hint.detached(None)
    _save(spec, values)
    return value, old


def restore(ctxt, instance_uuid: str, values: list[str]) -> None:
    """Put the values back (undo); a deleted server has nothing to undo.

    :raises SpecNotUpdated: the RequestSpec could not be written.
    """
    try:
        spec = objects.RequestSpec.get_by_instance_uuid(ctxt, instance_uuid)
    except nova_exc.RequestSpecNotFound:
        return
    except Exception as e:
        raise SpecNotUpdated(str(e)) from e
    _save(spec, values)
