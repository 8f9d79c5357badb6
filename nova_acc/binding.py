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
"""Bindings: which device each device-context group of a server got.

The one place binding state lives is the instance's system metadata in the
cell database: the conductor writes it after host selection, and the
compute (also after a restart), reboots and deletes read it from there.
System metadata travels with the Instance object, needs no schema of our
own, and is soft-deleted with the server.

One key per group keeps each value far below the 255-character column.
"""

from __future__ import annotations

import dataclasses
import uuid

from oslo_serialization import jsonutils

KEY_PREFIX = 'nova_acc_binding_'
ERROR_KEY = 'nova_acc_binding_error'

# Fixed namespace so a device's provider UUID is the same after every
# restart of nova-compute and can be recomputed from its name.
_PROVIDER_NAMESPACE = uuid.UUID('a7f4b0b2-3c1e-4f6e-9a55-6f1d2b9c0e11')


def provider_name(nodename: str, address: str) -> str:
    return '%s_%s' % (nodename, address)


def provider_uuid(nodename: str, address: str) -> str:
    return str(uuid.uuid5(_PROVIDER_NAMESPACE,
                          provider_name(nodename, address)))


@dataclasses.dataclass(frozen=True)
class Binding:
    """Group ``requester_id`` of a server is bound to one device provider.

    ``context_id`` is set for ID-based contexts (a Cyborg ARQ); their
    ``address`` is only known once the backend reports the attach handle,
    on the compute.
    """

    requester_id: str
    rp_uuid: str
    address: str | None
    nodename: str
    context_id: str | None = None

    def to_json(self) -> str:
        data = {'rp': self.rp_uuid, 'address': self.address,
                'node': self.nodename}
        if self.context_id:
            data['ctx'] = self.context_id
        return jsonutils.dumps(data)


def _key(requester_id: str) -> str:
    return KEY_PREFIX + requester_id


def load(instance) -> list[Binding]:
    """The bindings recorded on the instance, ordered by requester id."""
    result = []
    for key, value in sorted(instance.system_metadata.items()):
        if not key.startswith(KEY_PREFIX) or key == ERROR_KEY:
            continue
        data = jsonutils.loads(value)
        result.append(Binding(requester_id=key[len(KEY_PREFIX):],
                              rp_uuid=data['rp'], address=data['address'],
                              nodename=data['node'],
                              context_id=data.get('ctx')))
    return result


def load_error(instance) -> str | None:
    return instance.system_metadata.get(ERROR_KEY)


def replace(instance, bindings: list[Binding],
            error: str | None = None) -> None:
    """Set the instance's bindings (in memory; the caller saves).

    All of a server's bindings are replaced at once so a reschedule never
    leaves a mix of old-host and new-host records.
    """
    sysmeta = instance.system_metadata
    for key in [k for k in sysmeta if k.startswith(KEY_PREFIX)]:
        del sysmeta[key]
    for b in bindings:
        sysmeta[_key(b.requester_id)] = b.to_json()
    if error:
        # The column holds 255 characters.
        sysmeta[ERROR_KEY] = error[:255]
    instance.system_metadata = sysmeta
