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
"""The database calls: the binding compare-and-swap under a race, quota.

The races run real threads on a file-backed sqlite database (the
fixture's), each thread with its own connection, so the database, not
the test, decides who wins.
"""

import threading

from oslo_utils import uuidutils

from nova_acc.api.db import models
from nova_acc.api import exception
from tests.unit.nova_acc.api import base


def race(count, call):
    """Run ``call(i)`` in ``count`` threads released at once."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(index):
        barrier.wait()
        try:
            results[index] = call(index)
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


class BindRaceTestCase(base.APITestCase):

    def test_two_servers_binding_at_once_exactly_one_wins(self):
        db = self.api.database
        for _ in range(10):
            ctx = db.create('project-a', 'user', base.SPEC, {})
            servers = [uuidutils.generate_uuid() for _ in range(2)]
            results = race(2, lambda i: db.bind(ctx['id'], 'project-a',
                                                servers[i], 'host%d' % i))
            won = [r for r in results if isinstance(r, dict)]
            lost = [r for r in results if not isinstance(r, dict)]
            self.assertEqual(1, len(won), results)
            self.assertIsInstance(lost[0], exception.ContextBound)
            self.assertEqual(won[0]['server_id'], lost[0].server_id)
            stored = db.get(ctx['id'])
            self.assertEqual((won[0]['server_id'], won[0]['host']),
                             (stored['server_id'], stored['host']))

    def test_many_binds_through_the_api_one_wins(self):
        ctx = self.create()
        servers = [uuidutils.generate_uuid() for _ in range(6)]
        results = race(6, lambda i: self.bind(ctx['id'], servers[i])[1])
        codes = sorted(r.status_int for r in results)
        self.assertEqual([200] + [409] * 5, codes)

    def test_delete_racing_a_bind_leaves_one_outcome(self):
        db = self.api.database
        for _ in range(10):
            ctx = db.create('project-a', 'user', base.SPEC, {})
            server = uuidutils.generate_uuid()
            bound, deleted = race(2, lambda i: (
                db.bind(ctx['id'], 'project-a', server, 'h') if i == 0
                else db.delete(ctx['id'])))
            stored = db.get(ctx['id'])
            if stored is None:
                # Deleted first: the bind found nothing.
                self.assertIsInstance(bound, exception.ContextNotFound)
                self.assertIsNone(deleted)
            else:
                self.assertEqual(models.BOUND, stored['state'])
                self.assertIsInstance(deleted, exception.ContextBound)


class QuotaTestCase(base.APITestCase):

    quota = 2

    def post(self, project='project-a'):
        return self.request('POST', base.PATH, {
            'device_context': {'spec': base.SPEC}}, project=project)

    def test_over_quota_is_403_with_the_limit(self):
        first = self.create()
        self.create()
        self.assertError(403, self.post(), 'Quota exceeded', '2')
        self.assertEqual(201, self.post('project-b').status_int)
        self.request('DELETE', '%s/%s' % (base.PATH, first['id']))
        self.assertEqual(201, self.post().status_int)

    def test_creates_racing_never_exceed_the_quota(self):
        results = race(8, lambda i: self.post().status_int)
        created = self.api.database.count('project-a')
        self.assertLessEqual(created, 2)
        self.assertEqual(created, results.count(201), results)
        self.assertEqual(8 - created, results.count(403), results)

    def test_recheck_deletes_a_create_over_the_limit(self):
        db = self.api.database
        ids = [db.create('project-a', 'user', base.SPEC, {})['id']
               for _ in range(3)]
        self.assertTrue(db.delete_if_over(ids[2], 'project-a', 2))
        self.assertIsNone(db.get(ids[2]))
        self.assertFalse(db.delete_if_over(ids[1], 'project-a', 2))


class UnlimitedQuotaTestCase(base.APITestCase):

    quota = -1

    def test_unlimited(self):
        for _ in range(3):
            self.create()


class NoQuotaTestCase(base.APITestCase):

    quota = 0

    def test_zero_refuses_every_create(self):
        self.assertError(403, self.request('POST', base.PATH, {
            'device_context': {'spec': base.SPEC}}), '0')
        self.assertEqual(0, self.api.database.count('project-a'))
