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
"""Nova's own Cyborg accelerator tests, run with nova-acc's services.

Operators replace nova-scheduler and nova-conductor with nova-acc's; servers
with flavor-based device profiles (Nova's native Cyborg support) must keep
working exactly as before.
"""

from nova.tests.functional import test_servers

from nova_acc.seams import conductor as conductor_manager
from nova_acc.seams import scheduler as scheduler_manager
from nova_acc.tests.fixtures import cloud


class AcceleratorServerTest(cloud.NovaAccServicesMixin,
                            test_servers.AcceleratorServerTest):

    def test_nova_acc_managers_are_running(self):
        # The inherited tests prove nothing if our managers are not used.
        self.assertIsInstance(self.scheduler_service.manager,
                              scheduler_manager.SchedulerManager)
        conductors = [s for s in self.started_services
                      if s.binary == 'nova-conductor']
        self.assertTrue(conductors)
        for svc in conductors:
            self.assertIsInstance(svc.manager.compute_task_mgr,
                                  conductor_manager.ComputeTaskManager)
            self.assertIn(svc.manager.compute_task_mgr,
                          svc.manager.additional_endpoints)


class AcceleratorServerReschedTest(cloud.NovaAccServicesMixin,
                                   test_servers.AcceleratorServerReschedTest):
    pass


class AcceleratorServerOpsTest(cloud.NovaAccServicesMixin,
                               test_servers.AcceleratorServerOpsTest):
    pass
