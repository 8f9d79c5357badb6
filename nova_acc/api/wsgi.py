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
"""The WSGI entry point uwsgi runs: ``nova-acc-api`` (pbr wsgi_scripts).

``init_application`` reads ``/etc/nova-acc/nova-acc-api.conf`` (or the
file in ``$NOVA_ACC_API_CONFIG_DIR``), sets up logging and the database
and returns the application. The schema is not migrated here: run
``nova-acc-api-manage db sync`` first (as ``placement-manage db sync``).
"""

from __future__ import annotations

import typing as ty

from oslo_log import log as logging

from nova_acc.api import conf as api_conf
from nova_acc.api.db import api as db_api
from nova_acc.api import deploy


def init_application() -> ty.Callable[..., ty.Any]:
    conf = api_conf.load()
    logging.setup(conf, api_conf.PROG)
    return deploy.deploy(conf, db_api.Database(conf))
