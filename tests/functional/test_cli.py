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
"""The real ``openstack`` and ``nova`` CLIs with nova-acc's options.

``nova-acc demo --serve`` runs in a child process (its own process group)
and serves Nova's API over HTTP; the clients' console scripts from this
Python's environment run against it with the environment the serve process
prints. They import the *installed* nova-acc (entry points and code), so
after changing ``nova_acc/cli`` reinstall it (``pip install --no-deps
--force-reinstall .``); :func:`installed_cli_problem` fails the tests
otherwise instead of testing a stale copy.
"""

import argparse
import filecmp
import http.server
import importlib.metadata
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import testtools
from testtools import content

from nova_acc.cli import device_context

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
OPENSTACK = os.path.join(BIN, 'openstack')
NOVA = os.path.join(BIN, 'nova')
# The first that shows scheduler_hints; nova's maximum is 2.96.
OSC_MICROVERSION = '2.100'
NOVA_MICROVERSION = '2.latest'
IMAGE = 'nova-acc-demo'
FLAVOR = 'm1.tiny'
# The served demo cloud runs nova-acc-api: an ID it does not have is refused
# as a context the project does not have.
UNKNOWN_CONTEXT = 'does not exist in your project'


#: The client code the console scripts load: (installed path, source).
CLIENT_TREES = (('nova_acc/cli', 'nova_acc/cli'),
                ('nova_acc_client', 'nova_acc_client'))


def installed_cli_problem():
    """Why the installed nova-acc cannot be what these tests mean to test."""
    try:
        dist = importlib.metadata.distribution('nova-acc')
    except importlib.metadata.PackageNotFoundError:
        return 'nova-acc is not installed in %s' % sys.prefix
    groups = {ep.group for ep in dist.entry_points}
    for group in ('openstack.cli.server_create', 'novaclient.extension',
                  'openstack.cli.extension', 'openstack.device_context.v1'):
        if group not in groups:
            return ('the installed nova-acc has no %r entry point; '
                    'reinstall it' % group)
    for installed_tree, source_tree in CLIENT_TREES:
        source = os.path.join(REPO_ROOT, source_tree)
        for folder, _dirs, files in os.walk(source):
            for name in sorted(files):
                if not name.endswith('.py'):
                    continue
                relative = os.path.relpath(os.path.join(folder, name),
                                           source)
                installed = dist.locate_file(
                    os.path.join(installed_tree, relative))
                if not os.path.exists(installed) or not filecmp.cmp(
                        os.path.join(source, relative), installed,
                        shallow=False):
                    return ('the installed %s/%s differs from the source '
                            'tree; reinstall nova-acc (cd /tmp && pip '
                            'install --no-deps --force-reinstall %s)'
                            % (installed_tree, relative, REPO_ROOT))
    return None


class MemberRolesProxy:
    """Keystone's part in front of the served nova-acc-api, for members.

    The served API runs with noauth2: ``X-Auth-Token: user:project`` says
    who calls and ``X-Roles`` what they may do; with a real cloud,
    keystonemiddleware puts the roles of the token there. The openstack
    client sends a token only (keystoneauth's ``admin_token`` plugin), so
    this proxy adds what Keystone would say of a project member's token,
    ``X-Roles: member,reader``, and passes everything else through.
    """

    ROLES = 'member,reader'

    def __init__(self, upstream):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _relay(self):
                proxy.relay(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

            def log_message(self, *args):
                pass

        self.upstream = upstream.rstrip('/')
        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def relay(self, handler):
        length = int(handler.headers.get('Content-Length') or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in ('host', 'x-roles', 'connection')}
        headers['X-Roles'] = self.ROLES
        request = urllib.request.Request(
            self.upstream + handler.path, data=body, headers=headers,
            method=handler.command)
        try:
            response = urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as error:
            response = error
        with response:
            data = response.read()
            handler.send_response(response.status)
            # The request ID: the instance action of a boot-context
            # detach carries it (remove --boot-index --wait reads it).
            for key in ('Content-Type', 'OpenStack-API-Version',
                        'X-OpenStack-Request-Id'):
                if response.headers.get(key):
                    handler.send_header(key, response.headers[key])
            handler.send_header('Content-Length', str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class ServeProcess:
    """``nova-acc demo --serve`` in its own process group."""

    def __init__(self, *args, start_timeout=60):
        self.contexts_url = None
        self.stderr = tempfile.NamedTemporaryFile(
            'w+', prefix='nova-acc-serve-', suffix='.log')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'nova_acc.cmd.demo', 'demo', '--serve']
            + list(args),
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True, start_new_session=True)
        self.pgid = self.proc.pid  # start_new_session: its own group
        self.lines = queue.Queue()
        self.stdout = []
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        try:
            self.url, self.exports = self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        url = None
        exports = {}
        while True:
            try:
                line = self.lines.get(
                    timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError('no SERVING line within %d s; %s'
                                     % (timeout, self.details()))
            if line is None:
                raise AssertionError('nova-acc demo --serve exited with %s '
                                     'before serving; %s' % (
                                         self.proc.wait(), self.details()))
            self.stdout.append(line)
            if url is None:
                if not line.startswith('SERVING '):
                    raise AssertionError('first line is not SERVING: %r; %s'
                                         % (line, self.details()))
                url = line.split()[1]
            elif line.startswith('DEVICE-CONTEXTS '):
                self.contexts_url = line.split()[1]
            elif line.startswith('export '):
                key, _, value = line[len('export '):].strip().partition('=')
                exports[key] = value
            elif line.startswith('# Stop with'):
                return url, exports

    def details(self):
        self.stderr.flush()
        self.stderr.seek(0)
        return 'stdout:\n%s\nstderr:\n%s' % (''.join(self.stdout),
                                             self.stderr.read()[-4000:])

    def group_alive(self):
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout=30):
        """SIGTERM the group; SIGKILL what is left after ``timeout``.

        :returns: the serve process's exit status, None if it was killed.
        """
        status = None
        if self.group_alive():
            os.killpg(self.pgid, signal.SIGTERM)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.group_alive():
            status = None
            os.killpg(self.pgid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc.stdout.close()
        return status


class DeviceContextCLITest(testtools.TestCase):
    """One served cloud (one host, three FPGAs) for all tests of the
    class."""

    serve = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        problem = installed_cli_problem()
        if problem:
            raise AssertionError(problem)
        # A server some test keeps holds one; another boots with two.
        cls.serve = ServeProcess('--hosts', '1', '--devices-per-host', '3')
        # The clients get exactly what the serve process told users.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(('OS_', 'NOVA_'))}
        env.update(cls.serve.exports)
        cls.env = env
        cls.proxy = MemberRolesProxy(cls.serve.contexts_url)
        cls.workdir = tempfile.mkdtemp(prefix='nova-acc-cli-')

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, 'proxy', None) is not None:
            cls.proxy.stop()
        serve = cls.serve
        if serve is not None:
            status = serve.stop()
            orphans = serve.group_alive()
            details = serve.details()
            serve.stderr.close()
            if orphans:
                raise AssertionError('processes of nova-acc demo --serve '
                                     'survived SIGKILL; %s' % details)
            if status != 0:
                raise AssertionError(
                    'nova-acc demo --serve did not stop cleanly on SIGTERM '
                    '(exit status %s); %s' % (status, details))
        super().tearDownClass()

    # ---- running the clients ---------------------------------------------

    def run_cli(self, *argv, timeout=90, env=None):
        proc = subprocess.run(
            list(argv), env=env or self.env, cwd=self.workdir,
            capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL)
        self.addDetail(
            'cli-%s' % uuid.uuid4().hex[:6],
            content.text_content(
                '$ %s\nexit status %d\nstdout:\n%s\nstderr:\n%s' % (
                    ' '.join(argv), proc.returncode, proc.stdout,
                    proc.stderr)))
        return proc

    def openstack(self, *args, check=True):
        proc = self.run_cli(OPENSTACK, '--os-compute-api-version',
                            OSC_MICROVERSION, *args)
        if check:
            self.assertEqual(0, proc.returncode, proc.stderr)
        return proc

    def nova(self, *args):
        return self.run_cli(NOVA, '--os-compute-api-version',
                            NOVA_MICROVERSION, *args)

    def server_ids(self):
        proc = self.openstack('server', 'list', '-f', 'json', '-c', 'ID')
        return sorted(s['ID'] for s in json.loads(proc.stdout))

    def show(self, name_or_id):
        return json.loads(self.openstack('server', 'show', name_or_id,
                                         '-f', 'json').stdout)

    def wait_for_final_state(self, name_or_id, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            server = self.show(name_or_id)
            if server['status'] in ('ACTIVE', 'ERROR'):
                return server
            if time.monotonic() > deadline:
                self.fail('server %s still %s after %d s' % (
                    name_or_id, server['status'], timeout))
            time.sleep(0.5)

    def contexts(self, *args, project=None, check=True):
        """``openstack device context ...`` as a member of ``project``."""
        return self.member_openstack('device', 'context', *args,
                                     project=project, check=check)

    def member_openstack(self, *args, project=None, check=True):
        """``openstack ...`` as a member of ``project``.

        Against the served nova-acc-api through :class:`MemberRolesProxy`
        (its endpoint given as the ``device-context`` service's override);
        the token (keystoneauth's ``admin_token`` plugin) is noauth2's
        ``user:project``. By default the project the Nova API acts in,
        whose servers may boot with its contexts. The compute API is the
        served Nova's (``OS_ENDPOINT``), which acts as its admin.
        """
        env = dict(self.env, OS_AUTH_TYPE='admin_token',
                   OS_TOKEN='cli-user:%s' % (project or self.project_id),
                   OS_DEVICE_CONTEXT_ENDPOINT_OVERRIDE=self.proxy.url)
        proc = self.run_cli(OPENSTACK, *args, env=env)
        if check:
            self.assertEqual(0, proc.returncode, proc.stderr)
        return proc

    def context(self, context_id):
        return json.loads(self.contexts('show', context_id, '-f',
                                        'json').stdout)

    def assert_refused(self, proc, *words):
        """Exit 1 with the API's message on stderr, no traceback."""
        self.assertEqual(1, proc.returncode, proc.stderr)
        for word in words:
            self.assertIn(word, proc.stderr)
        self.assertNotIn('Traceback', proc.stderr)

    @property
    def project_id(self):
        return self.env['NOVA_PROJECT_ID']

    @staticmethod
    def name(prefix):
        return '%s-%s' % (prefix, uuid.uuid4().hex[:8])

    # ---- tests ----------------------------------------------------------

    def test_openstack_server_create_with_device_context(self):
        name = self.name('osc')
        proc = self.openstack(
            'server', 'create', '--image', IMAGE, '--flavor', FLAVOR,
            '--nic', 'none', '--device-context', 'resources:FPGA=1',
            '--wait', '-f', 'json', name)
        created = json.loads(proc.stdout)
        self.assertEqual('ACTIVE', created['status'])
        server = self.show(created['id'])
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual(name, server['name'])
        # Microversion 2.100 shows the hints from the request spec.
        self.assertEqual({'device_context': ['resources:FPGA=1']},
                         server['scheduler_hints'])

    def test_openstack_malformed_device_context_is_not_sent(self):
        before = self.server_ids()
        name = self.name('osc-bad')
        proc = self.openstack(
            'server', 'create', '--image', IMAGE, '--flavor', FLAVOR,
            '--nic', 'none', '--device-context', 'resources:FPGA=0', name,
            check=False)
        self.assertNotEqual(0, proc.returncode)
        self.assertIn("'resources:FPGA=0'", proc.stderr)
        self.assertIn('--device-context', proc.stderr)
        self.assertIn('must be at least 1', proc.stderr)
        self.assertEqual('', proc.stdout)
        self.assertEqual(before, self.server_ids())

    def test_nova_boot_malformed_device_context_id_is_not_sent(self):
        before = self.server_ids()
        proc = self.nova(
            'boot', '--image', IMAGE, '--flavor', FLAVOR, '--nic', 'none',
            '--device-context-id', 'not-a-uuid', self.name('nova-bad'))
        self.assertEqual(1, proc.returncode, proc.stderr)
        self.assertIn('ERROR (CommandError)', proc.stderr)
        self.assertIn("--device-context-id 'not-a-uuid'", proc.stderr)
        self.assertIn('not a UUID', proc.stderr)
        self.assertEqual(before, self.server_ids())

    def test_nova_boot_unknown_device_context_id(self):
        context_id = str(uuid.uuid4())
        name = self.name('nova')
        proc = self.nova(
            'boot', '--image', IMAGE, '--flavor', FLAVOR, '--nic', 'none',
            '--device-context-id', context_id, name)
        self.assertEqual(0, proc.returncode, proc.stderr)
        server = self.wait_for_final_state(name)
        self.assertEqual('ERROR', server['status'])
        message = server['fault']['message']
        self.assertIn(context_id, message)
        self.assertIn(UNKNOWN_CONTEXT, message)
        self.assertEqual({'device_context': [context_id]},
                         server['scheduler_hints'])

    def test_device_context_commands_lifecycle(self):
        # create -> list -> show -> set -> boot with it -> delete refused
        # while bound -> server deleted -> delete.
        created = json.loads(self.contexts(
            'create', '--resources', 'FPGA=1', '--name', 'ctx-cli',
            '--description', 'made by test_cli', '-f', 'json').stdout)
        context_id = created['id']
        self.assertEqual(('resources:FPGA=1', 'unbound', self.project_id),
                         (created['spec'], created['state'],
                          created['project_id']))
        listed = json.loads(self.contexts('list', '-f', 'json').stdout)
        self.assertIn((context_id, 'ctx-cli', 'unbound'),
                      [(c['ID'], c['Name'], c['State']) for c in listed])
        self.contexts('set', context_id, '--name', 'ctx-renamed',
                      '--description', 'renamed')
        shown = self.context(context_id)
        self.assertEqual(('ctx-renamed', 'renamed'),
                         (shown['name'], shown['description']))

        name = self.name('osc-ctx')
        server = json.loads(self.openstack(
            'server', 'create', '--image', IMAGE, '--flavor', FLAVOR,
            '--nic', 'none', '--device-context', context_id, '--wait',
            '-f', 'json', name).stdout)
        self.assertEqual('ACTIVE', server['status'])
        bound = self.context(context_id)
        self.assertEqual(('bound', server['id']),
                         (bound['state'], bound['server_id']))
        by_server = json.loads(self.contexts(
            'list', '--server', server['id'], '-f', 'json').stdout)
        self.assertEqual([context_id], [c['ID'] for c in by_server])
        self.assert_refused(self.contexts('delete', context_id, check=False),
                            'bound to server %s' % server['id'],
                            '1 of 1 device contexts failed to delete')

        self.openstack('server', 'delete', '--wait', server['id'])
        self.assertEqual('unbound', self.context(context_id)['state'])
        self.contexts('delete', context_id)
        self.assert_refused(self.contexts('show', context_id, check=False),
                            context_id, 'could not be found')

    def test_attach_and_detach_a_context_with_the_real_clients(self):
        # A running server without a context; openstack server add device
        # context --wait binds it (the served compute hot-plugs the FPGA),
        # remove --wait unbinds it, and the same context attaches again.
        server = json.loads(self.openstack(
            'server', 'create', '--image', IMAGE, '--flavor', FLAVOR,
            '--nic', 'none', '--wait', '-f', 'json',
            self.name('osc-attach')).stdout)
        self.addCleanup(self.openstack, 'server', 'delete', '--wait',
                        server['id'])
        context_id = json.loads(self.contexts(
            'create', '--resources', 'FPGA=1', '-f', 'json').stdout)['id']
        self.addCleanup(self.contexts, 'delete', context_id, check=False)

        for _ in range(2):
            attached = json.loads(self.member_openstack(
                'server', 'add', 'device', 'context', server['id'],
                context_id, '--wait', '-f', 'json').stdout)
            self.assertEqual(('bound', server['id']),
                             (attached['state'], attached['server_id']))
            # One device, shown as pool:address.
            [device] = self.context(context_id)['devices'].split(', ')
            self.assertRegex(device, r'^\S+:0000:[0-9a-f]{2}:[0-9a-f]{2}\.\d$')
            self.assertEqual('ACTIVE', self.show(server['id'])['status'])

            detached = json.loads(self.member_openstack(
                'server', 'remove', 'device', 'context', server['id'],
                context_id, '--wait', '-f', 'json').stdout)
            self.assertEqual(('unbound', None),
                             (detached['state'], detached['server_id']))
            self.assertEqual('', self.context(context_id)['devices'])
        # Not attached any more: the client says so, the API is not asked.
        self.assert_refused(self.member_openstack(
            'server', 'remove', 'device', 'context', server['id'],
            context_id, check=False),
            'device context %s is not attached to server %s'
            % (context_id, server['id']))

    def boot_contexts(self, server_id):
        return json.loads(self.member_openstack(
            'server', 'device', 'context', 'list', server_id, '-f',
            'json').stdout)

    def test_detach_a_context_given_at_boot_by_its_index(self):
        # Boot with two inline contexts, list them, detach #0 with --wait:
        # the compute has detached it (its instance action's event) and
        # #1 is untouched.
        server = json.loads(self.openstack(
            'server', 'create', '--image', IMAGE, '--flavor', FLAVOR,
            '--nic', 'none', '--device-context', 'resources:FPGA=1',
            '--device-context', 'resources:FPGA=1', '--wait', '-f', 'json',
            self.name('osc-boot')).stdout)
        self.addCleanup(self.openstack, 'server', 'delete', '--wait',
                        server['id'])
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual(
            [{'Index': 0, 'Kind': 'spec', 'Value': 'resources:FPGA=1',
              'Groups': 1},
             {'Index': 1, 'Kind': 'spec', 'Value': 'resources:FPGA=1',
              'Groups': 1}], self.boot_contexts(server['id']))

        shown = json.loads(self.member_openstack(
            'server', 'remove', 'device', 'context', server['id'],
            '--boot-index', '0', '--wait', '-f', 'json').stdout)
        self.assertEqual((0, 'detached', None, 0),
                         (shown['index'], shown['kind'], shown['value'],
                          shown['groups']))
        self.assertEqual(
            [{'Index': 0, 'Kind': 'detached', 'Value': None, 'Groups': 0},
             {'Index': 1, 'Kind': 'spec', 'Value': 'resources:FPGA=1',
              'Groups': 1}], self.boot_contexts(server['id']))
        action = json.loads(self.openstack(
            'server', 'event', 'show', server['id'], shown['request_id'],
            '-f', 'json').stdout)
        self.assertEqual('detach_boot_context', action['action'])
        self.assertEqual([('compute_detach_boot_context', 'Success')],
                         [(e['event'], e['result'])
                          for e in action['events']])
        # Nova's RequestSpec keeps the place only: no later move asks
        # for it again.
        self.assertEqual(
            {'device_context': ['detached:%s' % uuid.UUID(int=0),
                                'resources:FPGA=1']},
            self.show(server['id'])['scheduler_hints'])
        self.assert_refused(self.member_openstack(
            'server', 'remove', 'device', 'context', server['id'],
            '--boot-index', '0', check=False),
            'server %s has no device context #0' % server['id'])

    def test_device_context_create_bad_spec_names_the_token(self):
        before = json.loads(self.contexts('list', '-f', 'json').stdout)
        proc = self.contexts('create', '--resources', 'FPGA=0',
                             '--name', 'never', check=False)
        self.assert_refused(proc, 'resources:FPGA=0')
        self.assertEqual('', proc.stdout)
        self.assertEqual(before, json.loads(
            self.contexts('list', '-f', 'json').stdout))

    def test_another_projects_device_context_is_not_found(self):
        theirs = json.loads(self.contexts(
            'create', '--resources', 'FPGA=1', '--name', 'theirs', '-f',
            'json', project='another-project').stdout)
        # A member of this project sees nothing of it: not listed, and
        # show, set and delete say what they say of a missing one.
        listed = json.loads(self.contexts('list', '-f', 'json').stdout)
        self.assertNotIn(theirs['id'], [c['ID'] for c in listed])
        missing = str(uuid.uuid4())
        for context_id in (theirs['id'], missing):
            self.assert_refused(self.contexts('show', context_id,
                                              check=False),
                                'Device context %s could not be found'
                                % context_id)
        self.assert_refused(
            self.contexts('set', theirs['id'], '--name', 'mine',
                          check=False), 'could not be found')
        self.assert_refused(
            self.contexts('delete', theirs['id'], check=False),
            'could not be found', '1 of 1 device contexts failed')
        kept = json.loads(self.contexts('show', theirs['id'], '-f', 'json',
                                        project='another-project').stdout)
        self.assertEqual('theirs', kept['name'])


class ClientHelpTest(testtools.TestCase):
    """The options are there without any cloud (help needs no auth)."""

    def setUp(self):
        super().setUp()
        problem = installed_cli_problem()
        if problem:
            self.fail(problem)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(('OS_', 'NOVA_'))}

    def _run(self, *argv):
        proc = subprocess.run(list(argv), env=self.env, capture_output=True,
                              text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        self.assertEqual(0, proc.returncode, proc.stderr)
        return proc.stdout

    def test_openstack_server_create_help(self):
        out = self._run(OPENSTACK, 'server', 'create', '--help')
        self.assertIn('--device-context <id-or-spec>', out)

    def test_nova_help_boot(self):
        out = self._run(NOVA, 'help', 'boot')
        self.assertIn('--device-context-id <uuid>', out)
        self.assertIn('--device-context <id-or-spec>', out)


class ClientSideCheckTest(testtools.TestCase):
    """The client's checks agree with what the cloud accepts."""

    def test_same_classification_as_the_cloud(self):
        # The cloud classifies with nova_acc.hint too (request_groups).
        from nova_acc import hint
        self.assertEqual(hint.HINT, device_context.HINT)
        self.assertEqual(hint.PROFILE_PREFIX, device_context.PROFILE_PREFIX)
        self.assertEqual(hint.PROFILE_NAME_RE.pattern,
                         device_context.PROFILE_NAME_RE.pattern)
        for value in (str(uuid.uuid4()), uuid.uuid4().hex,
                      str(uuid.uuid4()).upper(), 'not-a-uuid', 'profile:x'):
            self.assertEqual(hint.is_context_id(value),
                             device_context.is_context_id(value), value)

    def test_vocabulary_imports_without_nova(self):
        import subprocess
        import sys
        code = ('import sys; sys.modules["nova"] = None; '
                'from nova_acc.cli import device_context; '
                'print(device_context.check("profile:x"))')
        out = subprocess.run([sys.executable, '-c', code], check=True,
                             capture_output=True, text=True).stdout
        self.assertEqual('profile\n', out)

    def test_kinds(self):
        check = device_context.check
        self.assertEqual(device_context.ID, check(str(uuid.uuid4())))
        self.assertEqual(device_context.PROFILE, check('profile:gzip-1.0'))
        self.assertEqual(device_context.SPEC,
                         check(device_context.EXAMPLE))

    def test_bad_values_name_the_value(self):
        for value, why in (('', 'empty'),
                           ('  ', 'empty'),
                           ('profile:', 'profile name'),
                           ('profile:a b', 'profile name'),
                           ('profile:' + 'x' * 65, 'profile name'),
                           ('resources:FPGA=0', 'must be at least 1'),
                           ('FPGA', 'key=value')):
            e = self.assertRaises(device_context.InvalidDeviceContextValue,
                                  device_context.check, value)
            self.assertIn(repr(value), str(e))
            self.assertIn(why, str(e))
        e = self.assertRaises(device_context.InvalidDeviceContextValue,
                              device_context.check_id, 'resources:FPGA=1')
        self.assertIn("'resources:FPGA=1'", str(e))
        self.assertIn('not a UUID', str(e))

    def test_same_context_id_twice(self):
        context_id = str(uuid.uuid4())
        e = self.assertRaises(
            device_context.InvalidDeviceContextValue,
            device_context.check_all,
            [('--device-context-id', context_id),
             ('--device-context', context_id)])
        self.assertIn(context_id, str(e))
        self.assertEqual(
            ['resources:FPGA=1', 'resources:FPGA=1'],
            device_context.check_all([('--device-context',
                                       'resources:FPGA=1')] * 2))


class HookTest(testtools.TestCase):
    """What the hooks do to the parsed arguments, in this process."""

    def test_osc_hook_merges_with_hint(self):
        from nova_acc.cli import osc
        hook = osc.ServerCreateDeviceContextHook(None)
        parser = argparse.ArgumentParser()
        default = {}
        parser.add_argument('--hint', dest='hints', default=default)
        hook.get_parser(parser)
        context_id = str(uuid.uuid4())
        args = parser.parse_args(['--device-context', context_id,
                                  '--device-context', 'resources:FPGA=1'])
        args.hints = {'group': ['g'], 'device_context': ['profile:gzip']}
        self.assertIs(args, hook.before(args))
        self.assertEqual(
            {'group': ['g'],
             'device_context': ['profile:gzip', context_id,
                                'resources:FPGA=1']}, args.hints)
        # Without the option nothing changes, and --hint's shared default
        # is never written to.
        args = parser.parse_args([])
        hook.before(args)
        self.assertIs(default, args.hints)
        self.assertEqual({}, default)

    def test_osc_hook_refuses(self):
        from osc_lib import exceptions

        from nova_acc.cli import osc
        hook = osc.ServerCreateDeviceContextHook(None)
        args = argparse.Namespace(
            hints={'device_context': ['resources:FPGA=x']},
            nova_acc_device_contexts=None)
        e = self.assertRaises(exceptions.CommandError, hook.before, args)
        self.assertIn("--hint device_context 'resources:FPGA=x'", str(e))

    def test_novaclient_hooks(self):
        from novaclient import exceptions
        from novaclient.v2 import shell as v2_shell

        from nova_acc.cli import novaclient_ext
        novaclient_ext.__pre_parse_args__()
        novaclient_ext.__pre_parse_args__()
        options = [a[0][0] for a in v2_shell.do_boot.arguments]
        self.assertEqual(1, options.count('--device-context-id'))
        self.assertEqual(1, options.count('--device-context'))

        context_id = str(uuid.uuid4())
        args = argparse.Namespace(
            scheduler_hints=[('device_context', 'resources:FPGA=1'),
                             ('group', 'g')],
            nova_acc_device_context_ids=[context_id],
            nova_acc_device_contexts=['profile:gzip'])
        novaclient_ext.__post_parse_args__(args)
        self.assertEqual([('group', 'g'),
                          ('device_context', 'resources:FPGA=1'),
                          ('device_context', context_id),
                          ('device_context', 'profile:gzip')],
                         args.scheduler_hints)

        args = argparse.Namespace(scheduler_hints=[],
                                  nova_acc_device_context_ids=['nope'],
                                  nova_acc_device_contexts=None)
        e = self.assertRaises(exceptions.CommandError,
                              novaclient_ext.__post_parse_args__, args)
        self.assertIn("--device-context-id 'nope'", str(e))
        # Other commands have no scheduler hints: left alone.
        novaclient_ext.__post_parse_args__(argparse.Namespace())
