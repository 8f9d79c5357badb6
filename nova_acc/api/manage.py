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
"""``nova-acc-api-manage``: the database commands of nova-acc-api.

``nova-acc-api-manage db sync`` creates or upgrades the schema (run it
before starting the service and after every upgrade);
``nova-acc-api-manage db version`` prints the schema's revision.
"""

from __future__ import annotations

import sys
import typing as ty

from oslo_config import cfg

from nova_acc.api import conf as api_conf
from nova_acc.api.db import api as db_api
from nova_acc.api.db import migration


def _sync(database: db_api.Database) -> int:
    """Create or upgrade the schema to the newest revision."""
    migration.upgrade(database.engine())
    print('Database at revision %s'
          % migration.version(database.engine()))
    return 0


def _version(database: db_api.Database) -> int:
    """Print the schema's revision."""
    print(migration.version(database.engine()) or 'None (empty database)')
    return 0


COMMANDS = {'sync': _sync, 'version': _version}


def _add_parsers(subparsers: ty.Any) -> None:
    db = subparsers.add_parser('db', help='Database commands')
    db_commands = db.add_subparsers(dest='db_command')
    db_commands.required = True
    for name, function in COMMANDS.items():
        db_commands.add_parser(name, help=(function.__doc__ or '').strip())


def main(argv: ty.Sequence[str] | None = None) -> int:
    conf = cfg.ConfigOpts()
    conf.register_cli_opt(cfg.SubCommandOpt(
        'category', title='Commands', handler=_add_parsers))
    api_conf.register_opts(conf)
    default_files = api_conf.config_files()
    if default_files is None:
        default_files = cfg.find_config_files(
            project=api_conf.PROJECT, prog=api_conf.PROG)
    conf(list(sys.argv[1:] if argv is None else argv),
         project=api_conf.PROJECT, prog='nova-acc-api-manage',
         default_config_files=default_files)
    if not conf.database.connection:
        print('[database] connection is not set in %s'
              % ', '.join(conf.config_file or ['any config file']),
              file=sys.stderr)
        return 1
    database = db_api.Database(conf)
    try:
        return COMMANDS[conf.category.db_command](database)
    finally:
        database.dispose()


if __name__ == '__main__':
    sys.exit(main())
