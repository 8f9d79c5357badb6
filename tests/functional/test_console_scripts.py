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
"""The real nova-acc-scheduler and nova-acc-conductor start as configured.

Each test runs a console script's entry point (as setup.cfg names it) from
this source tree in a child process of its own process group, with a
nova.conf of its own: sqlite databases made by ``nova-manage`` and
oslo.messaging's in-memory ``fake:/`` transport, so that neither RabbitMQ
nor MySQL is needed. It counts the processes that serve the RPC topic and
compares them with ``[scheduler] workers`` / ``[conductor] workers``.

1 and 3 workers: one per CPU, what the services did when they read the
option before parsing the config files, is 2 on a 2-core machine, and on
any machine it differs from at least one of them.
"""

import configparser
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import testtools

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# The console script's entry point from this tree, not the installed
# copy: argv[0] as the script has it, the tree first on sys.path.
RUNNER = '''
import importlib, sys
sys.argv[0] = {name!r}
sys.path.insert(0, {root!r})
module, _, func = {target!r}.partition(':')
main = getattr(importlib.import_module(module), func)
where = sys.modules['nova_acc'].__file__
if not where.startswith({root!r} + '/'):
    sys.exit('nova_acc imported from %s, not from {root}' % where)
sys.exit(main())
'''

CONF_TEMPLATE = '''
[DEFAULT]
transport_url = fake:/
state_path = {dir}
host = console-script-test
graceful_shutdown_timeout = 5
[database]
connection = sqlite:///{dir}/nova.sqlite
[api_database]
connection = sqlite:///{dir}/nova_api.sqlite
[placement]
# The managers make a placement client at start; nothing listens here
# (the discard port), which they only warn about.
auth_type = none
endpoint_override = http://127.0.0.1:9/placement
[oslo_concurrency]
lock_path = {dir}/lock
'''

# nova.service logs this in each worker process, when it starts serving.
STARTED = re.compile(r'^\S+ \S+ (\d+) INFO nova\.service \[[^]]*\] '
                     r'Starting (\w+) node', re.M)

START_TIMEOUT = 45
# The counts must stay the same this long after the last change.
SETTLE = 3


def console_script(name):
    """``module:function`` of console script ``name`` in setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO_ROOT, 'setup.cfg'))
    for line in cfg['entry_points']['console_scripts'].splitlines():
        key, _, target = line.partition('=')
        if key.strip() == name:
            return target.strip()
    raise AssertionError('setup.cfg has no console script %s' % name)


def processes():
    """{pid: (ppid, pgid)} of every process but zombies."""
    found = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces.
        fields = stat[stat.rindex(')') + 2:].split()
        if fields[0] != 'Z':
            found[int(entry)] = (int(fields[1]), int(fields[2]))
    return found


class ServiceProcess:
    """A console script in its own process group, output to a file."""

    def __init__(self, name, config_file, log_path):
        self.name = name
        self.log_path = log_path
        runner = RUNNER.format(name=name, root=REPO_ROOT,
                               target=console_script(name))
        with open(log_path, 'ab') as log:
            self.proc = subprocess.Popen(
                [sys.executable, '-c', runner, '--config-file', config_file],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = self.proc.pid

    def log(self):
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def state(self):
        """(worker children, pids that logged starting the service)."""
        children = sorted(pid for pid, (ppid, _) in processes().items()
                          if ppid == self.proc.pid)
        started = sorted({int(m.group(1))
                          for m in STARTED.finditer(self.log())})
        return children, started

    def wait_stable(self):
        """The state once it has not changed for SETTLE seconds."""
        deadline = time.monotonic() + START_TIMEOUT
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError('%s exited with %s:\n%s' % (
                    self.name, self.proc.returncode, self.log()[-6000:]))
            now = self.state()
            if now != last:
                last, since = now, time.monotonic()
            elif now[1] and time.monotonic() - since >= SETTLE:
                return now
            time.sleep(0.2)
        raise AssertionError('%s did not settle within %d s (last: '
                             'workers %s, started %s):\n%s' % (
                                 self.name, START_TIMEOUT, last[0], last[1],
                                 self.log()[-6000:]))

    def group(self):
        return [pid for pid, (_, pgid) in processes().items()
                if pgid == self.pgid]

    def stop(self, timeout=20):
        """SIGTERM the group; what is left after ``timeout`` gets SIGKILL.

        :returns: the pids that had to be killed.
        """
        try:
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not self.group():
                return []
            time.sleep(0.1)
        left = self.group()
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        return left


class ConsoleScriptWorkersTest(testtools.TestCase):
    """``[<service>] workers`` decides how many processes serve."""

    template = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # One pair of synced databases for all tests; each test copies it.
        cls.template = tempfile.mkdtemp(prefix='nova-acc-cmd-db-')
        conf = os.path.join(cls.template, 'nova.conf')
        with open(conf, 'w') as f:
            f.write(CONF_TEMPLATE.format(dir=cls.template))
        for command in ('api_db', 'db'):
            result = subprocess.run(
                [sys.executable, '-c', 'import sys; from nova.cmd.manage '
                 'import main; sys.exit(main())', '--config-file', conf,
                 command, 'sync'],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, timeout=120)
            if result.returncode:
                shutil.rmtree(cls.template, ignore_errors=True)
                raise AssertionError('nova-manage %s sync failed:\n%s'
                                     % (command, result.stdout[-4000:]))

    @classmethod
    def tearDownClass(cls):
        if cls.template:
            shutil.rmtree(cls.template, ignore_errors=True)
        super().tearDownClass()

    def start(self, name, group, workers):
        workdir = tempfile.mkdtemp(prefix='nova-acc-cmd-')
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        for db in ('nova.sqlite', 'nova_api.sqlite'):
            shutil.copy(os.path.join(self.template, db), workdir)
        conf = os.path.join(workdir, 'nova.conf')
        with open(conf, 'w') as f:
            f.write(CONF_TEMPLATE.format(dir=workdir))
            f.write('[%s]\nworkers = %d\n' % (group, workers))
        service = ServiceProcess(name, conf, os.path.join(workdir, 'log'))
        # Whatever happens, nothing of it outlives the test.
        self.addCleanup(service.stop, timeout=0)
        return service

    def assert_workers(self, name, group, topic, workers):
        service = self.start(name, group, workers)
        children, started = service.wait_stable()
        details = ('%s with [%s] workers = %d: worker processes %s, '
                   'processes that started the %s service %s' % (
                       name, group, workers, children, topic, started))
        # oslo.service's threading backend forks even one worker: the
        # master (cotyledon's) only watches them.
        self.assertEqual(workers, len(children), details)
        # Each worker started the service once, none died and was replaced.
        self.assertEqual(children, started, details)
        self.assertIn('Starting %s node' % topic, service.log())
        left = service.stop()
        self.assertEqual([], left, '%s: processes left after SIGTERM; %s'
                         % (name, details))
        self.assertEqual([], service.group())

    def test_scheduler_one_worker(self):
        self.assert_workers('nova-acc-scheduler', 'scheduler', 'scheduler',
                            1)

    def test_scheduler_three_workers(self):
        self.assert_workers('nova-acc-scheduler', 'scheduler', 'scheduler',
                            3)

    def test_conductor_one_worker(self):
        self.assert_workers('nova-acc-conductor', 'conductor', 'conductor',
                            1)

    def test_conductor_three_workers(self):
        self.assert_workers('nova-acc-conductor', 'conductor', 'conductor',
                            3)
