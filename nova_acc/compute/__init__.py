# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.
"""Code that runs only on a compute host.

Everything here runs in nova-compute (through ``nova_acc.seams.libvirt``),
in the privsep daemon it starts, or in ``nova-acc-manage`` on the same host:
the device ledger, claims, the guest's devices, moves, release and reset,
the reconcile, and the provider tree the host reports to placement. The
control plane (API, scheduler, conductor) never imports this package;
``tests/unit/nova_acc/test_control_plane_imports.py`` fails if it does.
See ``doc/source/design.rst`` ("Module map") for why the provider tree lives
here beside the claims instead of in a package of its own.
"""
