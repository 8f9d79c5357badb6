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
"""Fails loudly when a Nova method nova-acc overrides changes shape.

nova-acc overrides private Nova methods (and relies on how Nova calls
them). requirements.txt pins ``nova>=34.0.0,<35.0.0``; before widening that
range, this test tells what moved. Each check names the seam and why
nova-acc needs it.
"""

import ast
import inspect
import textwrap

from nova.compute import manager as compute_manager
from nova.compute import vm_states
from nova.conductor import manager as conductor_manager
from nova import exception as nova_exc
from nova.scheduler import manager as scheduler_manager
from nova.scheduler import utils as scheduler_utils
from nova import service_auth
from nova import utils as nova_utils
from nova.virt.libvirt import driver as libvirt_driver
from oslo_utils import importutils
from oslotest import base
import pbr.version


def params(func):
    return list(inspect.signature(func).parameters)


def source_params(cls, name):
    """Parameters as written in the source (decorators hide them)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return [a.arg for a in node.args.args]
    raise AssertionError('%s.%s is gone' % (cls.__name__, name))


class NovaSeamTest(base.BaseTestCase):

    def test_nova_version_is_in_the_pinned_range(self):
        version = pbr.version.VersionInfo('nova').semantic_version()
        self.assertEqual(34, version.version_tuple()[0],
                         'nova-acc is pinned to Nova 34.x (requirements.txt)')

    def test_conductor_prebind_seam(self):
        # Called after host selection on first boot and on reschedule.
        self.assertEqual(
            ['self', 'context', 'instance', 'hostname', 'request_spec',
             'requested_networks'],
            params(conductor_manager.ComputeTaskManager
                   ._create_and_bind_arq_for_instance))
        task_manager = conductor_manager.ComputeTaskManager
        for caller in ('schedule_and_build_instances', 'build_instances'):
            source = inspect.getsource(getattr(task_manager, caller))
            self.assertIn(
                'self._create_and_bind_arq_for_instance(', source,
                'Nova must call the pre-bind seam from %s' % caller)
            # The groups nova-acc adds before scheduling are mapped to
            # providers by Nova itself before the seam is called.
            self.assertIn('scheduler_utils.fill_provider_mapping(', source)
        self.assertEqual(
            ['self', 'context', 'build_requests', 'request_specs', 'image',
             'admin_password', 'injected_files', 'requested_networks',
             'block_device_mapping', 'tags'],
            params(task_manager.schedule_and_build_instances))

    def test_reschedule_fault_seam(self):
        # A compute that refuses a build (ComputeResourcesUnavailable, which
        # the libvirt seam raises for DeviceNotUsable) stores the reason in
        # retry['exc_reason'] and asks the conductor's build_instances to
        # reschedule; nova-acc reads the reason there first, because Nova's
        # populate_retry drops it before Nova gives up.
        build = inspect.getsource(compute_manager.ComputeManager
                                  ._build_and_run_instance)
        self.assertIn('except exception.ComputeResourcesUnavailable as e:',
                      build)
        self.assertIn(
            'instance_uuid=instance.uuid, reason=e.format_message()', build)
        self.assertEqual('Insufficient compute resources: %(reason)s.',
                         nova_exc.ComputeResourcesUnavailable.msg_fmt)
        do_build = inspect.getsource(compute_manager.ComputeManager
                                     ._do_build_and_run_instance)
        self.assertLess(
            do_build.index("retry['exc_reason'] = e.kwargs['reason']"),
            do_build.index('self.compute_task_api.build_instances('))
        self.assertIn("exc_reason = retry.pop('exc_reason', None)",
                      inspect.getsource(scheduler_utils.populate_retry))
        task_manager = conductor_manager.ComputeTaskManager
        self.assertEqual(
            ['self', 'context', 'instances', 'image', 'filter_properties',
             'admin_password', 'injected_files', 'requested_networks',
             'security_groups', 'block_device_mapping', 'legacy_bdm',
             'request_spec', 'host_lists'],
            params(task_manager.build_instances))
        # Nova records the fault of a reschedule that gives up through
        # _cleanup_when_reschedule_fails, with a MaxRetriesExceeded when no
        # host is left: nova-acc's override words that exception.
        self.assertEqual(
            ['self', 'context', 'instance', 'exception',
             'legacy_request_spec', 'requested_networks'],
            params(task_manager._cleanup_when_reschedule_fails))
        self.assertIn('self._set_vm_state_and_notify(', inspect.getsource(
            task_manager._cleanup_when_reschedule_fails))
        build = inspect.getsource(task_manager.build_instances)
        # Both of Nova's "Exhausted all hosts" go to the cleanup: the one
        # raised after populate_retry (no alternate host in the list) ...
        self.assertLess(build.index('scheduler_utils.populate_retry('),
                        build.index('raise exception.MaxRetriesExceeded('))
        self.assertRegex(build, r'except Exception as exc:(.|\n)*?'
                         r'self\._cleanup_when_reschedule_fails\(\s*'
                         r'context, instance, exc,')
        # ... and the one when no alternate host could be claimed.
        self.assertRegex(build, r'exc = exception\.MaxRetriesExceeded\('
                         r'reason=msg\)\s*self\._cleanup_when_reschedule_'
                         r'fails\(\s*context, instance, exc,')
        self.assertEqual(2, build.count('exception.MaxRetriesExceeded('))
        self.assertIn('%(reason)s', nova_exc.MaxRetriesExceeded.msg_fmt)

    def test_unshelve_calls_the_prebind_seam(self):
        # Unshelve after a shelve offload is bound from the allocation.
        source = inspect.getsource(
            conductor_manager.ComputeTaskManager.unshelve_instance)
        self.assertIn('self._create_and_bind_arq_for_instance(', source)

    def test_nova_helpers_the_cyborg_backend_uses(self):
        # Called the way Nova's own Cyborg client calls them.
        self.assertIn('ksa_auth', params(nova_utils.get_sdk_adapter))
        self.assertEqual(
            ['context', 'user_auth'],
            params(service_auth.get_service_user_token_auth_plugin))
        self.assertEqual(
            ['self', 'instance', 'event_names', 'timeout', 'error_callback'],
            params(compute_manager.ComputeVirtAPI.wait_for_instance_event))
        self.assertEqual(['self', 'events'],
                         params(compute_manager.ComputeVirtAPI
                                .exit_wait_early))

    def test_conductor_endpoint_seam(self):
        # ConductorManager serves its ComputeTaskManager as an endpoint;
        # nova-acc swaps that endpoint for its subclass.
        source = inspect.getsource(
            conductor_manager.ConductorManager.__init__)
        self.assertIn('self.compute_task_mgr = ComputeTaskManager()', source)
        self.assertIn(
            'self.additional_endpoints.append(self.compute_task_mgr)', source)

    def test_scheduler_seams(self):
        self.assertEqual(
            ['self', 'context', 'request_spec', 'filter_properties',
             'spec_obj', 'instance_uuids', 'return_objects',
             'return_alternates'],
            source_params(scheduler_manager.SchedulerManager,
                          'select_destinations'))
        schedule = inspect.getsource(scheduler_manager.SchedulerManager
                                     ._schedule)
        # Pre-bind reads the provider mapping Nova puts on the spec from
        # the candidate it claimed.
        self.assertIn('request_group.provider_uuids = alloc_req[', schedule)

    def test_libvirt_driver_seams(self):
        self.assertEqual(
            ['self', 'context', 'instance', 'image_meta', 'injected_files',
             'admin_password', 'allocations', 'network_info',
             'block_device_info', 'power_on', 'accel_info'],
            params(libvirt_driver.LibvirtDriver.spawn))
        self.assertEqual(
            ['self', 'context', 'instance', 'network_info',
             'block_device_info', 'destroy_disks', 'destroy_secrets'],
            params(libvirt_driver.LibvirtDriver.destroy))
        # Private: nova_acc.compute.attach detaches with it (the device-
        # removed event and [libvirt] device_detach_*), and tells a device
        # already gone (DeviceNotFound) from one the guest kept
        # (DeviceDetachFailed).
        detach = libvirt_driver.LibvirtDriver._detach_with_retry
        self.assertEqual(['self', 'guest', 'instance_uuid',
                          'get_device_conf_func', 'device_name'],
                         params(detach))
        source = inspect.getsource(detach)
        self.assertIn('raise exception.DeviceNotFound', source)
        self.assertIn('DeviceDetachFailed', source)

    def test_hostdev_seam(self):
        # Hostdevs are added in _guest_add_pci_devices(guest, instance),
        # which _get_guest_config calls for every guest definition, with
        # the server, whatever the guest (not under an if).
        self.assertEqual(
            ['self', 'guest', 'instance'],
            params(libvirt_driver.LibvirtDriver._guest_add_pci_devices))
        tree = ast.parse(textwrap.dedent(inspect.getsource(
            libvirt_driver.LibvirtDriver._get_guest_config)))
        body = tree.body[0].body
        self.assertIn('self._guest_add_pci_devices(guest, instance)',
                      [ast.unparse(node) for node in body
                       if isinstance(node, ast.Expr)])
        # Boot (and so rebuild, unshelve, evacuate), hard reboot, power on
        # and host boot all generate the guest through _get_guest_config.
        xml = inspect.getsource(libvirt_driver.LibvirtDriver._get_guest_xml)
        self.assertIn('self._get_guest_config(', xml)
        for caller in ('spawn', '_hard_reboot'):
            self.assertIn('self._get_guest_xml(', inspect.getsource(
                getattr(libvirt_driver.LibvirtDriver, caller)), caller)
        for caller in ('power_on', 'resume_state_on_host_boot'):
            self.assertIn('self._hard_reboot(', inspect.getsource(
                getattr(libvirt_driver.LibvirtDriver, caller)), caller)

    def test_mdev_seam(self):
        # Nova adds the mdevs a guest had (hard reboot, rescue) with
        # _guest_add_mdevs(guest, chosen_mdevs), after _guest_add_pci_devices
        # in _get_guest_config: the override drops those added already.
        self.assertEqual(
            ['self', 'guest', 'chosen_mdevs'],
            params(libvirt_driver.LibvirtDriver._guest_add_mdevs))
        source = inspect.getsource(
            libvirt_driver.LibvirtDriver._get_guest_config)
        self.assertLess(source.index('self._guest_add_pci_devices('),
                        source.index('self._guest_add_mdevs(guest, mdevs)'))
        self.assertIn('_get_all_assigned_mediated_devices(instance)',
                      inspect.getsource(
                          libvirt_driver.LibvirtDriver._hard_reboot))

    def test_get_guest_config_is_not_overridden(self):
        # Nova's functional tests (test_machine_type, test_stateless_firmware,
        # test_device_bus_migration), and patches written like them, set
        # LibvirtDriver._get_guest_config to a wrapper of the driver's bound
        # method: an override's super() call would then recurse forever.
        driver = importutils.import_class(
            'nova.virt.nova_acc.LibvirtAccDriver')
        self.assertNotIn('_get_guest_config', vars(driver))

    def test_release_relies_on_nova_freeing_resources_by_this_rule(self):
        # The reconcile says a server holds its devices until Nova's own
        # resource-removal rule frees its resources.
        self.assertEqual(['vm_state', 'task_state'],
                         params(vm_states.allow_resource_removal))
        self.assertTrue(vm_states.allow_resource_removal(vm_states.DELETED))
        self.assertTrue(vm_states.allow_resource_removal(
            vm_states.SHELVED_OFFLOADED))
        self.assertFalse(vm_states.allow_resource_removal(
            vm_states.SOFT_DELETED))
        # ... and on Nova updating the resource tracker (so calling
        # update_provider_tree) once a deleted or offloaded server's state
        # is saved: that update is where the device is released.
        delete = inspect.getsource(compute_manager.ComputeManager
                                   ._delete_instance)
        self.assertLess(delete.index('vm_states.DELETED'),
                        delete.index('self._complete_deletion('))
        complete = inspect.getsource(compute_manager.ComputeManager
                                     ._complete_deletion)
        self.assertIn('self._update_resource_tracker(', complete)
        offload = inspect.getsource(compute_manager.ComputeManager
                                    ._shelve_offload_instance)
        self.assertLess(offload.index('vm_states.SHELVED_OFFLOADED'),
                        offload.index('self._update_resource_tracker('))
        self.assertLess(offload.index('self._update_resource_tracker('),
                        offload.index('_nil_out_instance_obj_host_and_node'))

    def test_reshape_seam(self):
        # The upgrade from per-device providers to pools relies on Nova's
        # reshape: update_provider_tree(provider_tree, nodename,
        # allocations=None) raising ReshapeNeeded at startup makes the
        # resource tracker call it again with every consumer's allocations
        # in the tree and send them to placement's /reshaper.
        from nova.compute import resource_tracker
        self.assertEqual(
            ['self', 'provider_tree', 'nodename', 'allocations'],
            params(libvirt_driver.LibvirtDriver.update_provider_tree))
        update = inspect.getsource(resource_tracker.ResourceTracker
                                   ._update_to_placement)
        self.assertIn('except exception.ReshapeNeeded:', update)
        self.assertIn('prov_tree, nodename, allocations=allocs)', update)
        self.assertIn('allocations=allocs if driver_reshaped', update)

    def test_periodic_look_seam(self):
        # PoolReport.look: the resource tracker calls the driver's
        # get_available_resource before it takes its lock, then, in the
        # same thread, updates the provider tree under that lock; a look
        # is thread-local and used by that update alone.
        from nova.compute import resource_tracker
        rt = resource_tracker.ResourceTracker
        self.assertEqual(['self', 'nodename'], params(
            libvirt_driver.LibvirtDriver.get_available_resource))
        update = inspect.getsource(rt.update_available_resource)
        self.assertNotIn('synchronized', update)
        self.assertLess(
            update.index('self.driver.get_available_resource(nodename)'),
            update.index('self._update_available_resource(context, '
                         'resources'))
        locked = inspect.getsource(rt._update_available_resource)
        self.assertIn('@utils.synchronized(COMPUTE_RESOURCE_SEMAPHORE',
                      locked)
        self.assertIn('self._update(context, cn, startup=startup)', locked)
        self.assertIn('self._update_to_placement(context, compute_node, '
                      'startup)', inspect.getsource(rt._update))
        self.assertIn('self.driver.update_provider_tree(prov_tree, '
                      'nodename)', inspect.getsource(rt._update_to_placement))

    def test_report_after_release_seam(self):
        # After a guest teardown frees devices, the driver reports the
        # pools as the resource tracker does (_update_to_placement: the
        # compute's report client, a subtree copy, update_from_provider_
        # tree), under the tracker's lock that guards the client's cache.
        from nova.compute import resource_tracker
        self.assertEqual('compute_resources',
                         resource_tracker.COMPUTE_RESOURCE_SEMAPHORE)
        update = inspect.getsource(resource_tracker.ResourceTracker
                                   ._update_available_resource)
        self.assertIn('@utils.synchronized(COMPUTE_RESOURCE_SEMAPHORE, '
                      'fair=True)', update)
        to_placement = inspect.getsource(
            resource_tracker.ResourceTracker._update_to_placement)
        self.assertIn('get_provider_subtree_and_ensure_root(', to_placement)
        self.assertIn('update_from_provider_tree(', to_placement)
        self.assertEqual(['compute'], params(
            compute_manager.ComputeVirtAPI.__init__)[1:])
        self.assertIn('self.reportclient = compute.reportclient',
                      inspect.getsource(compute_manager.ComputeVirtAPI))

    def test_attach_endpoint_seam(self):
        # Attach and detach are served by nova-compute's own RPC server:
        # the driver adds its endpoint to the manager's additional_
        # endpoints in init_host (the manager is ComputeVirtAPI's private
        # _compute), and Service.start makes the server from them after
        # init_host and pre_start_hook, so a compute whose start fails
        # never listens.
        from nova import service as nova_service
        self.assertIn('self._compute = compute',
                      inspect.getsource(compute_manager.ComputeVirtAPI))
        start = inspect.getsource(nova_service.Service.start)
        self.assertLess(start.index('self.manager.init_host('),
                        start.index('self.manager.pre_start_hook('))
        self.assertLess(start.index('self.manager.pre_start_hook('),
                        start.index('self.manager.additional_endpoints'))
        self.assertLess(start.index('self.manager.additional_endpoints'),
                        start.index('self.rpcserver.start()'))
        from nova import manager as nova_manager
        self.assertIn('self.additional_endpoints = []',
                      inspect.getsource(nova_manager.Manager.__init__))

    def test_move_seams(self):
        # Resize and cold migration: the destination binds and claims in
        # finish_migration (Nova moved the server's node there before, and
        # passes the server's allocations); the source of a revert
        # restores its bindings in finish_revert_migration (Nova moved the
        # server's node back before).
        self.assertEqual(
            ['self', 'context', 'migration', 'instance', 'disk_info',
             'network_info', 'image_meta', 'resize_instance', 'allocations',
             'block_device_info', 'power_on', 'share_info'],
            params(libvirt_driver.LibvirtDriver.finish_migration))
        self.assertEqual(
            ['self', 'context', 'instance', 'network_info', 'migration',
             'block_device_info', 'power_on', 'share_info'],
            params(libvirt_driver.LibvirtDriver.finish_revert_migration))
        self.assertEqual(['self', 'context', 'instance'],
                         params(libvirt_driver.LibvirtDriver.suspend))
        # Suspend: the seam detaches the devices before Nova saves the
        # memory; resume: Nova restores the guest from the definition
        # libvirt has (re-attaching the mdevs it names), then the seam
        # attaches those the live guest lacks.
        self.assertEqual(
            ['self', 'context', 'instance', 'network_info',
             'block_device_info', 'share_info'],
            params(libvirt_driver.LibvirtDriver.resume))
        self.assertIn('guest.save_memory_state()', inspect.getsource(
            libvirt_driver.LibvirtDriver.suspend))
        resume = inspect.getsource(libvirt_driver.LibvirtDriver.resume)
        self.assertLess(resume.index('self._get_existing_domain_xml('),
                        resume.index('self._create_guest_with_network('))
        self.assertIn('self._attach_mediated_devices(guest, mdevs)', resume)
        # Live migration by replug (nova_acc.seams.live_migration): the
        # destination's pre-check, claim and attach; the source detaches in
        # the migration thread (private), before Nova builds the XML it
        # sends, and its failures there are rolled back by Nova's monitor;
        # the destination's rollback destroys its guest through destroy.
        driver = libvirt_driver.LibvirtDriver
        self.assertEqual(
            ['self', 'context', 'instance', 'src_compute_info',
             'dst_compute_info', 'block_migration', 'disk_over_commit'],
            params(driver.check_can_live_migrate_destination))
        self.assertEqual(
            ['self', 'context', 'instance', 'block_device_info',
             'network_info', 'disk_info', 'migrate_data'],
            params(driver.pre_live_migration))
        self.assertEqual(
            ['self', 'context', 'instance', 'dest', 'block_migration',
             'migrate_data', 'guest', 'device_names'],
            params(driver._live_migration_operation))
        operation = inspect.getsource(driver._live_migration_operation)
        self.assertIn('libvirt_migrate.get_updated_guest_xml(', operation)
        self.assertIn('future = thread_pool_factory.spawn(\n'
                      '                                     '
                      'self._live_migration_operation,',
                      inspect.getsource(driver._live_migration))
        self.assertEqual(
            ['self', 'context', 'instance', 'network_info',
             'block_migration', 'block_device_info'],
            params(driver.post_live_migration_at_destination))
        self.assertEqual(['self', 'context', 'instance', 'migrate_data'],
                         params(driver.rollback_live_migration_at_source))
        self.assertIn('self.destroy(', inspect.getsource(
            driver.rollback_live_migration_at_destination))
        finish = inspect.getsource(compute_manager.ComputeManager
                                   ._finish_resize)
        self.assertLess(finish.index('instance.apply_migration_context()'),
                        finish.index('self.driver.finish_migration('))
        resize = inspect.getsource(compute_manager.ComputeManager
                                   ._resize_instance)
        self.assertIn('instance.node = migration.dest_node', resize)
        revert = inspect.getsource(compute_manager.ComputeManager
                                   ._finish_revert_resize)
        self.assertLess(
            revert.index('self._revert_instance_flavor_host_node('),
            revert.index('self.driver.finish_revert_migration('))
        self.assertIn('instance.node = cn.hypervisor_hostname',
                      inspect.getsource(
                          compute_manager.ComputeManager
                          ._revert_instance_flavor_host_node))
        # The reconcile reads the migration's status as the resource
        # tracker sets it before it updates (so calls update_provider_tree).
        from nova.compute import resource_tracker
        rt = resource_tracker.ResourceTracker
        for method, status in (('drop_move_claim_at_source', 'confirmed'),
                               ('drop_move_claim_at_dest', 'reverted')):
            source = inspect.getsource(getattr(rt, method))
            self.assertLess(source.index("migration.status = '%s'" % status),
                            source.index('self._drop_move_claim('), method)
        # Evacuate rebuilds through the driver's spawn, with the migration
        # context of the move, and moves the node only after it.
        rebuild = inspect.getsource(compute_manager.ComputeManager
                                    ._rebuild_default_impl)
        self.assertIn('self.driver.spawn(', rebuild)
        do_rebuild = inspect.getsource(compute_manager.ComputeManager
                                       ._do_rebuild_instance)
        self.assertLess(do_rebuild.index('mutated_migration_context()'),
                        do_rebuild.index(
                            'self._update_instance_after_spawn(instance)'))
        # Refused moves: the conductor's task builders, whose pre-check
        # errors Nova turns into a failed migration and the action's fault.
        self.assertEqual(
            ['self', 'context', 'instance', 'destination', 'block_migration',
             'disk_over_commit', 'migration', 'request_spec'],
            params(conductor_manager.ComputeTaskManager
                   ._build_live_migrate_task))
        self.assertEqual(
            ['self', 'context', 'instance', 'flavor', 'request_spec',
             'clean_shutdown', 'host_list'],
            params(conductor_manager.ComputeTaskManager
                   ._build_cold_migrate_task))
        live = inspect.getsource(conductor_manager.ComputeTaskManager
                                 ._live_migrate)
        self.assertIn('exception.MigrationPreCheckError,', live)
        self.assertIn("migration.status = 'error'", live)
