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
"""``application`` for uwsgi's ``--module nova_acc.api.wsgi_app``.

The same application as the ``nova-acc-api`` script pbr writes (for
``--wsgi-file``), for deployments that name a module as placement's
``placement.wsgi.api`` is named. Importing it reads the config file and
connects the database: only uwsgi imports it.
"""

from nova_acc.api import wsgi

application = wsgi.init_application()
