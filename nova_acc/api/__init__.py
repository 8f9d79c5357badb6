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
"""nova-acc-api: the device-context API service (issue 21).

A REST service of its own, run under uwsgi like placement, that keeps
device contexts: user-owned objects (like Neutron ports and Cinder
attachments) that ask for accelerators, are bound to one server at a time
by Nova's side and unbound when the server lets them go.

Nothing under this package imports Nova: the service runs where Nova is
not installed, and its options live in its own ``cfg.ConfigOpts``.

* :mod:`.conf` - options of ``/etc/nova-acc/nova-acc-api.conf``;
* :mod:`.db` - models, migrations and the queries (bindings as one
  compare-and-swap ``UPDATE``);
* :mod:`.validation` - request bodies and query strings;
* :mod:`.policy` - the rules, defaults in code;
* :mod:`.handlers`, :mod:`.router`, :mod:`.auth`, :mod:`.deploy`,
  :mod:`.wsgi` - the WSGI application (:mod:`.wsgi_app` for uwsgi's
  ``--module``); :mod:`.exception` - the errors and their HTTP codes;
* :mod:`.client` - the Python client Nova's side uses;
* :mod:`.manage` - ``nova-acc-api-manage db sync|version``.
"""
