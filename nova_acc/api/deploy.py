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
"""The middleware pipeline around the router, as placement's deploy.py.

From the outside in: the request ID, JSON errors (:class:`FaultWrapper`),
the proxy headers, ``/healthcheck``, the request body size limit, the
authentication (keystonemiddleware or noauth2) and the request context.
"""

from __future__ import annotations

import typing as ty

from oslo_config import cfg
from oslo_db import exception as db_exception
from oslo_log import log as logging
from oslo_middleware import healthcheck
from oslo_middleware import http_proxy_to_wsgi
from oslo_middleware import request_id
from oslo_middleware import sizelimit
import webob
import webob.dec
import webob.exc

from nova_acc.api import attachment
from nova_acc.api import auth
from nova_acc.api.db import api as db_api
from nova_acc.api import exception
from nova_acc.api import handlers
from nova_acc.api import policy
from nova_acc.api import router

LOG = logging.getLogger(__name__)
HEALTHCHECK_PATH = '/healthcheck'

WSGIApp = ty.Callable[..., ty.Any]


def error_response(code: int, title: str, message: str,
                   request_id_: str | None) -> webob.Response:
    """The one error shape: ``{"error": {code, title, message}}``."""
    body = {'error': {'code': code, 'title': title, 'message': message}}
    if request_id_:
        body['error']['request_id'] = request_id_
    return webob.Response(json_body=body, status=code,
                          content_type='application/json', charset='utf-8')


class FaultWrapper:
    """Every error becomes a JSON error; a bug is logged, not shown."""

    def __init__(self, application: WSGIApp) -> None:
        self.application = application

    @webob.dec.wsgify
    def __call__(self, req: webob.Request) -> ty.Any:
        req_id = req.environ.get(request_id.ENV_REQUEST_ID)
        try:
            response = req.get_response(self.application)
        except exception.APIError as error:
            response = error_response(error.code, error.title,
                                      error.message, req_id)
            if isinstance(error, exception.MethodNotAllowed):
                response.allow = error.allowed
            return response
        except UnicodeDecodeError:
            # webob decodes the path and the query string as UTF-8 when
            # they are read.
            return error_response(400, 'Bad Request',
                                  'The path or query string is not valid '
                                  'UTF-8', req_id)
        except webob.exc.HTTPException as error:
            # oslo.middleware's size limit raises these from body reads.
            return error_response(error.code, error.title,
                                  error.explanation, req_id)
        except db_exception.DBConnectionError:
            LOG.exception('The database is unreachable')
            return error_response(503, 'Service Unavailable',
                                  'The database is unreachable', req_id)
        except Exception:
            LOG.exception('Unexpected error in %s %s', req.method,
                          req.path_info)
            return error_response(500, 'Internal Server Error',
                                  'Unexpected error; see the service log '
                                  'for request %s' % req_id, req_id)
        if response.status_int >= 400 and (
                response.content_type != 'application/json'):
            # An error a middleware answered itself (oslo.middleware's
            # size limit) gets the one error shape too.
            return error_response(response.status_int,
                                  response.status.split(' ', 1)[-1],
                                  _plain_text(response), req_id)
        return response


def _plain_text(response: webob.Response) -> str:
    """The first line of a middleware's error page, without markup."""
    text = response.text if response.charset else ''
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and '<' not in line and
             line.strip() != response.status]
    return lines[0][:255] if lines else response.status


class HealthcheckDispatch:
    """``/healthcheck`` to oslo.middleware's app, without authentication."""

    def __init__(self, application: WSGIApp, conf: cfg.ConfigOpts) -> None:
        self.application = application
        self.healthcheck = healthcheck.Healthcheck(None, conf)

    def __call__(self, environ: dict[str, ty.Any],
                 start_response: ty.Callable[..., ty.Any]) -> ty.Any:
        if environ.get('PATH_INFO', '').rstrip('/') == HEALTHCHECK_PATH:
            return self.healthcheck(environ, start_response)
        return self.application(environ, start_response)


def deploy(conf: cfg.ConfigOpts, database: db_api.Database,
           attachments: attachment.Attachments | None = None) -> WSGIApp:
    """The WSGI application of nova-acc-api on ``database``.

    :param attachments: Nova's API and the computes' RPC for attach and
        detach; by default from ``[nova]`` and ``transport_url``.
    """
    if attachments is None:
        attachments = attachment.from_conf(conf)
    service = handlers.Service(conf=conf, db=database,
                               rules=policy.enforcer(conf),
                               attachments=attachments)
    app: WSGIApp = router.Router(service)
    app = auth.ContextMiddleware(app)
    if conf.api.auth_strategy == 'noauth2':
        app = auth.NoAuthMiddleware(app)
    else:
        app = auth.KeystoneAuth(app, conf)
    app = sizelimit.RequestBodySizeLimiter(app, conf)
    app = HealthcheckDispatch(app, conf)
    app = http_proxy_to_wsgi.HTTPProxyToWSGI(app, conf)
    app = FaultWrapper(app)
    return request_id.RequestId(app, conf)
