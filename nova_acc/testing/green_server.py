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
"""An accept loop for socketserver servers that also works under eventlet.

Nova's functional harness (and so the demo cloud) monkey-patches the process
with eventlet. socketserver's ``serve_forever()`` waits in a selector bound
at import time, before patching: a real poll() that blocks every green
thread, Nova's services included, so the server never gets to answer.
Accepting on the (possibly green) socket with a timeout works in both
worlds.
"""

import socket


class GreenSafeServeMixin:
    """Mix in front of a ``socketserver`` server class."""

    daemon_threads = True
    block_on_close = False
    _stopping = False

    def serve_until_stopped(self, poll_interval: float = 0.2) -> None:
        self.socket.settimeout(poll_interval)
        while not self._stopping:
            try:
                request, client_address = self.get_request()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                if self._stopping:
                    break
                raise
            request.settimeout(None)
            try:
                self.process_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
                self.shutdown_request(request)

    def stop(self) -> None:
        self._stopping = True
