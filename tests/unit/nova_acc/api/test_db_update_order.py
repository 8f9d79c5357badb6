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
"""The end of an attach keeps its devices on MySQL/MariaDB too.

MySQL evaluates a single-table UPDATE's SET clauses left to right, each
on the row as updated so far: with ``state = 'bound'`` before ``devices =
CASE WHEN state = 'attaching' ...`` the real cloud's contexts ended bound
with no devices. sqlite (these tests' database) uses the old row, so the
order is checked in the SQL the bind sends.
"""

import sqlalchemy as sa

from tests.unit.nova_acc.api import base


class BindUpdateOrderTest(base.APITestCase):

    def test_bind_sets_devices_before_state(self):
        db = self.api.database
        statements = []

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        sa.event.listen(db.engine(), 'before_cursor_execute', record)
        self.addCleanup(sa.event.remove, db.engine(), 'before_cursor_execute',
                        record)
        ctx = db.create('project-a', 'user', base.SPEC, {})
        db.begin_attach(ctx['id'], 'project-a', 'server-1', 'host-1')
        devices = [{'pool': 'rp', 'address': '0000:01:00.0'}]
        db.record_devices(ctx['id'], 'server-1', 'host-1', devices)
        bound = db.bind(ctx['id'], 'project-a', 'server-1', 'host-1')
        self.assertEqual(devices, bound['devices'])
        (update,) = [s for s in statements
                     if s.startswith('UPDATE') and 'CASE' in s]
        self.assertLess(update.index('devices='), update.index('state='),
                        update)
