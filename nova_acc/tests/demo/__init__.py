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

* :mod:`nova_acc.tests.demo.plan` - what the run should show (no Nova
  imports);
* :mod:`nova_acc.tests.demo.cloud` - starts and stops the all-in-one cloud of
  ``nova_acc.tests.fixtures.cloud`` outside a test runner;
* :mod:`nova_acc.tests.demo.scenario` - boots, inspects and deletes the
  servers and records every inconsistency it sees;
* :mod:`nova_acc.tests.demo.report` - the human and JSON output.

Only :mod:`~nova_acc.tests.demo.plan` and
:mod:`~nova_acc.tests.demo.report` are imported before the arguments are
checked, so a usage error is quick.
"""
