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
"""Nova's own functional harness with nova-acc's services in place.

Used by nova-acc's functional tests and by ``nova-acc demo``, which runs
the same all-in-one cloud outside a test runner. It needs Nova's test
fixtures (shipped in the nova wheel) and openstack-placement.

Real nova-api, conductor, scheduler and compute run in-process, placement
runs in-process on sqlite, and each compute host is Nova's fake libvirt
with fake PCI devices. Only the managers and the compute driver differ
from a stock Nova: the ones an operator enables for nova-acc.
"""

import os
import sysconfig
import time
from xml.etree import ElementTree

import fixtures
from oslo_serialization import jsonutils

from nova import context as nova_context
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.libvirt import base as libvirt_base
import os_acc

from nova_acc.cmd import _service
from nova_acc import binding
from nova_acc import inventory
from nova_acc import ledger
from nova_acc import privsep

FPGA_VENDOR = '1172'
FPGA_PRODUCT = '5050'
FPGA_SPEC = {'vendor_id': FPGA_VENDOR, 'product_id': FPGA_PRODUCT,
             'resource_class': 'FPGA', 'traits': 'CUSTOM_GZIP'}


# pip installs Nova's api-paste.ini under <prefix>/etc/nova, not where
# Nova's test ConfFixture looks for it (next to the source tree).
API_PASTE_INI = os.path.join(sysconfig.get_path('data'), 'etc', 'nova',
                             'api-paste.ini')


class NovaAccServicesMixin:
    """Start nova-scheduler and nova-conductor with nova-acc's managers.

    The same managers ``nova-acc-scheduler`` and ``nova-acc-conductor``
    pass to ``nova.service.Service.create``.
    """

    def setUp(self):
        self.flags(api_paste_config=API_PASTE_INI, group='wsgi')
        super().setUp()

    def start_service(self, name, host=None, cell_name=None, **kwargs):
        binary = 'nova-%s' % name
        if binary in _service.MANAGERS and 'manager' not in kwargs:
            kwargs['manager'] = _service.MANAGERS[binary]
        svc = super().start_service(name, host=host, cell_name=cell_name,
                                    **kwargs)
        self.__dict__.setdefault('started_services', []).append(svc)
        return svc


class DeviceContextTestBase(NovaAccServicesMixin,
                            libvirt_base.ServersTestBase):
    """Hosts with fake FPGAs, booted with the ``device_context`` hint."""

    microversion = 'latest'
    ADMIN_API = True
    device_spec = [FPGA_SPEC]

    def setUp(self):
        self.sysfs_root = self.useFixture(fixtures.TempDir()).path
        # Each test's hosts keep their device ledgers in a directory of
        # their own (one file per compute node, as on real hosts).
        self.ledger_dir = self.useFixture(fixtures.TempDir()).path
        # Resets run in-process, as root would in nova-acc's privsep daemon
        # (the same as Nova's own PrivsepFixture does for nova.privsep).
        self.useFixture(fixtures.MockPatchObject(
            privsep.sys_admin_pctxt, 'client_mode', False))
        self.flags(device_spec=[jsonutils.dumps(s) for s in self.device_spec],
                   sysfs_root=self.sysfs_root, ledger_dir=self.ledger_dir,
                   group='nova_acc')
        super().setUp()
        # Each host gets its own PCI bus so device addresses are unique in
        # the cloud and the sysfs reset files of hosts do not collide.
        self._next_bus = 0x81
        self.host_devices = {}

    def _setup_compute_service(self):
        self.flags(compute_driver='nova_acc.LibvirtAccDriver')

    def start_fpga_host(self, hostname, num_fpgas=2, extra_nics=1,
                        host_info=None):
        """Start a compute with ``num_fpgas`` FPGAs and unrelated NICs."""
        bus = self._next_bus
        self._next_bus += 1
        pci_info = fakelibvirt.HostPCIDevicesInfo(
            num_pci=0, num_pfs=0, num_vfs=0)
        addresses = []
        for slot in range(num_fpgas + extra_nics):
            fpga = slot < num_fpgas
            dev = pci_info.add_device(
                dev_type='PCI', bus=bus, slot=slot, function=0,
                iommu_group=40 + slot, numa_node=0,
                vend_id=FPGA_VENDOR if fpga else None,
                prod_id=FPGA_PRODUCT if fpga else None)
            if fpga:
                addresses.append(dev.address)
                self._make_sysfs_device(dev.address)
        self.host_devices[hostname] = addresses
        self.start_compute(hostname, pci_info=pci_info, host_info=host_info)
        return addresses

    def _make_sysfs_device(self, address):
        path = os.path.join(self.sysfs_root, 'bus', 'pci', 'devices', address)
        os.makedirs(path)
        with open(os.path.join(path, 'reset'), 'w'):
            pass

    def reset_count(self, address):
        with open(os.path.join(self.sysfs_root, 'bus', 'pci', 'devices',
                               address, 'reset')) as f:
            return f.read().count('1')

    # ---- what a user or operator looks at ----------------------------

    def boot(self, *contexts, expected_state='ACTIVE', wait=True):
        body = {'server': self._build_server(networks='none')}
        if contexts:
            body['os:scheduler_hints'] = {
                'device_context': contexts[0] if len(contexts) == 1
                else list(contexts)}
        server = self.api.post_server(body)
        if not wait:
            return server
        return self._wait_for_state_change(server, expected_state)

    def wait_for_build_end(self, server, timeout=60):
        """Wait until the server is ACTIVE or ERROR; return it."""
        deadline = time.monotonic() + timeout
        while True:
            server = self.api.get_server(server['id'])
            if server['status'] in ('ACTIVE', 'ERROR'):
                return server
            if time.monotonic() > deadline:
                self.fail('server %s still %s after %ds' % (
                    server['id'], server['status'], timeout))
            time.sleep(0.1)

    def hosts_tried(self, server):
        """Hosts a server's build ran on, sorted (reschedules included)."""
        action = self.api.get_instance_actions(server['id'])[0]
        events = self.api.get_instance_action_details(
            server['id'], action['request_id'])['events']
        return sorted(e['host'] for e in events
                      if e['event'] == 'compute__do_build_and_run_instance')

    def fault_message(self, server):
        return self.api.get_server(server['id'])['fault']['message']

    def device_rp(self, hostname, address):
        return inventory.provider_uuid(hostname, address)

    def allocated_device_rps(self, server):
        allocs = self._get_allocations_by_server_uuid(server['id'])
        device_rps = {self.device_rp(h, a)
                      for h, addrs in self.host_devices.items()
                      for a in addrs}
        return sorted(rp for rp in allocs if rp in device_rps)

    def domain_hostdevs(self, hostname, server=None):
        """PCI addresses of hostdevs in the domains libvirt has on a host.

        :returns: {instance uuid: [address, ...]}
        """
        conn = self.computes[hostname].driver._host.get_connection()
        result = {}
        for dom in conn._vms.values():
            xml = ElementTree.fromstring(dom.XMLDesc(0))
            addrs = []
            for a in xml.findall(
                    "./devices/hostdev[@type='pci']/source/address"):
                addrs.append(
                    str(os_acc.PciAddress.from_libvirt_attrs(a.attrib)))
            result[dom.UUIDString()] = addrs
        if server is not None:
            return result.get(server['id'], [])
        return result

    def all_domain_hostdevs(self):
        owners = {}
        for hostname in self.computes:
            for uuid, addrs in self.domain_hostdevs(hostname).items():
                for a in addrs:
                    owners.setdefault(a, []).append(uuid)
        return owners

    def server_bindings(self, server):
        """The bindings recorded with the instance in its cell database."""
        ctxt = nova_context.get_admin_context()
        mapping = objects.InstanceMapping.get_by_instance_uuid(
            ctxt, server['id'])
        with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
            instance = objects.Instance.get_by_uuid(
                cctxt, server['id'], expected_attrs=['system_metadata'])
        return binding.load(instance)

    def ledger(self, hostname):
        """The device ledger of a host: {address: DeviceRecord}."""
        return ledger.DeviceLedger(hostname, self.ledger_dir).records()

    def ledger_state(self, hostname, address):
        """(state, holder) of a device in its host's ledger."""
        rec = self.ledger(hostname).get(address)
        return (rec.state, rec.holder) if rec else ('free', None)

    def define_foreign_guest(self, hostname, address,
                             uuid='11111111-2222-3333-4444-555555555555'):
        """A guest that Nova does not know, with the device as hostdev."""
        conn = self.computes[hostname].driver._host.get_connection()
        domain, bus, slot_function = address.split(':')
        slot, function = slot_function.split('.')
        conn.defineXML(
            "<domain type='kvm'><name>foreign-%s</name>"
            "<uuid>%s</uuid>"
            "<memory>1024</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
            "<devices><hostdev mode='subsystem' type='pci' managed='yes'>"
            "<source><address domain='0x%s' bus='0x%s' slot='0x%s' "
            "function='0x%s'/></source></hostdev></devices></domain>"
            % (uuid[:8], uuid, domain, bus, slot, function))
        return uuid

    def remove_host_device(self, hostname, address):
        """The device disappears from the host (unplugged, failed)."""
        conn = self.computes[hostname].driver._host.get_connection()
        name = 'pci_' + address.replace(':', '_').replace('.', '_')
        return conn.pci_info.devices.pop(name)

    def host_device_providers(self, hostname):
        """name -> provider record of the device children of a host."""
        root = self.compute_rp_uuids[hostname]
        rps = self.placement.get(
            '/resource_providers?in_tree=%s' % root,
            version='1.14').body['resource_providers']
        return {rp['name']: rp for rp in rps if rp['uuid'] != root}

    def provider_inventory(self, rp_uuid):
        return self.placement.get(
            '/resource_providers/%s/inventories' % rp_uuid).body[
            'inventories']

    def provider_traits(self, rp_uuid):
        return set(self.placement.get(
            '/resource_providers/%s/traits' % rp_uuid,
            version='1.6').body['traits'])

    def provider_usage(self, rp_uuid):
        return self.placement.get(
            '/resource_providers/%s/usages' % rp_uuid).body['usages']

    # ---- added for ``nova-acc demo`` ------------------------------------

    def domain_hostdev_xml(self, hostname, server):
        """The PCI hostdevs of a server's domain on ``hostname``.

        :returns: [(address, pretty-printed ``<hostdev>`` XML), ...] in the
            order of the domain XML; [] when the host has no such domain.
        """
        conn = self.computes[hostname].driver._host.get_connection()
        result = []
        for dom in conn._vms.values():
            if dom.UUIDString() != server['id']:
                continue
            xml = ElementTree.fromstring(dom.XMLDesc(0))
            for hostdev in xml.findall("./devices/hostdev[@type='pci']"):
                a = hostdev.find('./source/address')
                address = str(os_acc.PciAddress.from_libvirt_attrs(a.attrib))
                hostdev.tail = None
                ElementTree.indent(hostdev, space='  ')
                result.append(
                    (address, ElementTree.tostring(hostdev, 'unicode')))
        return result

    def bindings(self, server):
        """The device bindings in a server's system metadata (cell DB)."""
        from nova import context as nova_context
        from nova import objects
        ctxt = nova_context.get_admin_context()
        cell = objects.InstanceMapping.get_by_instance_uuid(
            ctxt, server['id']).cell_mapping
        with nova_context.target_cell(ctxt, cell) as cctxt:
            instance = objects.Instance.get_by_uuid(
                cctxt, server['id'], expected_attrs=['system_metadata'])
        return binding.load(instance)

    def device_providers(self):
        """Device providers placement has: {uuid: name}.

        The children (not the compute nodes) with the capability trait.
        """
        from nova_acc import conf
        rps = self.placement.get(
            '/resource_providers?required=%s'
            % conf.CONF.nova_acc.capability_trait,
            version='1.18').body['resource_providers']
        return {rp['uuid']: rp['name'] for rp in rps
                if rp['parent_provider_uuid']}
