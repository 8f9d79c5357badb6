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

"""A local HTTP server standing in for Nova's external-events API.

Cyborg (in its child process) notifies Nova of finished ARQ bindings with
``POST <nova endpoint>/os-server-external-events`` after a keystoneauth
version discovery ``GET <nova endpoint>``. Nova's functional harness serves
its API through wsgi-intercept, which a child process cannot reach, so tests
run this real socket server and point Cyborg's ``[nova] endpoint_override``
at :attr:`FakeNovaEventsServer.url`. Pass ``handler`` to forward the events
into an in-process Nova (e.g. through its API client) instead of only
recording them.
"""

import http.server
import json
import threading
import time

import fixtures

from nova_acc.testing.cyborg import server as _server
from nova_acc.testing import green_server

EVENTS_PATH = '/v2.1/os-server-external-events'


class _HTTPServer(green_server.GreenSafeServeMixin,
                  http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer whose accept loop also works under eventlet."""


class FakeNovaEventsServer(fixtures.Fixture):
    """Record ``os-server-external-events`` POSTs and answer like Nova.

    :param handler: optional ``handler(events, headers) -> (status, body)``
        called for each POST; ``body`` is the JSON answer. By default every
        event is accepted: 200 with the events echoed, ``"code": 200`` and
        ``"status": "completed"``, as Nova answers for instances that have a
        host.

    Attributes: :attr:`url` (the compute endpoint, ``.../v2.1``, to use as
    Cyborg's ``[nova] endpoint_override``), :attr:`events` (all events
    received, in order), :attr:`requests` (``{"headers", "body"}`` per POST).
    """

    def __init__(self, handler=None):
        super().__init__()
        self.handler = handler

    def _setUp(self):
        self.events = []
        self.requests = []
        self._cond = threading.Condition()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, format, *args):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode('utf-8')
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split('?')[0].rstrip('/')
                if path == '/v2.1':
                    self._send(200, _server.nova_version_document(
                        fake.url + '/'))
                elif path == '':
                    doc = _server.nova_version_document(fake.url + '/')
                    self._send(200, {'versions': [doc['version']]})
                else:
                    self._send(404, {'itemNotFound': {
                        'code': 404, 'message': 'fake nova: %s' % path}})

            def do_POST(self):
                length = int(self.headers.get('Content-Length') or 0)
                raw = self.rfile.read(length)
                path = self.path.split('?')[0].rstrip('/')
                if path != EVENTS_PATH:
                    self._send(404, {'itemNotFound': {
                        'code': 404, 'message': 'fake nova: %s' % path}})
                    return
                try:
                    body = json.loads(raw)
                    events = body['events']
                except (ValueError, KeyError, TypeError):
                    self._send(400, {'badRequest': {
                        'code': 400, 'message': 'bad body %r' % raw}})
                    return
                headers = dict(self.headers.items())
                if fake.handler is not None:
                    status, answer = fake.handler(events, headers)
                else:
                    status = 200
                    answer = _server.nova_events_response(events)
                with fake._cond:
                    fake.requests.append({'headers': headers, 'body': body})
                    fake.events.extend(events)
                    fake._cond.notify_all()
                self._send(status, answer)

        self._httpd = _HTTPServer(('127.0.0.1', 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = 'http://127.0.0.1:%d/v2.1' % self.port
        thread = threading.Thread(target=self._httpd.serve_until_stopped,
                                  name='fake-nova-events', daemon=True)
        thread.start()
        self.addCleanup(self._httpd.server_close)
        self.addCleanup(thread.join, 5)
        self.addCleanup(self._httpd.stop)

    def wait_for_events(self, count, timeout=10):
        """Wait until at least ``count`` events arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.events) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        'Expected %d external event(s), got %d: %s'
                        % (count, len(self.events), self.events))
                self._cond.wait(remaining)
            return list(self.events)

    def events_for(self, instance_uuid):
        with self._cond:
            return [e for e in self.events
                    if e.get('server_uuid') == instance_uuid]
