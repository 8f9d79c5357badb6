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
"""``nova-acc demo`` as a user runs it: a separate process, its output."""

import json
import os
import subprocess
import sys

import testtools

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def run_demo(*args, timeout=180):
    return subprocess.run(
        [sys.executable, '-m', 'nova_acc.cmd.demo', 'demo'] + list(args),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


class DemoCommandTest(testtools.TestCase):

    def assert_two_active_one_failed(self, servers, detail):
        """3 servers on 1 host x 2 devices: 2 ACTIVE on distinct devices,
        1 ERROR with the scheduler's fault and nothing attached.

        :returns: the ACTIVE servers' devices and the failed server.
        """
        self.assertEqual(3, len(servers), detail)
        active = [s for s in servers if s['status'] == 'ACTIVE']
        error = [s for s in servers if s['status'] == 'ERROR']
        self.assertEqual(2, len(active), detail)
        self.assertEqual(1, len(error), detail)
        devices = []
        for server in active:
            self.assertEqual('compute1', server['host'])
            self.assertIsNone(server['fault'])
            self.assertEqual(1, len(server['devices']), detail)
            devices.extend(server['devices'])
        self.assertEqual(2, len({d['resource_provider'] for d in devices}),
                         detail)
        failed = error[0]
        self.assertIsNone(failed['host'])
        self.assertEqual([], failed['devices'])
        self.assertIn('No valid host was found', failed['fault'])
        self.assertIn('device context', failed['fault'])
        return devices, failed

    def test_more_servers_than_devices(self):
        proc = run_demo('--json', '--hosts', '1', '--devices-per-host', '2',
                        '--servers', '3')
        detail = 'stdout:\n%s\nstderr:\n%s' % (proc.stdout, proc.stderr)
        self.assertEqual(0, proc.returncode, detail)
        # stdout is exactly one JSON object; progress went to stderr.
        result = json.loads(proc.stdout)
        self.assertIn('booting server 3 of 3', proc.stderr)

        servers = result['servers']
        self.assertEqual(3, len({s['id'] for s in servers}), detail)
        devices, failed = self.assert_two_active_one_failed(servers, detail)
        self.assertEqual(2, len({d['address'] for d in devices}), detail)
        self.assertIn('resources:FPGA=1,trait:CUSTOM_GZIP=required',
                      failed['fault'])

        self.assertIs(True, result['devices_free_after_delete'])

    def test_cyborg_backend_more_servers_than_devices(self):
        proc = run_demo('--backend', 'cyborg', '--json', '--hosts', '1',
                        '--devices-per-host', '2', '--servers', '3')
        detail = 'stdout:\n%s\nstderr:\n%s' % (proc.stdout, proc.stderr)
        self.assertEqual(0, proc.returncode, detail)
        result = json.loads(proc.stdout)
        self.assertIn('creating 3 ARQ(s) from device profile fpga-gzip',
                      proc.stderr)
        self.assertIn('booting server 3 of 3', proc.stderr)
        self.assertEqual([], result['problems'], detail)

        servers = result['servers']
        devices, failed = self.assert_two_active_one_failed(servers, detail)
        # Each server booted with its own ARQ.
        self.assertEqual(3, len({s['context'] for s in servers}), detail)
        # The Cyborg-managed FPGAs the demo gives compute1.
        self.assertEqual({'0000:90:00.0', '0000:90:01.0'},
                         {d['address'] for d in devices}, detail)
        self.assertIn(failed['context'], failed['fault'])

        contexts = result['contexts']
        self.assertEqual([(s['context'], s['id']) for s in servers],
                         [(c['id'], c['server']) for c in contexts], detail)
        states = {c['server']: c['state_after_delete'] for c in contexts}
        # Deleting a server unbinds its ARQ; the ERROR server's ARQ was
        # never bound, so Cyborg still has it as created.
        for server in servers:
            if server['status'] == 'ACTIVE':
                self.assertEqual('Unbound', states[server['id']], detail)
        self.assertEqual('Initial', states[failed['id']], detail)

        self.assertIs(True, result['devices_free_after_delete'])

    def test_cyborg_backend_refuses_context(self):
        proc = run_demo('--backend', 'cyborg', '--context',
                        'resources:FPGA=1', timeout=60)
        self.assertEqual(2, proc.returncode, proc.stderr)
        self.assertEqual('', proc.stdout)
        self.assertIn('--context', proc.stderr)
        self.assertIn('--backend cyborg', proc.stderr)

    def test_hosts_must_be_positive(self):
        proc = run_demo('--hosts', '0', timeout=60)
        self.assertEqual(2, proc.returncode, proc.stderr)
        self.assertEqual('', proc.stdout)
        self.assertIn('--hosts', proc.stderr)
        self.assertIn('at least 1', proc.stderr)
