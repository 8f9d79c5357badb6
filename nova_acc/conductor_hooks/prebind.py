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
"""Step 3 of the flow: bind each context group to its allocated device.

Runs in the conductor after placement picked a host, on the first boot and
on every reschedule. The RequestSpec's request groups carry the provider
that placement chose for each of them (Nova's ``fill_provider_mapping``),
so binding means checking that provider is a device of the chosen node and
recording it with the instance.

A binding that cannot be made is recorded as an error instead of raising:
raising here would make Nova fail every server of a multi-create, while
the compute turns the recorded error into a reschedule of this server only.
"""

from __future__ import annotations

from nova import context as nova_context
from nova import exception
from nova import objects
from oslo_db import exception as db_exc
from oslo_log import log as logging

from nova_acc import binding
from nova_acc import contexts

LOG = logging.getLogger(__name__)


class BindingFailed(Exception):
    pass


def compute_bindings(report_client, context, request_spec,
                     nodename: str) -> list[binding.Binding]:
    """Bindings for every context group from the spec's provider mapping.

    :raises BindingFailed: a group has no provider, or the provider is not
        one of ``nodename``'s devices.
    """
    result = []
    for rg in contexts.our_request_groups(request_spec):
        providers = rg.provider_uuids or []
        if len(providers) != 1:
            raise BindingFailed(
                'placement mapped device group %s to %d providers, expected '
                'exactly one' % (rg.requester_id, len(providers)))
        rp_uuid = providers[0]
        address = _device_address(report_client, context, nodename, rp_uuid)
        if address is None:
            raise BindingFailed(
                'resource provider %s allocated for device group %s is not '
                'a nova-acc device of node %s' % (
                    rp_uuid, rg.requester_id, nodename))
        result.append(binding.Binding(requester_id=rg.requester_id,
                                      rp_uuid=rp_uuid, address=address,
                                      nodename=nodename))
    return result


def _device_address(report_client, context, nodename: str,
                    rp_uuid: str) -> str | None:
    resp = report_client.get('/resource_providers/%s' % rp_uuid,
                             global_request_id=context.global_id)
    if not resp:
        raise BindingFailed('cannot read resource provider %s from '
                            'placement: %s' % (rp_uuid, resp.text))
    name = resp.json()['name']
    prefix = nodename + '_'
    if not name.startswith(prefix):
        return None
    address = name[len(prefix):]
    # The UUID is derived from the name by the compute that created the
    # provider; a mismatch means someone else made a look-alike provider.
    if binding.provider_uuid(nodename, address) != rp_uuid:
        return None
    return address


def _cell_of(context, instance):
    """The instance's cell, or None where the API database is unreachable.

    The superconductor (first boot) must target the cell explicitly; a cell
    conductor (reschedule) already talks to the cell database and may have
    no API database configured at all.
    """
    try:
        return objects.InstanceMapping.get_by_instance_uuid(
            context, instance.uuid).cell_mapping
    except (exception.InstanceMappingNotFound, db_exc.CantStartEngineError):
        return None


def prebind(report_client, context, instance, nodename: str,
            request_spec) -> list[binding.Binding]:
    """Bind and record; a failure is recorded for the compute to act on."""
    if not contexts.our_request_groups(request_spec):
        # Nothing to bind: no device contexts, or a move operation (Nova
        # also calls this seam for evacuate and unshelve), which nova-acc
        # does not support yet; the compute then refuses the stale binding
        # with a clear error instead of silently dropping the device.
        return []
    error = None
    try:
        bindings = compute_bindings(report_client, context, request_spec,
                                    nodename)
    except BindingFailed as e:
        LOG.warning('Device-context binding on node %s failed: %s; the '
                    'compute will reschedule the server.', nodename, e,
                    instance=instance)
        bindings, error = [], 'binding on node %s failed: %s' % (nodename, e)
    binding.replace(instance, bindings, error=error)
    cell = _cell_of(context, instance)
    if cell is None:
        instance.save()
    else:
        with nova_context.target_cell(context, cell) as cctxt:
            with instance.obj_alternate_context(cctxt):
                instance.save()
    for b in bindings:
        LOG.info('Bound device group %s to device %s (provider %s) on node '
                 '%s', b.requester_id, b.address, b.rp_uuid, nodename,
                 instance=instance)
    return bindings
