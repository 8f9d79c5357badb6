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
"""Step 2 of the flow, allocation: nova-acc's part of claiming devices.

Placement picks a host and a device pool per group and Nova's scheduler
claims them. Because a pool counts its devices
(``nova_acc.compute.inventory``), a second server claiming the same pool - in
the same multi-create or in a concurrent request - gets one of the devices left
instead of losing a race for one device: Nova 34 claims only the *first*
allocation candidate of a host (see the TODOs in
``SchedulerManager._schedule``), which with one provider per device failed
claims while devices were free. This module decides, for requests with device
contexts only:

* ``should_retry``: placement is asked again, with fresh candidates, when
  every claim failed, in case a concurrent request took the last devices
  of the candidates first (``[nova_acc] schedule_attempts``);
* ``no_valid_host_reason``: the final fault names the device contexts that
  could not be satisfied, instead of placement's bare "no candidates".
"""

from __future__ import annotations

import os_acc

from nova_acc import conf
from nova_acc import exception
from nova_acc import hint
from nova_acc import request_groups

CONF = conf.CONF


def attempts(uses_contexts: bool) -> int:
    """How often to ask placement for a request."""
    return CONF.nova_acc.schedule_attempts if uses_contexts else 1


def should_retry(reason: str | None, attempt: int, uses_contexts: bool
                 ) -> bool:
    """Ask placement again after a NoValidHost with ``reason``?

    An empty reason means placement had no candidates at all: there was no
    concurrent request to lose against, and asking again is pointless.
    """
    return bool(uses_contexts and reason and attempt < attempts(True))


def no_valid_host_reason(context, spec_obj, reason: str | None) -> str:
    """The fault of a request no host can serve, naming its contexts."""
    return ('%s No host has enough free accelerators for the device '
            'context(s) %s (with the other resources of the flavor).' % (
                reason or '', describe_contexts(context, spec_obj))).strip()


def describe_contexts(context, spec_obj) -> str:
    """The hint values as the user wrote them, with what IDs stand for."""
    described = []
    try:
        groups = request_groups.context_groups(spec_obj, context)
    except exception.InvalidDeviceContextHint:
        # Changed since the filter resolved it; the values alone will do.
        groups = []
    for value in request_groups.hint_values(spec_obj):
        text = repr(value)
        if hint.is_context_id(value):
            text += ' (%s)' % os_acc.DeviceContext(groups=[
                cg.group for cg in groups if cg.hint_value == value
            ]).to_spec()
        described.append(text)
    return ', '.join(described)
