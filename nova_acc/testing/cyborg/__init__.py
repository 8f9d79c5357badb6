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

"""Run the real OpenStack Cyborg service (API + conductor) in a child process.

Cyborg and Nova cannot share one Python process (their oslo.config options
clash: ``[DEFAULT] host``, ``[glance] num_retries``), so the test process
never imports ``cyborg``: :mod:`.server` is the child's entry point and
:mod:`.fixture` starts it and talks to it over HTTP.

* :class:`nova_acc.testing.cyborg.fixture.CyborgServiceFixture` - the fixture.
* :class:`nova_acc.testing.cyborg.fixture.CyborgClient` - a tiny HTTP client.
* :class:`nova_acc.testing.cyborg.fake_nova.FakeNovaEventsServer` - a local
  HTTP server that records the ``accelerator-request-bound`` external events
  Cyborg sends to Nova.

The token scheme understood by the child's auth middleware is documented in
:mod:`nova_acc.testing.cyborg.server` (module docstring); its constants
(``ADMIN_PROJECT_ID`` ...) can be imported from there without importing
cyborg.

This package deliberately imports nothing at package level.
"""
