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
"""Schema migrations of nova-acc-api's database (alembic).

``nova-acc-api-manage db sync`` runs :func:`upgrade`; the revisions are
under ``alembic/versions``. alembic is configured in code (no
alembic.ini) and given the engine's connection, so the same code serves
the command, the tests and the in-process fixture.
"""

from __future__ import annotations

import os

from alembic import command as alembic_command
from alembic import config as alembic_config
from alembic import migration as alembic_migration
import sqlalchemy as sa

SCRIPT_LOCATION = os.path.join(os.path.dirname(__file__), 'alembic')


def _config(connection: sa.engine.Connection) -> alembic_config.Config:
    config = alembic_config.Config()
    config.set_main_option('script_location', SCRIPT_LOCATION)
    config.attributes['connection'] = connection
    return config


def upgrade(engine: sa.engine.Engine, revision: str = 'head') -> None:
    """Upgrade the schema to ``revision`` (default: the newest)."""
    with engine.begin() as connection:
        alembic_command.upgrade(_config(connection), revision)


def version(engine: sa.engine.Engine) -> str | None:
    """The schema's revision; None for an empty database."""
    with engine.connect() as connection:
        context = alembic_migration.MigrationContext.configure(connection)
        return context.get_current_revision()
