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
"""nova-scheduler with device contexts (``nova-acc-scheduler``).

Nova has no plug point for request filters (``ALL_REQUEST_FILTERS`` is a
module constant), and changing that list at import time would change every
scheduler that happens to import nova_acc. Instead this manager runs the
device-context request filter right before Nova's own request filters
inside ``select_destinations`` (step 1, ``nova_acc.request_groups``), and
adds nova-acc's part of claiming (step 2, ``nova_acc.allocation``): a retry
with fresh candidates, and a fault that names the device contexts.
"""

from nova import exception as nova_exc
from nova import objects
from nova.scheduler import manager
from nova.scheduler import request_filter
from nova.scheduler import utils as scheduler_utils
from oslo_log import log as logging
import oslo_messaging as messaging

from nova_acc import allocation
from nova_acc import exception
from nova_acc import request_groups

LOG = logging.getLogger(__name__)


@request_filter.trace_request_filter
def device_context_filter(ctxt, request_spec) -> bool:
    """Nova's request-filter signature around ``add_to_request``.

    :raises nova.exception.RequestFilterFailed: the hint is unusable; the
        message says what to fix and ends up as the server's fault.
    """
    try:
        groups = request_groups.add_to_request(ctxt, request_spec)
    except exception.InvalidDeviceContextHint as e:
        raise nova_exc.RequestFilterFailed(reason=str(e))
    if groups:
        LOG.debug('Added %d device-context request groups: %s', len(groups),
                  ', '.join(g.requester_id for g in groups))
    return bool(groups)


class SchedulerManager(manager.SchedulerManager):
    """Nova's SchedulerManager plus the device-context request filter."""

    @messaging.expected_exceptions(nova_exc.NoValidHost)
    def select_destinations(
        self, context, request_spec=None, filter_properties=None,
        spec_obj=manager.SchedulerManager._sentinel, instance_uuids=None,
        return_objects=False, return_alternates=False,
    ):
        uses_contexts = False
        if (isinstance(spec_obj, objects.RequestSpec) and
                not scheduler_utils.request_is_rebuild(spec_obj)):
            try:
                uses_contexts = device_context_filter(context, spec_obj)
            except nova_exc.RequestFilterFailed as e:
                # "from None": the reason is the whole story; the filter's
                # exception would only double the traceback callers log.
                raise nova_exc.NoValidHost(reason=e.message) from None
        attempt = 0
        while True:
            attempt += 1
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
                        isinstance(e, nova_exc.NoValidHost)):
                    raise
                reason = e.kwargs.get('reason')
                if allocation.should_retry(reason, attempt, uses_contexts):
                    LOG.info('No host claimed for device contexts %s '
                             '(attempt %d of %d); retrying with fresh '
                             'allocation candidates in case a concurrent '
                             'request took the devices first.',
                             request_groups.hint_values(spec_obj), attempt,
                             allocation.attempts(uses_contexts))
                    continue
                # "from None": this replaces Nova's NoValidHost (and the
                # RPC wrapper around it) with one that names the device
                # contexts and keeps Nova's reason. Chained to them, it
                # went to the conductor as three tracebacks, "During
                # handling of the above exception" twice, logged at every
                # unsatisfiable boot.
                raise nova_exc.NoValidHost(
                    reason=allocation.no_valid_host_reason(
                        context, spec_obj, reason)) from None
