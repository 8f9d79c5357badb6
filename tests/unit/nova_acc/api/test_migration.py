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
"""The alembic migrations: upgrade from empty, models match them."""

import os

import fixtures
from oslo_db.sqlalchemy import test_migrations
from oslotest import base
import sqlalchemy as sa

from nova_acc.api.db import migration
from nova_acc.api.db import models


class MigrationTestCase(test_migrations.ModelsMigrationsSync,
                        base.BaseTestCase):
    """On sqlite; the same revisions run on MySQL (nothing sqlite-only)."""

    def setUp(self):
        super().setUp()
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'api.db')
        self.engine = sa.create_engine('sqlite:///' + path)
        self.addCleanup(self.engine.dispose)

    def get_engine(self):
        return self.engine

    def get_metadata(self):
        return models.Base.metadata

    def db_sync(self, engine):
        migration.upgrade(engine)

    def test_upgrade_from_empty(self):
        self.assertIsNone(migration.version(self.engine))
        migration.upgrade(self.engine)
        self.assertEqual('b7c1d2e3f4a5', migration.version(self.engine))
        inspector = sa.inspect(self.engine)
        self.assertIn('device_contexts', inspector.get_table_names())
        self.assertEqual(
            {'device_contexts_project_id_idx',
             'device_contexts_server_id_idx'},
            {i['name'] for i in inspector.get_indexes('device_contexts')})
        # Idempotent: a second sync at head changes nothing.
        migration.upgrade(self.engine)
        self.assertEqual('b7c1d2e3f4a5', migration.version(self.engine))
