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
"""nova_acc.compute.release for mdevs: removal, retries, the backend's."""

from oslotest import base

from nova_acc import exception
from nova_acc.compute import ledger
from nova_acc.compute import release
from tests.unit.nova_acc.compute.mdev_fakes import mdev_record


class ReleaseMdevTest(base.BaseTestCase):

    def test_removed_and_forgotten(self):
        removed = []
        records = {'u1': mdev_record('u1')}
        release.release(records, records['u1'], 'deleted',
                        reset_on_release=True, sysfs_root='/nonexistent',
                        remove_mdev=removed.append)
        self.assertEqual(['u1'], removed)
        self.assertEqual({}, records)

    def test_failed_removal_is_dirty_then_retried(self):
        records = {'u1': mdev_record('u1')}

        def busy(uuid):
            raise exception.MdevError('device busy')
        release.release(records, records['u1'], 'deleted',
                        reset_on_release=True, sysfs_root='/nonexistent',
                        remove_mdev=busy)
        rec = records['u1']
        self.assertEqual((ledger.DIRTY, None), (rec.state, rec.instance_uuid))
        self.assertIn('device busy', rec.reason)
        self.assertIn('could not be removed',
                      ledger.describe_unavailable(rec))
        release.release(records, rec, 'retry', reset_on_release=True,
                        sysfs_root='/nonexistent', remove_mdev=lambda u: 0)
        self.assertEqual({}, records)

    def test_clear_dirty_needs_force_for_an_mdev(self):
        rec = mdev_record('u1', state=ledger.DIRTY)
        freed, why = release.clear_dirty(rec, '/nonexistent')
        self.assertFalse(freed)
        self.assertIn('--force', why)
        self.assertTrue(release.clear_dirty(rec, '/nonexistent',
                                            force=True)[0])

    def test_backend_mdev_is_unbound_then_removed(self):
        calls = []
        rec = mdev_record('u1')
        rec.context_id = 'arq-1'
        records = {'u1': rec}
        release.release(records, rec, 'deleted', reset_on_release=True,
                        sysfs_root='/nonexistent',
                        unbind=lambda s, ids: calls.append(('unbind', ids)),
                        remove_mdev=lambda u: calls.append(('remove', u)))
        self.assertEqual([('unbind', ['arq-1']), ('remove', 'u1')], calls)
        self.assertEqual({}, records)
