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
"""SQLAlchemy models of nova-acc-api's database.

The alembic migrations under ``alembic/versions`` are the schema's
record; these models must match them (a unit test compares the two with
oslo.db's ``ModelsMigrationsSync``). Nothing here is sqlite-only: the
deployment database is MySQL/MariaDB.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy import orm

#: States of a device context. ``error`` keeps its server: the server
#: that faulted may bind it again (a reschedule), no other server may.
#: ``attaching`` and ``detaching``: a user asked to attach the context to
#: a running server or to detach it (issue 23), and its compute has not
#: finished yet; the server is recorded, so no other server may bind it.
#: The column is a plain string: these states need no migration.
UNBOUND = 'unbound'
BOUND = 'bound'
ERROR = 'error'
ATTACHING = 'attaching'
DETACHING = 'detaching'
STATES = (UNBOUND, BOUND, ERROR, ATTACHING, DETACHING)

#: Column sizes, the validation limits of the API (validation.py) too.
ID_LENGTH = 36
NAME_LENGTH = 255
DESCRIPTION_LENGTH = 1024
PROJECT_LENGTH = 255
HOST_LENGTH = 255
SPEC_LENGTH = 4096
#: created_at and updated_at keep microseconds everywhere: MySQL's and
#: MariaDB's plain DATETIME keeps whole seconds, so the time a POST or
#: PATCH answers would differ from what a GET reads back, and contexts
#: made in the same second would list out of creation order (migration
#: b7c1d2e3f4a5).
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql',
                                       'mariadb')
FAULT_LENGTH = 2048


class Base(orm.DeclarativeBase):
    pass


class DeviceContext(Base):
    """One device context: what it asks for and whom it is bound to."""

    __tablename__ = 'device_contexts'
    __table_args__ = (
        sa.Index('device_contexts_project_id_idx', 'project_id'),
        sa.Index('device_contexts_server_id_idx', 'server_id'),
        {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'},
    )

    id: orm.Mapped[str] = orm.mapped_column(
        sa.String(ID_LENGTH), primary_key=True)
    name: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(NAME_LENGTH), nullable=True)
    description: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(DESCRIPTION_LENGTH), nullable=True)
    project_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(PROJECT_LENGTH), nullable=False)
    user_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(PROJECT_LENGTH), nullable=False)
    spec: orm.Mapped[str] = orm.mapped_column(sa.Text, nullable=False)
    # JSON text: {"accel:key": "value"}; Text, not a JSON column, so that
    # every backend stores the same thing.
    config: orm.Mapped[str] = orm.mapped_column(sa.Text, nullable=False)
    state: orm.Mapped[str] = orm.mapped_column(
        sa.String(16), nullable=False)
    server_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(ID_LENGTH), nullable=True)
    host: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(HOST_LENGTH), nullable=True)
    # JSON text: [{"pool": ..., "address"|"mdev_uuid": ...}].
    devices: orm.Mapped[str] = orm.mapped_column(sa.Text, nullable=False)
    fault: orm.Mapped[str | None] = orm.mapped_column(sa.Text,
                                                      nullable=True)
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        TIMESTAMP, nullable=False)
    updated_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        TIMESTAMP, nullable=True)
