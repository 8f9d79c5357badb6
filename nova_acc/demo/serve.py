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
"""``nova-acc demo --serve``: the demo cloud's Nova API on a real socket.

The demo cloud (``nova_acc.demo.cloud``) is Nova's functional
harness; its API is normally reached through wsgi-intercept, which only
the process itself can use. Here the same WSGI application
(``OSAPIFixture.app``, the ``osapi_compute`` urlmap of Nova's
api-paste.ini) is served over HTTP on 127.0.0.1, so the real ``openstack``
and ``nova`` clients can boot servers with device contexts on it.

There is no authentication, which is why it only listens on the loopback
address: the harness stubs out keystonemiddleware and builds each request's
context from the ``X-Auth-User``, ``X-Auth-Project-Id`` and ``X-Roles``
headers, which clients with ``--os-auth-type none`` do not send;
:class:`AuthDefaults` fills in the harness's admin user and project.

The clients also look images up in Glance, which the harness fakes inside
Nova (``GlanceFixture``); :class:`ImageApi` serves those images read-only
as a minimal Glance v2 API under ``/image`` (and under ``/v2.1/v2/images``:
with keystoneauth's ``none`` plugin every service's endpoint is
``OS_ENDPOINT``, so novaclient's image lookups arrive there). A copy of the
fixture's first image is added under the unique name ``nova-acc-demo``.

nova-acc-api, the device-context API the demo cloud's Nova uses (see
``nova_acc.demo.cloud``), is served under ``/device-context``: the
second line of stdout is ``DEVICE-CONTEXTS <endpoint>``. It runs with
noauth2, so a caller says who it is in headers (``X-Auth-Token:
user:project``, ``X-Roles``); the instructions show ``curl`` calls as a
member of the project the Nova API acts in, whose contexts its servers
may boot with.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import signal
import socketserver
import threading
import time
import typing as ty
import urllib.parse
import wsgiref.simple_server
import wsgiref.util

from nova_acc.tests.fixtures import green_server

HOST = '127.0.0.1'
#: The path of the compute API (the endpoint clients are given).
COMPUTE_PATH = '/v2.1'
#: The path of the read-only fake Glance v2 API.
IMAGE_PATH = '/image'
#: Where novaclient's image lookups arrive (its endpoint is the compute one).
NOVACLIENT_IMAGE_PATH = COMPUTE_PATH + '/v2/images'
#: The path of nova-acc-api, the device-context API (its endpoint).
CONTEXTS_PATH = '/device-context'
#: The roles the printed curl calls give: a member of the project.
CONTEXTS_ROLES = 'member,reader'
#: The user the printed curl calls name (noauth2 believes any).
CONTEXTS_USER = 'demo'
#: The microversion the printed instructions ask for: 2.100 is the first
#: that shows a server's ``scheduler_hints`` (so ``device_context``).
MICROVERSION = '2.100'
ADMIN_USER = 'admin'
ADMIN_ROLES = 'reader,member,admin'
#: An image only the demo has: GlanceFixture's own images mostly share the
#: name ``fakeimage123456``, which the clients cannot look up by name.
DEMO_IMAGE = 'nova-acc-demo'
DEMO_FLAVOR = 'm1.tiny'

Progress = ty.Callable[[int, int, str], None]


class AuthDefaults:
    """Fill in the identity headers the harness's stubbed auth reads.

    Nova's ``OSAPIFixture`` replaces keystonemiddleware with a no-op and
    ``NovaKeystoneContext`` with a function building the request context
    from ``X-Auth-User``, ``X-Auth-Project-Id`` and ``X-Roles`` (it fails
    with a KeyError when one is missing). Headers a client does send win.
    """

    def __init__(self, app, project_id: str, user: str = ADMIN_USER,
                 roles: str = ADMIN_ROLES):
        self.app = app
        self.defaults = {
            'HTTP_X_AUTH_USER': user,
            'HTTP_X_USER_ID': user,
            'HTTP_X_AUTH_PROJECT_ID': project_id,
            'HTTP_X_PROJECT_ID': project_id,
            'HTTP_X_ROLES': roles,
        }

    def __call__(self, environ, start_response):
        for key, value in self.defaults.items():
            if not environ.get(key):
                environ[key] = value
        return self.app(environ, start_response)


def _iso(value) -> str | None:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).strftime(
            '%Y-%m-%dT%H:%M:%SZ')
    return value


def glance_v2_image(image: dict) -> dict:
    """A GlanceFixture image (Nova's internal form) as Glance v2 shows it."""
    doc = {
        'id': image['id'],
        'name': image.get('name'),
        'status': image.get('status', 'active'),
        'visibility': image.get('visibility') or (
            'public' if image.get('is_public') else 'private'),
        'protected': bool(image.get('protected')),
        'os_hidden': False,
        'container_format': image.get('container_format'),
        'disk_format': image.get('disk_format'),
        'size': image.get('size'),
        'virtual_size': None,
        'min_ram': image.get('min_ram') or 0,
        'min_disk': image.get('min_disk') or 0,
        'checksum': None,
        'owner': image.get('owner'),
        'tags': list(image.get('tags') or []),
        'created_at': _iso(image.get('created_at')),
        'updated_at': _iso(image.get('updated_at')),
        'self': '/v2/images/%s' % image['id'],
        'file': '/v2/images/%s/file' % image['id'],
        'schema': '/v2/schemas/image',
    }
    for key, value in (image.get('properties') or {}).items():
        doc.setdefault(key, value if isinstance(value, str) else str(value))
    return doc


class ImageApi:
    """A read-only Glance v2 API over the harness's ``GlanceFixture``.

    Answers version discovery, ``GET /v2/images`` (filters ``name``,
    ``id``, ``name=in:..``, ``id=in:..``, ``names=in:..``) and
    ``GET /v2/images/{id}``; the clients need no more to boot from an
    image given by name or ID.
    """

    def __init__(self, images: ty.Callable[[], ty.Iterable[dict]]):
        self.images = images

    @staticmethod
    def _send(start_response, status: int, body) -> list[bytes]:
        data = json.dumps(body).encode('utf-8')
        reason = {200: 'OK', 300: 'Multiple Choices', 404: 'Not Found',
                  405: 'Method Not Allowed'}[status]
        start_response('%d %s' % (status, reason), [
            ('Content-Type', 'application/json'),
            ('Content-Length', str(len(data)))])
        return [data]

    def _versions(self, base: str) -> dict:
        return {'versions': [{
            'id': 'v2.16', 'status': 'CURRENT',
            'links': [{'rel': 'self', 'href': base + '/v2/'}]}]}

    def __call__(self, environ, start_response):
        # SCRIPT_NAME is where this API is mounted; PATH_INFO the rest.
        base = wsgiref.util.application_uri(environ).rstrip('/')
        path = environ.get('PATH_INFO', '').rstrip('/')
        if environ['REQUEST_METHOD'] not in ('GET', 'HEAD'):
            return self._send(start_response, 405, {
                'message': 'this demo image API is read-only'})
        if path in ('', '/v2'):
            return self._send(start_response, 200 if path else 300,
                              self._versions(base))
        images = [glance_v2_image(i) for i in self.images()]
        if path == '/v2/images':
            query = urllib.parse.parse_qs(environ.get('QUERY_STRING', ''))
            images = _filter_images(images, query)
            return self._send(start_response, 200, {
                'images': images, 'first': '/v2/images',
                'schema': '/v2/schemas/images'})
        if path.startswith('/v2/images/'):
            image_id = path[len('/v2/images/'):]
            for image in images:
                if image['id'] == image_id:
                    return self._send(start_response, 200, image)
        return self._send(start_response, 404, {
            'message': 'no image at %s' % path})


def _filter_images(images: list[dict], query: dict) -> list[dict]:
    for key in ('id', 'name', 'names'):
        for value in query.get(key, []):
            field = 'name' if key == 'names' else key
            if value.startswith('in:'):
                wanted = set(value[3:].split(','))
            else:
                wanted = {value}
            images = [i for i in images if i.get(field) in wanted]
    return images


class Dispatcher:
    """Send image requests to :class:`ImageApi`, device-context requests
    to nova-acc-api, everything else to Nova."""

    def __init__(self, nova_app, image_app, contexts_app=None):
        self.nova_app = nova_app
        # (path prefix, SCRIPT_NAME it is served under, application).
        self.routes = [(IMAGE_PATH, IMAGE_PATH, image_app),
                       (NOVACLIENT_IMAGE_PATH, COMPUTE_PATH, image_app)]
        if contexts_app is not None:
            self.routes.append((CONTEXTS_PATH, CONTEXTS_PATH, contexts_app))

    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        for prefix, script, app in self.routes:
            if path == prefix or path.startswith(prefix + '/'):
                environ['SCRIPT_NAME'] = (
                    environ.get('SCRIPT_NAME', '') + script)
                environ['PATH_INFO'] = path[len(script):]
                return app(environ, start_response)
        return self.nova_app(environ, start_response)


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):

    def log_message(self, format, *args):
        pass


class WSGIServer(green_server.GreenSafeServeMixin,
                 socketserver.ThreadingMixIn,
                 wsgiref.simple_server.WSGIServer):
    """A threading WSGI server whose accept loop works under eventlet
    (the demo process is monkey-patched by Nova's harness)."""

    allow_reuse_address = True


def client_env(url: str, project_id: str) -> dict[str, str]:
    """The environment both clients need to use the served API.

    Tested with python-openstackclient 10.5 and python-novaclient 18.13:

    * both: ``OS_AUTH_TYPE=none`` (keystoneauth's ``noauth`` plugin) and
      ``OS_ENDPOINT``, the endpoint that plugin gives;
    * openstack: ``OS_IMAGE_ENDPOINT_OVERRIDE`` for image lookups (no
      service catalog without Keystone), and ``OS_IDENTITY_API_VERSION=3``:
      ``server list`` insists on an identity v3 proxy, and the SDK would
      otherwise take version 2 from the ``/v2.1`` in ``OS_ENDPOINT``;
    * nova: ``OS_USERNAME``, ``NOVA_PROJECT_ID`` and ``OS_AUTH_URL``,
      which novaclient's shell demands before it loads any auth plugin
      (their values are not used with ``none``; ``OS_PROJECT_ID`` would
      do, but openstack then fails: the noauth plugin takes no project).
      nova sends image lookups to the compute endpoint
      (``/v2.1/v2/images``), which this server answers as well.
    """
    root = url[:-len(COMPUTE_PATH)]
    return {
        'OS_AUTH_TYPE': 'none',
        'OS_ENDPOINT': url,
        'OS_IMAGE_ENDPOINT_OVERRIDE': root + IMAGE_PATH,
        'OS_IDENTITY_API_VERSION': '3',
        'OS_USERNAME': ADMIN_USER,
        'NOVA_PROJECT_ID': project_id,
        'OS_AUTH_URL': url,
    }


def contexts_instructions(url: str, project_id: str) -> list[str]:
    """How to call nova-acc-api with curl, and boot with a context's ID."""
    headers = ("-H 'X-Auth-Token: %s:%s' -H 'X-Roles: %s'"
               % (CONTEXTS_USER, project_id, CONTEXTS_ROLES))
    return [
        '# Device contexts by ID: nova-acc-api at %s (noauth2:' % url,
        '# X-Auth-Token is user:project, X-Roles the roles). As a member of '
        'project',
        '# %s:' % project_id,
        '#   curl -s %s \\' % headers,
        "#       -H 'Content-Type: application/json' -d '{\"device_context\": "
        '{"spec":',
        '#       "resources:FPGA=1,trait:CUSTOM_GZIP=required", "name": '
        "\"ctx1\"}}' \\",
        '#       %s/v1/device-contexts' % url,
        '#   openstack --os-compute-api-version %s server create '
        '--image %s \\' % (MICROVERSION, DEMO_IMAGE),
        '#       --flavor %s --nic none --device-context <its id> --wait vm3'
        % DEMO_FLAVOR,
        '#   curl -s %s %s/v1/device-contexts/<its id>' % (headers, url),
        '#   (state bound, server_id, host; unbound again once vm3 is '
        'deleted)',
    ]


def instructions(url: str, project_id: str,
                 contexts_url: str | None = None) -> str:
    """How to point the real clients at the served API (after SERVING)."""
    env = client_env(url, project_id)
    lines = [
        '# Nova API without authentication (requests act as the admin of '
        'project',
        '# %s). Point the clients at it with:' % project_id,
    ]
    lines += ['export %s=%s' % item for item in env.items()]
    lines += [
        '# Then, for example (microversion 2.100 shows scheduler_hints; '
        'nova supports',
        '# up to 2.96):',
        '#   openstack --os-compute-api-version %s server create '
        '--image %s \\' % (MICROVERSION, DEMO_IMAGE),
        '#       --flavor %s --nic none --device-context resources:FPGA=1 '
        '--wait vm1' % DEMO_FLAVOR,
        '#   openstack --os-compute-api-version %s server show vm1 '
        '-c status -c scheduler_hints' % MICROVERSION,
        '#   nova --os-compute-api-version 2.latest boot --image %s '
        '--flavor %s --nic none \\' % (DEMO_IMAGE, DEMO_FLAVOR),
        '#       --device-context resources:FPGA=1 --poll vm2',
    ]
    if contexts_url:
        lines += contexts_instructions(contexts_url, project_id)
    lines.append('# Stop with Ctrl-C (SIGINT) or SIGTERM.')
    return '\n'.join(lines)


class _Stop:
    """What SIGINT and SIGTERM do: ask to stop; a second one forces it.

    The handler only sets an attribute: it may run in any green thread
    (the eventlet hub included), where taking even a green lock could try
    to switch to the hub from the hub. The main green thread polls it.
    """

    requested = False

    def signal(self, signum, frame):
        if self.requested:
            # Stopping the cloud hangs (a build that never ends, say): the
            # user asked twice, so leave without cleaning up.
            os.write(2, b'nova-acc demo: stopping forcibly\n')
            os._exit(1)
        self.requested = True


class BindError(Exception):
    """The port to serve on cannot be had."""


def serve(hosts: int, devices_per_host: int, out: ty.TextIO,
          port: int = 0, progress: Progress | None = None,
          log_file: str | None = None,
          ready: ty.Callable[[str], None] | None = None,
          vfs_per_host: int = 0) -> int:
    """Start the demo cloud and serve its API until SIGINT or SIGTERM.

    Writes ``SERVING <url>`` as the first line of ``out`` once the API
    answers, then the client instructions.

    :raises BindError: if ``port`` cannot be listened on (before the cloud
        is started).
    :returns: the exit status (0 after a signal).
    """
    # Bind first: a busy --port is reported at once, not after the cloud
    # took its seconds to start.
    try:
        httpd = WSGIServer((HOST, port), _QuietHandler)
    except OSError as e:
        raise BindError('cannot listen on %s port %d: %s'
                        % (HOST, port, e)) from e
    total = 4
    stop = _Stop()
    signals = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        signals[signum] = signal.signal(signum, stop.signal)
    try:
        if progress:
            progress(1, total, 'starting the control plane (nova-api, '
                               'conductor, scheduler, placement)')
        # Nova's test fixtures take seconds to import.
        from nova_acc.demo import cloud
        with cloud.running() as case:
            try:
                if progress and not stop.requested:
                    progress(2, total, 'starting %d compute host(s) with %d '
                             'FPGA(s)%s each' % (
                                 hosts, devices_per_host,
                                 ' and a PF with %d VF(s)' % vfs_per_host
                                 if vfs_per_host else ''))
                for i in range(hosts):
                    if stop.requested:
                        break
                    case.start_demo_host('compute%d' % (i + 1),
                                         devices_per_host, vfs_per_host)
                if not stop.requested:
                    _serve_api(case, httpd, out, stop, progress, total,
                               ready)
            finally:
                if progress:
                    progress(total, total, 'stopping the cloud')
                if log_file:
                    with open(log_file, 'w') as f:
                        f.write(case.nova_log())
    finally:
        httpd.server_close()
        for signum, handler in signals.items():
            signal.signal(signum, handler)
    return 0


def _add_demo_image(case) -> None:
    from nova.tests.fixtures import glance
    image = copy.deepcopy(glance.GlanceFixture.image1)
    image.pop('id')
    image['name'] = DEMO_IMAGE
    case.glance.create(None, image)


def _serve_api(case, httpd, out, stop, progress, total, ready) -> None:
    fixture = case.api_fixture
    _add_demo_image(case)
    # OSAPIFixture.app returns the loaded osapi_compute application, the
    # one wsgi-intercept serves to the harness's own API clients.
    httpd.set_app(Dispatcher(
        AuthDefaults(fixture.app(), fixture.project_id),
        ImageApi(lambda: list(case.glance.images.values())),
        case.contexts_api.app))
    root = 'http://%s:%d' % (HOST, httpd.server_address[1])
    url = root + COMPUTE_PATH
    contexts_url = root + CONTEXTS_PATH
    thread = threading.Thread(target=httpd.serve_until_stopped,
                              name='nova-acc-demo-api', daemon=True)
    thread.start()
    try:
        if progress:
            progress(3, total, 'serving the compute API at %s and the '
                     'device-context API at %s' % (url, contexts_url))
        out.write('SERVING %s\n' % url)
        out.write('DEVICE-CONTEXTS %s\n' % contexts_url)
        out.write(instructions(url, fixture.project_id, contexts_url) + '\n')
        out.flush()
        if ready:
            ready(url)
        # time.sleep is eventlet's here: Nova's services keep running.
        while not stop.requested:
            time.sleep(0.2)
    finally:
        httpd.stop()
        thread.join(5)
