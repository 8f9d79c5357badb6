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
"""nova-conductor with device contexts (``nova-acc-conductor``).

Started by the ``nova-acc-conductor`` console script. Two seams:

* ``schedule_and_build_instances`` (RPC API): puts the device-context
  request groups on each RequestSpec before Nova schedules, so Nova's own
  ``fill_provider_mapping`` records which provider each group got. The
  scheduler adds the same groups again (idempotently): a change the
  scheduler makes to its copy of the spec never travels back here.
* ``_create_and_bind_arq_for_instance`` (private; Nova calls it after host
  selection on first boot and on every reschedule, where it binds Cyborg
  ARQs): binds our groups too (step 3, ``nova_acc.binding.prebind``).
  Private, hence the pinned Nova range in requirements.txt and
  tests/unit/nova_acc/test_nova_seams.py.
* ``_build_live_migrate_task`` and ``_build_cold_migrate_task`` (private):
  the task of a move ``nova_acc.moves`` refuses raises
  ``MigrationPreCheckError`` before anything moves; Nova's own handling of
  a failed pre-check then keeps the server as it was, marks the migration
  failed and records the reason as the action's fault.
"""

from nova.conductor import manager
from nova import exception as nova_exc
from oslo_log import log as logging

from nova_acc import binding
from nova_acc import exception
from nova_acc import moves
from nova_acc import request_groups

LOG = logging.getLogger(__name__)


class ComputeTaskManager(manager.ComputeTaskManager):

    def schedule_and_build_instances(self, context, build_requests,
                                     request_specs, image, admin_password,
                                     injected_files, requested_networks,
                                     block_device_mapping, tags=None):
        for spec in request_specs:
            try:
                groups = request_groups.context_groups(spec, context)
            except exception.InvalidDeviceContextHint:
                # The scheduler's request filter rejects it with the same
                # message, which Nova records as the server's fault.
                continue
            if groups:
                request_groups.apply_request_groups(spec, groups)
        return super().schedule_and_build_instances(
            context, build_requests, request_specs, image, admin_password,
            injected_files, requested_networks, block_device_mapping,
            tags=tags)

    def _create_and_bind_arq_for_instance(self, context, instance, hostname,
                                          request_spec,
                                          requested_networks=None):
        binding.prebind(self.report_client, context, instance, hostname,
                        request_spec)
        return super()._create_and_bind_arq_for_instance(
            context, instance, hostname, request_spec,
            requested_networks=requested_networks)

    def _build_live_migrate_task(self, context, instance, destination,
                                 block_migration, disk_over_commit, migration,
                                 request_spec=None):
        reason = moves.live_migration_refusal(instance)
        if reason:
            return _Refused(reason, instance)
        return super()._build_live_migrate_task(
            context, instance, destination, block_migration,
            disk_over_commit, migration, request_spec=request_spec)

    def _build_cold_migrate_task(self, context, instance, flavor,
                                 request_spec, clean_shutdown, host_list):
        reason = moves.cold_migration_refusal(instance)
        if reason:
            return _Refused(reason, instance)
        return super()._build_cold_migrate_task(
            context, instance, flavor, request_spec, clean_shutdown,
            host_list)


class _Refused:
    """A conductor task that refuses its operation before anything moves."""

    def __init__(self, reason: str, instance):
        self.reason = reason
        self.instance = instance

    def execute(self):
        LOG.info('Refused: %s', self.reason, instance=self.instance)
        raise nova_exc.MigrationPreCheckError(reason=self.reason)


class ConductorManager(manager.ConductorManager):
    """Nova's ConductorManager serving nova-acc's ComputeTaskManager."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.additional_endpoints.remove(self.compute_task_mgr)
        self.compute_task_mgr = ComputeTaskManager()
        self.additional_endpoints.append(self.compute_task_mgr)
