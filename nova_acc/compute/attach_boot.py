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
"""Detach a device context given at boot as an inline spec or a profile
(issue 23 item 5).

Such a context has no object of nova-acc-api, so no ID: it is named by its
index, its place in the server's ``device_context`` hint values as given at
boot (numbered from 0), which is also the context index its groups'
requester ids carry (``request_groups.RequesterId``). nova-acc-api casts
``detach_boot_context`` with the index (``DELETE
/v1/servers/{server_id}/boot-contexts/{index}``); this host then does what
a detach of a context by ID does (``Attacher.release_groups``): the
RequestSpec keeps only the place of the value (``detached:<nil UUID>``,
so no later move, unshelve or evacuation asks for it again), the devices
of the groups of that index leave the guest (confirmed by libvirt's
device-removed event), their bindings go, the ledger releases and resets
them, and the allocation shrinks. The server's other contexts are not
touched. There is no context object to carry a fault: a refusal or a
failure is the failed event of the server's instance action
(``detach_boot_context``), whose details name the context and say why.

A value that is an ID is refused here: a context of nova-acc-api is
detached by its ID, and a Cyborg ARQ is not detached from a running
server (``attach.cyborg_refusal``).
"""

from __future__ import annotations

from nova_acc import binding
from nova_acc import hint
from nova_acc.compute import attach
from nova_acc.compute import attach_spec
from nova_acc import request_groups


def _id_refusal(server_uuid: str, context_id: str) -> str:
    return attach.cyborg_refusal(context_id, server_uuid) or (
        'device context %s of server %s has an ID: detach it with DELETE '
        '/v1/device-contexts/%s/attachment; nothing changed' % (
            context_id, server_uuid, context_id))


def requester_ids_at(instance, index: int) -> set[str]:
    """The requester ids of the server's groups of boot-time context
    ``index`` that has no ID."""
    found = set()
    for b in binding.load(instance):
        decoded = request_groups.RequesterId.decode(b.requester_id)
        if decoded is not None and decoded.context_index == index and \
                not (b.context_id or decoded.context_id):
            found.add(b.requester_id)
    return found


def listing(ctxt, instance) -> list[dict]:
    """The server's device contexts by index, as its RequestSpec names
    them: what a user needs to name one in a detach.

    Each entry: ``index``, ``kind`` (``spec``, ``profile``, ``id``, or
    ``detached``), ``value`` (the inline spec or ``profile:NAME``; the ID
    for ``id``) and ``groups`` (how many of its groups the server holds
    on this host).

    :raises SpecNotUpdated: the RequestSpec could not be read.
    """
    values = attach_spec.values_of(ctxt, instance.uuid)
    held: dict[int, int] = {}
    for b in binding.load(instance):
        decoded = request_groups.RequesterId.decode(b.requester_id)
        if decoded is not None:
            held[decoded.context_index] = held.get(
                decoded.context_index, 0) + 1
    found = []
    for index, value in enumerate(values):
        if hint.is_detached(value):
            found.append({'index': index, 'kind': 'detached',
                          'value': None, 'groups': held.get(index, 0)})
            continue
        found.append({'index': index, 'kind': hint.kind_of(value),
                      'value': hint.context_id(value) or value,
                      'groups': held.get(index, 0)})
    return found


def refusal(attacher: attach.Attacher, ctxt, instance,
            index: int) -> tuple[int, str] | None:
    """Why the boot-time context ``index`` cannot be detached now, as
    (HTTP status for nova-acc-api, reason), or None if it can.

    Read only, without the server's lock: nova-acc-api asks before it
    casts the detach, which checks again under the lock.
    """
    try:
        attach.check_usable(instance, attacher.host, 'device context #%d'
                            % index)
        attach_spec.check_boot_detachable(
            ctxt, instance.uuid, index,
            lambda context_id: _id_refusal(instance.uuid, context_id))
    except attach.AttachFailed as e:
        return 409, e.reason
    except attach_spec.NoSuchContext as e:
        return 404, str(e)
    except attach_spec.NotDetachable as e:
        return 409, str(e)
    except attach_spec.SpecNotUpdated as e:
        return 409, 'device context #%d cannot be checked now: %s' % (
            index, e)
    return None


def detach_boot(attacher: attach.Attacher, ctxt, instance,
                index: int) -> None:
    """Detach the server's boot-time context ``index``.

    Call under the server's lock (``attach_rpc``).

    :raises AttachFailed: naming the context and why; refused before
        anything changed, or the guest kept a device (it stays attached
        and held, and the RequestSpec names the context again).
    """
    attach.check_usable(instance, attacher.host, 'device context #%d'
                        % index)
    guest = attacher.guest_of(instance)
    requester_ids = requester_ids_at(instance, index)
    try:
        value, old_values = attach_spec.record_boot_detached(
            ctxt, instance.uuid, index,
            lambda context_id: _id_refusal(instance.uuid, context_id))
    except attach_spec.NotDetachable as e:
        raise attach.AttachFailed(str(e)) from e
    except attach_spec.SpecNotUpdated as e:
        raise attach.AttachFailed(
            'device context #%d was not detached from server %s: %s' % (
                index, instance.uuid, e)) from e
    label = '%s of server %s' % (
        attach_spec.boot_value_label(index, value), instance.uuid)
    attacher.release_groups(ctxt, instance, guest, requester_ids, label,
                            old_values)
