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
"""Backends for ID-based device contexts.

A hint value that is a UUID names a device context object a user created
before the boot. ``[nova_acc] backend`` selects the service that owns such
objects, loaded from the ``nova_acc.backends`` entry points:

* ``local`` (default): the UUID is a device context of nova-acc's own API
  (``nova-acc-api``, reached with ``[device_context_api]``); its groups go
  to nova-acc's pools. Without that API: inline specs and profiles only.
* ``cyborg``: the UUID is a Cyborg accelerator request (ARQ).
"""

from oslo_log import log as logging
from stevedore import driver

from nova_acc.backends import base
from nova_acc import conf

CONF = conf.CONF
LOG = logging.getLogger(__name__)
NAMESPACE = 'nova_acc.backends'

_BACKENDS: dict[str, base.Backend] = {}


def get_backend(name: str | None = None) -> base.Backend:
    name = name or CONF.nova_acc.backend
    if name not in _BACKENDS:
        _BACKENDS[name] = driver.DriverManager(
            NAMESPACE, name, invoke_on_load=True).driver
    return _BACKENDS[name]


def unbind_quietly(context, instance, context_ids, why: str,
                   hostname: str | None = None) -> None:
    """The backend's ``unbind``, best effort: the caller's error counts.

    For a server that will not run (its build failed, or a device of it
    could not be used) before anything of ``context_ids`` reached a ledger:
    it would otherwise keep them bound. A failure is logged, naming the
    contexts and ``why`` they were being unbound, and not raised: the
    caller raises, or has recorded, the reason the server failed.
    """
    context_ids = sorted(context_ids)
    if not context_ids:
        return
    try:
        get_backend().unbind(context, instance, context_ids,
                             hostname=hostname)
    except Exception as e:  # best effort; see above
        LOG.error('Could not unbind device contexts %s (%s): %s',
                  ', '.join(context_ids), why, e, instance=instance)
