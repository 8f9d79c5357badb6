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
import re
import subprocess
import sys
import time

import requests
import testtools

from nova_acc.demo import plan
from nova_acc.demo import serve
from tests.functional import test_cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def run_demo(*args, timeout=180):
    return subprocess.run(
        [sys.executable, '-m', 'nova_acc.cmd.demo', 'demo'] + list(args),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def run_json(test, *args):
    """Run the demo with --json; (result, detail) once it exited 0."""
    proc = run_demo('--json', *args)
    detail = 'stdout:\n%s\nstderr:\n%s' % (proc.stdout, proc.stderr)
    test.assertEqual(0, proc.returncode, detail)
    result = json.loads(proc.stdout)
    test.assertEqual([], result['problems'], detail)
    test.assertIs(True, result['devices_free_after_delete'], detail)
    return result, detail


class DemoCommandTest(testtools.TestCase):

    def assert_two_active_one_failed(self, servers, detail, providers):
        """3 servers on 1 host x 2 devices: 2 ACTIVE on distinct devices,
        1 ERROR with the scheduler's fault and nothing attached.

        :param providers: how many providers the two devices are in (one
            pool of nova-acc, or a provider per Cyborg device).
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
        self.assertEqual(2, len({d['address'] for d in devices}), detail)
        self.assertEqual(providers,
                         len({d['resource_provider'] for d in devices}),
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
        devices, failed = self.assert_two_active_one_failed(servers, detail,
                                                            providers=1)
        # The host's two FPGAs are one pool.
        pool, = result['pools']
        self.assertEqual(
            ('compute1', 'FPGA', 2, ['CUSTOM_GZIP']),
            (pool['host'], pool['resource_class'], pool['devices'],
             pool['traits']), detail)
        self.assertEqual({pool['resource_provider']},
                         {d['resource_provider'] for d in devices}, detail)
        self.assertIn('resources:FPGA=1,trait:CUSTOM_GZIP=required',
                      failed['fault'])

        self.assertIs(True, result['devices_free_after_delete'])
        self.assert_context_by_id(result['context_by_id'], pool, detail)

    def assert_context_by_id(self, ctx, pool, detail):
        """The context by ID booted two servers, one after the other, and
        was bound to each while it lived, unbound after its delete."""
        self.assertIsNone(ctx['skipped'], detail)
        self.assertEqual((plan.DEFAULT_CONTEXT, {}),
                         (ctx['spec'], ctx['config']), detail)
        first, second = ctx['servers']
        self.assertEqual(['demo-id-1', 'demo-id-2'],
                         [first['name'], second['name']], detail)
        self.assertNotEqual(first['id'], second['id'], detail)
        self.assertEqual([
            ('creation', 'unbound', None, None),
            ('boot of demo-id-1', 'bound', first['id'], 'compute1'),
            ('delete of demo-id-1', 'unbound', None, None),
            ('boot of demo-id-2', 'bound', second['id'], 'compute1'),
            ('delete of demo-id-2', 'unbound', None, None),
        ], [(s['after'], s['state'], s['server_id'], s['host'])
            for s in ctx['seen']], detail)
        for server in (first, second):
            self.assertEqual('ACTIVE', server['status'], detail)
            device, = server['devices']
            self.assertEqual(pool['resource_provider'],
                             device['resource_provider'], detail)
        # Once the compute records the devices it picked in the context,
        # they are the server's.
        for seen, server in ((ctx['seen'][1], first),
                             (ctx['seen'][3], second)):
            if seen['devices']:
                self.assertEqual(
                    [d['address'] for d in server['devices']],
                    [d.get('address') for d in seen['devices']], detail)

    def test_report_shows_the_context_by_id(self):
        proc = run_demo('--hosts', '1', '--devices-per-host', '1',
                        '--servers', '1')
        detail = 'stdout:\n%s\nstderr:\n%s' % (proc.stdout, proc.stderr)
        self.assertEqual(0, proc.returncode, detail)
        lines = [line.strip() for line in proc.stdout.splitlines()]
        header, = [line.split() for line in lines if line.startswith(
            'device context by ID (nova-acc-api): ')]
        ctx_id, name = header[5:]
        self.assertEqual('demo-context', name, detail)
        self.assertIn('device context by ID: booting demo-id-2 with %s'
                      % ctx_id, proc.stderr)
        self.assertIn('spec %s' % plan.DEFAULT_CONTEXT, lines)
        self.assertIn('config data: none (no device_spec entry of the demo '
                      'allows accel:* keys: a server asking for them would '
                      'find no device)', ' '.join(proc.stdout.split()))
        self.assertEqual([
            'after creation: unbound',
            'after boot of demo-id-1: bound to demo-id-1 on compute1',
            'after delete of demo-id-1: unbound',
            'after boot of demo-id-2: bound to demo-id-2 on compute1',
            'after delete of demo-id-2: unbound',
        ], [line for line in lines if line.startswith(
            ('after creation', 'after boot', 'after delete of'))], detail)
        for i in (1, 2):
            self.assertRegex(proc.stdout, r'\n    server demo-id-%d '
                             r'[-0-9a-f]{36} ACTIVE\n' % i)
        self.assertEqual(2, len([
            line for line in lines if re.match(
                r'^in its domain: 0000:81:00\.0 \(pool compute1_FPGA_'
                r'[0-9a-f]+\)$', line)]), detail)
        # None until the compute records the devices it picked; then the
        # device in the domain.
        recorded = [line for line in lines if line.startswith('recorded ')]
        self.assertIn(recorded, (
            ['recorded devices: none'] * 2,
            ['recorded device 0000:81:00.0  pool %s' % (
                recorded[0].split()[-1] if recorded else '')] * 2), detail)
        self.assertNotIn('INCONSISTENT', proc.stdout)

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
        devices, failed = self.assert_two_active_one_failed(servers, detail,
                                                            providers=2)
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

    def test_serve_serves_the_device_context_api(self):
        served = test_cli.ServeProcess('--hosts', '1', '--devices-per-host',
                                       '1')
        try:
            self._use_served_contexts(served)
        finally:
            served.stop()

    def _use_served_contexts(self, served):
        detail = served.details()
        second = served.stdout[1].split()
        self.assertEqual('DEVICE-CONTEXTS', second[0], detail)
        contexts_url = second[1]
        root = served.url[:-len(serve.COMPUTE_PATH)]
        self.assertEqual(root + serve.CONTEXTS_PATH, contexts_url)
        project = served.exports['NOVA_PROJECT_ID']
        # The printed curl calls: as a member of the Nova API's project.
        printed = ''.join(served.stdout)
        self.assertIn("curl -s -H 'X-Auth-Token: demo:%s' -H 'X-Roles: "
                      "member,reader'" % project, printed)
        self.assertIn('%s/v1/device-contexts' % contexts_url, printed)
        member = {'X-Auth-Token': 'demo:%s' % project,
                  'X-Roles': 'member,reader'}
        ctx = requests.post(
            contexts_url + '/v1/device-contexts', headers=member,
            json={'device_context': {'spec': plan.DEFAULT_CONTEXT}},
            timeout=30).json()['device_context']
        ctx_url = '%s/v1/device-contexts/%s' % (contexts_url, ctx['id'])
        self.assertEqual(404, requests.get(ctx_url, headers={
            'X-Auth-Token': 'demo:other', 'X-Roles': 'member,reader'},
            timeout=30).status_code)

        server_id = self._boot_served(served.url, ctx['id'])
        bound = requests.get(ctx_url, headers=member,
                             timeout=30).json()['device_context']
        self.assertEqual(('bound', server_id, 'compute1'), (
            bound['state'], bound['server_id'], bound['host']))
        requests.delete('%s/servers/%s' % (served.url, server_id),
                        timeout=30).raise_for_status()
        self._wait(lambda: requests.get(
            '%s/servers/%s' % (served.url, server_id),
            timeout=30).status_code == 404)
        self.assertEqual('unbound', requests.get(
            ctx_url, headers=member, timeout=30).json()[
                'device_context']['state'])

    def _boot_served(self, url, context_id):
        """Boot a server with the served compute API; its ID once ACTIVE."""
        flavor, = [f['id'] for f in requests.get(
            url + '/flavors', timeout=30).json()['flavors']
            if f['name'] == serve.DEMO_FLAVOR]
        root = url[:-len(serve.COMPUTE_PATH)]
        image, = requests.get(
            root + serve.IMAGE_PATH + '/v2/images',
            params={'name': serve.DEMO_IMAGE}, timeout=30).json()['images']
        resp = requests.post(url + '/servers', headers={
            'X-OpenStack-Nova-API-Version': '2.96'}, json={
            'server': {'name': 'by-id', 'imageRef': image['id'],
                       'flavorRef': flavor, 'networks': 'none'},
            'os:scheduler_hints': {'device_context': context_id}},
            timeout=30)
        resp.raise_for_status()
        server_id = resp.json()['server']['id']
        self._wait(lambda: requests.get(
            '%s/servers/%s' % (url, server_id), timeout=30).json()[
                'server']['status'] in ('ACTIVE', 'ERROR'))
        server = requests.get('%s/servers/%s' % (url, server_id),
                              timeout=30).json()['server']
        self.assertEqual('ACTIVE', server['status'], server)
        return server_id

    @staticmethod
    def _wait(done, timeout=60):
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError('not done within %d s' % timeout)
            time.sleep(0.2)

    def test_cyborg_backend_refuses_context(self):
        proc = run_demo('--backend', 'cyborg', '--context',
                        'resources:FPGA=1', timeout=60)
        self.assertEqual(2, proc.returncode, proc.stderr)
        self.assertEqual('', proc.stdout)
        self.assertIn('--context', proc.stderr)
        self.assertIn('--backend cyborg', proc.stderr)

    def assert_failed_for_devices(self, server, spec, detail):
        self.assertEqual('ERROR', server['status'], detail)
        self.assertIsNone(server['host'], detail)
        self.assertEqual([], server['devices'], detail)
        self.assertIn('No valid host was found', server['fault'])
        self.assertIn('device context', server['fault'])
        self.assertIn(spec, server['fault'])

    def test_one_group_gets_all_eight_devices_of_a_host(self):
        spec = 'resources:FPGA=8,trait:CUSTOM_GZIP=required'
        result, detail = run_json(self, '--hosts', '1', '--devices-per-host',
                                  '8', '--servers', '2', '--context', spec)
        first, second = result['servers']
        self.assertEqual('ACTIVE', first['status'], detail)
        self.assertEqual('compute1', first['host'])
        addresses = [d['address'] for d in first['devices']]
        self.assertEqual(8, len(set(addresses)), detail)
        # All from the host's one pool, which has all 8.
        pool, = result['pools']
        self.assertEqual(('FPGA', 8), (pool['resource_class'],
                                       pool['devices']), detail)
        self.assertEqual({(pool['resource_provider'], pool['name'])},
                         {(d['resource_provider'], d['resource_provider_name'])
                          for d in first['devices']}, detail)
        # The pool is empty now: the next server of 8 cannot be had.
        self.assert_failed_for_devices(second, spec, detail)

    def test_vf_pool(self):
        spec = 'resources:%s=4' % plan.VF_RESOURCE_CLASS
        result, detail = run_json(self, '--hosts', '1', '--devices-per-host',
                                  '1', '--vfs-per-host', '6', '--servers',
                                  '2', '--context', spec)
        pools = {p['resource_class']: p for p in result['pools']}
        self.assertEqual({'FPGA', plan.VF_RESOURCE_CLASS}, set(pools))
        vf_pool = pools[plan.VF_RESOURCE_CLASS]
        self.assertEqual(6, vf_pool['devices'], detail)
        self.assertEqual([], vf_pool['traits'], detail)
        first, second = result['servers']
        self.assertEqual('ACTIVE', first['status'], detail)
        self.assertEqual(4, len({d['address'] for d in first['devices']}),
                         detail)
        self.assertEqual({vf_pool['resource_provider']},
                         {d['resource_provider'] for d in first['devices']},
                         detail)
        # Each PF's VFs are a pool of their own, named after the PF; the
        # VFs are functions of the PF's slots.
        pf = vf_pool['name'].split('_')[1]
        self.assertTrue(pf.endswith('.0'), vf_pool['name'])
        # 2 VFs left: not enough for a second server.
        self.assert_failed_for_devices(second, spec, detail)

    def test_vgpu_pool(self):
        spec = 'resources:%s=2,trait:%s=required' % (
            plan.VGPU_RESOURCE_CLASS, plan.VGPU_TRAIT)
        result, detail = run_json(self, '--hosts', '1', '--vgpus-per-host',
                                  '3', '--servers', '2', '--context', spec)
        pools = {p['resource_class']: p for p in result['pools']}
        self.assertEqual({'FPGA', plan.VGPU_RESOURCE_CLASS}, set(pools))
        vgpu_pool = pools[plan.VGPU_RESOURCE_CLASS]
        self.assertEqual(3, vgpu_pool['devices'], detail)
        self.assertEqual([plan.VGPU_TRAIT], vgpu_pool['traits'], detail)
        first, second = result['servers']
        self.assertEqual('ACTIVE', first['status'], detail)
        # Two mdevs of the demo type, created for this server on the
        # host's one GPU, from its vGPU pool.
        self.assertEqual(2, len({d['mdev_uuid'] for d in first['devices']}),
                         detail)
        self.assertEqual({(plan.VGPU_TYPE, vgpu_pool['resource_provider'])},
                         {(d['mdev_type'], d['resource_provider'])
                          for d in first['devices']}, detail)
        self.assertEqual(1, len({d['parent'] for d in first['devices']}),
                         detail)
        # One vGPU left: not enough for a second server. (run_json checked
        # that no mdev is left on the host after the deletes.)
        self.assert_failed_for_devices(second, spec, detail)

    def test_vgpus_per_host_is_checked(self):
        proc = run_demo('--vgpus-per-host', '17', timeout=60)
        self.assertEqual(2, proc.returncode, proc.stderr)
        self.assertEqual('', proc.stdout)
        self.assertIn('--vgpus-per-host', proc.stderr)
        self.assertIn('must be at most 16, got 17', proc.stderr)
        for other in (('--backend', 'cyborg'), ('--serve',)):
            proc = run_demo('--vgpus-per-host', '2', *other, timeout=60)
            self.assertEqual(2, proc.returncode, proc.stderr)
            self.assertIn('--vgpus-per-host', proc.stderr)
            self.assertIn(other[0], proc.stderr)

    def test_request_no_pool_can_hold(self):
        spec = 'resources:%s=5' % plan.VF_RESOURCE_CLASS
        proc = run_demo('--hosts', '1', '--vfs-per-host', '4', '--servers',
                        '1', '--context', spec)
        detail = 'stdout:\n%s\nstderr:\n%s' % (proc.stdout, proc.stderr)
        self.assertEqual(0, proc.returncode, detail)
        self.assertIn('expected: 5 devices per server (CUSTOM_NIC_VF=5), 0 '
                      'ACTIVE, 1 ERROR (device group 1 asks for 5 '
                      'CUSTOM_NIC_VF devices from one provider; the largest '
                      'CUSTOM_NIC_VF pool of a host has 4)', proc.stdout)
        self.assertIn('demo-1', proc.stdout)
        self.assertIn('0 servers ACTIVE, 1 ERROR; devices free after delete: '
                      'yes', proc.stdout)
        self.assertIn("device context by ID (nova-acc-api): not made, no "
                      "server of the demo's spec fits on a host",
                      proc.stdout)
        self.assertNotIn('INCONSISTENT', proc.stdout + proc.stderr)

    def test_vfs_per_host_is_checked(self):
        for value, message in (('-1', 'must be 0 or more, got -1'),
                               ('65', 'must be at most 64, got 65'),
                               ('x', "'x' is not a whole number")):
            proc = run_demo('--vfs-per-host', value, timeout=60)
            self.assertEqual(2, proc.returncode, proc.stderr)
            self.assertEqual('', proc.stdout)
            self.assertIn('--vfs-per-host', proc.stderr)
            self.assertIn(message, proc.stderr)
        proc = run_demo('--backend', 'cyborg', '--vfs-per-host', '2',
                        timeout=60)
        self.assertEqual(2, proc.returncode, proc.stderr)
        self.assertIn('--vfs-per-host', proc.stderr)
        self.assertIn('--backend cyborg', proc.stderr)

    def test_hosts_must_be_positive(self):
        proc = run_demo('--hosts', '0', timeout=60)
        self.assertEqual(2, proc.returncode, proc.stderr)
        self.assertEqual('', proc.stdout)
        self.assertIn('--hosts', proc.stderr)
        self.assertIn('at least 1', proc.stderr)


class ExpectTest(testtools.TestCase):
    """plan.expect: how many servers the pools of the hosts take."""

    FPGAS = plan.PoolKind('FPGA', 8, frozenset({'CUSTOM_GZIP', 'OWNER_NOVA',
                                               'CUSTOM_NOVA_ACC'}), 8)
    VFS = plan.PoolKind(plan.VF_RESOURCE_CLASS, 6,
                        frozenset({'OWNER_NOVA', 'CUSTOM_NOVA_ACC'}), 6)

    def expect(self, hosts, servers, *contexts):
        return plan.expect(plan.Options(hosts=len(hosts), servers=servers,
                                        contexts=contexts), hosts)

    def test_a_group_takes_a_number_of_devices_of_one_pool(self):
        exp = self.expect([(self.FPGAS,)] * 2, 5, 'resources:FPGA=3')
        self.assertEqual((3, 4, (2, 2), None), (
            exp.devices_per_server, exp.active, exp.per_host,
            exp.unsatisfiable))

    def test_groups_share_a_pool(self):
        exp = self.expect([(self.FPGAS,)], 3,
                          'resources:FPGA=2;resources:FPGA=1',
                          'resources:FPGA=1')
        self.assertEqual((4, 2, {'FPGA': 4}), (
            exp.devices_per_server, exp.active, exp.per_class))

    def test_each_class_from_its_own_pool(self):
        exp = self.expect([(self.FPGAS, self.VFS)] * 2, 9,
                          'resources:FPGA=1',
                          'resources:%s=2' % plan.VF_RESOURCE_CLASS)
        # 6 VFs / 2 per server run out before 8 FPGAs / 1.
        self.assertEqual((3, 3), exp.per_host)
        self.assertEqual(6, exp.active)

    def test_cyborg_providers_of_one_device_each(self):
        device = plan.PoolKind('FPGA', 1, frozenset({'CUSTOM_FPGA_GZIP'}),
                               2147483647)
        exp = self.expect([(device,) * 3], 5, 'resources:FPGA=1')
        self.assertEqual(3, exp.active)
        exp = self.expect([(device,) * 3], 1, 'resources:FPGA=2')
        self.assertEqual(0, exp.active)
        self.assertIn('providers of one device each', exp.unsatisfiable)

    def test_unsatisfiable(self):
        host = [(self.FPGAS,)]
        for contexts, reason in (
                (('resources:FPGA=9',),
                 'device group 1 asks for 9 FPGA devices from one provider; '
                 'the largest FPGA pool of a host has 8'),
                (('resources:FPGA=5', 'resources:FPGA=4'),
                 'a server needs 9 x FPGA on one host; a host has 8 x FPGA'),
                (('resources:FPGA=1,trait:CUSTOM_GZIP=forbidden',),
                 'device group 1 forbids trait(s) CUSTOM_GZIP, which the '
                 'FPGA devices have'),
                (('resources:FPGA=1,trait:CUSTOM_X=required',),
                 'device group 1 requires trait(s) CUSTOM_X, which the FPGA '
                 'devices lack'),
                (('resources:%s=1' % plan.VF_RESOURCE_CLASS,),
                 'device group 1 asks for CUSTOM_NIC_VF, which no demo '
                 'device has (they have FPGA)'),
                (('resources:FPGA=1,resources:%s=1'
                  % plan.VF_RESOURCE_CLASS,),
                 'device group 1 asks for CUSTOM_NIC_VF and FPGA from one '
                 'provider')):
            exp = self.expect(host, 2, *contexts)
            self.assertEqual(0, exp.active, contexts)
            self.assertIn(reason, exp.unsatisfiable or '', contexts)
