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
"""The migrations and the binding race on MySQL/MariaDB (opt-in).

Run when ``NOVA_ACC_API_TEST_MYSQL_URL`` names an empty database the
tests may drop tables in, for example
``mysql+pymysql://user:pw@localhost/nova_acc_api_test?charset=utf8mb4``
(PyMySQL needed); skipped otherwise. The same tests as on sqlite: nothing
in the schema or the compare-and-swap may be sqlite-only.
"""

import os

from oslo_db.sqlalchemy import test_migrations
from oslo_utils import uuidutils
from oslotest import base as oslotest_base
import sqlalchemy as sa

from nova_acc.api.db import migration
from nova_acc.api.db import models
from nova_acc.api import exception
from nova_acc.tests.fixtures import contexts_api
from tests.unit.nova_acc.api import base
from tests.unit.nova_acc.api import test_db_api

URL = os.environ.get('NOVA_ACC_API_TEST_MYSQL_URL')
SKIP = 'NOVA_ACC_API_TEST_MYSQL_URL is not set'


def _empty(engine):
    with engine.begin() as connection:
        for table in ('device_contexts', 'alembic_version'):
            connection.execute(sa.text('DROP TABLE IF EXISTS %s' % table))


class MySQLMigrationTestCase(test_migrations.ModelsMigrationsSync,
                             oslotest_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        if not URL:
            self.skipTest(SKIP)
        self.engine = sa.create_engine(URL)
        self.addCleanup(self.engine.dispose)
        _empty(self.engine)

    def get_engine(self):
        return self.engine

    def get_metadata(self):
        return models.Base.metadata

    def db_sync(self, engine):
        migration.upgrade(engine)

    def test_upgrade_from_empty(self):
        migration.upgrade(self.engine)
        self.assertEqual('b7c1d2e3f4a5', migration.version(self.engine))
        with self.engine.connect() as connection:
            engine_name, = connection.execute(sa.text(
                "SELECT engine FROM information_schema.tables WHERE "
                "table_schema = DATABASE() AND "
                "table_name = 'device_contexts'")).one()
        self.assertEqual('InnoDB', engine_name)


class MySQLBindTestCase(base.APITestCase):

    def setUp(self):
        if not URL:
            self.skipTest(SKIP)
        engine = sa.create_engine(URL)
        _empty(engine)
        engine.dispose()
        oslotest_base.BaseTestCase.setUp(self)
        self.api = self.useFixture(contexts_api.ContextsAPIFixture(
            conf_overrides={'database': {'connection': URL}}))

    def test_two_servers_binding_at_once_exactly_one_wins(self):
        db = self.api.database
        for _ in range(10):
            ctx = db.create('project-a', 'user', base.SPEC, {})
            servers = [uuidutils.generate_uuid() for _ in range(2)]
            results = test_db_api.race(2, lambda i: db.bind(
                ctx['id'], 'project-a', servers[i], 'host%d' % i))
            won = [r for r in results if isinstance(r, dict)]
            lost = [r for r in results if not isinstance(r, dict)]
            self.assertEqual(1, len(won), results)
            self.assertIsInstance(lost[0], exception.ContextBound)

    def test_lifecycle_through_the_api(self):
        ctx = self.create(name='\U0001f680 gzip',
                          config={'accel:bitstream_id': 'b1'})
        server, response = self.bind(ctx['id'])
        self.assertEqual(200, response.status_int, response.text)
        # The same server again (a move): MySQL counts the matched row.
        _, response = self.bind(ctx['id'], server, host='host2')
        self.assertEqual(200, response.status_int, response.text)
        self.assertError(409, self.request(
            'DELETE', '%s/%s' % (base.PATH, ctx['id'])), server)
        self.request('DELETE', '%s/%s/binding?server_id=%s' % (
            base.PATH, ctx['id'], server), project='service',
            roles=base.SERVICE)
        self.assertEqual(204, self.request(
            'DELETE', '%s/%s' % (base.PATH, ctx['id'])).status_int)

    def test_creates_racing_never_exceed_the_quota(self):
        self.api.conf.set_override('device_contexts', 2, group='quota')
        results = test_db_api.race(8, lambda i: self.request(
            'POST', base.PATH, {'device_context': {'spec': base.SPEC}}
        ).status_int)
        created = self.api.database.count('project-a')
        self.assertLessEqual(created, 2)
        self.assertEqual(created, results.count(201), results)
