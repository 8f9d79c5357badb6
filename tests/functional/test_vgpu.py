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
"""vGPUs (mediated devices) through device contexts, in Nova's harness.

Hosts are Nova's fake libvirt with its mdev-capable GPUs (``num_mdevcap``,
types ``nvidia-11`` and ``nvidia-12``), given by
``nova_acc.tests.fixtures.mdev_host`` what a vendor driver does behind
libvirt's node-device API (capacity taken and given back). Each test checks
what a user or operator sees: the server's state and fault, the mdev
hostdev in its domain, the mdevs on the host, the allocation and the
inventory of the pool, and the ledger.
"""

from xml.etree import ElementTree

from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_serialization import jsonutils

from oslo_utils import uuidutils

from nova_acc.compute import ledger
from nova_acc.tests.fixtures.cyborg import cloud as cyborg_cloud
from nova_acc.tests.fixtures import mdev_host
from tests.functional import base
from tests.functional import test_moves

NV11 = fakelibvirt.NVIDIA_11_VGPU_TYPE
NV12 = fakelibvirt.NVIDIA_12_VGPU_TYPE
GPU_VENDOR = fakelibvirt.MDEV_CAPABLE_VEND_ID.lower()
VGPU_SPEC = {'vendor_id': GPU_VENDOR, 'mdev_type': NV11,
             'resource_class': 'VGPU', 'traits': 'CUSTOM_M60_0B'}
NV12_SPEC = {'vendor_id': GPU_VENDOR, 'mdev_type': NV12,
             'resource_class': 'VGPU', 'traits': 'CUSTOM_M60_2Q'}
WHOLE_SPEC = {'vendor_id': GPU_VENDOR, 'resource_class': 'PGPU'}


class VgpuTestBase(base.DeviceContextTestBase):

    device_spec = [VGPU_SPEC]
    #: mdev type -> instances per GPU (Nova's fake says 16 and 8).
    instances = {NV11: 2, NV12: 1}

    def setUp(self):
        super().setUp()
        self.mdev_hosts = {}

    def _get_connection(self, *args, **kwargs):
        conn = super()._get_connection(*args, **kwargs)
        self.mdev_hosts[kwargs.get('hostname') or args[-1]] = \
            mdev_host.MdevHost(conn, instances=self.instances)
        return conn

    def start_gpu_host(self, hostname, num_gpus=2, host_info=None):
        """A compute with ``num_gpus`` fake GPUs that offer both types."""
        pci_info = fakelibvirt.HostPCIDevicesInfo(
            num_pci=0, num_pfs=0, num_vfs=0, num_mdevcap=0)
        bus = self._next_bus
        self._next_bus += 1
        addresses = []
        for slot in range(num_gpus):
            dev = pci_info.add_device(
                dev_type='MDEV_TYPES', bus=bus, slot=slot, function=0,
                iommu_group=60 + slot, numa_node=0,
                multiple_gpu_types=True)
            addresses.append(dev.address)
            self._make_sysfs_device(dev.address)
        self.start_compute(hostname, pci_info=pci_info, host_info=host_info)
        return addresses

    # ---- what a user or operator looks at ----------------------------

    def domain_mdevs(self, hostname, server):
        """UUIDs of the mdev hostdevs in a server's domain."""
        conn = self.computes[hostname].driver._host.get_connection()
        for dom in conn._vms.values():
            if dom.UUIDString() == server['id']:
                xml = ElementTree.fromstring(dom.XMLDesc(0))
                return sorted(
                    a.get('uuid') for a in xml.findall(
                        "./devices/hostdev[@type='mdev']/source/address"))
        return []

    def host_mdevs(self, hostname):
        """{uuid: (parent address, type)} of the mdevs on a host."""
        return {m.uuid: ('0000:%s:%s.%s' % tuple(m.parent[9:].split('_')),
                         m.type_id)
                for m in self.mdev_hosts[hostname].active.values()}

    def vgpu_pool(self, hostname, spec=VGPU_SPEC):
        """The provider of the pool of ``spec``'s mdev type on a host."""
        for uuid, name in self.pool_rps().items():
            if name.startswith(hostname + '_VGPU_%s_' % spec['mdev_type']):
                return uuid
        return None

    def total_and_reserved(self, rp_uuid):
        inv = self.provider_inventory(rp_uuid)
        return {rc: (i['total'], i['reserved']) for rc, i in inv.items()}

    def mdev_records(self, hostname):
        return {u: r for u, r in self.ledger(hostname).items() if r.is_mdev}

    def assert_nothing_left(self, hostname, server=None):
        self.assertEqual({}, self.host_mdevs(hostname))
        self.assertEqual({}, self.mdev_records(hostname))
        if server is not None:
            self.assertEqual({}, self._get_allocations_by_server_uuid(
                server['id']))


class VgpuBootTest(VgpuTestBase):

    def test_boot_with_a_vgpu_context_and_delete(self):
        gpus = self.start_gpu_host('compute1')
        pool = self.vgpu_pool('compute1')
        self.assertEqual({'VGPU': (4, 0)}, self.total_and_reserved(pool))
        self.assertIn('CUSTOM_M60_0B', self.provider_traits(pool))

        server = self.boot('resources:VGPU=1,trait:CUSTOM_M60_0B=required')

        [uuid] = self.domain_mdevs('compute1', server)
        self.assertEqual({uuid: (gpus[0], NV11)},
                         self.host_mdevs('compute1'))
        self.assertEqual([pool], self.allocated_device_rps(server))
        rec = self.ledger('compute1')[uuid]
        self.assertEqual(
            (ledger.ATTACHED, server['id'], gpus[0], NV11, pool),
            (rec.state, rec.instance_uuid, rec.parent, rec.mdev_type,
             rec.rp_uuid))
        # No PCI hostdev: the GPU itself stays on the host.
        self.assertEqual([], self.domain_hostdevs('compute1', server))
        self._run_periodics()
        self.assertEqual({'VGPU': (4, 0)}, self.total_and_reserved(pool))
        self.assertEqual({'VGPU': 1}, self.provider_usage(pool))

        self._delete_server(server)

        self.assert_nothing_left('compute1', server)
        self._run_periodics()
        self.assertEqual({'VGPU': (4, 0)}, self.total_and_reserved(pool))
        self.assertEqual({'VGPU': 0}, self.provider_usage(pool))

    def test_a_full_pool_fails_the_next_server_clearly(self):
        gpus = self.start_gpu_host('compute1')
        pool = self.vgpu_pool('compute1')
        first = self.boot('resources:VGPU=2')
        second = self.boot('resources:VGPU=2')

        # A server's mdevs are packed on one GPU, which leaves the other
        # free for other types or whole use.
        self.assertEqual({gpus[0]}, {self.host_mdevs('compute1')[u][0]
                                     for u in self.domain_mdevs(
                                         'compute1', first)})
        self.assertEqual({gpus[1]}, {self.host_mdevs('compute1')[u][0]
                                     for u in self.domain_mdevs(
                                         'compute1', second)})
        self.assertEqual(4, len(self.host_mdevs('compute1')))
        self.assertEqual({'VGPU': 4}, self.provider_usage(pool))

        third = self.boot('resources:VGPU=1', expected_state='ERROR')
        fault = self.fault_message(third)
        self.assertIn('No host has enough free accelerators', fault)
        self.assertIn("'resources:VGPU=1'", fault)
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            third['id']))
        self.assertEqual(4, len(self.host_mdevs('compute1')))

        # One leaves: its mdevs are removed, the capacity serves the next.
        gone = set(self.domain_mdevs('compute1', first))
        self._delete_server(first)
        self.assertEqual(2, len(self.host_mdevs('compute1')))
        fourth = self.boot('resources:VGPU=2')
        new = set(self.domain_mdevs('compute1', fourth))
        self.assertEqual(2, len(new))
        self.assertEqual(set(), new & gone)  # new mdevs, not the old ones

    def test_failed_mdev_creation_reschedules_and_leaves_nothing(self):
        self.start_gpu_host('compute1')
        self.start_gpu_host('compute2')
        self.mdev_hosts['compute1'].fail_create = 'vendor driver refused'
        self.mdev_hosts['compute2'].fail_create = 'vendor driver refused'
        # Both fail: the server ends in ERROR with the reason of the last.
        server = self.boot('resources:VGPU=1', expected_state='ERROR')
        self.assertEqual(['compute1', 'compute2'], self.hosts_tried(server))
        self.assertIn('Exceeded maximum number of retries',
                      self.fault_message(server))
        for hostname in ('compute1', 'compute2'):
            self.assert_nothing_left(hostname, server)
        self._run_periodics()
        for hostname in ('compute1', 'compute2'):
            pool = self.vgpu_pool(hostname)
            self.assertEqual({'VGPU': (4, 0)}, self.total_and_reserved(pool))

        # Only one host refuses: the server lands on the other.
        self.mdev_hosts['compute2'].fail_create = None
        server = self.boot('resources:VGPU=1')
        self.assertEqual('compute2', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(1, len(self.domain_mdevs('compute2', server)))
        self.assert_nothing_left('compute1')


class VgpuTypesTest(VgpuTestBase):
    """Two mdev types offered on the same GPU."""

    device_spec = [VGPU_SPEC, NV12_SPEC]

    def test_two_types_on_one_gpu_do_not_overcommit(self):
        [gpu] = self.start_gpu_host('compute1', num_gpus=1)
        nv11 = self.vgpu_pool('compute1')
        nv12 = self.vgpu_pool('compute1', NV12_SPEC)
        self.assertEqual({'VGPU': (2, 0)}, self.total_and_reserved(nv11))
        self.assertEqual({'VGPU': (1, 0)}, self.total_and_reserved(nv12))

        first = self.boot('resources:VGPU=1,trait:CUSTOM_M60_0B=required')
        [uuid] = self.domain_mdevs('compute1', first)
        self.assertEqual({uuid: (gpu, NV11)}, self.host_mdevs('compute1'))

        # The GPU now serves nvidia-11 only: no nvidia-12 is promised.
        self._run_periodics()
        self.assertNotIn(nv12, self.pool_rps())
        other = self.boot('resources:VGPU=1,trait:CUSTOM_M60_2Q=required',
                          expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(other))
        self.assertEqual({uuid: (gpu, NV11)}, self.host_mdevs('compute1'))

        self._delete_server(first)
        self._run_periodics()
        server = self.boot('resources:VGPU=1,trait:CUSTOM_M60_2Q=required')
        [uuid] = self.domain_mdevs('compute1', server)
        self.assertEqual({uuid: (gpu, NV12)}, self.host_mdevs('compute1'))

    def test_the_ledger_refuses_a_second_type_placement_offered(self):
        # Placement can offer both types on an idle GPU to two builds at
        # once; the host's claim, under its ledger lock, gives the GPU to
        # the first and refuses the second, which is rescheduled.
        [gpu] = self.start_gpu_host('compute1', num_gpus=1)
        first = self.boot('resources:VGPU=1,trait:CUSTOM_M60_0B=required')
        nv12 = self.vgpu_pool('compute1', NV12_SPEC)
        # Before the next resource update placement still has nvidia-12.
        self.assertIsNotNone(nv12)
        second = self.boot('resources:VGPU=1,trait:CUSTOM_M60_2Q=required',
                           expected_state='ERROR')
        self.assertEqual(['compute1'], self.hosts_tried(second))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            second['id']))
        self.assertEqual(1, len(self.host_mdevs('compute1')))
        self.assertEqual([gpu], [r.parent for r in self.mdev_records(
            'compute1').values()])
        self.assertEqual(1, len(self.domain_mdevs('compute1', first)))


class VgpuAndWholeGpuTest(VgpuTestBase):
    """One GPU offered whole and as vGPUs: one way at a time."""

    device_spec = [VGPU_SPEC, WHOLE_SPEC]

    def test_whole_and_vgpu_use_of_a_gpu_are_exclusive(self):
        [gpu] = self.start_gpu_host('compute1', num_gpus=1)
        vgpus = self.vgpu_pool('compute1')
        whole = self.device_rp('compute1', gpu)
        self.assertEqual({'PGPU': (1, 0)}, self.total_and_reserved(whole))

        passthrough = self.boot('resources:PGPU=1')
        self.assertEqual([gpu], self.domain_hostdevs('compute1',
                                                     passthrough))
        self._run_periodics()
        self.assertEqual({'VGPU': (2, 2)}, self.total_and_reserved(vgpus))
        refused = self.boot('resources:VGPU=1', expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(refused))
        self.assertEqual({}, self.host_mdevs('compute1'))

        self._delete_server(passthrough)
        self.assertEqual(1, self.reset_count(gpu))
        self._run_periodics()
        vgpu = self.boot('resources:VGPU=1')
        self.assertEqual(1, len(self.domain_mdevs('compute1', vgpu)))
        self._run_periodics()
        self.assertEqual({'PGPU': (1, 1)}, self.total_and_reserved(whole))
        refused = self.boot('resources:PGPU=1', expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(refused))
        self.assertEqual(('free', None), self.ledger_state('compute1', gpu))


class VgpuHostLifecycleTest(VgpuTestBase):

    def test_compute_restart_keeps_mdevs_and_servers(self):
        self.start_gpu_host('compute1')
        server = self.boot('resources:VGPU=1')
        [uuid] = self.domain_mdevs('compute1', server)
        created = self.mdev_hosts['compute1'].created

        self.restart_compute_service('compute1')
        self._run_periodics()

        self.assertEqual(created, self.mdev_hosts['compute1'].created)
        self.assertEqual([uuid], list(self.host_mdevs('compute1')))
        self.assertEqual([uuid], self.domain_mdevs('compute1', server))
        self.assertEqual('ACTIVE', self.api.get_server(server['id'])[
            'status'])
        self.assertEqual(ledger.ATTACHED,
                         self.ledger('compute1')[uuid].state)

    def test_host_reboot_recreates_the_mdevs_of_its_servers(self):
        gpus = self.start_gpu_host('compute1')
        server = self.boot('resources:VGPU=2')
        uuids = self.domain_mdevs('compute1', server)

        # The host reboots: its mdevs are gone, its guests defined.
        self.mdev_hosts['compute1'].reboot()
        self.assertEqual({}, self.host_mdevs('compute1'))
        self.restart_compute_service('compute1')

        self.assertEqual({u: (gpus[0], NV11) for u in uuids},
                         self.host_mdevs('compute1'))
        self._reboot_server(server, hard=True)
        self.assertEqual(uuids, self.domain_mdevs('compute1', server))
        self._run_periodics()
        pool = self.vgpu_pool('compute1')
        self.assertEqual({'VGPU': (4, 0)}, self.total_and_reserved(pool))
        self.assertEqual({'VGPU': 2}, self.provider_usage(pool))

    def test_a_mdev_that_cannot_be_removed_stays_out_of_service(self):
        self.start_gpu_host('compute1', num_gpus=1)
        pool = self.vgpu_pool('compute1')
        server = self.boot('resources:VGPU=1')
        [uuid] = self.domain_mdevs('compute1', server)
        fake = self.mdev_hosts['compute1']
        real_stop = fake.stop

        def refuse(mdev):
            raise mdev_host._error('device or resource busy')
        fake.stop = refuse

        self._delete_server(server)

        rec = self.ledger('compute1')[uuid]
        self.assertEqual(ledger.DIRTY, rec.state)
        self.assertIn('device or resource busy', rec.reason)
        self.assertEqual([uuid], list(self.host_mdevs('compute1')))
        self._run_periodics()
        # Its capacity is not offered: one of two is left.
        self.assertEqual({'VGPU': (1, 0)}, self.total_and_reserved(pool))

        # The driver lets go: the next resource update removes it.
        fake.stop = real_stop
        self._run_periodics()
        self.assertEqual({}, self.host_mdevs('compute1'))
        self.assertEqual({}, self.mdev_records('compute1'))
        self._run_periodics()
        self.assertEqual({'VGPU': (2, 0)}, self.total_and_reserved(pool))


class VgpuConfigTest(VgpuTestBase):

    def test_nova_vgpu_types_and_nova_acc_mdev_types_refuse_to_start(self):
        self.flags(enabled_mdev_types=[NV11], group='devices')
        exc = self.assertRaises(Exception, self.start_gpu_host, 'compute1')
        self.assertIn('[devices] enabled_mdev_types', str(exc))

    def test_invalid_mdev_type_in_device_spec_names_the_key(self):
        self.flags(device_spec=[jsonutils.dumps(dict(
            VGPU_SPEC, mdev_type='nvidia-11"/><evil'))], group='nova_acc')
        exc = self.assertRaises(Exception, self.start_gpu_host, 'compute1')
        self.assertIn("'mdev_type'", str(exc))


class CyborgMdevTest(cyborg_cloud.CyborgCloudMixin, VgpuTestBase):
    """An ID-based context whose Cyborg attach handle is an MDEV."""

    def add_cyborg_gpu(self, hostname, address, vgpus=2):
        """What cyborg-agent reports for a vGPU-capable GPU."""
        rp_uuid = self.add_cyborg_provider(hostname, address, 'VGPU', vgpus,
                                           'CUSTOM_CYBORG_VGPU')
        self.cyborg.seed_devices(hostname, [{
            'pci_address': address, 'rp_uuid': rp_uuid, 'type': 'GPU',
            'vendor': GPU_VENDOR, 'resource_class': 'VGPU',
            'traits': ['CUSTOM_CYBORG_VGPU'], 'attach_type': 'MDEV',
            'asked_type': NV11, 'num_mdevs': vgpus}])
        self.cyborg.client('admin').create_device_profile('vgpu', [{
            'resources:VGPU': '1', 'trait:CUSTOM_CYBORG_VGPU': 'required'}])
        return rp_uuid

    def test_mdev_attach_handle_is_created_attached_and_removed(self):
        [gpu] = self.start_gpu_host('compute1', num_gpus=1)
        rp = self.add_cyborg_gpu('compute1', gpu)
        ctx = self.member.create_arq('vgpu')[0]['uuid']

        server = self.boot(ctx)

        arq = self.member.get_arq(ctx)
        self.assertEqual(('Bound', 'MDEV', rp),
                         (arq['state'], arq['attach_handle_type'],
                          arq['device_rp_uuid']))
        handle = arq['attach_handle_uuid']
        # Cyborg asked its agent for the mdev; nova-compute created it, as
        # Nova's libvirt driver does when it is not there yet.
        self.assertIn(('create_vgpu_mdev', handle),
                      [(c['method'], c['args']['ah_uuid'])
                       for c in self.cyborg.agent_calls()])
        self.assertEqual([handle], self.domain_mdevs('compute1', server))
        self.assertEqual({handle: (gpu, NV11)}, self.host_mdevs('compute1'))
        rec = self.ledger('compute1')[handle]
        self.assertEqual((ledger.ATTACHED, ctx, gpu, NV11),
                         (rec.state, rec.context_id, rec.parent,
                          rec.mdev_type))

        self._delete_server(server)

        arq = self.member.get_arq(ctx)
        self.assertEqual('Unbound', arq['state'])
        self.assert_nothing_left('compute1')
        self.assertEqual({'VGPU': 0}, self.provider_usage(rp))
        # Like a port: the same context boots the next server.
        again = self.boot(ctx)
        self.assertEqual(1, len(self.domain_mdevs('compute1', again)))

    def test_mdev_handle_with_a_bad_type_fails_cleanly(self):
        [gpu] = self.start_gpu_host('compute1', num_gpus=1)
        rp = uuidutils.generate_uuid()
        self.placement.post('/resource_providers', {
            'name': 'compute1_cyborg_bad', 'uuid': rp,
            'parent_provider_uuid': self.compute_rp_uuids['compute1']},
            version='1.20')
        self.placement.put('/resource_providers/%s/inventories' % rp, {
            'resource_provider_generation': 0,
            'inventories': {'VGPU': {'total': 1}}})
        self.cyborg.seed_devices('compute1', [{
            'pci_address': gpu, 'rp_uuid': rp, 'type': 'GPU',
            'resource_class': 'VGPU', 'attach_type': 'MDEV',
            'asked_type': "nvidia-11'/><evil"}])
        self.cyborg.client('admin').create_device_profile('bad', [{
            'resources:VGPU': '1'}])
        ctx = self.member.create_arq('bad')[0]['uuid']

        server = self.boot(ctx, expected_state='ERROR')

        # Nova's fault is its "no more hosts" (a reschedule's reason is not
        # in the server's fault); the compute's log says why.
        self.assertIn('Exceeded maximum number of retries',
                      self.fault_message(server))
        self.assertIn('has an unusable attach handle MDEV',
                      self.stdlog.logger.output)
        self.assert_nothing_left('compute1', server)
        self.assertNotEqual('Bound', self.member.get_arq(ctx)['state'])


class VgpuResizeTest(test_moves.MoveTestMixin, VgpuTestBase):
    """Resize or cold migration to another host: new mdevs there, the old
    ones until confirm; evacuate: new mdevs on the target, the old ones
    removed when the source comes back.
    """

    def _start_two_hosts(self):
        # compute1 has more RAM: Nova's weigher puts the first boot there.
        return {h: self.start_gpu_host(h, num_gpus=1, host_info=(
            fakelibvirt.HostInfo(kB_mem=gib * test_moves.GiB_in_kB)))
            for h, gib in (('compute1', 32), ('compute2', 16))}

    def _resize_away(self, migrate=False):
        gpus = self._start_two_hosts()
        server = self.boot('resources:VGPU=1', flavor_id=self.small)
        self.assertEqual('compute1', self.host_of(server))
        [source] = self.domain_mdevs('compute1', server)
        if migrate:
            server = self._migrate_server(server)
        else:
            server = self._resize_server(server, self.bigger)
        self.assertEqual('compute2', self.host_of(server))
        [dest] = self.domain_mdevs('compute2', server)
        self.assertEqual({dest: (gpus['compute2'][0], NV11)},
                         self.host_mdevs('compute2'))
        # The source keeps its mdev (its guest is only shut off).
        self.assertEqual({source: (gpus['compute1'][0], NV11)},
                         self.host_mdevs('compute1'))
        self.assertIsNotNone(self.ledger('compute2')[dest].migration_id)
        return server, source, dest

    def _confirm_away(self, migrate=False):
        """Move to compute2 and confirm: only its new mdev is left."""
        server, source, dest = self._resize_away(migrate=migrate)

        server = self._confirm_resize(server)

        self.assertEqual([dest], self.domain_mdevs('compute2', server))
        self.assert_nothing_left('compute1')
        self._run_periodics()
        self.assertEqual({'VGPU': 1}, self.provider_usage(
            self.vgpu_pool('compute2')))
        self.assertEqual({'VGPU': 0}, self.provider_usage(
            self.vgpu_pool('compute1')))

    def test_resize_to_another_host_and_confirm(self):
        self._confirm_away()

    def test_resize_to_another_host_and_revert(self):
        server, source, dest = self._resize_away()

        server = self._revert_resize(server)

        self.assertEqual('compute1', self.host_of(server))
        self.assertEqual([source], self.domain_mdevs('compute1', server))
        self.assert_nothing_left('compute2')
        self._reboot_server(server, hard=True)
        self.assertEqual([source], self.domain_mdevs('compute1', server))

    def test_cold_migration_and_confirm(self):
        self._confirm_away(migrate=True)

    def test_evacuate_then_the_source_comes_back(self):
        gpus = self._start_two_hosts()
        server = self.boot('resources:VGPU=1', flavor_id=self.small)
        [source] = self.domain_mdevs('compute1', server)
        service = {s['host']: s['id'] for s in self.api.get_services(
            binary='nova-compute')}
        self.computes['compute1'].stop()
        self.api.put_service_force_down(service['compute1'], True)

        server = self._evacuate_server(server, expected_host='compute2',
                                       expected_state='SHUTOFF')

        [dest] = self.domain_mdevs('compute2', server)
        self.assertNotEqual(source, dest)
        self.assertEqual({dest: (gpus['compute2'][0], NV11)},
                         self.host_mdevs('compute2'))
        self._start_server(server)
        self.assertEqual([dest], self.domain_mdevs('compute2', server))

        # As Nova asks: restart the source first, then force it up. Nova
        # destroys the evacuated guest there; its mdev is removed and the
        # GPU's capacity is back.
        self.assertEqual({source: (gpus['compute1'][0], NV11)},
                         self.host_mdevs('compute1'))
        removed = self.mdev_hosts['compute1'].removed
        self.restart_compute_service('compute1')
        self.api.put_service_force_down(service['compute1'], False)
        self.assertEqual([], self.domain_mdevs('compute1', server))
        self.assertEqual(removed + 1, self.mdev_hosts['compute1'].removed)
        self.assert_nothing_left('compute1')
        self._run_periodics()
        self.assertEqual({'VGPU': (2, 0)}, self.total_and_reserved(
            self.vgpu_pool('compute1')))
        self.assertEqual({'VGPU': 0}, self.provider_usage(
            self.vgpu_pool('compute1')))
        self.assertEqual({'VGPU': 1}, self.provider_usage(
            self.vgpu_pool('compute2')))


class VgpuSameHostResizeTest(test_moves.MoveTestMixin, VgpuTestBase):
    """A resize on the same host: the server holds both vGPUs until confirm
    or revert, then the one it no longer uses is removed."""

    def setUp(self):
        super().setUp()
        self.flags(allow_resize_to_same_host=True)
        [self.gpu] = self.start_gpu_host('compute1', num_gpus=1)
        self.pool = self.vgpu_pool('compute1')
        self.server = self.boot('resources:VGPU=1', flavor_id=self.small)
        [self.source] = self.domain_mdevs('compute1', self.server)
        self.server = self._resize_server(self.server, self.bigger)
        self.assertEqual('compute1', self.host_of(self.server))
        [self.dest] = self.domain_mdevs('compute1', self.server)
        self.assertNotEqual(self.source, self.dest)
        # Both exist: the GPU's two vGPUs are this server's now.
        both = (self.source, self.dest)
        self.assertEqual({u: (self.gpu, NV11) for u in both},
                         self.host_mdevs('compute1'))

    def assert_only(self, uuid):
        self.assertEqual([uuid], self.domain_mdevs('compute1', self.server))
        self.assertEqual({uuid: (self.gpu, NV11)},
                         self.host_mdevs('compute1'))
        self.assertEqual([uuid], list(self.mdev_records('compute1')))
        self._run_periodics()
        self.assertEqual({'VGPU': 1}, self.provider_usage(self.pool))
        self.assertEqual({'VGPU': (2, 0)}, self.total_and_reserved(self.pool))
        # The vGPU let go of serves the next server.
        other = self.boot('resources:VGPU=1')
        self.assertEqual('ACTIVE', other['status'])

    def test_confirm_removes_the_old_vgpu(self):
        self.server = self._confirm_resize(self.server)
        self.assert_only(self.dest)

    def test_revert_removes_the_new_vgpu(self):
        self.server = self._revert_resize(self.server)
        self.assert_only(self.source)
