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
"""Timestamps with microseconds on MySQL and MariaDB.

Their plain DATETIME keeps whole seconds: the created_at a POST answered
differed from the one a GET read back (seen in tools/run-cloud.sh's cloud
under tempest). SQLite and PostgreSQL keep microseconds already.

Revision ID: b7c1d2e3f4a5
Revises: a1b2c3d4e5f6
Create Date: 2026-12-07
"""

from alembic import op
from sqlalchemy.dialects import mysql

revision = 'b7c1d2e3f4a5'
down_revision = 'a1b2c3d4e5f6'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name not in ('mysql', 'mariadb'):
        return
    for column, nullable in (('created_at', False), ('updated_at', True)):
        op.alter_column('device_contexts', column,
                        type_=mysql.DATETIME(fsp=6),
                        existing_nullable=nullable)
