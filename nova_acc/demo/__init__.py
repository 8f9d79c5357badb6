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
"""``nova-acc demo``: device contexts end to end on an in-process cloud.

* :mod:`nova_acc.demo.plan` - what the run should show (no Nova
  imports);
* :mod:`nova_acc.demo.cloud` - starts and stops the all-in-one cloud of
  ``nova_acc.tests.fixtures.cloud`` outside a test runner;
* :mod:`nova_acc.demo.scenario` - boots, inspects and deletes the
  servers and records every inconsistency it sees, with its parts:
  :mod:`~nova_acc.demo.hosts` (the hosts and placement before any boot),
  :mod:`~nova_acc.demo.inspection` (one server after its build),
  :mod:`~nova_acc.demo.checks` (all servers, after the boots and after the
  deletes), sharing :mod:`~nova_acc.demo.state`;
* :mod:`nova_acc.demo.by_id` - a device context by ID (nova-acc-api);
* :mod:`nova_acc.demo.serve` - ``--serve``: the cloud over HTTP for the
  real clients;
* :mod:`nova_acc.demo.report` - the human and JSON output.

Only :mod:`~nova_acc.demo.plan` and
:mod:`~nova_acc.demo.report` are imported before the arguments are
checked, so a usage error is quick.
"""
