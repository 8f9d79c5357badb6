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
"""The functional tests' all-in-one cloud, run outside a test runner.

``DeviceContextTestBase`` is a Nova functional TestCase: its ``setUp``
starts the control plane (API, conductor, scheduler with nova-acc's
managers, placement on sqlite) under Nova's fixtures and ``doCleanups``
stops it all again. Here one instance of it is made by hand, set up,
used and cleaned up, the way testtools would run a single test.

Nova's logging fixture keeps the logs in memory, and
:func:`isolate_stdout` makes sure nothing else the services write reaches
the real stdout, which the demo keeps for its report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import typing as ty

from nova_acc.testing import cloud

# Variables a test runner sets for oslotest: a timeout that would interrupt
# the demo, and output capture that would swallow its progress messages.
_RUNNER_ENV = ('OS_TEST_TIMEOUT', 'OS_STDOUT_CAPTURE', 'OS_STDERR_CAPTURE')


class DemoCloud(cloud.DeviceContextTestBase):
    """One demo run; ``demo`` is the "test" testtools would run."""

    def demo(self):
        """Never run: the demo drives the cloud from the outside."""

    def wait_for_final_state(self, server, timeout=60.0):
        """Poll until the server is ACTIVE or ERROR (with its fault).

        :returns: the server as the API shows it last, whatever its status.
        """
        deadline = time.monotonic() + timeout
        while True:
            server = self.api.get_server(server['id'])
            if server['status'] == 'ACTIVE' or (
                    server['status'] == 'ERROR' and 'fault' in server):
                return server
            if time.monotonic() > deadline:
                return server
            time.sleep(0.1)

    def delete_and_wait(self, server, timeout=60.0) -> bool:
        """Delete a server; True once the API no longer knows it."""
        from nova.tests.functional.api import client
        self.api.delete_server(server['id'])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api.get_server(server['id'])
            except client.OpenStackApiNotFoundException:
                return True
            time.sleep(0.1)
        return False

    def nova_log(self) -> str:
        return self.stdlog.logger.output


def isolate_stdout() -> ty.TextIO:
    """Point file descriptor 1 at /dev/null; return a stream on the old one.

    Logging handlers made while the cloud runs hold ``sys.stdout`` (or the
    descriptor under it), and some log while the cloud is stopped or even
    at interpreter exit; rebinding the descriptor for the rest of the
    process silences them all, and the demo writes its report to the
    returned stream.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return open(saved, 'w', buffering=1)


@contextlib.contextmanager
def running() -> ty.Iterator[DemoCloud]:
    """Start the control plane and yield it; stop everything on the way out.

    Compute hosts are started by the caller (``start_fpga_host``).
    """
    for name in _RUNNER_ENV:
        os.environ.pop(name, None)
    # Before the cloud exists Python's last-resort handler would print
    # Nova's warnings on stderr.
    logging.getLogger('nova').addHandler(logging.NullHandler())
    case = DemoCloud('demo')
    try:
        case.setUp()
        yield case
    finally:
        case.doCleanups()
