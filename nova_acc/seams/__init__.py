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
"""The only code that overrides Nova.

Each module subclasses one Nova class, and each override is a few lines
that call the step of the flow it stands for (``nova_acc.request_groups``,
``allocation``, ``binding``, and the rooms of ``nova_acc.compute``). The
private Nova methods among them are pinned by the Nova range in
requirements.txt and by tests/unit/nova_acc/test_nova_seams.py.

* ``scheduler``: ``SchedulerManager`` (``nova-acc-scheduler``);
* ``conductor``: ``ConductorManager`` / ``ComputeTaskManager``
  (``nova-acc-conductor``);
* ``libvirt``: ``LibvirtAccDriver`` (``compute_driver =
  nova_acc.LibvirtAccDriver``).
"""
