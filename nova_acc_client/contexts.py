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
"""The Python client of nova-acc-api: Nova's side and the OSC plugin use it.

``DeviceContextClient`` talks to the ``device-context`` service through a
keystoneauth1 ``Adapter`` (give it one, or a ``Session`` and it makes
one). Every call of ``/v1/device-contexts`` returns the ``device_context``
dict (see doc/source/api-ref.rst), those of ``/v1/servers/{id}/boot-contexts``
a server's contexts by index or the request ID of a detach; or raises one
of:

* :class:`ContextNotFound` - 404: missing, or another project's;
* :class:`ContextConflict` - 409, with the service's message (bound to
  another server, not bound here, ...);
* :class:`ContextAPIUnavailable` - the service could not be reached, timed
  out or answered 5xx;
* :class:`ContextAPIError` - any other refusal (400, 401, 403); the base
  class of the three above.

No Nova import: the client installs where Nova is not (the
nova-acc-client distribution); ``nova_acc.api.client`` re-exports it.
"""

from __future__ import annotations

import typing as ty
import urllib.parse

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session

SERVICE_TYPE = 'device-context'
PATH = '/v1/device-contexts'
SERVERS_PATH = '/v1/servers'
#: The header of oslo.middleware's RequestId: the ID nova-acc-api gave the
#: call, which the compute's instance action of a cast carries.
REQUEST_ID_HEADER = 'x-openstack-request-id'

Context = dict[str, ty.Any]
#: One of a server's device contexts by index (``list_boot_contexts``).
BootContext = dict[str, ty.Any]


def _url(context_id: str, suffix: str = '') -> str:
    # Quoted: an ID that came from a user's hint never changes the path.
    return '%s/%s%s' % (PATH, urllib.parse.quote(str(context_id), safe=''),
                        suffix)


def _boot_url(server_id: str, index: int | None = None) -> str:
    url = '%s/%s/boot-contexts' % (
        SERVERS_PATH, urllib.parse.quote(str(server_id), safe=''))
    return url if index is None else '%s/%d' % (url, index)


class ContextAPIError(Exception):
    """nova-acc-api refused or failed a call; ``message`` says why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ContextNotFound(ContextAPIError):
    pass


class ContextConflict(ContextAPIError):
    pass


class ContextAPIUnavailable(ContextAPIError):
    pass


def _message(response: ty.Any) -> str:
    """The service's error message, or the status line."""
    try:
        body = response.json()
        return str(body['error']['message'])
    except Exception:
        # Not nova-acc-api's error shape (a proxy's page, a 502 from a
        # load balancer): the status says enough.
        return 'HTTP %s from nova-acc-api' % response.status_code


class DeviceContextClient:
    """Calls of nova-acc-api's ``/v1/device-contexts`` and
    ``/v1/servers/{server_id}/boot-contexts``."""

    def __init__(self, session_or_adapter: ty.Any) -> None:
        if isinstance(session_or_adapter, ks_session.Session):
            session_or_adapter = ks_adapter.Adapter(
                session_or_adapter, service_type=SERVICE_TYPE)
        self.adapter = session_or_adapter

    def _call(self, method: str, url: str, **kwargs: ty.Any) -> ty.Any:
        """The decoded body of the answer (None if it has none)."""
        response = self._response(method, url, **kwargs)
        return response.json() if response.content else None

    def _response(self, method: str, url: str, **kwargs: ty.Any
                  ) -> ty.Any:
        """The answer to one call, if it is a success (< 300)."""
        try:
            response = self.adapter.request(url, method, raise_exc=False,
                                            **kwargs)
        except ks_exceptions.ClientException as error:
            # Connection refused, timeout, no endpoint in the catalog.
            raise ContextAPIUnavailable(
                'nova-acc-api could not be reached: %s' % error)
        status = response.status_code
        if status < 300:
            return response
        message = _message(response)
        if status == 404:
            raise ContextNotFound(message, status)
        if status == 409:
            raise ContextConflict(message, status)
        if status >= 500:
            raise ContextAPIUnavailable(message, status)
        raise ContextAPIError(message, status)

    def _context(self, method: str, url: str, **kwargs: ty.Any) -> Context:
        """The ``device_context`` of the answer to one call."""
        return ty.cast(Context,
                       self._call(method, url, **kwargs)['device_context'])

    # ---- user-facing calls ------------------------------------------------

    def get(self, context_id: str, project_id: str | None = None
            ) -> Context:
        """The context; with ``project_id``, 404 unless it is theirs."""
        params = {'project_id': project_id} if project_id else None
        return self._context('GET', _url(context_id), params=params)

    def list(self, **filters: ty.Any) -> list[Context]:
        """Contexts by ``server_id``, ``state``, ``all_projects``.

        ``limit`` and ``marker`` give one page (api-ref.rst).
        """
        found = self._call('GET', PATH, params=filters or None)
        return ty.cast(ty.List[Context], found['device_contexts'])

    def create(self, spec: str, name: str | None = None,
               description: str | None = None,
               config: dict[str, str] | None = None) -> Context:
        body: dict[str, ty.Any] = {'spec': spec}
        for key, value in (('name', name), ('description', description),
                           ('config', config)):
            if value is not None:
                body[key] = value
        return self._context('POST', PATH, json={'device_context': body})

    def update(self, context_id: str, **values: ty.Any) -> Context:
        """Change ``name``, ``description`` or ``config``."""
        return self._context('PATCH', _url(context_id),
                             json={'device_context': values})

    def delete(self, context_id: str) -> None:
        self._call('DELETE', _url(context_id))

    def attach(self, context_id: str, server_id: str) -> Context:
        """Start attaching to a running or stopped server (202).

        The context is ``attaching`` until the server's compute has bound
        it (``bound``) or given up (``unbound`` with a ``fault``).
        """
        return self._context(
            'PUT', _url(context_id, '/attachment'),
            json={'attachment': {'server_id': server_id}})

    def detach(self, context_id: str) -> Context:
        """Start detaching from its server (202): ``detaching``, then
        ``unbound`` (or ``error`` with a fault, the device still held)."""
        return self._context('DELETE', _url(context_id, '/attachment'))

    def list_boot_contexts(self, server_id: str) -> ty.List[BootContext]:
        """The server's device contexts by index, as its compute reads
        them from Nova: ``index``, ``kind`` (``spec``, ``profile``, ``id``
        or ``detached``), ``value`` and ``groups`` (how many of its request
        groups the server holds).

        A context given at boot as an inline spec or a profile has no ID:
        its index is what :meth:`detach_boot_context` takes.
        """
        found = self._call('GET', _boot_url(server_id))
        return ty.cast(ty.List[BootContext], found['boot_contexts'])

    def detach_boot_context(self, server_id: str, index: int) -> str | None:
        """Start detaching the context given at boot at ``index`` (202).

        The server's compute then detaches it and records that as the
        server's instance action ``detach_boot_context``, whose request ID
        is the ID nova-acc-api gave this call.

        :returns: that request ID (None if the answer did not carry one).
        """
        response = self._response('DELETE', _boot_url(server_id, index))
        return ty.cast(ty.Optional[str],
                       response.headers.get(REQUEST_ID_HEADER))

    # ---- calls of Nova's side -------------------------------------------

    def bind(self, context_id: str, server_id: str, host: str,
             project_id: str) -> Context:
        """Bind to the server on the host; ContextConflict if elsewhere."""
        return self._context(
            'PUT', _url(context_id, '/binding'),
            json={'binding': {'server_id': server_id, 'host': host,
                              'project_id': project_id}})

    def unbind(self, context_id: str, server_id: str,
               host: str | None = None, fault: str | None = None) -> None:
        """Unbind if bound to the server (on the host); else nothing.

        ``fault`` stays on the unbound context: why its attach failed.
        """
        params = {'server_id': server_id}
        if host is not None:
            params['host'] = host
        if fault is not None:
            params['fault'] = fault
        self._call('DELETE', _url(context_id, '/binding'),
                   params=params)

    def record_devices(self, context_id: str, server_id: str, host: str,
                       devices: ty.List[dict[str, str]]) -> Context:
        """Record the devices the compute picked for the bound server."""
        return self._context(
            'PUT', _url(context_id, '/devices'),
            json={'devices': devices, 'server_id': server_id,
                  'host': host})

    def set_fault(self, context_id: str, server_id: str,
                  fault: str) -> Context:
        """Put the context in the error state with ``fault``."""
        return self._context(
            'PUT', _url(context_id, '/fault'),
            json={'fault': fault, 'server_id': server_id})
