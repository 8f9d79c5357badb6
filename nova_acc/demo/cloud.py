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
"""The functional tests' all-in-one cloud, run outside a test runner.

``DeviceContextTestBase`` is a Nova functional TestCase: its ``setUp``
starts the control plane (API, conductor, scheduler with nova-acc's
managers, placement on sqlite) under Nova's fixtures and ``doCleanups``
stops it all again. Here one instance of it is made by hand, set up,
used and cleaned up, the way testtools would run a single test.

Nova's logging fixture keeps the services' logs in memory.

The demo's hosts (:meth:`DemoCloud.start_demo_host`) have FPGAs, an
unrelated NIC and, with ``--vfs-per-host``, a PF whose VFs nova-acc's
``device_spec`` selects as ``CUSTOM_NIC_VF``: the FPGAs are one device pool
of the host, the VFs another.

With ``--vgpus-per-host`` a host also has a GPU (Nova's fake mdev-capable
device) whose vGPU type ``nvidia-11`` can create that many mdevs, a third
pool (``VGPU``); ``nova_acc.tests.fixtures.mdev_host`` gives the fake host
what a vendor driver does behind libvirt's node-device API.

nova-acc-api, the device-context API, runs in the same process
(``ContextsAPIFixture``: sqlite, noauth2) and Nova's services reach it as
in a deployment, with ``[device_context_api]`` credentials that hold only
the ``service`` role: a device context created there by ID boots servers
with the local backend. It reads servers from Nova's API and casts to the
computes on Nova's transport, so contexts attach and detach
(``openstack server add|remove device context``).

``--backend cyborg`` runs :class:`CyborgDemoCloud`: the same cloud with
the real Cyborg (API and conductor) in a child process as the backend of
device contexts, wired as nova-acc's Cyborg functional tests wire it
(:mod:`nova_acc.tests.fixtures.cyborg.cloud`).
"""

from __future__ import annotations

import contextlib
import os
import time
import typing as ty

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import session as ks_session
from nova import conf as nova_conf
from nova import rpc
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client

from nova_acc.api import attachment
from nova_acc.demo import plan
from nova_acc.tests.fixtures import cloud
from nova_acc.tests.fixtures import contexts_api
from nova_acc.tests.fixtures.cyborg import cloud as cyborg_cloud
from nova_acc.tests.fixtures import mdev_host

# Variables a test runner sets for oslotest: a timeout that would interrupt
# the demo, and output capture that would swallow its progress messages.
_RUNNER_ENV = ('OS_TEST_TIMEOUT', 'OS_STDOUT_CAPTURE', 'OS_STDERR_CAPTURE')


# The demo's VFs, by the IDs Nova's fake libvirt gives VFs; its PFs are not
# selected (nova-acc would block a PF while its VFs are in use).
VF_SPEC = {'vendor_id': fakelibvirt.PCI_VEND_ID,
           'product_id': fakelibvirt.VF_PROD_ID,
           'resource_class': plan.VF_RESOURCE_CLASS}
VGPU_SPEC = {'vendor_id': fakelibvirt.MDEV_CAPABLE_VEND_ID,
             'mdev_type': plan.VGPU_TYPE,
             'resource_class': plan.VGPU_RESOURCE_CLASS,
             'traits': plan.VGPU_TRAIT}


class DemoCloud(cloud.DeviceContextTestBase):
    """One demo run; ``demo`` is the "test" testtools would run."""

    device_spec = [cloud.FPGA_SPEC, VF_SPEC, VGPU_SPEC]
    #: mdevs of plan.VGPU_TYPE each demo GPU can create (--vgpus-per-host).
    vgpu_instances = 0

    def demo(self):
        """Never run: the demo drives the cloud from the outside."""

    def setUp(self):
        super().setUp()
        # Up to 64 servers of one project: Nova's default quotas (10
        # instances, 20 cores) would refuse them before nova-acc is asked.
        self.flags(instances=-1, cores=-1, ram=-1, group='quota')
        self.mdev_hosts: dict[str, mdev_host.MdevHost] = {}
        self.host_gpus: dict[str, str] = {}
        self._start_contexts_api()

    def _start_contexts_api(self) -> None:
        """nova-acc-api in-process; Nova calls it with the service role.

        Nova's side sends only a token (keystoneauth's ``admin_token``
        plugin, as a deployment would send a Keystone token); the fixture
        resolves it to Nova's service user with the ``service`` role only.
        """
        self.contexts_api = self.useFixture(
            contexts_api.ContextsAPIFixture(attachments=self._attachments()))
        nova_conf.CONF.register_opts(
            ks_loading.get_auth_plugin_conf_options('admin_token'),
            group='device_context_api')
        user_id, project_id = contexts_api.SERVICE_USER
        self.flags(auth_type='admin_token',
                   token=self.contexts_api.issue_token(
                       user_id, project_id, contexts_api.SERVICE_ROLES),
                   endpoint=self.contexts_api.endpoint,
                   group='device_context_api')

    def _attachments(self) -> attachment.Attachments:
        """Attach and detach for nova-acc-api, as test_attach wires them:
        servers read from Nova's in-process API as its admin (the
        harness's noauth headers), casts on Nova's fake transport."""
        # The fake libvirt sends no device-removed event: a detach waits
        # for it once, then finds the device gone from the live domain.
        self.flags(device_detach_timeout=1, device_detach_attempts=1,
                   group='libvirt')
        nova = ks_adapter.Adapter(
            ks_session.Session(), endpoint_override=self.admin_api.base_url,
            additional_headers={
                'X-Auth-User': 'admin', 'X-User-Id': 'admin',
                'X-Auth-Project-Id': self.api.project_id,
                'X-Roles': 'reader,member,admin'})
        return attachment.Attachments(
            servers=attachment.NovaServers(nova),
            compute=attachment.ComputeRPC(rpc.TRANSPORT))

    def contexts_client(self):
        """nova-acc-api as a member of the demo's project (its user)."""
        return self.contexts_api.client(self.api.project_id)

    def _get_connection(self, *args, **kwargs):
        conn = super()._get_connection(*args, **kwargs)
        hostname = kwargs.get('hostname') or args[-1]
        self.mdev_hosts[hostname] = mdev_host.MdevHost(
            conn, instances={plan.VGPU_TYPE: self.vgpu_instances})
        return conn

    def start_demo_host(self, hostname, num_fpgas, num_vfs=0, num_vgpus=0
                        ) -> tuple[list[str], list[str]]:
        """Start a compute with FPGAs, a NIC and a PF with ``num_vfs`` VFs.

        Two PCI buses of its own: the FPGAs in the slots of the first, the
        NIC (no device_spec selects it) at slot 0 of the second and the PF
        (with ``num_vfs``) at slot 1, its VFs in the slots after it. With
        ``num_vgpus`` (which must be ``vgpu_instances``), a GPU at slot 0 of
        a bus of its own (``host_gpus``).

        :returns: (FPGA addresses, VF addresses), each sorted.
        """
        fpga_bus, nic_bus = self._next_bus, self._next_bus + 1
        self._next_bus += 2
        pci_info = fakelibvirt.HostPCIDevicesInfo(
            num_pci=0, num_pfs=0, num_vfs=0)
        fpgas = [pci_info.add_device(
            dev_type='PCI', bus=fpga_bus, slot=slot, function=0,
            iommu_group=40 + slot, numa_node=0, vend_id=cloud.FPGA_VENDOR,
            prod_id=cloud.FPGA_PRODUCT).address
            for slot in range(num_fpgas)]
        pci_info.add_device(dev_type='PCI', bus=nic_bus, slot=0, function=0,
                            iommu_group=80, numa_node=0)
        vfs = []
        if num_vfs:
            vfs = cloud.add_pf_with_vfs(pci_info, nic_bus, pf_slot=1,
                                        num_vfs=num_vfs, iommu_group=100)
        if num_vgpus:
            assert num_vgpus == self.vgpu_instances, num_vgpus
            # Buses from 0xc0: the FPGA and NIC buses count up from 0x81.
            self.host_gpus[hostname] = pci_info.add_device(
                dev_type='MDEV_TYPES', bus=0xc0 + len(self.host_gpus),
                slot=0, function=0,
                iommu_group=120, numa_node=0).address
        for address in fpgas + vfs:
            self._make_sysfs_device(address)
        self.host_devices[hostname] = fpgas + vfs
        self.start_compute(hostname, pci_info=pci_info)
        return sorted(fpgas), sorted(vfs)

    def vgpu_pool(self, hostname) -> str | None:
        """The provider of a host's vGPU pool."""
        for uuid, name in self.device_providers().items():
            if name.startswith('%s_%s_%s_' % (
                    hostname, plan.VGPU_RESOURCE_CLASS, plan.VGPU_TYPE)):
                return uuid
        return None

    def domain_mdevs(self, hostname, server=None):
        """The mdev hostdevs of the domains of a host.

        :returns: {instance uuid: [(mdev uuid, pretty-printed <hostdev>)]},
            or that list for ``server``.
        """
        from xml.etree import ElementTree
        conn = self.computes[hostname].driver._host.get_connection()
        result = {}
        for dom in conn._vms.values():
            xml = ElementTree.fromstring(dom.XMLDesc(0))
            found = []
            for hostdev in xml.findall("./devices/hostdev[@type='mdev']"):
                uuid = hostdev.find('./source/address').get('uuid')
                hostdev.tail = None
                ElementTree.indent(hostdev, space='  ')
                found.append((uuid, ElementTree.tostring(hostdev,
                                                         'unicode')))
            result[dom.UUIDString()] = found
        if server is not None:
            return result.get(server['id'], [])
        return result

    def host_mdevs(self, hostname) -> dict[str, tuple[str, str]]:
        """The mdevs on a host: {uuid: (parent address, type)}."""
        import os_acc
        return {m.uuid: (str(os_acc.PciAddress.from_nodedev_name(m.parent)),
                         m.type_id)
                for m in self.mdev_hosts[hostname].active.values()}

    def wait_for_final_state(self, server, timeout=60.0):
        """Poll until the server is ACTIVE or ERROR (with its fault).

        :returns: the server as the API shows it last, whatever its status.
        """
        deadline = time.monotonic() + timeout
        while True:
            server = self.api.get_server(server['id'])
            if server['status'] == 'ACTIVE' or (
                    server['status'] == 'ERROR' and 'fault' in server):
                return server
            if time.monotonic() > deadline:
                return server
            time.sleep(0.1)

    def delete_and_wait(self, server, timeout=60.0) -> bool:
        """Delete a server; True once the API no longer knows it."""
        self.api.delete_server(server['id'])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api.get_server(server['id'])
            except client.OpenStackApiNotFoundException:
                return True
            time.sleep(0.1)
        return False

    def nova_log(self) -> str:
        return self.stdlog.logger.output


class CyborgDemoCloud(cyborg_cloud.CyborgCloudMixin, DemoCloud):
    """A demo run with the real Cyborg as the device-context backend.

    ``setUp`` also starts Cyborg in a child process and creates the device
    profile :data:`PROFILE`; ``add_cyborg_device`` gives a running compute
    a Cyborg-managed FPGA, ``create_context`` makes an ARQ as the project
    member and ``member`` reads ARQs as that user.
    """

    PROFILE = cyborg_cloud.PROFILE

    def profile_groups(self) -> list[dict]:
        """The groups of the device profile, as Cyborg has them."""
        profiles = self.member.get_device_profiles(self.PROFILE)
        return profiles[0]['groups'] if profiles else []

    def get_arq(self, arq_uuid) -> dict | None:
        """An ARQ as its owner sees it; None when Cyborg has no such ARQ."""
        resp = self.member.request(
            'GET', '/v2/accelerator_requests/%s' % arq_uuid)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()

    def nova_log(self) -> str:
        """Nova's log, then the log of the Cyborg child process."""
        try:
            with open(self.cyborg.log_path, encoding='utf-8',
                      errors='replace') as f:
                cyborg_log = f.read()
        except OSError as e:
            cyborg_log = '<cannot read %s: %s>\n' % (self.cyborg.log_path, e)
        return '%s\n===== Cyborg (child process) log =====\n%s' % (
            super().nova_log(), cyborg_log)


@contextlib.contextmanager
def running(backend: str = 'local') -> ty.Iterator[DemoCloud]:
    """Start the control plane and yield it; stop everything on the way out.

    Compute hosts are started by the caller (``start_fpga_host``). With
    ``backend='cyborg'`` the control plane includes Cyborg (a child process
    stopped with the rest) and the cloud is a :class:`CyborgDemoCloud`.
    """
    for name in _RUNNER_ENV:
        os.environ.pop(name, None)
    case = (CyborgDemoCloud if backend == 'cyborg' else DemoCloud)('demo')
    try:
        case.setUp()
        yield case
    finally:
        case.doCleanups()
