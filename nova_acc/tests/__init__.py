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
"""nova-acc's test harness, shipped for ``nova-acc demo`` and for reuse.

Nothing in the runtime package imports it (a plain ``pip install nova-acc``
on a compute node never loads a test fixture); it needs the test
dependencies, installed with ``pip install 'nova-acc[demo]'``:

* ``nova_acc.tests.fixtures`` - Nova's functional harness with nova-acc's
  services, fake-libvirt hosts with fake FPGAs, and the real Cyborg 17 in a
  child process.

``nova-acc demo`` (``nova_acc.demo``, needing the same extra) runs that
harness outside a test runner.
"""
