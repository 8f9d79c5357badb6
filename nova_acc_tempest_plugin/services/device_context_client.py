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
"""Tempest service client of nova-acc-api (Keystone type device-context).

Registered by the plugin (``get_service_clients``) as ``device_context``:
a test reaches it as ``self.os_primary.device_context.
DeviceContextClient()``. The endpoint comes from the Keystone catalog
(``[device_context] catalog_type``); the paths are the API's ``/v1``.
Errors are tempest's exceptions (``BadRequest``, ``NotFound``,
``Conflict`` ...), whose ``resp_body`` is the API's ``error`` object.
"""

from urllib import parse

from oslo_serialization import jsonutils as json
from tempest.lib.common import rest_client
from tempest.lib import exceptions as lib_exc

PATH = 'v1/device-contexts'


def _path(context_id, suffix=''):
    # A context ID from a test is quoted: it cannot change the path.
    return '%s/%s%s' % (PATH, parse.quote(context_id, safe=''), suffix)


class DeviceContextClient(rest_client.RestClient):
    """Calls of ``/v1/device-contexts`` and their expected status codes."""

    def _response(self, resp, body, status):
        self.expected_success(status, resp.status)
        return rest_client.ResponseBody(
            resp, json.loads(body) if body else {})

    def create_device_context(self, **fields):
        """POST: fields of ``device_context`` (spec, name, config ...)."""
        body = json.dumps({'device_context': fields})
        resp, body = self.post(PATH, body)
        return self._response(resp, body, 201)

    def list_device_contexts(self, **filters):
        """GET with filters (server_id, state, all_projects)."""
        url = PATH
        if filters:
            url += '?' + parse.urlencode(filters)
        resp, body = self.get(url)
        return self._response(resp, body, 200)

    def show_device_context(self, context_id):
        resp, body = self.get(_path(context_id))
        return self._response(resp, body, 200)

    def update_device_context(self, context_id, **fields):
        """PATCH: name, description, config."""
        body = json.dumps({'device_context': fields})
        resp, body = self.patch(_path(context_id), body)
        return self._response(resp, body, 200)

    def delete_device_context(self, context_id):
        resp, body = self.delete(_path(context_id))
        return self._response(resp, body, 204)

    def attach_device_context(self, context_id, server_id):
        """PUT .../attachment: attach to a running or stopped server.

        202 with the context in ``attaching``; its compute ends it
        ``bound`` or ``unbound`` with a fault.
        """
        body = json.dumps({'attachment': {'server_id': server_id}})
        resp, body = self.put(_path(context_id, '/attachment'), body)
        return self._response(resp, body, 202)

    def detach_device_context(self, context_id):
        """DELETE .../attachment: 202 with the context in ``detaching``."""
        resp, body = self.delete(_path(context_id, '/attachment'))
        return self._response(resp, body, 202)

    def bind_device_context(self, context_id, server_id, host, project_id):
        """PUT .../binding: Nova's side (the service or admin role)."""
        body = json.dumps({'binding': {'server_id': server_id, 'host': host,
                                       'project_id': project_id}})
        resp, body = self.put(_path(context_id, '/binding'), body)
        return self._response(resp, body, 200)

    def unbind_device_context(self, context_id, server_id, host=None):
        """DELETE .../binding: only unbinds a binding to server_id."""
        query = {'server_id': server_id}
        if host:
            query['host'] = host
        resp, body = self.delete(
            _path(context_id, '/binding?' + parse.urlencode(query)))
        return self._response(resp, body, 204)

    def is_resource_deleted(self, id):
        try:
            self.show_device_context(id)
        except lib_exc.NotFound:
            return True
        return False

    @property
    def resource_type(self):
        return 'device_context'


def error_message(error):
    """The ``message`` of an API error raised by this client.

    tempest strips the one top-level key of a JSON body: ``resp_body`` is
    the ``error`` object itself.
    """
    body = error.resp_body
    if isinstance(body, dict):
        body = body.get('error', body)
        if isinstance(body, dict):
            return body.get('message', '')
    return str(body)
