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
"""URL -> handler, and the version document.

Routes maps a path to a table of handlers by HTTP method (as placement's
handler.py does): an unknown path is a 404, a known path with another
method a 405 listing the allowed ones.
"""

from __future__ import annotations

import typing as ty

import routes
import webob
import webob.dec

from nova_acc.api import exception
from nova_acc.api import handlers

VERSION = 'v1.0'
#: path -> {method: handler}
ROUTES: dict[str, dict[str, handlers.Handler]] = {
    '/v1/device-contexts': {
        'GET': handlers.index,
        'POST': handlers.create,
    },
    '/v1/device-contexts/{context_id}': {
        'GET': handlers.show,
        'PATCH': handlers.update,
        'DELETE': handlers.delete,
    },
    '/v1/device-contexts/{context_id}/binding': {
        'PUT': handlers.bind,
        'DELETE': handlers.unbind,
    },
    '/v1/device-contexts/{context_id}/attachment': {
        'PUT': handlers.attach,
        'DELETE': handlers.detach,
    },
    '/v1/device-contexts/{context_id}/devices': {
        'PUT': handlers.record_devices,
    },
    '/v1/device-contexts/{context_id}/fault': {
        'PUT': handlers.set_fault,
    },
    '/v1/servers/{server_id}/boot-contexts': {
        'GET': handlers.list_boot_contexts,
    },
    '/v1/servers/{server_id}/boot-contexts/{index}': {
        'DELETE': handlers.detach_boot_context,
    },
}


def _version(req: webob.Request) -> dict[str, ty.Any]:
    return {'id': VERSION, 'status': 'CURRENT', 'min_version': '',
            'version': '',
            'links': [{'rel': 'self',
                       'href': req.application_url + '/v1/'}]}


def versions(service: handlers.Service,
             req: webob.Request) -> webob.Response:
    """``GET /``: the versions this service has (one, no microversions)."""
    return webob.Response(json_body={'versions': [_version(req)]},
                          content_type='application/json', charset='utf-8')


def version(service: handlers.Service,
            req: webob.Request) -> webob.Response:
    """``GET /v1``: the one version."""
    return webob.Response(json_body={'version': _version(req)},
                          content_type='application/json', charset='utf-8')


class Router:
    """The innermost WSGI app: dispatch to a handler."""

    def __init__(self, service: handlers.Service) -> None:
        self.service = service
        self.mapper = routes.Mapper()
        self.table = dict(ROUTES)
        self.table['/'] = {'GET': versions}
        self.table['/v1'] = {'GET': version}
        # Routes keeps defaults as strings: the route's path names its
        # handlers in self.table.
        for path in self.table:
            self.mapper.connect(path, route=path)
            if path != '/':
                # The same resource with a trailing slash.
                self.mapper.connect(path + '/', route=path)

    @webob.dec.wsgify
    def __call__(self, req: webob.Request) -> webob.Response:
        match = self.mapper.match(req.path_info or '/')
        if match is None:
            raise exception.NotFound('No resource at %s' % req.path_info)
        methods = self.table[match.pop('route')]
        handler = methods.get(req.method)
        if handler is None:
            allowed = sorted(methods)
            raise exception.MethodNotAllowed(
                'Method %s is not allowed on %s; allowed: %s'
                % (req.method, req.path_info, ', '.join(allowed)), allowed)
        return handler(self.service, req, **match)
