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

"""Fixture running the real Cyborg service in a child process.

Usage::

    nova = self.useFixture(FakeNovaEventsServer())
    cyborg = self.useFixture(CyborgServiceFixture(nova_url=nova.url))
    cyborg.seed_devices('compute1', [{'pci_address': '0000:81:00.0',
                                      'rp_uuid': rp_uuid}])
    admin = cyborg.client('admin')
    admin.create_device_profile('fpga1', [{'resources:FPGA': '1'}])
    arq = cyborg.client('member:' + project_id).create_arq('fpga1')[0]
    # What Nova does: the user's token plus Nova's service token.
    nova_view = cyborg.client('member:' + project_id, service_token='service')
    nova_view.bind(arq['uuid'], 'compute1', rp_uuid, instance_uuid)

The tokens are documented in :mod:`nova_acc.testing.cyborg.server`. This
module never imports ``cyborg`` (the test process may have imported Nova).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import fixtures
import requests
from testtools import content

from nova_acc.testing.cyborg import server as _server

SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             'server.py')
KEEP_STATE_ENV = 'NOVA_ACC_CYBORG_KEEP_STATE'

ADMIN_PROJECT_ID = _server.ADMIN_PROJECT_ID
SERVICE_PROJECT_ID = _server.SERVICE_PROJECT_ID


class CyborgStartError(Exception):
    pass


class CyborgError(Exception):
    """An unexpected HTTP status from Cyborg."""

    def __init__(self, response):
        self.response = response
        self.status_code = response.status_code
        try:
            self.body = response.json()
        except ValueError:
            self.body = response.text
        super().__init__('%s %s -> %s: %s' % (
            response.request.method, response.request.url,
            response.status_code, self.body))


def _tail(path, lines=80):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode('utf-8', 'replace')
    except OSError as e:
        return '<cannot read %s: %s>' % (path, e)
    return '\n'.join(data.splitlines()[-lines:])


class CyborgClient:
    """Minimal requests-based Cyborg v2 client for tests.

    :param token: the ``X-Auth-Token`` (see the token scheme).
    :param service_token: optional ``X-Service-Token`` (``'service'``), as
        Nova sends with ``[service_user] send_service_user_token``.

    The helpers raise :class:`CyborgError` on an unexpected status; use
    :meth:`request` for the raw :class:`requests.Response`.
    """

    def __init__(self, endpoint, token, service_token=None, timeout=60,
                 microversion=None):
        self.endpoint = endpoint.rstrip('/')
        self.token = token
        self.service_token = service_token
        self.timeout = timeout
        self.microversion = microversion
        self.session = requests.Session()

    def request(self, method, path, json=None, params=None, headers=None,
                microversion=None):
        hdrs = {'Accept': 'application/json'}
        if self.token is not None:
            hdrs['X-Auth-Token'] = self.token
        if self.service_token is not None:
            hdrs['X-Service-Token'] = self.service_token
        mv = microversion or self.microversion
        if mv:
            hdrs['OpenStack-API-Version'] = 'accelerator %s' % mv
        hdrs.update(headers or {})
        return self.session.request(method, self.endpoint + path, json=json,
                                    params=params, headers=hdrs,
                                    timeout=self.timeout)

    def _call(self, method, path, expected, **kwargs):
        resp = self.request(method, path, **kwargs)
        if resp.status_code not in expected:
            raise CyborgError(resp)
        return resp

    # -- device profiles ---------------------------------------------------

    def create_device_profile(self, name, groups, description=None):
        body = {'name': name, 'groups': groups}
        if description is not None:
            body['description'] = description
        # Cyborg takes a list holding exactly one profile.
        return self._call('POST', '/v2/device_profiles', (201,),
                          json=[body]).json()

    def get_device_profiles(self, name=None):
        params = {'name': name} if name else None
        return self._call('GET', '/v2/device_profiles', (200,),
                          params=params).json()['device_profiles']

    def delete_device_profile(self, name_or_uuid):
        self._call('DELETE', '/v2/device_profiles/%s' % name_or_uuid, (204,))

    # -- ARQs ----------------------------------------------------------------

    def create_arq(self, profile_name):
        """Create the ARQs of a device profile (Nova's _create_arqs).

        :returns: the list of created ARQs.
        """
        return self._call('POST', '/v2/accelerator_requests', (201,),
                          json={'device_profile_name': profile_name}
                          ).json()['arqs']

    def get_arq(self, arq_uuid):
        return self._call('GET', '/v2/accelerator_requests/%s' % arq_uuid,
                          (200,)).json()

    def list_arqs(self, instance=None, bind_state=None):
        params = {}
        if instance:
            params['instance'] = instance
        if bind_state:
            params['bind_state'] = bind_state
        return self._call('GET', '/v2/accelerator_requests', (200,),
                          params=params or None).json()['arqs']

    @staticmethod
    def bind_patch(bindings):
        """The PATCH body nova.accelerator.cyborg bind_arqs() builds.

        :param bindings: ``{arq_uuid: {"hostname": ..., "device_rp_uuid":
            ..., "instance_uuid": ...}}``
        """
        return {arq_uuid: [{'path': '/' + field, 'op': 'add', 'value': value}
                           for field, value in binding.items()]
                for arq_uuid, binding in bindings.items()}

    def bind_many(self, bindings):
        """PATCH /v2/accelerator_requests exactly as Nova binds (202)."""
        return self._call('PATCH', '/v2/accelerator_requests', (202,),
                          json=self.bind_patch(bindings))

    def bind(self, arq_uuid, hostname, rp_uuid, instance_uuid):
        # Same key order as nova.conductor.manager._create_and_bind_arqs.
        return self.bind_many({arq_uuid: {'hostname': hostname,
                                          'device_rp_uuid': rp_uuid,
                                          'instance_uuid': instance_uuid}})

    @staticmethod
    def unbind_patch(arq_uuids):
        return {arq_uuid: [{'path': '/' + field, 'op': 'remove'}
                           for field in ('hostname', 'device_rp_uuid',
                                         'instance_uuid')]
                for arq_uuid in arq_uuids}

    def unbind(self, *arq_uuids):
        """Unbind with a JSON-patch 'remove' (python-cyborgclient style)."""
        return self._call('PATCH', '/v2/accelerator_requests', (202,),
                          json=self.unbind_patch(arq_uuids))

    def delete_arq(self, *arq_uuids):
        """DELETE ?arqs=uuid1,uuid2 (Nova's delete_arqs_by_uuid)."""
        self._call('DELETE', '/v2/accelerator_requests', (204,),
                   params={'arqs': ','.join(arq_uuids)})

    def delete_arqs_for_instance(self, instance_uuid):
        """DELETE ?instance=uuid (Nova's delete_arqs_for_instance)."""
        self._call('DELETE', '/v2/accelerator_requests', (204,),
                   params={'instance': instance_uuid})


class CyborgServiceFixture(fixtures.Fixture):
    """Start Cyborg (API + conductor, sqlite, fake RPC) in a child process.

    :param nova_url: Nova's compute endpoint (``http://127.0.0.1:N/v2.1``)
        Cyborg sends external events to; it must answer version discovery
        on ``GET``. Default: a recording stub inside the child
        (:meth:`stub_nova_events`).
    :param placement_url: placement endpoint; Cyborg only does version
        discovery on it (conductor start-up) in the flows used here.
        Default: a discovery-only stub inside the child.
    :param conf: extra cyborg.conf options ``{group: {option: value}}``.
    :param policy: policy overrides ``{rule: check_str}`` (policy.yaml).
    :param start_timeout: seconds to wait for the API to answer.

    Attributes after setUp: :attr:`endpoint` (``http://127.0.0.1:PORT``),
    :attr:`accelerator_url` (``endpoint + '/v2'``: Nova's ``[cyborg]
    endpoint_override``), :attr:`port`, :attr:`pid`, :attr:`state_dir`,
    :attr:`log_path`. The state dir (sqlite DB, cyborg.conf, log) is
    removed on cleanup unless ``NOVA_ACC_CYBORG_KEEP_STATE=1``; the tail of
    the log is attached to the test as the ``cyborg-log`` detail (shown
    when a test fails).
    """

    def __init__(self, nova_url=None, placement_url=None, conf=None,
                 policy=None, start_timeout=60, debug=True):
        super().__init__()
        self.nova_url = nova_url
        self.placement_url = placement_url
        self.conf = conf or {}
        self.policy = policy or {}
        self.start_timeout = start_timeout
        self.debug = debug
        self.process = None

    def _setUp(self):
        self.state_dir = tempfile.mkdtemp(prefix='nova-acc-cyborg-')
        if os.environ.get(KEEP_STATE_ENV) != '1':
            self.addCleanup(shutil.rmtree, self.state_dir, True)
        self.log_path = os.path.join(self.state_dir, _server.LOG_FILE)
        self._log_cache = None
        self.addDetail('cyborg-log', content.Content(
            content.UTF8_TEXT, self._log_detail))
        # Runs before rmtree (cleanups are LIFO): keep the log for details.
        self.addCleanup(self._cache_log)

        config = {
            'state_dir': self.state_dir,
            'port': 0,
            'nova_url': self.nova_url,
            'placement_url': self.placement_url,
            'conf': self.conf,
            'policy': self.policy,
            'debug': self.debug,
            'parent_pid': os.getpid(),
        }
        config_path = os.path.join(self.state_dir, _server.CONFIG_FILE)
        with open(config_path, 'w') as f:
            json.dump(config, f, indent=1)

        env = dict(os.environ)
        env['PYTHONUNBUFFERED'] = '1'
        self._log_file = open(self.log_path, 'ab')
        self.addCleanup(self._log_file.close)
        self.process = subprocess.Popen(
            [sys.executable, SERVER_SCRIPT, '--config', config_path],
            stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, cwd=self.state_dir, env=env,
            start_new_session=True)
        self.pid = self.process.pid
        self.addCleanup(self._stop)
        self._wait_ready()

    # -- life cycle -----------------------------------------------------------

    def _wait_ready(self):
        ready_file = os.path.join(self.state_dir, _server.READY_FILE)
        deadline = time.monotonic() + self.start_timeout
        self.port = None
        last_error = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CyborgStartError(
                    'Cyborg child exited with %s before becoming ready. '
                    'Log %s:\n%s' % (self.process.returncode, self.log_path,
                                     _tail(self.log_path)))
            if self.port is None and os.path.exists(ready_file):
                with open(ready_file) as f:
                    self.port = json.load(f)['port']
                self.endpoint = 'http://127.0.0.1:%d' % self.port
                self.accelerator_url = self.endpoint + '/v2'
            if self.port is not None:
                try:
                    resp = requests.get(self.endpoint + '/', timeout=5)
                    if resp.status_code == 200:
                        return
                    last_error = 'GET / -> %s' % resp.status_code
                except requests.RequestException as e:
                    last_error = repr(e)
            time.sleep(0.05)
        raise CyborgStartError(
            'Cyborg did not answer within %ss (last: %s). Log %s:\n%s' % (
                self.start_timeout, last_error, self.log_path,
                _tail(self.log_path)))

    def _stop(self):
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Reap anything else left in the group (there should be nothing).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _cache_log(self):
        self._log_cache = _tail(self.log_path, lines=400)

    def _log_detail(self):
        text = self._log_cache
        if text is None:
            text = _tail(self.log_path, lines=400)
        return [('Log %s (tail):\n%s' % (self.log_path, text)).encode(
            'utf-8')]

    def log_tail(self, lines=80):
        return _tail(self.log_path, lines)

    # -- helpers ------------------------------------------------------------

    def client(self, token, service_token=None, **kwargs):
        """A :class:`CyborgClient` using ``token`` (see token scheme)."""
        return CyborgClient(self.endpoint, token, service_token=service_token,
                            **kwargs)

    def _test_api(self, method, path, **kwargs):
        resp = requests.request(method, self.endpoint + path,
                                headers={'X-Auth-Token': 'admin'},
                                timeout=60, **kwargs)
        if resp.status_code not in (200, 201):
            raise CyborgError(resp)
        return resp.json()

    def seed_devices(self, host, devices):
        """Create Device/ControlpathID/Deployable/AttachHandle rows.

        :param devices: list of dicts, e.g. ``{"pci_address":
            "0000:81:00.0", "rp_uuid": ..., "resource_class": "FPGA",
            "vendor": "1172", "model": "...", "type": "FPGA",
            "attach_type": "PCI"}``; MDEV: ``"attach_type": "MDEV",
            "asked_type": "nvidia-223", "num_mdevs": 2``. All keys are
            documented in ``server._seed_device``.
        :returns: per device: device/deployable/controlpath uuids and the
            attach handles created.
        """
        return self._test_api('POST', '/_test/seed',
                              json={'host': host, 'devices': devices}
                              )['devices']

    def attach_handles(self):
        """All attach handles with ``in_use``, ``attach_info``, rp_uuid."""
        return self._test_api('GET', '/_test/attach_handles'
                              )['attach_handles']

    def agent_calls(self):
        """RPC calls received by the stub cyborg-agent (MDEV create...)."""
        return self._test_api('GET', '/_test/agent_calls')['calls']

    def stub_nova_events(self):
        """Events received by the built-in Nova stub (no nova_url given)."""
        return self._test_api('GET', '/_test/nova_events')['events']
