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
"""The host fails closed when a fact is missing, as on a real host.

Faults injected where a real host has them: libvirt timing out on one
guest ("cannot acquire state change lock"), a guest with a hostdev address
nova-acc cannot parse, the privsep daemon failing to start, the ledger's
disk full before or after a reset. In each, no device is reset under a
guest that might use it, none is reset twice for one release, nova-compute
keeps running (deletes succeed, periodic updates go on), and the next
resource update after the fault clears releases the device exactly once.
"""

import contextlib
import errno

import fixtures
from nova import context as nova_context
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_privsep import daemon as privsep_daemon

from nova_acc.compute import ledger
from nova_acc.compute import privsep
from tests.functional import base

# Nova's test fixtures replace it with one that refuses to start a helper;
# taken before any test runs, to start the real one.
ROOTWRAP_CHANNEL = privsep_daemon.RootwrapClientChannel

CONTEXT = 'resources:FPGA=1'
TIMEOUT = ('Timed out during operation: cannot acquire state change lock '
           '(held by monitor=remoteDispatchDomainGetXMLDesc)')


class FailClosedTestBase(base.DeviceContextTestBase):

    def setUp(self):
        super().setUp()
        self.unreadable = set()
        real_xml = fakelibvirt.Domain.XMLDesc
        test = self

        def xml_desc(domain, flags):
            if domain.UUIDString() in test.unreadable:
                raise fakelibvirt.make_libvirtError(
                    fakelibvirt.libvirtError, TIMEOUT,
                    error_code=fakelibvirt.VIR_ERR_OPERATION_TIMEOUT,
                    error_domain=fakelibvirt.VIR_FROM_QEMU)
            return real_xml(domain, flags)
        self.useFixture(fixtures.MockPatchObject(
            fakelibvirt.Domain, 'XMLDesc', xml_desc))

    def reserved(self, hostname, address):
        return self.provider_inventory(self.device_rp(
            hostname, address))['FPGA']['reserved']

    def assert_out_of_service(self, hostname, address, state, holder):
        self.assertEqual((state, holder),
                         self.ledger_state(hostname, address))
        self.assertEqual(0, self.reset_count(address))

    def service_id(self, hostname):
        return self.api.get_services(host=hostname,
                                     binary='nova-compute')[0]['id']

    def delete_while_the_compute_is_down(self, hostname, server):
        """The API deletes the server; its guest stays on the host."""
        self.computes[hostname].stop()
        self.api.put_service_force_down(self.service_id(hostname), True)
        self._delete_server(server)
        self.api.put_service_force_down(self.service_id(hostname), False)
        self.restart_compute_service(hostname)


class UnreadableGuestTest(FailClosedTestBase):
    """Item 1: a guest that cannot be read might use any device."""

    def test_foreign_guest_libvirt_times_out_on(self):
        fpga, _other = self.start_fpga_host('compute1', num_fpgas=2)
        guest = self.define_foreign_guest('compute1', fpga)
        self._run_periodics()
        self.assertEqual(('foreign', guest),
                         self.ledger_state('compute1', fpga))

        # libvirt times out reading that guest: it is not gone.
        self.unreadable.add(guest)
        self._run_periodics()
        self._run_periodics()
        self.assert_out_of_service('compute1', fpga, 'foreign', guest)
        self.assertEqual(1, self.reserved('compute1', fpga))

        # Readable again, still using the device: nothing changes.
        self.unreadable.clear()
        self._run_periodics()
        self.assert_out_of_service('compute1', fpga, 'foreign', guest)

        # The guest goes: released and reset once, offered again.
        conn = self.computes['compute1'].driver._host.get_connection()
        conn.lookupByUUIDString(guest).undefine()
        self._run_periodics()
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assertEqual(1, self.reset_count(fpga))
        self.assertEqual(0, self.reserved('compute1', fpga))

    def test_delete_while_another_guest_is_unreadable(self):
        fpga, other = self.start_fpga_host('compute1', num_fpgas=2)
        guest = self.define_foreign_guest('compute1', other)
        self._run_periodics()
        server = self.boot(CONTEXT)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))

        self.unreadable.add(guest)
        # The delete succeeds; the foreign guest's device is not touched,
        # and the deleted server's is released only once every guest can
        # be read (any of them might use it).
        self._delete_server(server)
        self.assertEqual(0, self.reset_count(fpga))
        self.assertEqual(0, self.reset_count(other))
        self.assertEqual(('foreign', guest),
                         self.ledger_state('compute1', other))
        self.assertNotEqual('free', self.ledger_state('compute1', fpga)[0])
        self._run_periodics()
        self.assertEqual(0, self.reset_count(fpga))
        self.assertEqual(0, self.reset_count(other))
        # Both out of service: the foreign guest's, and the one whose
        # server left but that could not be released.
        self.assertEqual(2, self.reserved('compute1', fpga))

        self.unreadable.clear()
        self._run_periodics()
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assertEqual(1, self.reset_count(fpga))
        self.assertEqual(('foreign', guest),
                         self.ledger_state('compute1', other))
        self.assertEqual(0, self.reset_count(other))
        server = self.boot(CONTEXT)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self.assertEqual(1, self.reset_count(fpga))

    def test_orphaned_device_of_an_unreadable_guest(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)
        self.delete_while_the_compute_is_down('compute1', server)
        self.assert_out_of_service('compute1', fpga, 'orphaned',
                                   server['id'])

        # The deleted server's guest still runs; libvirt times out on it.
        self.unreadable.add(server['id'])
        self._run_periodics()
        self.assert_out_of_service('compute1', fpga, 'orphaned',
                                   server['id'])
        self.assertEqual(1, self.reserved('compute1', fpga))

        self.unreadable.clear()
        self.computes['compute1'].manager._cleanup_running_deleted_instances(
            nova_context.get_admin_context())
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assertEqual(1, self.reset_count(fpga))

    def test_malformed_address_hides_only_its_own_hostdev(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        conn = self.computes['compute1'].driver._host.get_connection()
        domain, bus, slot_function = fpga.split(':')
        slot, function = slot_function.split('.')
        guest = '11111111-2222-3333-4444-555555555555'
        hostdev = ("<hostdev mode='subsystem' type='pci' managed='yes'>"
                   "<source><address domain='0x%s' bus='0x%s' slot='0x%s' "
                   "function='0x%s'/></source></hostdev>")
        conn.defineXML(
            "<domain type='kvm'><name>foreign</name><uuid>%s</uuid>"
            "<memory>1024</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
            "<devices>%s%s</devices></domain>" % (
                guest, hostdev % ('0000', 'zz', '00', '0'),
                hostdev % (domain, bus, slot, function)))
        self._run_periodics()
        self._run_periodics()
        self.assert_out_of_service('compute1', fpga, 'foreign', guest)
        self.assertEqual(1, self.reserved('compute1', fpga))


class PrivsepDownTest(FailClosedTestBase):
    """Item 5: the privsep daemon cannot be started."""

    def test_delete_while_privsep_cannot_start(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)

        # The real oslo.privsep client, whose helper command fails: what a
        # host with a broken rootwrap or sudo configuration does.
        self.flags(helper_command='false', group='nova_acc_sys_admin')
        self.useFixture(fixtures.MockPatchObject(
            privsep_daemon, 'RootwrapClientChannel', ROOTWRAP_CHANNEL))
        self.useFixture(fixtures.MockPatchObject(
            privsep.sys_admin_pctxt, 'client_mode', True))
        self._delete_server(server)

        rec = self.ledger('compute1')[fpga]
        self.assertEqual(ledger.RELEASING, rec.state)
        self.assertIn('FailedToDropPrivileges', rec.reason)
        self.assertEqual(0, self.reset_count(fpga))
        self.assertEqual(1, self.reserved('compute1', fpga))
        # nova-compute goes on: its periodic update runs, still failing.
        self._run_periodics()
        self.assertEqual(ledger.RELEASING,
                         self.ledger('compute1')[fpga].state)
        refused = self.boot(CONTEXT, expected_state='ERROR')
        self.assertIn('No host has enough free accelerators',
                      self.fault_message(refused))

        # privsep works again (in-process, as the test base runs it): the
        # next resource update resets it once.
        privsep.sys_admin_pctxt.client_mode = False
        self._run_periodics()
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assertEqual(1, self.reset_count(fpga))
        self.assertEqual(0, self.reserved('compute1', fpga))
        server = self.boot(CONTEXT)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self.assertEqual(1, self.reset_count(fpga))


class LedgerWriteFailsTest(FailClosedTestBase):
    """Item 13: a ledger that cannot be written never costs extra resets."""

    def setUp(self):
        super().setUp()
        self.full = None  # a predicate on the ledger being written
        real_write = ledger.DeviceLedger._write
        test = self

        def write(book, records, *args, **kwargs):
            if test.full is not None and test.full(records):
                raise OSError(errno.ENOSPC, 'No space left on device')
            return real_write(book, records, *args, **kwargs)
        self.useFixture(fixtures.MockPatchObject(
            ledger.DeviceLedger, '_write', write))

    @contextlib.contextmanager
    def disk_full(self, when=lambda records: True):
        self.full = when
        try:
            yield
        finally:
            self.full = None

    def test_disk_full_before_the_reset(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)
        with self.disk_full():
            # The release cannot be recorded: nothing is reset, and the
            # delete itself succeeds.
            self._delete_server(server)
            self._run_periodics()
            self._run_periodics()
            self.assertEqual(0, self.reset_count(fpga))
            self.assertEqual(('attached', server['id']),
                             self.ledger_state('compute1', fpga))
        self._run_periodics()
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assertEqual(1, self.reset_count(fpga))

    def test_disk_full_after_the_reset(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)

        def freeing(records):
            return records[fpga].state == ledger.FREE

        with self.disk_full(when=freeing):
            self._delete_server(server)
            # Reset once; the outcome could not be written.
            self.assertEqual(1, self.reset_count(fpga))
            self.assertEqual(ledger.RELEASING,
                             self.ledger('compute1')[fpga].state)
            for _ in range(3):
                self._run_periodics()
            self.assertEqual(1, self.reset_count(fpga))
            self.assertEqual(1, self.reserved('compute1', fpga))
        self._run_periodics()
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assertEqual(1, self.reset_count(fpga))
        server = self.boot(CONTEXT)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self.assertEqual(1, self.reset_count(fpga))

    def test_build_while_the_disk_is_full(self):
        # A claim the ledger cannot record did not happen.
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)

        def claiming(records):
            return any(r.state == ledger.CLAIMED for r in records.values())

        with self.disk_full(when=claiming):
            server = self.boot(CONTEXT, expected_state='ERROR')
        message = self.fault_message(server)
        self.assertIn("device context 'resources:FPGA=1'", message)
        self.assertIn('device ledger', message)
        self.assertIn('could not be written', message)
        self.assertNotIn(self.ledger_dir, message)
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assertNotIn(fpga, self.all_domain_hostdevs())
        self.assertEqual(0, self.reset_count(fpga))
        # The next build, with a disk that takes the write, gets it.
        server = self.boot(CONTEXT)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))


class ReportAfterReleaseTest(FailClosedTestBase):
    """Item 14: a device freed by a reap is offered at once."""

    def test_reaped_guest_device_is_offered_without_a_periodic(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        server = self.boot(CONTEXT)
        self.delete_while_the_compute_is_down('compute1', server)
        self.assertEqual(1, self.reserved('compute1', fpga))

        # Nova reaps the guest; no periodic update runs after it.
        self.computes['compute1'].manager._cleanup_running_deleted_instances(
            nova_context.get_admin_context())

        self.assertEqual(('free', None), self.ledger_state('compute1', fpga))
        self.assertEqual(0, self.reserved('compute1', fpga))
        server = self.boot(CONTEXT)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
        self.assertEqual(1, self.reset_count(fpga))


class DeviceListingFailsTest(FailClosedTestBase):
    """libvirt cannot list the host's PCI devices (it times out, say).

    Nova's ``Host.list_all_devices`` logs such an error and returns no
    device; read as "every device is gone", the pools shrank in placement,
    free devices were forgotten by the ledger and a server's device was
    released and reset on a round that knew nothing of the host.
    """

    def setUp(self):
        super().setUp()
        self.listing_fails = False
        real_list = fakelibvirt.Connection.listAllDevices
        test = self

        def list_all_devices(conn, flags=0):
            if test.listing_fails:
                raise fakelibvirt.make_libvirtError(
                    fakelibvirt.libvirtError,
                    'Timed out during operation: cannot acquire state '
                    'change lock',
                    error_code=fakelibvirt.VIR_ERR_OPERATION_TIMEOUT,
                    error_domain=fakelibvirt.VIR_FROM_NODEDEV)
            return real_list(conn, flags)
        self.useFixture(fixtures.MockPatchObject(
            fakelibvirt.Connection, 'listAllDevices', list_all_devices))
        # A host's listing asks for the devices' names first (and describes
        # them all only when they changed): libvirt fails that call too.
        real_names = fakelibvirt.Connection.listDevices

        def list_devices(conn, cap, flags=0):
            if test.listing_fails:
                list_all_devices(conn)
            return real_names(conn, cap, flags)
        self.useFixture(fixtures.MockPatchObject(
            fakelibvirt.Connection, 'listDevices', list_devices))

    def pool_inventory(self, rp_uuid):
        inv = self.provider_inventory(rp_uuid)
        return inv['FPGA']['total'], inv['FPGA']['reserved']

    def test_periodic_and_delete_while_the_listing_fails(self):
        fpga1, fpga2 = self.start_fpga_host('compute1', num_fpgas=2)
        server = self.boot(CONTEXT)
        held, = self.held_devices('compute1', server)
        free = fpga2 if held == fpga1 else fpga1
        pool = self.device_rp('compute1', held)
        self.assertEqual((2, 0), self.pool_inventory(pool))
        self.assertEqual(ledger.FREE, self.ledger('compute1')[free].state)

        self.listing_fails = True
        self._run_periodics()
        self._run_periodics()
        # The pool as last reported; the free device not forgotten.
        self.assertEqual((2, 0), self.pool_inventory(pool))
        self.assertEqual(ledger.FREE, self.ledger('compute1')[free].state)
        self.assertEqual(ledger.ATTACHED,
                         self.ledger('compute1')[held].state)

        # The server goes while the host's devices cannot be listed: its
        # device is released on the first round that can list them, once.
        self._delete_server(server)
        self._run_periodics()
        self.assertIn(self.ledger('compute1')[held].state, ledger.HELD)
        self.assertEqual(0, self.reset_count(held))

        self.listing_fails = False
        self._run_periodics()
        self.assertEqual(('free', None), self.ledger_state('compute1', held))
        self.assertEqual(1, self.reset_count(held))
        self.assertEqual(0, self.reset_count(free))
        self.assertEqual((2, 0), self.pool_inventory(pool))

    def test_build_while_the_listing_fails(self):
        fpga, = self.start_fpga_host('compute1', num_fpgas=1)
        self.listing_fails = True
        refused = self.boot(CONTEXT, expected_state='ERROR')
        self.assertIn('device context', self.fault_message(refused))
        self.assertEqual([], self.allocated_device_rps(refused))
        self.assertEqual({}, self.all_domain_hostdevs())
        self.assertEqual(ledger.FREE, self.ledger('compute1')[fpga].state)

        self.listing_fails = False
        server = self.boot(CONTEXT)
        self.assertEqual([fpga], self.domain_hostdevs('compute1', server))
