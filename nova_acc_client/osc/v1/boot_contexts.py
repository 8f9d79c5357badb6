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
"""A server's device contexts by index, and the detach of one given at
boot without an ID (an inline spec or ``profile:NAME``; issue 23 item 5).

Used by ``openstack server device context list SERVER`` and ``openstack
server remove device context SERVER --boot-index N``
(:mod:`.server_device_context`).

Such a context has no object of nova-acc-api, so nothing carries its
state or a fault: nova-acc-api answers the refusals it can see at once
(404, 409) and casts the detach to the server's compute, which records it
as the server's instance action ``detach_boot_context`` with the request
ID of the ``DELETE`` (oslo.middleware's ``x-openstack-request-id``).
``--wait`` therefore reads that action's event from the compute API: its
result says whether the detach is done or failed (a guest that keeps the
device; the server's context is then as it was), and its details, which
Nova shows to admins only by default, say why. The boot-context list
alone cannot tell a detach not started yet from one that failed and put
the context back, nor one in progress from one done when the context was
the last (a detached place at the end of the list is dropped).
"""

from __future__ import annotations

import time
import typing as ty

from osc_lib.command import command
from osc_lib import exceptions

from nova_acc_client import contexts
from nova_acc_client.osc.v1 import device_context as common

DETACHED = 'detached'
#: The instance action and event the compute records the detach as.
ACTION = 'detach_boot_context'
EVENT = 'compute_' + ACTION
SUCCESS = 'Success'
ERROR = 'Error'
#: ``list`` columns (field, heading), as the API names the fields.
LIST_COLUMNS = (('index', 'Index'), ('kind', 'Kind'), ('value', 'Value'),
                ('groups', 'Groups'))
#: What ``remove --boot-index`` shows: the context as listed after the
#: detach, and the request ID its instance action is found by.
FIELDS = ('index', 'kind', 'value', 'groups', 'request_id')


def listed(cmd: command.Command, server_id: str
           ) -> list[contexts.BootContext]:
    return ty.cast(ty.List[contexts.BootContext], common.call(
        common.client_of(cmd).list_boot_contexts, server_id))


def rows(found: list[contexts.BootContext]
         ) -> tuple[list[str], list[tuple[ty.Any, ...]]]:
    """``openstack server device context list``'s headings and rows."""
    return ([heading for _field, heading in LIST_COLUMNS],
            [tuple(entry.get(field) for field, _heading in LIST_COLUMNS)
             for entry in found])


def _entry(cmd: command.Command, server_id: str, index: int
           ) -> contexts.BootContext:
    for entry in listed(cmd, server_id):
        if entry.get('index') == index:
            return entry
    # The RequestSpec drops detached places at the end of its values.
    return {'index': index, 'kind': DETACHED, 'value': None, 'groups': 0}


def _event_of(cmd: command.Command, server_id: str, request_id: str
              ) -> tuple[str | None, str | None]:
    """(result, details) of the compute's event of the detach, or
    (None, None) while the compute has not recorded a result."""
    from openstack import exceptions as sdk_exceptions
    try:
        action = common.service_client(cmd, 'compute').get_server_action(
            request_id, server_id, ignore_missing=True)
    except sdk_exceptions.SDKException as error:
        raise exceptions.CommandError(
            'the instance action %s of server %s could not be read: %s'
            % (request_id, server_id, error)) from None
    if action is None:
        # Not recorded yet: the cast has not reached the compute.
        return None, None
    for event in getattr(action, 'events', None) or []:
        if getattr(event, 'event', None) == EVENT and \
                getattr(event, 'result', None) in (SUCCESS, ERROR):
            return event.result, getattr(event, 'details', None)
    if getattr(action, 'message', None) == ERROR:
        # A microversion without events: Nova marks the action failed.
        return ERROR, None
    return None, None


def _failure(server_id: str, index: int, request_id: str,
             details: str | None) -> exceptions.CommandError:
    why = details or (
        "the compute failed the server's instance action %s (request %s); "
        "its event's details say why (Nova shows them to admins by "
        "default: openstack server event show %s %s)" % (
            ACTION, request_id, server_id, request_id))
    return exceptions.CommandError(
        'device context #%d was not detached from server %s: %s'
        % (index, server_id, why))


def wait_detached(cmd: command.Command, server_id: str, index: int,
                  request_id: str | None, wait_seconds: float,
                  poll_seconds: float,
                  sleep: ty.Callable[[float], None]
                  ) -> contexts.BootContext:
    """The context at ``index`` once the compute has detached it.

    :raises CommandError: the compute failed the detach (its event's
        details, or where to read them), or it did not finish in time.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        if request_id is not None:
            result, details = _event_of(cmd, server_id, request_id)
            if result == ERROR:
                raise _failure(server_id, index, request_id, details)
            if result == SUCCESS:
                return _entry(cmd, server_id, index)
        else:
            # No request ID came back (a proxy dropped the header): only
            # the list can be read. It shows no failure, and the last
            # context's place is dropped before its devices are released.
            entry = _entry(cmd, server_id, index)
            if entry['kind'] == DETACHED and not entry.get('groups'):
                return entry
        if time.monotonic() > deadline:
            raise exceptions.CommandError(
                'device context #%d of server %s is not detached after %d '
                's%s' % (index, server_id, wait_seconds,
                         '' if request_id is None else
                         ' (instance action %s, request %s)'
                         % (ACTION, request_id)))
        sleep(poll_seconds)


def detach(cmd: command.Command, server_id: str, index: int, wait: bool,
           wait_seconds: float, poll_seconds: float,
           sleep: ty.Callable[[float], None]
           ) -> tuple[tuple[str, ...], tuple[ty.Any, ...]]:
    """Detach the context given at boot at ``index``: ShowOne's answer."""
    request_id = common.call(common.client_of(cmd).detach_boot_context,
                             server_id, index)
    if wait:
        entry = wait_detached(cmd, server_id, index, request_id,
                              wait_seconds, poll_seconds, sleep)
    else:
        try:
            entry = _entry(cmd, server_id, index)
        except exceptions.CommandError as error:
            # The detach is under way all the same: say so.
            raise exceptions.CommandError(
                'device context #%d of server %s: the detach was sent '
                '(request %s) but the list could not be read: %s'
                % (index, server_id, request_id, error)) from None
    shown = dict(entry, request_id=request_id)
    return FIELDS, tuple(shown.get(field) for field in FIELDS)
