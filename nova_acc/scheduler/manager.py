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
"""nova-scheduler with the device-context request filter.

Nova has no plug point for request filters (``ALL_REQUEST_FILTERS`` is a
module constant), and changing that list at import time would change every
scheduler that happens to import nova_acc. Instead this manager, started by
the ``nova-acc-scheduler`` console script, runs the filter right before
Nova's own request filters inside ``select_destinations``.

Nova 34 claims only the *first* allocation candidate of a host (see the
TODOs in ``SchedulerManager._schedule``). With one provider per device that
means a second server on the same host - in the same multi-create or in a
concurrent request - asks for the device the first one just took, and gets
NoValidHost although other devices are free. Two fixes, both limited to
requests with device contexts:

* ``_consume_selected_host`` (private; see tests/unit/nova_acc/
  test_nova_seams.py) drops a host's candidates that use a device the
  previous server of the same request just claimed;
* ``select_destinations`` asks placement again, with fresh candidates, when
  claims lost a race with a concurrent request
  (``[nova_acc] schedule_attempts``).
"""

from nova import exception
from nova import objects
from nova.scheduler import manager
from nova.scheduler import utils as scheduler_utils
import os_acc
from oslo_log import log as logging
import oslo_messaging as messaging

from nova_acc import conf
from nova_acc import contexts
from nova_acc.scheduler import request_filter

CONF = conf.CONF
LOG = logging.getLogger(__name__)


class SchedulerManager(manager.SchedulerManager):
    """Nova's SchedulerManager plus the device-context request filter."""

    @messaging.expected_exceptions(exception.NoValidHost)
    def select_destinations(
        self, context, request_spec=None, filter_properties=None,
        spec_obj=manager.SchedulerManager._sentinel, instance_uuids=None,
        return_objects=False, return_alternates=False,
    ):
        uses_contexts = False
        if (isinstance(spec_obj, objects.RequestSpec) and
                not scheduler_utils.request_is_rebuild(spec_obj)):
            try:
                uses_contexts = request_filter.device_context_filter(
                    context, spec_obj)
            except exception.RequestFilterFailed as e:
                raise exception.NoValidHost(reason=e.message)
        attempts = CONF.nova_acc.schedule_attempts if uses_contexts else 1
        for attempt in range(1, attempts + 1):
            try:
                return super().select_destinations(
                    context, request_spec=request_spec,
                    filter_properties=filter_properties, spec_obj=spec_obj,
                    instance_uuids=instance_uuids,
                    return_objects=return_objects,
                    return_alternates=return_alternates)
            except messaging.ExpectedException as wrapped:
                # Nova's select_destinations wraps NoValidHost for RPC.
                e = wrapped.exc_info[1]
                if not (uses_contexts and
                        isinstance(e, exception.NoValidHost)):
                    raise
                # An empty reason means placement had no candidates at all:
                # no concurrent request to lose against, asking again is
                # pointless.
                if attempt < attempts and e.kwargs.get('reason'):
                    LOG.info('No host claimed for device contexts %s '
                             '(attempt %d of %d); retrying with fresh '
                             'allocation candidates in case a concurrent '
                             'request took the devices first.',
                             contexts.hint_values(spec_obj), attempt,
                             attempts)
                    continue
                # Placement only says "no candidates"; name what was asked
                # for so the user sees which device context could not be
                # satisfied.
                wanted = _describe_contexts(context, spec_obj)
                raise exception.NoValidHost(reason=(
                    '%s No host has enough free accelerators for the device '
                    'context(s) %s (with the other resources of the flavor).'
                    % (e.kwargs.get('reason') or '', wanted)).strip())

    @staticmethod
    def _consume_selected_host(selected_host, spec_obj, instance_uuid=None):
        manager.SchedulerManager._consume_selected_host(
            selected_host, spec_obj, instance_uuid=instance_uuid)
        # Every device provider nova-acc reports has a total of 1, so a
        # candidate that uses a device claimed a moment ago cannot be
        # claimed again. (A backend's providers, such as Cyborg's, may hold
        # more; they are left to placement.)
        claimed = {rp for rg in contexts.our_request_groups(spec_obj)
                   if contexts.context_id_of(spec_obj, rg.requester_id) is None
                   for rp in rg.provider_uuids or []}
        if not claimed:
            return
        selected_host.allocation_candidates = [
            candidate for candidate in selected_host.allocation_candidates
            if not claimed.intersection(candidate['allocations'])]


def _describe_contexts(context, spec_obj) -> str:
    """The hint values as the user wrote them, with what IDs stand for."""
    described = []
    try:
        groups = contexts.context_groups(spec_obj, context)
    except contexts.InvalidDeviceContextHint:
        # Changed since the filter resolved it; the values alone will do.
        groups = []
    for value in contexts.hint_values(spec_obj):
        text = repr(value)
        if contexts.is_context_id(value):
            text += ' (%s)' % os_acc.DeviceContext(groups=[
                cg.group for cg in groups if cg.hint_value == value
            ]).to_spec()
        described.append(text)
    return ', '.join(described)
