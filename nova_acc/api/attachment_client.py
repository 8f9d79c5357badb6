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
"""The attachment calls of nova-acc-api (issue 23) on top of its client.

Kept apart from ``nova_acc_client.contexts`` (the client distribution,
another change in progress) until that client has them: ``attach`` and
``detach`` for users (the OSC plugin's ``server add/remove device
context``), ``unbind`` with a fault for the compute ending a failed attach.
No Nova import.
"""

from __future__ import annotations

import typing as ty
import urllib.parse

from nova_acc.api import client as api_client


def _url(context_id: str, suffix: str) -> str:
    return '%s/%s%s' % (api_client.PATH,
                        urllib.parse.quote(str(context_id), safe=''), suffix)


class AttachmentClient(api_client.DeviceContextClient):
    """DeviceContextClient with the attachment calls."""

    @classmethod
    def of(cls, client: api_client.DeviceContextClient) -> AttachmentClient:
        return cls(client.adapter)

    def attach(self, context_id: str, server_id: str) -> api_client.Context:
        """Start attaching to a running or stopped server (202)."""
        result: api_client.Context = self._call(
            'PUT', _url(context_id, '/attachment'),
            json={'attachment': {'server_id': server_id}})['device_context']
        return result

    def detach(self, context_id: str) -> api_client.Context:
        """Start detaching from its server (202)."""
        result: api_client.Context = self._call(
            'DELETE', _url(context_id, '/attachment'))['device_context']
        return result

    def unbind_with_fault(self, context_id: str, server_id: str,
                          fault: str, host: str | None = None) -> None:
        """Unbind from the server, keeping ``fault`` on the context."""
        params: dict[str, ty.Any] = {'server_id': server_id, 'fault': fault}
        if host is not None:
            params['host'] = host
        self._call('DELETE', _url(context_id, '/binding'), params=params)
