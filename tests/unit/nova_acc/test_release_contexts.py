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
"""Release of a pool device picked for a device context of nova-acc-api.

The host owns and resets such a device, as one of an inline spec; the
context (named by the group's requester id) is let go once the device is.
"""

import os

import fixtures
from oslotest import base

from nova_acc.compute import ledger
from nova_acc.compute import release
from nova_acc import request_groups

A = '0000:81:00.0'
SERVER = '11111111-1111-4111-8111-111111111111'
CTX = '22222222-2222-4222-8222-222222222222'


class ReleaseLocalContextTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.sysfs = self.useFixture(fixtures.TempDir()).path
        dev_dir = os.path.join(self.sysfs, 'bus', 'pci', 'devices', A)
        os.makedirs(dev_dir)
        self.reset_file = os.path.join(dev_dir, 'reset')
        open(self.reset_file, 'w').close()
        self.unbound = []

    def releasing(self, context_id=CTX):
        requester = request_groups.RequesterId(0, 0, context_id).encode()
        rec = ledger.DeviceRecord(address=A)
        rec.claim(SERVER, 'rp', 'FPGA', [], None, requester)
        rec.attach()
        rec.releasing('server deleted')
        return {A: rec}, rec

    def release(self, records, rec, **kw):
        release.release(records, rec, 'test', reset_on_release=True,
                        sysfs_root=self.sysfs,
                        unbind=lambda s, ids: self.unbound.append((s, ids)),
                        **kw)

    def test_reset_then_context_unbound(self):
        records, rec = self.releasing()
        self.release(records, rec)
        self.assertEqual(ledger.FREE, rec.state)
        with open(self.reset_file) as f:
            self.assertEqual('1', f.read())
        self.assertEqual([(SERVER, [CTX])], self.unbound)

    def test_dirty_device_still_lets_the_context_go(self):
        os.unlink(self.reset_file)  # no reset method
        records, rec = self.releasing()
        self.release(records, rec)
        self.assertEqual(ledger.DIRTY, rec.state)
        self.assertEqual([(SERVER, [CTX])], self.unbound)

    def test_release_not_done_keeps_the_context_for_the_retry(self):
        def not_attempted(address, sysfs_root):
            raise OSError('privsep daemon went away')
        records, rec = self.releasing()
        self.release(records, rec, resetter=not_attempted)
        self.assertEqual(ledger.RELEASING, rec.state)
        self.assertEqual([], self.unbound)

    def test_inline_group_has_no_context(self):
        rec = ledger.DeviceRecord(address=A)
        rec.claim(SERVER, 'rp', 'FPGA', [], None,
                  request_groups.RequesterId(0, 0).encode())
        rec.attach()
        self.release({A: rec}, rec)
        self.assertEqual([], self.unbound)

    def test_failed_unbind_does_not_undo_the_release(self):
        records, rec = self.releasing()

        def unbind(server, ids):
            raise RuntimeError('API down')
        release.release(records, rec, 'test', reset_on_release=True,
                        sysfs_root=self.sysfs, unbind=unbind)
        self.assertEqual(ledger.FREE, rec.state)
