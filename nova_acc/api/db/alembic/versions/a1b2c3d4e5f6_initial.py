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
"""The device_contexts table.

Revision ID: a1b2c3d4e5f6
Revises:
Create Date: 2026-12-07
"""

from alembic import op
import sqlalchemy as sa

revision = 'a1b2c3d4e5f6'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'device_contexts',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('name', sa.String(255), nullable=True),
        sa.Column('description', sa.String(1024), nullable=True),
        sa.Column('project_id', sa.String(255), nullable=False),
        sa.Column('user_id', sa.String(255), nullable=False),
        sa.Column('spec', sa.Text, nullable=False),
        sa.Column('config', sa.Text, nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('server_id', sa.String(36), nullable=True),
        sa.Column('host', sa.String(255), nullable=True),
        sa.Column('devices', sa.Text, nullable=False),
        sa.Column('fault', sa.Text, nullable=True),
        sa.Column('created_at', sa.DateTime, nullable=False),
        sa.Column('updated_at', sa.DateTime, nullable=True),
        mysql_engine='InnoDB',
        mysql_charset='utf8mb4',
    )
    op.create_index('device_contexts_project_id_idx', 'device_contexts',
                    ['project_id'])
    op.create_index('device_contexts_server_id_idx', 'device_contexts',
                    ['server_id'])
