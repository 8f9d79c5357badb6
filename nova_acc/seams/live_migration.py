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
"""The libvirt driver's live-migration overrides (``LibvirtAccDriver``).

Each a few lines calling ``nova_acc.compute.live_migration`` (unplug and
replug; what is refused is the conductor's, ``nova_acc.moves``):

* ``check_can_live_migrate_destination`` (destination): the pools of the
  move here allow replug or migrate; whole PCI devices that migrate need
  this host's libvirt and QEMU to be new enough;
* ``check_can_live_migrate_source`` (source): no post-copy for devices that
  migrate with the guest; whole PCI devices that migrate need this host's
  libvirt and QEMU to be new enough;
* ``check_source_migrate_data_at_dest`` (destination): devices that migrate
  get devices claimed here: the mdev UUID map in ``target_mdevs``, the PCI
  addresses in nova-acc's entries of ``pci_dev_map_src_dst``;
* ``pre_live_migration`` (destination): claim the devices for the move
  (for devices that migrate: check the claims are still held, create the
  mdevs);
* ``_live_migration_operation`` (source; private, run in Nova's migration
  thread, whose failures Nova rolls back): the devices leave the guest
  before libvirt migrates it, as Nova detaches direct SR-IOV ports there;
  PCI devices that migrate get the destination's addresses in the XML
  Nova sends (``live_migration_pci.MigratingGuest``);
* ``post_live_migration_at_destination``: bind here, attach the devices;
* ``rollback_live_migration_at_source``: the source's devices back in
  the guest. The destination's rollback destroys its guest through
  ``destroy``, whose reconcile releases what was claimed for the failed
  move.
"""

from __future__ import annotations

from nova import exception as nova_exc
from nova import objects
import nova.conf

from nova_acc import binding
from nova_acc import exception
from nova_acc.compute import live_migration
from nova_acc.compute import live_migration_pci

CONF = nova.conf.CONF


def _allocations(driver, context, instance) -> dict:
    """The server's allocations now: the destination's during the move."""
    return driver.virtapi.reportclient.get_allocs_for_consumer(
        context, instance.uuid)['allocations']


def _migration_id(context, instance, nodename: str) -> int:
    for migration in objects.MigrationList.get_in_progress_by_instance(
            context, instance.uuid, migration_type='live-migration'):
        if migration.dest_node == nodename:
            return migration.id
    raise exception.DeviceNotUsable(
        'no live migration of the server to node %s is in progress'
        % nodename)


class LiveMigrationMixin:
    """Mixed into ``LibvirtAccDriver`` before Nova's ``LibvirtDriver``."""

    @property
    def acc_live(self) -> live_migration.LiveMigrations:
        # Stateless: made of the driver's compute rooms when needed.
        return live_migration.LiveMigrations(
            self.acc.host, self.acc.claims, self.acc.guests)

    def check_can_live_migrate_destination(
            self, context, instance, src_compute_info, dst_compute_info,
            block_migration=False, disk_over_commit=False):
        # Before Nova's checks: a refusal after them would leave the file
        # of Nova's shared-storage check behind (Nova's manager cleans it
        # up only once the driver's check returned).
        if binding.load(instance):
            allocations = _allocations(self, context, instance)
            self.acc_live.check_destination(instance, allocations)
            if self.acc_live.migrates_pci_here(instance, allocations):
                live_migration_pci.check_versions(self._host,
                                                  self.acc.host.nodename)
        return super().check_can_live_migrate_destination(
            context, instance, src_compute_info, dst_compute_info,
            block_migration=block_migration,
            disk_over_commit=disk_over_commit)

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data,
                                      block_device_info=None):
        self.acc_live.check_source(
            instance, CONF.libvirt.live_migration_permit_post_copy)
        if self.acc_live.migrates_pci_with_guest(instance):
            live_migration_pci.check_versions(self._host,
                                              self.acc.host.nodename)
        return super().check_can_live_migrate_source(
            context, instance, dest_check_data,
            block_device_info=block_device_info)

    def check_source_migrate_data_at_dest(self, ctxt, instance, migrate_data,
                                          migration, limits, allocs):
        if not self.acc_live.migrates_here(instance, allocs):
            return super().check_source_migrate_data_at_dest(
                ctxt, instance, migrate_data, migration, limits, allocs)
        # The mdevs of the guest are nova-acc's (a host with nova-acc mdev
        # entries has no Nova vGPU types): Nova's own check would look for
        # them in its vGPU inventory.
        source_types = (migrate_data.source_mdev_types
                        if 'source_mdev_types' in migrate_data else {})
        # The conductor records the destination only after its checks: the
        # reconcile keeps a claim tagged with a move to this node, so the
        # record says it now (the conductor writes its choice later).
        migration.dest_node = self.acc.host.nodename
        migration.save()
        target = self.acc_live.claim_mdevs_at_destination(
            instance, migration.id, allocs, source_types)
        if 'source_mdev_types' in migrate_data:
            del migrate_data.source_mdev_types
        migrate_data = super().check_source_migrate_data_at_dest(
            ctxt, instance, migrate_data, migration, limits, allocs)
        migrate_data.source_mdev_types = source_types
        # Nova rewrites the guest's XML from it (migration.py).
        migrate_data.target_mdevs = target
        # Nova's destination filled the field before this last check; its
        # own entries (flavor PCI devices) stay.
        migrate_data.pci_dev_map_src_dst = {
            **(migrate_data.pci_dev_map_src_dst
               if 'pci_dev_map_src_dst' in migrate_data else {}),
            **live_migration_pci.destination_entries(
                self.acc_live.claimed_pci(instance, migration.id))}
        return migrate_data

    def pre_live_migration(self, context, instance, block_device_info,
                           network_info, disk_info, migrate_data):
        if binding.load(instance):
            migration_id = _migration_id(context, instance,
                                         self.acc.host.nodename)
            try:
                allocations = _allocations(self, context, instance)
                if self.acc_live.migrates_here(instance, allocations):
                    pci_entries, _nova = live_migration_pci.split_entries(
                        migrate_data.pci_dev_map_src_dst
                        if 'pci_dev_map_src_dst' in migrate_data else {})
                    self.acc_live.create_mdevs(
                        instance, migration_id,
                        migrate_data.target_mdevs
                        if 'target_mdevs' in migrate_data else {},
                        tuple(pci_entries.values()))
                else:
                    self.acc_live.claim_at_destination(
                        instance, migration_id, allocations)
            except exception.DeviceNotUsable as e:
                # Nova fails the migration and rolls it back.
                raise nova_exc.MigrationError(reason=e.reason) from e
        return super().pre_live_migration(
            context, instance, block_device_info, network_info, disk_info,
            migrate_data)

    def _live_migration_operation(self, context, instance, dest,
                                  block_migration, migrate_data, guest,
                                  device_names):
        # Private (pinned in test_nova_seams): run in Nova's migration
        # thread, so a failure here is rolled back as a failed migration.
        if not self.acc_live.migrates_with_guest(instance):
            self.acc_live.detach_at_source(guest, instance)
        else:
            guest = self._guest_with_destination_addresses(
                guest, instance, migrate_data)
        return super()._live_migration_operation(
            context, instance, dest, block_migration, migrate_data, guest,
            device_names)

    def _guest_with_destination_addresses(self, guest, instance,
                                          migrate_data):
        """The guest whose migration XML has the destination's PCI
        addresses, for Nova's ``_live_migration_operation``.

        Nova's own entries of ``pci_dev_map_src_dst`` are rewritten in the
        same single pass; Nova is given none (its rewrite goes one address
        after the other).

        :raises MigrationError: the destination's entries do not pair with
            the server's devices here.
        """
        ours, nova_map = live_migration_pci.split_entries(
            migrate_data.pci_dev_map_src_dst
            if 'pci_dev_map_src_dst' in migrate_data else {})
        if not ours:
            return guest
        try:
            address_map = {**nova_map, **self.acc_live.source_pci_map(
                instance, ours)}
        except exception.DeviceNotUsable as e:
            raise nova_exc.MigrationError(reason=e.reason) from e
        migrate_data.pci_dev_map_src_dst = {}
        return live_migration_pci.MigratingGuest(guest, address_map)

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        super().post_live_migration_at_destination(
            context, instance, network_info, block_migration=block_migration,
            block_device_info=block_device_info)
        if binding.load(instance):
            try:
                self.acc_live.attach_at_destination(
                    context, self._host.get_guest(instance), instance,
                    _allocations(self, context, instance))
            except exception.DeviceNotUsable as e:
                # Nova puts the server in ERROR: a hard reboot gives it
                # the devices it holds here.
                raise nova_exc.MigrationError(reason=e.reason) from e

    def rollback_live_migration_at_source(self, context, instance,
                                          migrate_data):
        super().rollback_live_migration_at_source(context, instance,
                                                  migrate_data)
        if not binding.load(instance):
            return
        try:
            guest = self._host.get_guest(instance)
        except nova_exc.InstanceNotFound:
            # Deleted during the migration: nothing to attach back, and
            # Nova's rollback must go on to the destination's.
            return
        self.acc_live.reattach_at_source(guest, instance)
