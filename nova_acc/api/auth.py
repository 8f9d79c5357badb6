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
"""Who is calling: keystonemiddleware, or noauth2 for tests and the demo.

Either way the result is the Keystone headers (``X-User-Id``,
``X-Project-Id``, ``X-Roles``) from which :class:`ContextMiddleware`
builds the oslo.context request context the handlers and the policy
read. The version documents and ``/healthcheck`` need no token.
"""

from __future__ import annotations

import typing as ty

from keystonemiddleware import auth_token
from oslo_config import cfg
from oslo_context import context as oslo_context
from oslo_middleware import request_id
import webob
import webob.dec

from nova_acc.api import exception

#: Where the request context is kept in the WSGI environ.
CONTEXT_KEY = 'nova_acc_api.context'
#: Paths answered without a token: the version documents.
PUBLIC_PATHS = frozenset({'', '/', '/v1', '/v1/'})

WSGIApp = ty.Callable[..., ty.Any]


def _is_public(environ: dict[str, ty.Any]) -> bool:
    return environ.get('PATH_INFO', '') in PUBLIC_PATHS


class NoAuthMiddleware:
    """noauth2: ``X-Auth-Token: user[:project]`` and ``X-Roles: a,b``.

    A token of ``admin`` without X-Roles gets the admin role, as
    placement's noauth2 does. Never for a deployment: anyone is anyone.
    """

    def __init__(self, application: WSGIApp) -> None:
        self.application = application

    @webob.dec.wsgify
    def __call__(self, req: webob.Request) -> ty.Any:
        if _is_public(req.environ):
            return self.application
        token = req.headers.get('X-Auth-Token')
        if not token:
            raise exception.Unauthorized('Authentication required')
        user_id, _sep, project_id = token.partition(':')
        roles = req.headers.get('X-Roles')
        if roles is None:
            roles = 'admin' if user_id == 'admin' else ''
        req.headers['X-User-Id'] = user_id
        req.headers['X-Project-Id'] = project_id or user_id
        req.headers['X-Roles'] = roles
        return self.application


class KeystoneAuth(auth_token.AuthProtocol):
    """keystonemiddleware's auth_token, except on the version document."""

    def __init__(self, application: WSGIApp, conf: cfg.ConfigOpts) -> None:
        self._unauthenticated_app = application
        super().__init__(application, {'oslo_config_config': conf})

    def __call__(self, environ: dict[str, ty.Any],
                 start_response: ty.Callable[..., ty.Any]) -> ty.Any:
        if _is_public(environ):
            return self._unauthenticated_app(environ, start_response)
        return super().__call__(environ, start_response)


class ContextMiddleware:
    """Build the request context; refuse a caller without a user."""

    def __init__(self, application: WSGIApp) -> None:
        self.application = application

    @webob.dec.wsgify
    def __call__(self, req: webob.Request) -> ty.Any:
        if _is_public(req.environ):
            return self.application
        context = oslo_context.RequestContext.from_environ(
            req.environ,
            request_id=req.environ.get(request_id.ENV_REQUEST_ID))
        if not context.user_id:
            raise exception.Unauthorized('Authentication required')
        req.environ[CONTEXT_KEY] = context
        return self.application


def context_of(req: webob.Request) -> oslo_context.RequestContext:
    context: oslo_context.RequestContext = req.environ[CONTEXT_KEY]
    return context
