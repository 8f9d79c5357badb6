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
"""alembic's environment: migrations run on the connection given.

:mod:`nova_acc.api.db.migration` passes it in ``config.attributes``;
there is no offline (SQL script) mode.
"""

from alembic import context

from nova_acc.api.db import models

connection = context.config.attributes.get('connection')
if connection is None or context.is_offline_mode():
    raise RuntimeError('run migrations with nova-acc-api-manage db sync')
context.configure(connection=connection,
                  target_metadata=models.Base.metadata)
with context.begin_transaction():
    context.run_migrations()
