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
"""A ledger that cannot be read for a while (EIO, EMFILE) in a real cloud.

The fault is injected where the host meets it: opening the ledger file of
the compute node fails, whichever way it is opened, and nothing else does.
While it lasts nothing may be decided from the ledger: no device is reset
or released, the file keeps every record (it is not taken for a corrupt
one), placement offers none of the host's devices, and nova-compute keeps
running. Once it is gone, the next periodic update does what was left to
do, exactly once.
"""

import builtins
import errno
import os

import fixtures

from tests.functional import base
from tests.functional import test_ledger

CONTEXT = test_ledger.CONTEXT
NODE = 'compute1'


class LedgerReadFault(fixtures.Fixture):
    """Opening ``name`` fails with ``error`` while the fault is ``on``.

    Both ways of opening a file (``open`` and ``os.open``) are covered, as
    a disk error or a full file table would hit them. ``hits`` counts the
    opens that failed, so a test knows the fault was met.
    """

    def __init__(self, name, error):
        super().__init__()
        self.name, self.error = name, error
        self.active = False
        self.hits = 0

    def _setUp(self):
        self._open, self._os_open = builtins.open, os.open

        def check(path):
            if self.active and \
                    isinstance(path, (str, bytes, os.PathLike)) and \
                    os.path.basename(os.fsdecode(path)) == self.name:
                self.hits += 1
                raise OSError(self.error, os.strerror(self.error), path)

        def fake_open(file, *args, **kwargs):
            check(file)
            return self._open(file, *args, **kwargs)

        def fake_os_open(path, *args, **kwargs):
            check(path)
            return self._os_open(path, *args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch('builtins.open', fake_open))
        self.useFixture(fixtures.MonkeyPatch('os.open', fake_os_open))

    def on(self):
        self.hits = 0
        self.active = True

    def off(self):
        self.active = False

    def peek(self, path):
        """The file's bytes, read past the fault."""
        with self._open(path, 'rb') as f:
            return f.read()


class LedgerReadFaultMixin(test_ledger.LedgerTestMixin):

    ERROR = errno.EIO

    def setUp(self):
        super().setUp()
        self.fault = self.useFixture(
            LedgerReadFault(NODE + '.json', self.ERROR))
        self.ledger_file = os.path.join(self.ledger_dir, NODE + '.json')

    def assert_ledger_kept(self, before):
        """The file is the one written before the fault, byte for byte."""
        self.assertEqual(before, self.fault.peek(self.ledger_file))
        self.assertEqual([], [n for n in os.listdir(self.ledger_dir)
                              if '.corrupt-' in n])

    def assert_compute_kept_running(self):
        self.assertEqual('up', self.api.get_services(
            host=NODE, binary='nova-compute')[0]['state'])
        self.assertNotIn('Error updating resources for node',
                         self.stdlog.logger.output)

    def test_delete_and_periodic_during_the_fault_release_later(self):
        self.start_fpga_host(NODE, num_fpgas=2)
        live = self.boot(CONTEXT)
        gone = self.boot(CONTEXT)
        live_dev, = self.domain_hostdevs(NODE, live)
        gone_dev, = self.domain_hostdevs(NODE, gone)
        before = self.fault.peek(self.ledger_file)

        self.fault.on()
        self._delete_server(gone)
        self._run_periodics()
        self.fault.off()

        self.assertGreater(self.fault.hits, 0, 'the fault was never met')
        # Nothing decided without the ledger: no reset (under the live
        # guest or not), no record lost, no file moved aside.
        self.assertEqual((0, 0), (self.reset_count(live_dev),
                                  self.reset_count(gone_dev)))
        self.assert_ledger_kept(before)
        self.assertEqual([live_dev], self.domain_hostdevs(NODE, live))
        # Placement offers none of the devices whose state is unknown.
        self.assertEqual(2, self.inventory(NODE, live_dev)['FPGA'][
            'reserved'])
        self.assert_compute_kept_running()

        # The fault is gone: the next periodic update releases the device
        # of the deleted server, once, and leaves the live one alone.
        self._run_periodics()
        self.assert_free(NODE, gone_dev, resets=1)
        self.assertEqual(('attached', live['id']),
                         self.ledger_state(NODE, live_dev))
        self.assertEqual(0, self.reset_count(live_dev))
        self.assertEqual(0, self.inventory(NODE, live_dev)['FPGA'][
            'reserved'])
        self._run_periodics()
        self.assertEqual(1, self.reset_count(gone_dev))
        self.assert_next_server_gets(NODE, gone_dev, resets=1)

    def test_a_claim_during_the_fault_reschedules_and_keeps_the_ledger(
            self):
        self.start_fpga_host(NODE, num_fpgas=2)
        live = self.boot(CONTEXT)
        live_dev, = self.domain_hostdevs(NODE, live)
        before = self.fault.peek(self.ledger_file)

        self.fault.on()
        # Placement still offers the free device: the host refuses it.
        refused = self.boot(CONTEXT, expected_state='ERROR')
        self.fault.off()

        self.assertGreater(self.fault.hits, 0, 'the fault was never met')
        self.assertEqual([], self.domain_hostdevs(NODE, refused))
        self.assertEqual([NODE], self.hosts_tried(refused))
        # Why the host refused it, as the scheduler logs it.
        why = [line for line in self.stdlog.logger.output.splitlines()
               if 'Error from last host: %s' % NODE in line]
        self.assertEqual(1, len(why))
        self.assertIn('DeviceNotUsable', why[0])
        self.assertIn('device ledger of node %s could not be read' % NODE,
                      why[0])
        self.assertIn(os.strerror(self.ERROR), why[0])
        self.assert_ledger_kept(before)
        self.assertEqual(0, self.reset_count(live_dev))
        self.assert_compute_kept_running()
        # Once the next periodic update has reported the pool as it is,
        # the host hands out the other device as before.
        self._run_periodics()
        other = self.boot(CONTEXT)
        self.assertNotEqual([live_dev], self.domain_hostdevs(NODE, other))
        self.assertEqual([live_dev], self.domain_hostdevs(NODE, live))


class LedgerEIOTest(LedgerReadFaultMixin, base.DeviceContextTestBase):
    ERROR = errno.EIO


class LedgerEMFILETest(LedgerReadFaultMixin, base.DeviceContextTestBase):
    ERROR = errno.EMFILE


class BuildInFlightMixin(test_ledger.LedgerTestMixin):
    """A periodic update during the fault must not lose a build's claim."""

    CAST_AS_CALL = False
    ERROR = errno.EIO

    def test_claim_of_a_build_in_flight_survives_the_fault(self):
        fault = self.useFixture(LedgerReadFault(NODE + '.json', self.ERROR))
        ledger_file = os.path.join(self.ledger_dir, NODE + '.json')
        self.start_fpga_host(NODE, num_fpgas=2)
        spawning, go_on = self.hold_spawns()
        server = self.boot(CONTEXT, wait=False)
        self.assertTrue(spawning.wait(30))
        claimed = self.held_devices(NODE, server)
        self.assertEqual(1, len(claimed))
        self.assertEqual(('claimed', server['id']),
                         self.ledger_state(NODE, claimed[0]))
        before = fault.peek(ledger_file)

        fault.on()
        self._run_periodics()
        fault.off()

        self.assertGreater(fault.hits, 0, 'the fault was never met')
        self.assertEqual(before, fault.peek(ledger_file))
        self.assertEqual([], [n for n in os.listdir(self.ledger_dir)
                              if '.corrupt-' in n])
        # The device claimed for the build was neither reset nor handed
        # out again: the build gets it.
        self.assertEqual(0, self.reset_count(claimed[0]))
        go_on.set()
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(claimed, self.domain_hostdevs(NODE, server))
        self.assertEqual(('attached', server['id']),
                         self.ledger_state(NODE, claimed[0]))
        self._run_periodics()
        self.assertEqual(0, self.reset_count(claimed[0]))
        self._delete_server(server)
        self.assert_free(NODE, claimed[0], resets=1)


class BuildInFlightEIOTest(BuildInFlightMixin, base.DeviceContextTestBase):
    ERROR = errno.EIO


class BuildInFlightEMFILETest(BuildInFlightMixin,
                              base.DeviceContextTestBase):
    ERROR = errno.EMFILE
