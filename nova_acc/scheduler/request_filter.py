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
"""The device-context request filter.

It has the signature of Nova's request filters
(``nova.scheduler.request_filter``) and runs right before them; see
``nova_acc.scheduler.manager`` for why it is not in Nova's list.
"""

from nova import exception
from nova.scheduler import request_filter
from oslo_log import log as logging

from nova_acc import conf
from nova_acc import contexts

CONF = conf.CONF
LOG = logging.getLogger(__name__)


@request_filter.trace_request_filter
def device_context_filter(ctxt, request_spec) -> bool:
    """Turn the ``device_context`` hint into placement request groups.

    :raises nova.exception.RequestFilterFailed: the hint is unusable; the
        message says what to fix and ends up as the server's fault.
    """
    if not contexts.hint_values(request_spec):
        return False
    try:
        groups = contexts.context_groups(request_spec, ctxt)
    except contexts.InvalidDeviceContextHint as e:
        raise exception.RequestFilterFailed(reason=str(e))
    contexts.apply_request_groups(request_spec, groups)
    # Only compute nodes running the nova-acc driver carry the trait, so a
    # host without it is never picked for a device context.
    request_spec.root_required.add(CONF.nova_acc.capability_trait)
    LOG.debug('Added %d device-context request groups: %s', len(groups),
              ', '.join(g.requester_id for g in groups))
    return True
