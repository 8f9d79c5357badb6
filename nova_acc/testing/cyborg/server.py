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

"""Child-process entry point running the real Cyborg API and conductor.

Run it as a *script*, not with ``-m``::

    python nova_acc/testing/cyborg/server.py --port 0 --state-dir DIR \\
        --nova-url http://127.0.0.1:N/v2.1 --placement-url http://127.0.0.1:M

or ``python .../server.py --config DIR/server.json`` (the fixture does this).
Cyborg cannot live in a process that has imported Nova (clashing
oslo.config options: ``[DEFAULT] host``, ``[glance] num_retries``), and
``python -m nova_acc.testing.cyborg.server`` would first run the
``nova_acc`` and ``nova_acc.testing`` package ``__init__`` modules, which
must then stay free of Nova imports; running the file as a script avoids
that coupling. :func:`main` refuses to start if ``nova`` is imported.

This module imports nothing but the standard library at module level, so the
test process may import it for the constants and the token scheme below.
Everything Cyborg-related is imported inside :meth:`_Child.start` and the
functions it calls.

What the child does:

* writes ``DIR/cyborg.conf`` (and ``DIR/policy.yaml`` if policy overrides are
  given) and loads it into ``oslo_config.cfg.CONF``;
* creates the schema in the sqlite file ``DIR/cyborg.sqlite`` with
  ``cyborg.db.sqlalchemy.models.Base.metadata.create_all`` (Cyborg's alembic
  migrations do not run on sqlite);
* ``transport_url = fake:/``: serves ``cyborg.conductor.manager.
  ConductorManager`` as an oslo.messaging RPC server on the
  ``cyborg-conductor`` topic in this same process (what ``cyborg-conductor``
  does, minus oslo.service);
* serves ``cyborg.api.app.setup_app()`` (the pecan app, without the paste
  pipeline) on 127.0.0.1 with a threaded wsgiref server, wrapped in
  :class:`FakeKeystoneMiddleware` (below);
* ``[nova]`` and ``[placement]`` use ``auth_type = none`` and
  ``endpoint_override`` = the given URLs. ``--nova-url`` is the *compute
  endpoint* (``http://host:port/v2.1``): Cyborg does keystoneauth version
  discovery (``GET <nova-url>``) then POSTs
  ``<nova-url>/os-server-external-events`` (with ``X-Auth-Token: notused``).
  Cyborg's PlacementClient does version discovery on the placement URL when
  the conductor starts; nothing else in the ARQ flows touches placement.
  Either URL may be omitted: the child then serves a stub itself, on the
  same port, at :data:`STUB_NOVA_PATH` (records events, see
  ``/_test/nova_events``) / :data:`STUB_PLACEMENT_PATH` (discovery only);
* writes ``DIR/ready.json`` (``{"port": ..., "pid": ...}``) and prints a
  line starting with :data:`READY_BANNER` once everything is up;
* exits when its parent process goes away (no orphans even if the test
  runner is SIGKILLed).

Token scheme (``X-Auth-Token``; the middleware plays keystonemiddleware)
--------------------------------------------------------------------------

==================  ===================================  ====================
token               project (``X-Project-Id``)           ``X-Roles``
==================  ===================================  ====================
``admin``           :data:`ADMIN_PROJECT_ID`             admin,member,reader
``service``         :data:`SERVICE_PROJECT_ID`           admin,member,reader,
                                                         service
``member:<pid>``    ``<pid>``                            member,reader
``reader:<pid>``    ``<pid>``                            reader
==================  ===================================  ====================

(Role lists include the roles Keystone's default implied-role rules add.)
The user id is derived from the token (``md5(token)`` hex), so two tokens
for the same project are two different users. ``<pid>`` must look like a
Keystone project id (32 hex digits, or any UUID), otherwise the token is
rejected (401): Cyborg's API types the ARQ's ``project_id`` as a UUID, and
an ARQ created in a project whose id is not UUID-like is stored but cannot be
rendered - the create answers 400 "Expected a uuid" and from then on every
admin ``GET /v2/accelerator_requests`` answers 400 too.

``X-Service-Token`` takes the same tokens; like keystonemiddleware with
``service_token_roles_required = True`` (Cyborg's default) it is accepted
only if it carries the ``service`` role, i.e. only ``service``. A valid one
sets ``X-Service-Roles``/``X-Service-User-Id``/``X-Service-Project-Id``.
Cyborg 17 requires a service token for ARQ bind/unbind (PATCH), for
``DELETE ?instance=`` and for any change to a bound ARQ: that is what Nova
sends (user token + its own service token, ``[service_user]
send_service_user_token = True``). The ``service`` token as X-Auth-Token
alone does *not* set ``X-Service-Roles`` (keystonemiddleware would not
either). Beware: a bind sets the ARQ's ``project_id`` from the request's
(user) token, so binding with ``X-Auth-Token: service`` re-owns the ARQ to
:data:`SERVICE_PROJECT_ID`; bind as Nova does, with the user's token plus
``X-Service-Token: service``.

Missing/unknown ``X-Auth-Token`` (or an invalid service token) -> 401,
except on Cyborg's public routes ``/`` and ``/v2``. Incoming identity
headers (``X-Roles``, ``X-Project-Id``, ``X-Service-Roles``...) are always
stripped first.

Test-only admin API (handled by the middleware, never reaches Cyborg; needs
``X-Auth-Token: admin``):

* ``POST /_test/seed`` ``{"host": H, "devices": [DEVICE, ...]}`` - create
  Device, ControlpathID, Deployable (+ attributes) and AttachHandle rows as
  cyborg-agent would report them. See :func:`_seed_device` for DEVICE.
* ``GET /_test/attach_handles`` - all attach handles with ``in_use``.
* ``GET /_test/nova_events`` - events received by the built-in Nova stub.
* ``GET /_test/agent_calls`` - calls received by the stub cyborg-agent RPC
  endpoints (``create_vgpu_mdev``/``remove_vgpu_mdev``/``fpga_program``),
  which the child serves for every seeded host.
"""

import argparse
import copy
import hashlib
import json
import logging
import os
import socketserver
import sys
import threading
import time
import traceback
import uuid
from wsgiref import simple_server


READY_BANNER = 'NOVA-ACC-CYBORG-TEST-SERVER READY'
READY_FILE = 'ready.json'
LOG_FILE = 'cyborg.log'
CONFIG_FILE = 'server.json'

ADMIN_PROJECT_ID = '000000000000000000000000000ad111'
SERVICE_PROJECT_ID = '000000000000000000000000005e7e1c'

# Roles as Keystone puts them in a token (admin implies member implies
# reader).
_ROLE_SETS = {
    'admin': ['admin', 'member', 'reader'],
    'service': ['admin', 'member', 'reader', 'service'],
    'member': ['member', 'reader'],
    'reader': ['reader'],
}

PUBLIC_ROUTES = ('/', '/v2')

# Built-in stubs used when no --nova-url / --placement-url is given.
STUB_NOVA_PATH = '/_stub_nova/v2.1'
STUB_PLACEMENT_PATH = '/_stub_placement'


def nova_version_document(self_url):
    """What Nova answers on GET /v2.1 (keystoneauth version discovery)."""
    return {'version': {
        'id': 'v2.1', 'status': 'CURRENT', 'version': '2.100',
        'min_version': '2.1', 'updated': '2013-07-23T11:33:21Z',
        'links': [{'rel': 'self', 'href': self_url}],
        'media-types': [{'base': 'application/json',
                         'type': 'application/vnd.openstack.compute+json;'
                                 'version=2.1'}]}}


def nova_events_response(events, code=200):
    """Nova's os-server-external-events answer for accepted events.

    Nova echoes each event, setting ``status`` ("completed" when accepted)
    and ``code`` (200 accepted, 404 unknown instance, 422 no host yet, 400
    missing tag) and answers 200 if all were accepted, else 207.
    """
    out = []
    for ev in events:
        ev = dict(ev)
        ev['code'] = code
        ev['status'] = 'completed' if code == 200 else 'failed'
        out.append(ev)
    return {'events': out}


LOG = logging.getLogger('nova_acc.testing.cyborg.server')


def _is_uuid_like(value):
    """oslo_utils.uuidutils.is_uuid_like, which Cyborg's API applies."""
    try:
        return (str(uuid.UUID(value)).replace('-', '') ==
                value.replace('urn:', '').replace('uuid:', '')
                .strip('{}').replace('-', '').lower())
    except (TypeError, ValueError, AttributeError):
        return False


def identity_for_token(token):
    """Return the Keystone-like identity of a test token, or None.

    :returns: dict with user_id, user_name, project_id, project_name, roles
        (list) and is_admin_project (bool); None for an unknown token.
    """
    if not token:
        return None
    user_id = hashlib.md5(token.encode('utf-8')).hexdigest()
    if token == 'admin':
        return {
            'user_id': user_id, 'user_name': 'admin',
            'project_id': ADMIN_PROJECT_ID, 'project_name': 'admin',
            'roles': list(_ROLE_SETS['admin']), 'is_admin_project': True,
        }
    if token == 'service':
        return {
            'user_id': user_id, 'user_name': 'nova',
            'project_id': SERVICE_PROJECT_ID, 'project_name': 'service',
            'roles': list(_ROLE_SETS['service']), 'is_admin_project': False,
        }
    kind, sep, project_id = token.partition(':')
    if sep and kind in ('member', 'reader') and _is_uuid_like(project_id):
        return {
            'user_id': user_id, 'user_name': token,
            'project_id': project_id, 'project_name': project_id,
            'roles': list(_ROLE_SETS[kind]), 'is_admin_project': False,
        }
    return None


# ---------------------------------------------------------------------------
# WSGI middleware playing keystonemiddleware + the test admin API
# ---------------------------------------------------------------------------

_STRIP_EXACT = {
    'HTTP_X_IDENTITY_STATUS', 'HTTP_X_SERVICE_IDENTITY_STATUS',
    'HTTP_X_ROLES', 'HTTP_X_ROLE', 'HTTP_X_SERVICE_ROLES',
    'HTTP_X_USER', 'HTTP_X_TENANT', 'HTTP_X_IS_ADMIN_PROJECT',
    'HTTP_X_SERVICE_CATALOG', 'HTTP_X_SYSTEM_SCOPE',
}
_STRIP_PREFIXES = (
    'HTTP_X_USER_', 'HTTP_X_PROJECT_', 'HTTP_X_TENANT_', 'HTTP_X_DOMAIN_',
    'HTTP_X_SERVICE_USER_', 'HTTP_X_SERVICE_PROJECT_',
    'HTTP_X_SERVICE_DOMAIN_',
)


def _json_response(start_response, status, body, headers=()):
    data = json.dumps(body).encode('utf-8')
    start_response(status, [('Content-Type', 'application/json'),
                            ('Content-Length', str(len(data)))]
                   + list(headers))
    return [data]


def _unauthorized(start_response, message):
    body = {'error': {'code': 401, 'title': 'Unauthorized',
                      'message': message}}
    return _json_response(
        start_response, '401 Unauthorized', body,
        [('WWW-Authenticate', "Keystone uri='http://127.0.0.1/identity'")])


class FakeKeystoneMiddleware:
    """Map test tokens to the identity headers keystonemiddleware sets."""

    def __init__(self, app, test_api):
        self.app = app
        self.test_api = test_api

    @staticmethod
    def _is_public(path):
        path = path.rstrip('/') or '/'
        if path.endswith('.json'):
            path = path[:-len('.json')] or '/'
        return path in PUBLIC_ROUTES

    def __call__(self, environ, start_response):
        for key in list(environ):
            if key in _STRIP_EXACT or key.startswith(_STRIP_PREFIXES):
                del environ[key]
        path = environ.get('PATH_INFO', '') or '/'

        if path.startswith('/_test/'):
            ident = identity_for_token(environ.get('HTTP_X_AUTH_TOKEN'))
            if not ident or 'admin' not in ident['roles']:
                return _unauthorized(start_response,
                                     'The test API needs the admin token.')
            return self.test_api(environ, start_response)

        if self._is_public(path):
            # Like cyborg.api.middleware.auth_token: no auth at all.
            environ['is_public_api'] = True
            return self.app(environ, start_response)
        environ['is_public_api'] = False

        token = environ.get('HTTP_X_AUTH_TOKEN')
        ident = identity_for_token(token)
        if ident is None:
            msg = 'The request you have made requires authentication.'
            if token and token.partition(':')[0] in ('member', 'reader'):
                msg = ('Unknown test token %r: the project id must be '
                       'UUID-like (32 hex digits).' % token)
            return _unauthorized(start_response, msg)
        environ.update({
            'HTTP_X_IDENTITY_STATUS': 'Confirmed',
            'HTTP_X_USER_ID': ident['user_id'],
            'HTTP_X_USER_NAME': ident['user_name'],
            'HTTP_X_USER_DOMAIN_ID': 'default',
            'HTTP_X_USER_DOMAIN_NAME': 'Default',
            'HTTP_X_PROJECT_ID': ident['project_id'],
            'HTTP_X_PROJECT_NAME': ident['project_name'],
            'HTTP_X_PROJECT_DOMAIN_ID': 'default',
            'HTTP_X_PROJECT_DOMAIN_NAME': 'Default',
            'HTTP_X_ROLES': ','.join(ident['roles']),
            'HTTP_X_IS_ADMIN_PROJECT': str(ident['is_admin_project']),
        })

        service_token = environ.get('HTTP_X_SERVICE_TOKEN')
        if service_token:
            sident = identity_for_token(service_token)
            if sident is None or 'service' not in sident['roles']:
                return _unauthorized(start_response,
                                     'Invalid service token.')
            environ.update({
                'HTTP_X_SERVICE_IDENTITY_STATUS': 'Confirmed',
                'HTTP_X_SERVICE_ROLES': ','.join(sident['roles']),
                'HTTP_X_SERVICE_USER_ID': sident['user_id'],
                'HTTP_X_SERVICE_USER_NAME': sident['user_name'],
                'HTTP_X_SERVICE_USER_DOMAIN_ID': 'default',
                'HTTP_X_SERVICE_USER_DOMAIN_NAME': 'Default',
                'HTTP_X_SERVICE_PROJECT_ID': sident['project_id'],
                'HTTP_X_SERVICE_PROJECT_NAME': sident['project_name'],
                'HTTP_X_SERVICE_PROJECT_DOMAIN_ID': 'default',
                'HTTP_X_SERVICE_PROJECT_DOMAIN_NAME': 'Default',
            })
        return self.app(environ, start_response)


# ---------------------------------------------------------------------------
# Threaded WSGI server
# ---------------------------------------------------------------------------

class _ThreadingWSGIServer(socketserver.ThreadingMixIn,
                           simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _RequestHandler(simple_server.WSGIRequestHandler):
    def address_string(self):
        return self.client_address[0]

    def log_message(self, format, *args):
        LOG.info('%s - %s', self.address_string(), format % args)


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

def _ini_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return ','.join(str(v) for v in value)
    return str(value)


def _write_conf(config):
    state_dir = config['state_dir']
    groups = {
        'DEFAULT': {
            'host': config.get('conductor_host', 'cyborg-test-conductor'),
            'transport_url': 'fake:/',
            'debug': config.get('debug', True),
            'use_stderr': True,
            'bind_timeout': 60,
            # oslo.messaging call timeout: the API waits this long for the
            # conductor (and the conductor for the stub agent).
            'rpc_response_timeout': config.get('rpc_response_timeout', 30),
        },
        'database': {
            'connection': 'sqlite:///' + os.path.join(state_dir,
                                                      'cyborg.sqlite'),
        },
        'api': {'host_ip': '127.0.0.1', 'port': 0},
        'nova': {
            'auth_type': 'none',
            'endpoint_override': config['nova_url'],
            'timeout': 10,
        },
        'placement': {
            'auth_type': 'none',
            'endpoint_override': config['placement_url'],
            'timeout': 10,
        },
        'oslo_concurrency': {'lock_path': os.path.join(state_dir, 'locks')},
    }
    if config.get('policy'):
        policy_file = os.path.join(state_dir, 'policy.yaml')
        with open(policy_file, 'w') as f:
            # JSON is YAML.
            json.dump(config['policy'], f, indent=1)
        groups.setdefault('oslo_policy', {})['policy_file'] = policy_file
    for group, opts in (config.get('conf') or {}).items():
        groups.setdefault(group, {}).update(opts)

    path = os.path.join(state_dir, 'cyborg.conf')
    with open(path, 'w') as f:
        for group, opts in groups.items():
            f.write('[%s]\n' % group)
            for key, value in opts.items():
                if value is None:
                    continue
                f.write('%s = %s\n' % (key, _ini_value(value)))
            f.write('\n')
    return path


# ---------------------------------------------------------------------------
# The child proper
# ---------------------------------------------------------------------------

class _Child:
    def __init__(self, config):
        self.config = config
        self.agent_calls = []
        self.nova_events = []
        self.app = None
        self.agent_servers = {}
        self._agent_lock = threading.Lock()

    # -- startup ----------------------------------------------------------

    def start(self):
        from oslo_config import cfg
        from oslo_log import log as oslo_log

        # Bind the socket first: the built-in Nova/Placement stubs live on
        # it and their URLs go into cyborg.conf.
        self.httpd = simple_server.make_server(
            '127.0.0.1', int(self.config.get('port') or 0), self._dispatch,
            server_class=_ThreadingWSGIServer,
            handler_class=_RequestHandler)
        self.port = self.httpd.server_address[1]
        base = 'http://127.0.0.1:%d' % self.port
        if not self.config.get('nova_url'):
            self.config['nova_url'] = base + STUB_NOVA_PATH
        if not self.config.get('placement_url'):
            self.config['placement_url'] = base + STUB_PLACEMENT_PATH
        conf_file = _write_conf(self.config)

        # What every cyborg-* command does first: oslo.service threading
        # backend (no eventlet) and the cyborg i18n domain.
        import cyborg.cmd  # noqa: F401
        import cyborg.conf  # noqa: F401  registers Cyborg's options
        # Registers [keystone_authtoken] (service_token_roles...).
        from keystonemiddleware import auth_token  # noqa: F401
        from cyborg.common import rpc
        from cyborg import objects

        CONF = cfg.CONF
        oslo_log.register_options(CONF)
        rpc.set_defaults(control_exchange='cyborg')
        CONF.set_default('service_token_roles_required', True,
                         group='keystone_authtoken')
        CONF([], project='cyborg', default_config_files=[conf_file])
        oslo_log.setup(CONF, 'cyborg')
        objects.register_all()
        rpc.init(CONF)
        self.CONF = CONF

        self._create_schema()
        # Cyborg's PlacementClient does version discovery on construction
        # (ConductorManager.__init__): the placement stub must answer now.
        threading.Thread(target=self.httpd.serve_forever,
                         name='cyborg-api', daemon=True).start()
        self._start_conductor()
        self._start_api()

    def _dispatch(self, environ, start_response):
        path = environ.get('PATH_INFO', '') or '/'
        if path.startswith(STUB_PLACEMENT_PATH):
            return self._stub_placement(environ, start_response)
        if path.startswith(STUB_NOVA_PATH):
            return self._stub_nova(environ, start_response)
        if self.app is None:
            return _json_response(start_response, '503 Service Unavailable',
                                  {'error': 'Cyborg API not started yet'})
        return self.app(environ, start_response)

    def _stub_placement(self, environ, start_response):
        path = environ['PATH_INFO'][len(STUB_PLACEMENT_PATH):] or '/'
        if environ['REQUEST_METHOD'] == 'GET' and path in ('/', ''):
            return _json_response(start_response, '200 OK', {'versions': [{
                'id': 'v1.0', 'min_version': '1.0', 'max_version': '1.39',
                'status': 'CURRENT',
                'links': [{'rel': 'self', 'href': ''}]}]})
        LOG.warning('Placement stub: unsupported %s %s',
                    environ['REQUEST_METHOD'], path)
        return _json_response(start_response, '501 Not Implemented',
                              {'error': 'placement stub: %s not supported'
                               % path})

    def _stub_nova(self, environ, start_response):
        path = environ['PATH_INFO'][len(STUB_NOVA_PATH):].rstrip('/')
        method = environ['REQUEST_METHOD']
        if method == 'GET' and path == '':
            return _json_response(start_response, '200 OK',
                                  nova_version_document(
                                      'http://127.0.0.1:%d%s/' % (
                                          self.port, STUB_NOVA_PATH)))
        if method == 'POST' and path == '/os-server-external-events':
            length = int(environ.get('CONTENT_LENGTH') or 0)
            body = json.loads(environ['wsgi.input'].read(length) or b'{}')
            events = body.get('events', [])
            self.nova_events.extend(copy.deepcopy(events))
            return _json_response(start_response, '200 OK',
                                  nova_events_response(events))
        return _json_response(start_response, '404 Not Found',
                              {'error': 'nova stub: no %s %s'
                               % (method, path)})

    def _create_schema(self):
        import sqlalchemy
        from cyborg.db.sqlalchemy import models

        engine = sqlalchemy.create_engine(self.CONF.database.connection)
        models.Base.metadata.create_all(engine)
        engine.dispose()

    def _start_conductor(self):
        import oslo_messaging as messaging
        from cyborg.common import constants
        from cyborg.common import rpc
        from cyborg.conductor import manager
        from cyborg.objects import base as objects_base

        host = self.CONF.host
        self.conductor = manager.ConductorManager(constants.CONDUCTOR_TOPIC,
                                                  host)
        target = messaging.Target(topic=constants.CONDUCTOR_TOPIC,
                                  server=host)
        self.conductor_server = rpc.get_server(
            target, [self.conductor],
            objects_base.CyborgObjectSerializer())
        self.conductor_server.start()
        # NOTE: ConductorManager.init_host() is not called: it only runs
        # online data migrations (heal ARQ project_ids by asking Nova,
        # backfill device_state), which have nothing to do on a fresh DB and
        # would make Nova's endpoint a start-up dependency.
        LOG.info('Conductor RPC server started on topic %s server %s',
                 constants.CONDUCTOR_TOPIC, host)

    def _start_api(self):
        from cyborg.api import app as cyborg_app
        from oslo_middleware import request_id

        pecan_app = cyborg_app.setup_app()
        app = FakeKeystoneMiddleware(pecan_app, self._test_api)
        self.app = request_id.RequestId(app)

    # -- stub cyborg-agent ------------------------------------------------

    def _ensure_agent(self, host):
        import oslo_messaging as messaging
        from cyborg.common import constants
        from cyborg.common import rpc
        from cyborg.objects import base as objects_base

        with self._agent_lock:
            if host in self.agent_servers:
                return
            endpoint = _FakeAgentEndpoint(host, self.agent_calls)
            target = messaging.Target(topic=constants.AGENT_TOPIC,
                                      server=host)
            server = rpc.get_server(target, [endpoint],
                                    objects_base.CyborgObjectSerializer())
            server.start()
            self.agent_servers[host] = server

    # -- test admin API ---------------------------------------------------

    def _test_api(self, environ, start_response):
        method = environ['REQUEST_METHOD']
        path = environ.get('PATH_INFO', '').rstrip('/')
        try:
            if method == 'POST' and path == '/_test/seed':
                length = int(environ.get('CONTENT_LENGTH') or 0)
                body = json.loads(environ['wsgi.input'].read(length) or b'{}')
                result = self.seed(body)
                return _json_response(start_response, '201 Created', result)
            if method == 'GET' and path == '/_test/attach_handles':
                return _json_response(start_response, '200 OK',
                                      {'attach_handles':
                                       self.list_attach_handles()})
            if method == 'GET' and path == '/_test/nova_events':
                return _json_response(start_response, '200 OK',
                                      {'events': list(self.nova_events)})
            if method == 'GET' and path == '/_test/agent_calls':
                return _json_response(start_response, '200 OK',
                                      {'calls': list(self.agent_calls)})
            return _json_response(start_response, '404 Not Found',
                                  {'error': 'no such test API %s %s'
                                   % (method, path)})
        except (KeyError, ValueError, TypeError) as e:
            LOG.exception('Bad test API request')
            return _json_response(start_response, '400 Bad Request',
                                  {'error': '%s: %s' % (type(e).__name__, e),
                                   'traceback': traceback.format_exc()})
        except Exception as e:
            LOG.exception('Test API request failed')
            return _json_response(start_response,
                                  '500 Internal Server Error',
                                  {'error': '%s: %s' % (type(e).__name__, e),
                                   'traceback': traceback.format_exc()})

    def seed(self, body):
        from cyborg import context as cyborg_context
        from cyborg.db import api as dbapi

        host = body['host']
        devices = body['devices']
        if not isinstance(devices, list):
            raise TypeError('devices must be a list')
        ctx = cyborg_context.get_admin_context()
        db = dbapi.get_instance()
        result = [_seed_device(db, ctx, host, dev) for dev in devices]
        self._ensure_agent(host)
        return {'host': host, 'devices': result}

    def list_attach_handles(self):
        from cyborg import context as cyborg_context
        from cyborg.db import api as dbapi

        ctx = cyborg_context.get_admin_context()
        db = dbapi.get_instance()
        rp_by_dep = {d.id: d.rp_uuid for d in db.deployable_list(ctx)}
        out = []
        for ah in db.attach_handle_list(ctx):
            out.append({
                'uuid': ah.uuid,
                'in_use': bool(ah.in_use),
                'attach_type': ah.attach_type,
                'attach_info': json.loads(ah.attach_info),
                'deployable_id': ah.deployable_id,
                'rp_uuid': rp_by_dep.get(ah.deployable_id),
            })
        return out


class _FakeAgentEndpoint:
    """Stands in for cyborg-agent's RPC endpoint on one host."""

    def __init__(self, host, calls):
        import oslo_messaging as messaging
        self.target = messaging.Target(version='1.0')
        self.host = host
        self.calls = calls

    def _record(self, method, **kwargs):
        kwargs = {k: v for k, v in kwargs.items()}
        self.calls.append({'host': self.host, 'method': method,
                           'args': kwargs})
        LOG.info('Stub agent on %s: %s(%s)', self.host, method, kwargs)

    def create_vgpu_mdev(self, context, pci_addr, asked_type, ah_uuid):
        self._record('create_vgpu_mdev', pci_addr=pci_addr,
                     asked_type=asked_type, ah_uuid=ah_uuid)

    def remove_vgpu_mdev(self, context, pci_addr, asked_type, ah_uuid):
        self._record('remove_vgpu_mdev', pci_addr=pci_addr,
                     asked_type=asked_type, ah_uuid=ah_uuid)

    def fpga_program(self, context, controlpath_id, bitstream_uuid,
                     driver_name):
        self._record('fpga_program', bitstream_uuid=bitstream_uuid,
                     driver_name=driver_name)
        return True


_DEFAULT_DRIVERS = {
    'FPGA': 'intel_fpga_driver',
    'GPU': 'nvidia_gpu_driver',
    'QAT': 'intel_qat_driver',
    'NIC': 'intel_nic_driver',
    'SSD': 'inspur_nvme_ssd_driver',
    'AICHIP': 'huawei_ascend_driver',
    'PCI': 'pci_driver',
}


def _seed_device(db, ctx, host, dev):
    """Create the rows cyborg-agent reports for one device.

    DEVICE keys (``pci_address`` and ``rp_uuid`` are required)::

        pci_address      "0000:81:00.0" (the device's control path; also the
                         attach handle for PCI unless attach_handles given)
        rp_uuid          placement resource provider UUID of the deployable
        type             Device.type, default "FPGA" (FPGA, GPU, QAT, NIC,
                         SSD, AICHIP, MDEV, PCI, NVME)
        vendor, model    default "1172" / "test-model"
        resource_class   stored as the deployable attribute "rc" (what real
                         drivers do), default = type
        traits           list, stored as attributes "trait0".. (optional)
        attach_type      "PCI" (default), "MDEV" or "TEST_PCI"
        physical_network added to PCI attach_info (Nova reads it for
                         port-based ARQs) (optional)
        attach_handles   list of PCI addresses (e.g. VFs) to use as attach
                         handles instead of pci_address (optional)
        asked_type       MDEV only: the mdev type, e.g. "nvidia-223"
        num_mdevs        MDEV only: number of attach handles, default 1
        driver_name, deployable_name, std_board_info, vendor_board_info
                         optional

    Returns the created uuids and attach handles.
    """
    pci = dev['pci_address']
    rp_uuid = dev['rp_uuid']
    dev_type = dev.get('type', 'FPGA')
    attach_type = dev.get('attach_type', 'PCI')
    physnet = dev.get('physical_network')

    def pci_json(addr, extra=None):
        dbs, func = addr.split('.')
        domain, bus, slot = dbs.split(':')
        d = {'domain': domain, 'bus': bus, 'device': slot,
             'function': func}
        d.update(extra or {})
        # Cyborg's drivers dump these sorted (pci_str_to_json).
        return json.dumps(dict(sorted(d.items())))

    if attach_type == 'MDEV':
        asked_type = dev['asked_type']
        handles = [pci_json(pci, {'asked_type': asked_type,
                                  'vgpu_mark': '%s_%d' % (asked_type, i)})
                   for i in range(int(dev.get('num_mdevs', 1)))]
    elif attach_type in ('PCI', 'TEST_PCI'):
        extra = {'physical_network': physnet} if physnet else None
        handles = [pci_json(a, extra)
                   for a in dev.get('attach_handles') or [pci]]
    else:
        raise ValueError('unsupported attach_type %r' % attach_type)

    std_board_info = dev.get('std_board_info') or {
        'product_id': dev.get('model', 'test-model'),
        'controller': dev_type}
    device = db.device_create(ctx, {
        'type': dev_type,
        'vendor': dev.get('vendor', '1172'),
        'model': dev.get('model', 'test-model'),
        'std_board_info': json.dumps(std_board_info),
        'vendor_board_info': dev.get('vendor_board_info', 'test'),
        'hostname': host,
        'status': 'enabled',
        'device_state': 'available',
    })
    cpid = db.control_path_create(ctx, {
        'device_id': device.id,
        'cpid_type': 'PCI',
        'cpid_info': pci_json(pci),
    })
    deployable = db.deployable_create(ctx, {
        'name': dev.get('deployable_name') or '%s_%s' % (host, pci),
        'num_accelerators': len(handles),
        'device_id': device.id,
        'rp_uuid': rp_uuid,
        'driver_name': dev.get('driver_name',
                               _DEFAULT_DRIVERS.get(dev_type, 'fake')),
    })
    attributes = {'rc': dev.get('resource_class', dev_type)}
    for i, trait in enumerate(dev.get('traits') or []):
        attributes['trait%d' % i] = trait
    for key, value in attributes.items():
        db.attribute_create(ctx, {'deployable_id': deployable.id,
                                  'key': key, 'value': value})
    ahs = []
    for info in handles:
        ah = db.attach_handle_create(ctx, {
            'deployable_id': deployable.id,
            'cpid_id': cpid.id,
            'in_use': False,
            'attach_type': attach_type,
            'attach_info': info,
        })
        ahs.append({'uuid': ah.uuid, 'attach_type': attach_type,
                    'attach_info': json.loads(info)})
    return {
        'pci_address': pci,
        'device_uuid': device.uuid,
        'deployable_uuid': deployable.uuid,
        'controlpath_uuid': cpid.uuid,
        'rp_uuid': rp_uuid,
        'attach_handles': ahs,
    }


def _watch_parent(parent_pid):
    """Exit as soon as the parent process is gone."""
    while True:
        time.sleep(0.5)
        ppid = os.getppid()
        if ppid != parent_pid:
            LOG.warning('Parent %s gone (ppid now %s); exiting.',
                        parent_pid, ppid)
            os._exit(3)


def _parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', help='JSON config file (keys: port, '
                   'state_dir, nova_url, placement_url, conf, policy, '
                   'debug, parent_pid)')
    p.add_argument('--port', type=int)
    p.add_argument('--state-dir')
    p.add_argument('--nova-url')
    p.add_argument('--placement-url')
    p.add_argument('--parent-pid', type=int)
    args = p.parse_args(argv)
    config = {}
    if args.config:
        with open(args.config) as f:
            config.update(json.load(f))
    for key in ('port', 'state_dir', 'nova_url', 'placement_url',
                'parent_pid'):
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    missing = [k for k in ('state_dir',) if not config.get(k)]
    if missing:
        p.error('missing: %s' % ', '.join(missing))
    return config


def main(argv=None):
    if 'nova' in sys.modules:
        sys.exit('nova_acc.testing.cyborg.server: Nova is imported in this '
                 'process; Cyborg cannot share it (run server.py as a '
                 'script in its own process).')
    config = _parse_args(sys.argv[1:] if argv is None else argv)
    state_dir = config['state_dir']
    os.makedirs(state_dir, exist_ok=True)
    ready_file = os.path.join(state_dir, READY_FILE)
    if os.path.exists(ready_file):
        os.unlink(ready_file)

    parent_pid = config.get('parent_pid')
    if parent_pid:
        threading.Thread(target=_watch_parent, args=(int(parent_pid),),
                         name='parent-watch', daemon=True).start()

    started = time.monotonic()
    child = _Child(config)
    child.start()

    tmp = ready_file + '.tmp'
    with open(tmp, 'w') as f:
        json.dump({'port': child.port, 'pid': os.getpid()}, f)
    os.rename(tmp, ready_file)
    print('%s http://127.0.0.1:%d (pid %d, %.2fs)' % (
        READY_BANNER, child.port, os.getpid(), time.monotonic() - started),
        flush=True)
    LOG.info('Cyborg test server ready on port %d', child.port)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    # Running as a script puts this directory first on sys.path, where our
    # sibling modules (fixture.py...) could shadow top-level modules.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or '.') == _here:
        del sys.path[0]
    sys.exit(main())
