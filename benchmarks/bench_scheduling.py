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
"""Scheduling benchmarks on the in-process cloud of ``nova-acc demo``.

Every result is a ratio against a baseline measured in the same run, on the
same cloud, so the numbers compare across machines (see README.md):

* ``boot``: one host with 8 FPGAs (one device pool) and 8 other PCI
  devices that Nova's own PCI tracker hands out (``[pci] device_spec`` and
  an alias). Seconds per boot with ``resources:FPGA=1`` / without a device
  context, with a flavor asking Nova for one of its devices
  (``pci_passthrough:alias``) / without, the first / the second, and with
  ``resources:FPGA=8`` (the whole pool in one group) / with
  ``resources:FPGA=1``. Every kind boots the same flavor's size.
* ``wide``: seconds per boot with G groups (``resources:FPGA=1;...``) / with
  one group, with placement's default candidate generation, on one host
  whose devices are one pool (8 and 16 FPGAs) and on one host whose devices
  are two pools (``[nova_acc] pool_by_numa``, FPGAs on two NUMA nodes).
  Also the time of placement's ``GET /allocation_candidates`` alone (the
  scheduler's own query, replayed) and how many candidates it returned.
* ``concurrent``: 20 servers posted at once on 4 hosts x 8 FPGAs: servers
  ACTIVE per second with ``resources:FPGA=1`` / without a device context.
* ``contention``: 6 concurrent boots of ``resources:FPGA=1`` on 4 FPGAs
  (2 hosts x 2): devices put to use with ``[nova_acc] schedule_attempts``
  3 (the default) / 1.

Run: ``.venv/bin/python benchmarks/bench_scheduling.py [--json]``; the
periodic provider-tree update is measured by ``bench_inventory.py``. The
helpers here (hosts with many devices, counting placement requests, timing
a boot) are shared with it.
"""

# As nova-acc's tests and ``nova-acc demo`` do: choose Nova's concurrency
# backend (eventlet) before anything imports oslo.context, oslo.db or
# urllib3. Patched any later, oslo.db's transaction context is a real
# thread-local that every greenthread shares, and concurrent builds fail at
# random with "Can't upgrade a READER transaction to a WRITER".
import warnings

warnings.filterwarnings('ignore', module=r'nova\.monkey_patch')

from nova import monkey_patch; monkey_patch.patch()  # noqa: E402,E702

import argparse  # noqa: E402
import contextlib  # noqa: E402
from concurrent import futures  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import fixtures  # noqa: E402
from nova.compute import resource_tracker  # noqa: E402
import nova.conf as nova_conf  # noqa: E402
from nova.scheduler.client import report  # noqa: E402
from nova.tests.fixtures import libvirt as fakelibvirt  # noqa: E402

from nova_acc.demo import cloud  # noqa: E402
from nova_acc.tests.fixtures import cloud as fixtures_cloud  # noqa: E402


# ---- the cloud ----------------------------------------------------------

# The ``[nova_acc] device_spec`` each benchmark measures, written out here
# rather than taken from the demo cloud: a change there must not move a
# baseline silently. An entry with ``mdev_type`` makes nova-compute look
# for mdev parents among the host's devices on every update, whether or
# not the host has any, so the benchmarks measure with and without one.

#: The FPGAs of ``start_fpga_host`` (the demo cloud's FPGA_SPEC).
FPGA_SPEC = {'vendor_id': '1172', 'product_id': '5050',
             'resource_class': 'FPGA', 'traits': 'CUSTOM_GZIP'}
#: An mdev entry: vGPUs of Nova's fake mdev-capable GPU (the demo's).
VGPU_SPEC = {'vendor_id': fakelibvirt.MDEV_CAPABLE_VEND_ID,
             'mdev_type': 'nvidia-11', 'resource_class': 'VGPU',
             'traits': 'CUSTOM_DEMO_VGPU'}
#: The demo cloud's VFs (Nova's fake libvirt VF IDs).
VF_SPEC = {'vendor_id': fakelibvirt.PCI_VEND_ID,
           'product_id': fakelibvirt.VF_PROD_ID,
           'resource_class': 'CUSTOM_NIC_VF'}
#: What the benchmarks of this script measure (``running`` sets it): the
#: demo cloud's device_spec as of 2026-12-07 (FPGAs, VFs, an mdev entry).
DEVICE_SPEC = [FPGA_SPEC, VF_SPEC, VGPU_SPEC]


def pin_device_spec(case, specs):
    """Set ``[nova_acc] device_spec``: computes started from now use it."""
    case.flags(device_spec=[json.dumps(s) for s in specs], group='nova_acc')


class _AsyncDemoCloud(cloud.DemoCloud):
    """The demo cloud with real casts: the API answers before the build."""

    CAST_AS_CALL = False


@contextlib.contextmanager
def running(cast_as_call=True):
    """``nova_acc.demo.cloud.running``, optionally with real casts.

    With ``DEVICE_SPEC`` as ``[nova_acc] device_spec``, not the demo's.
    """
    if cast_as_call:
        with cloud.running() as case:
            pin_device_spec(case, DEVICE_SPEC)
            yield case
        return
    for name in cloud._RUNNER_ENV:
        os.environ.pop(name, None)
    case = _AsyncDemoCloud('demo')
    try:
        case.setUp()
        pin_device_spec(case, DEVICE_SPEC)
        yield case
    finally:
        case.doCleanups()


def _take_buses(case, count):
    """``count`` PCI buses no other host of the cloud uses."""
    bus = case._next_bus
    case._next_bus += count
    if case._next_bus > 0x100:
        raise ValueError('out of PCI buses in this cloud')
    return bus


def _address(bus, index):
    """The index-th PCI function from bus:00.0 on, 256 to a bus."""
    return bus + index // 256, (index % 256) // 8, index % 8


#: The product ID of the devices Nova's own PCI tracker hands out in the
#: ``boot`` benchmark (``[pci] device_spec``; FPGAs of nova-acc's vendor
#: with another product, which ``[nova_acc] device_spec`` does not select).
NOVA_PCI_PRODUCT = '5051'
#: Their ``[pci] alias``.
NOVA_PCI_ALIAS = {'vendor_id': fixtures_cloud.FPGA_VENDOR,
                  'product_id': NOVA_PCI_PRODUCT, 'name': 'nova-fpga',
                  'device_type': 'type-PCI'}


def use_nova_pci_devices(case):
    """Nova's own PCI passthrough for the ``NOVA_PCI_PRODUCT`` devices.

    Before the hosts start: ``[pci] device_spec`` and ``alias``, and the
    scheduler's ``PciPassthroughFilter``.
    """
    case.flags(device_spec=[json.dumps({
        'vendor_id': fixtures_cloud.FPGA_VENDOR,
        'product_id': NOVA_PCI_PRODUCT})], group='pci')
    case.flags(alias=[json.dumps(NOVA_PCI_ALIAS)], group='pci')
    filters = list(nova_conf.CONF.filter_scheduler.enabled_filters)
    if 'PciPassthroughFilter' not in filters:
        case.flags(enabled_filters=filters + ['PciPassthroughFilter'],
                   group='filter_scheduler')


def start_fpga_host(case, hostname, num_fpgas, numa_nodes=1, num_nova_pci=0):
    """A compute with ``num_fpgas`` FPGAs, as many as wanted.

    ``case.start_fpga_host`` puts each FPGA in a slot of its own, so at most
    32; here 8 functions share a slot and 256 a bus. With ``numa_nodes`` 2
    the first half is on NUMA node 0, the rest on node 1. After them,
    ``num_nova_pci`` devices for Nova's own PCI tracker
    (``use_nova_pci_devices``).
    """
    total = num_fpgas + num_nova_pci
    bus = _take_buses(case, (total + 255) // 256)
    pci_info = fakelibvirt.HostPCIDevicesInfo(num_pci=0, num_pfs=0,
                                              num_vfs=0)
    addresses = []
    for i in range(total):
        b, slot, function = _address(bus, i)
        ours = i < num_fpgas
        dev = pci_info.add_device(
            dev_type='PCI', bus=b, slot=slot, function=function,
            iommu_group=40 + i,
            numa_node=i * numa_nodes // num_fpgas if ours else 0,
            vend_id=fixtures_cloud.FPGA_VENDOR,
            prod_id=(fixtures_cloud.FPGA_PRODUCT if ours
                     else NOVA_PCI_PRODUCT))
        if ours:
            addresses.append(dev.address)
            case._make_sysfs_device(dev.address)
    case.host_devices[hostname] = addresses
    case.start_compute(hostname, pci_info=pci_info)
    return addresses


#: ``[nova_acc] device_spec`` of ``vf_host_pci_info``'s devices.
VF_HOST_DEVICE_SPEC = [
    {'vendor_id': fakelibvirt.PCI_VEND_ID,
     'product_id': fakelibvirt.PF_PROD_ID,
     'resource_class': 'CUSTOM_NIC_PF'},
    {'vendor_id': fakelibvirt.PCI_VEND_ID,
     'product_id': fakelibvirt.VF_PROD_ID,
     'resource_class': 'CUSTOM_NIC_VF'},
    {'vendor_id': '10de', 'product_id': '1eb8',
     'resource_class': 'CUSTOM_GPU'},
]


def vf_host_pci_info(case, num_vfs, num_gpus):
    """A PF with ``num_vfs`` VFs, and ``num_gpus`` GPUs, for a fake libvirt.

    The PF is at <bus>:00.0, its VFs follow it, 256 functions to a bus (as
    with ARI), the GPUs are on the next bus. Nova's fake libvirt writes a
    VF's phys_function and a PF's virt_functions as if all were on one
    bus with at most a few VFs (see ``add_pf_with_vfs`` in
    nova_acc/tests/fixtures/cloud.py); both are rewritten here to name the
    real parent and children.
    """
    buses = (num_vfs + 1 + 255) // 256 + 1
    bus = _take_buses(case, buses)
    pci_info = fakelibvirt.HostPCIDevicesInfo(num_pci=0, num_pfs=0,
                                              num_vfs=0)
    pf = pci_info.add_device(dev_type='PF', bus=bus, slot=0, function=0,
                             iommu_group=1000, numa_node=0, vf_ratio=1)
    pf_xml = ("<address domain='0x0000' bus='%#04x' slot='0x00' "
              "function='0x0'/>" % bus)
    children = []
    for x in range(1, num_vfs + 1):
        b, slot, function = _address(bus, x)
        vf = pci_info.add_device(
            dev_type='VF', bus=b, slot=slot, function=function,
            iommu_group=1000 + x, numa_node=0, vf_ratio=0,
            parent=(bus, 0, 0))
        vf.pci_device = re.sub(
            r"(<capability type='phys_function'>)<address[^>]*/>",
            lambda m: m.group(1) + pf_xml, vf.pci_device)
        children.append("<address domain='0x0000' bus='%#04x' "
                        "slot='%#04x' function='%#x'/>" % (b, slot, function))
    pf.pci_device = re.sub(
        r"(<capability type='virt_functions'>).*?(</capability>)",
        lambda m: m.group(1) + ''.join(children) + m.group(2),
        pf.pci_device, flags=re.S)
    gpu_bus = bus + buses - 1
    for g in range(num_gpus):
        pci_info.add_device(dev_type='PCI', bus=gpu_bus, slot=g, function=0,
                            iommu_group=5000 + g, numa_node=0,
                            vend_id='10de', prod_id='1eb8')
    for dev in pci_info.devices.values():
        case._make_sysfs_device(dev.address)
    return pci_info


# ---- what placement is asked --------------------------------------------


class PlacementRequests:
    """Every request the report clients of the cloud send to placement.

    Wraps ``SchedulerReportClient.get/put/post/delete`` (which the
    placement fixture already routes to the in-process placement), so it
    counts what nova-compute, the scheduler and the conductor send. Also
    times the scheduler's ``GET /allocation_candidates`` and the resource
    tracker's ``_update_to_placement`` (the provider-tree update of a
    resource update: the driver's ``update_provider_tree`` and the report
    client's sync of the tree to placement).
    """

    WRITES = ('put', 'post', 'delete')

    def __init__(self, case):
        self.log = []             # (method, path, url, version)
        self.candidates = []      # (seconds, candidates, hosts)
        # (nodename, seconds, first, last, seconds in Nova's report client
        # reading allocations and syncing the tree to placement)
        self.tree_updates = []
        self._in_placement = [0.0]
        for method in ('get',) + self.WRITES:
            self._wrap(case, method)
        self._wrap_candidates(case)
        self._wrap_tree_update(case)

    def _wrap(self, case, method):
        orig = getattr(report.SchedulerReportClient, method)
        log = self.log

        def wrapper(client, url, *args, **kwargs):
            log.append((method, url.split('?')[0], url,
                        kwargs.get('version')))
            return orig(client, url, *args, **kwargs)

        case.useFixture(fixtures.MonkeyPatch(
            'nova.scheduler.client.report.SchedulerReportClient.' + method,
            wrapper))

    def _wrap_candidates(self, case):
        orig = report.SchedulerReportClient.get_allocation_candidates
        record = self.candidates

        def wrapper(client, context, resources):
            start = time.perf_counter()
            result = orig(client, context, resources)
            areqs, summaries = result[0] or [], result[1] or {}
            hosts = {s.get('root_provider_uuid', rp)
                     for rp, s in summaries.items()}
            record.append((time.perf_counter() - start, len(areqs),
                           len(hosts)))
            return result

        case.useFixture(fixtures.MonkeyPatch(
            'nova.scheduler.client.report.SchedulerReportClient.'
            'get_allocation_candidates', wrapper))

    def _wrap_tree_update(self, case):
        orig = resource_tracker.ResourceTracker._update_to_placement
        record, log = self.tree_updates, self.log
        in_placement = self._in_placement

        def wrapper(tracker, context, compute_node, startup):
            first = len(log)
            in_placement[0] = 0.0
            start = time.perf_counter()
            try:
                return orig(tracker, context, compute_node, startup)
            finally:
                record.append((compute_node.hypervisor_hostname,
                               time.perf_counter() - start, first,
                               len(log), in_placement[0]))

        case.useFixture(fixtures.MonkeyPatch(
            'nova.compute.resource_tracker.ResourceTracker.'
            '_update_to_placement', wrapper))
        # Nova's own placement work in a tree update, whatever the driver
        # does: what a host's pools cost Nova's report client.
        for name in ('get_allocations_for_provider_tree',
                     'update_from_provider_tree'):
            self._wrap_timed(case, name)

    def _wrap_timed(self, case, name):
        orig = getattr(report.SchedulerReportClient, name)
        in_placement = self._in_placement

        def wrapper(client, *args, **kwargs):
            start = time.perf_counter()
            try:
                return orig(client, *args, **kwargs)
            finally:
                in_placement[0] += time.perf_counter() - start

        case.useFixture(fixtures.MonkeyPatch(
            'nova.scheduler.client.report.SchedulerReportClient.' + name,
            wrapper))

    def mark(self):
        return len(self.log)

    def counts(self, first=0, last=None):
        """{'get': n, 'writes': n, 'write_paths': [...]} of log[first:last]."""
        part = self.log[first:last]
        writes = [(m, p) for m, p, _u, _v in part if m in self.WRITES]
        return {'get': sum(1 for m, *_ in part if m == 'get'),
                'writes': len(writes),
                'write_paths': ['%s %s' % (m.upper(), re.sub(
                    r'[0-9a-f-]{36}', '<uuid>', p)) for m, p in writes]}

    def last_candidates_query(self):
        """(url, version) of the latest GET /allocation_candidates."""
        for method, path, url, version in reversed(self.log):
            if method == 'get' and path == '/allocation_candidates':
                return url, version
        return None

    def replay_candidates_query(self, repeats):
        """Seconds of the latest candidates query, asked again.

        The fastest of ``repeats``: the query is the same each time, and
        other processes on the machine can only add time to it.
        """
        url, version = self.last_candidates_query()
        client = report.report_client_singleton()
        durations = []
        for _ in range(repeats):
            start = time.perf_counter()
            resp = client.get(url, version=version)
            durations.append(time.perf_counter() - start)
            if resp.status_code != 200:
                raise RuntimeError('placement said %s to %s' % (
                    resp.status_code, url))
        return min(durations)


# ---- boots --------------------------------------------------------------


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _launched(server):
    return datetime.datetime.fromisoformat(server['OS-SRV-USG:launched_at'])


def failure_log(case):
    """The warnings and errors of Nova's log, for a boot that failed."""
    return '\n'.join(line for line in case.nova_log().splitlines()
                     if ' ERROR ' in line or ' WARNING ' in line or
                     'Error' in line)


def timed_boot(case, contexts, flavor_id=None):
    """Seconds from the POST to the end of the build (``launched_at``).

    ``launched_at`` is set by nova-compute when the guest is up, with
    microseconds, so polling the API (every 0.5 s in Nova's helpers) does
    not round the result.
    """
    start = _utcnow()
    server = case.boot(*contexts, wait=False, flavor_id=flavor_id)
    server = case.wait_for_build_end(server)
    if server['status'] != 'ACTIVE':
        raise RuntimeError('server %s is %s: %s\n%s' % (
            server['id'], server['status'],
            server.get('fault', {}).get('message'), failure_log(case)))
    seconds = (_launched(server) - start).total_seconds()
    if not case.delete_and_wait(server):
        raise RuntimeError('server %s was not deleted' % server['id'])
    return seconds


def median_boots(case, contexts, repeats):
    return statistics.median(timed_boot(case, contexts)
                             for _ in range(repeats))


# ---- the benchmarks -----------------------------------------------------


def bench_boot(repeats):
    """A device context / none; Nova's PCI alias / none; the context / the
    alias; the whole pool in one group / one device."""
    with running() as case:
        use_nova_pci_devices(case)
        requests = PlacementRequests(case)
        start_fpga_host(case, 'compute1', 8, num_nova_pci=8)
        # The same size for every kind; the alias's flavor differs only by
        # its extra spec.
        plain = case._create_flavor(name='plain')
        alias = case._create_flavor(name='nova-fpga', extra_spec={
            'pci_passthrough:alias': '%s:1' % NOVA_PCI_ALIAS['name']})
        kinds = {'none': ((), plain), 'FPGA=1': (('resources:FPGA=1',), plain),
                 'FPGA=8': (('resources:FPGA=8',), plain),
                 'alias=1': ((), alias)}
        for contexts, flavor in kinds.values():  # warm-up: loads code
            timed_boot(case, contexts, flavor)
        seconds = {k: [] for k in kinds}
        candidates = {}
        replayed = {}
        for _ in range(repeats):  # interleaved, so drift hits all alike
            for kind, (contexts, flavor) in kinds.items():
                del requests.candidates[:]
                seconds[kind].append(timed_boot(case, contexts, flavor))
                candidates[kind] = requests.candidates[-1][1]
                if contexts:
                    replayed[kind] = requests.replay_candidates_query(5)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    return {
        'boot_s': med, 'candidates': candidates,
        'candidates_query_s': replayed,
        'ratio_context_vs_none': med['FPGA=1'] / med['none'],
        'ratio_alias_vs_none': med['alias=1'] / med['none'],
        'ratio_context_vs_alias': med['FPGA=1'] / med['alias=1'],
        'ratio_8_devices_vs_1': med['FPGA=8'] / med['FPGA=1'],
        'ratio_8_devices_vs_1_candidates_query':
            replayed['FPGA=8'] / replayed['FPGA=1'],
    }


#: Series of the ``wide`` benchmark: (name, FPGAs, NUMA nodes with their
#: own pool, devices per group, group counts). Ratios are against G=1 of
#: the same series.
WIDE_SERIES = (
    ('one_pool_8_fpgas', 8, 1, 1, (1, 2, 3, 4, 5, 6, 7, 8)),
    ('one_pool_8_fpgas_2_per_group', 8, 1, 2, (1, 2, 3, 4)),
    ('one_pool_16_fpgas', 16, 1, 1, (1, 8, 12, 16)),
    ('two_pools_4_4_fpgas', 8, 2, 1, (1, 2, 4, 6, 8)),
    ('two_pools_8_8_fpgas', 16, 2, 1, (1, 8, 10, 12)),
)


def bench_wide_series(num_fpgas, numa_nodes, amount, group_counts, repeats,
                      max_candidates=None):
    with running() as case:
        case.flags(max_groups_per_server=16, group='nova_acc')
        if numa_nodes > 1:
            case.flags(pool_by_numa=True, group='nova_acc')
        if max_candidates is not None:
            case.placement_fixture.conf_fixture.config(
                max_allocation_candidates=max_candidates,
                allocation_candidates_generation_strategy='breadth-first',
                group='placement')
        requests = PlacementRequests(case)
        start_fpga_host(case, 'compute1', num_fpgas, numa_nodes=numa_nodes)
        pools = len(case.pool_rps())
        timed_boot(case, ('resources:FPGA=%d' % amount,))  # warm-up
        by_groups = {}
        for groups in group_counts:
            spec = ';'.join(['resources:FPGA=%d' % amount] * groups)
            del requests.candidates[:]
            boot = median_boots(case, (spec,), repeats)
            by_groups[groups] = {
                'boot_s': boot,
                'candidates': requests.candidates[-1][1],
                'candidates_query_s': requests.replay_candidates_query(5),
            }
    base = by_groups[group_counts[0]]
    for result in by_groups.values():
        result['ratio'] = result['boot_s'] / base['boot_s']
        result['ratio_candidates_query'] = (
            result['candidates_query_s'] / base['candidates_query_s'])
    return {'fpgas': num_fpgas, 'pools': pools, 'devices_per_group': amount,
            'max_allocation_candidates': max_candidates,
            'by_groups': by_groups}


def bench_wide(repeats, series, extra_groups, capped_groups):
    results = {}
    for name, fpgas, numa, amount, groups in WIDE_SERIES:
        if name not in series:
            continue
        if name == 'two_pools_8_8_fpgas' and extra_groups:
            groups = tuple(sorted(set(groups) | set(extra_groups)))
        results[name] = bench_wide_series(fpgas, numa, amount, groups,
                                          repeats)
    if capped_groups:
        results['two_pools_8_8_fpgas_breadth_first_cap_1000'] = (
            bench_wide_series(16, 2, 1, (1,) + tuple(capped_groups), repeats,
                              max_candidates=1000))
    return results


def _wait_all(case, posted, timeout):
    deadline = time.monotonic() + timeout
    ids = {s['id'] for s in posted}
    while True:
        servers = [s for s in case.api.get_servers(detail=True)
                   if s['id'] in ids]
        if all(s['status'] in ('ACTIVE', 'ERROR') for s in servers) and \
                len(servers) == len(ids):
            return servers
        if time.monotonic() > deadline:
            raise RuntimeError('builds still running after %ds' % timeout)
        time.sleep(0.1)


def _wait_gone(case, servers, timeout):
    deadline = time.monotonic() + timeout
    ids = {s['id'] for s in servers}
    while ids & {s['id'] for s in case.api.get_servers(detail=False)}:
        if time.monotonic() > deadline:
            left = ['%s %s/%s on %s' % (
                s['id'], s['status'], s['OS-EXT-STS:task_state'],
                s['OS-EXT-SRV-ATTR:host'])
                for s in case.api.get_servers(detail=True)
                if s['id'] in ids]
            raise RuntimeError('servers not deleted after %ds: %s\n%s' % (
                timeout, ', '.join(left), failure_log(case)))
        time.sleep(0.1)


def _concurrent_round(case, contexts, servers):
    start = _utcnow()
    with futures.ThreadPoolExecutor(max_workers=servers) as pool:
        posted = list(pool.map(lambda _: case.boot(*contexts, wait=False),
                               range(servers)))
    done = _wait_all(case, posted, timeout=300)
    active = [s for s in done if s['status'] == 'ACTIVE']
    shared = {a: owners for a, owners in case.all_domain_hostdevs().items()
              if len(owners) > 1}
    result = {
        'active': len(active),
        'error': len(done) - len(active),
        'faults': sorted({s.get('fault', {}).get('message', '')[:200]
                          for s in done if s['status'] == 'ERROR'}),
        'seconds': (max(_launched(s) for s in active) - start
                    ).total_seconds() if active else None,
        'devices_in_two_guests': len(shared),
    }
    result['active_per_s'] = (len(active) / result['seconds']
                              if active else 0.0)
    for server in done:
        case.api.delete_server(server['id'])
    _wait_gone(case, done, timeout=120)
    return result


def bench_concurrent(servers, hosts, devices, rounds):
    """``servers`` boots posted at once; ACTIVE per second, context / none.

    Real casts (the API answers before the build), as in a real cloud; the
    two kinds alternate, round by round, on the same cloud.
    """
    kinds = {'none': (), 'FPGA=1': ('resources:FPGA=1',)}
    with running(cast_as_call=False) as case:
        case.flags(instances=-1, cores=-1, ram=-1, group='quota')
        for i in range(hosts):
            start_fpga_host(case, 'compute%d' % (i + 1), devices)
        for contexts in kinds.values():
            timed_boot(case, contexts)  # warm-up
        by_kind = {k: [] for k in kinds}
        for _ in range(rounds):
            for kind, contexts in kinds.items():
                by_kind[kind].append(
                    _concurrent_round(case, contexts, servers))
    rate = {k: statistics.median(r['active_per_s'] for r in v)
            for k, v in by_kind.items()}
    return {'servers': servers, 'hosts': hosts, 'devices_per_host': devices,
            'rounds': by_kind, 'active_per_s': rate,
            'ratio': rate['FPGA=1'] / rate['none']}


def devices_used_under_contention(attempts, servers):
    with running() as case:
        case.flags(schedule_attempts=attempts, group='nova_acc')
        case.flags(instances=-1, cores=-1, ram=-1, group='quota')
        case.start_fpga_host('compute1', num_fpgas=2)
        case.start_fpga_host('compute2', num_fpgas=2)
        with futures.ThreadPoolExecutor(max_workers=servers) as pool:
            posted = list(pool.map(
                lambda _: case.boot('resources:FPGA=1', wait=False),
                range(servers)))
        done = [case.wait_for_build_end(s) for s in posted]
        return sum(1 for s in done if s['status'] == 'ACTIVE')


def bench_contention(servers, rounds):
    ours = [devices_used_under_contention(3, servers) for _ in range(rounds)]
    nova = [devices_used_under_contention(1, servers) for _ in range(rounds)]
    return {'devices': 4, 'servers': servers,
            'used_nova_acc': ours, 'used_baseline': nova,
            'ratio': statistics.mean(ours) / max(statistics.mean(nova), 1)}


def _groups(text):
    return tuple(int(g) for g in text.split(',') if g)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', default='boot,wide,concurrent,contention',
                        help='comma-separated benchmarks to run '
                             '[%(default)s]')
    parser.add_argument('--repeats', type=int, default=5,
                        help='boots per kind in "boot" (median) '
                             '[%(default)s]')
    parser.add_argument('--wide-repeats', type=int, default=3,
                        help='boots per group count in "wide" (median) '
                             '[%(default)s]')
    parser.add_argument('--wide-series',
                        default=','.join(s[0] for s in WIDE_SERIES),
                        help='series of "wide" to run [all]')
    parser.add_argument('--wide-two-pools-groups', type=_groups, default=(),
                        help='more group counts for two_pools_8_8_fpgas, '
                             'e.g. 14,16 (16 takes minutes a boot)')
    parser.add_argument('--wide-capped-groups', type=_groups, default=(),
                        help='group counts for two pools of 8 with '
                             'breadth-first and max_allocation_candidates='
                             '1000, e.g. 12,16 [not run]')
    parser.add_argument('--concurrent-servers', type=int, default=20)
    parser.add_argument('--concurrent-rounds', type=int, default=2)
    parser.add_argument('--contention-rounds', type=int, default=2)
    parser.add_argument('--json', action='store_true',
                        help='print every number as JSON (after the log '
                             'lines the clouds print when they stop)')
    parser.add_argument('--output', metavar='FILE',
                        help='also write every number as JSON to FILE')
    args = parser.parse_args()
    only = set(args.only.split(','))

    results = {}
    if 'boot' in only:
        results['boot'] = bench_boot(args.repeats)
    if 'wide' in only:
        results['wide'] = bench_wide(
            args.wide_repeats, set(args.wide_series.split(',')),
            args.wide_two_pools_groups, args.wide_capped_groups)
    if 'concurrent' in only:
        results['concurrent'] = bench_concurrent(
            args.concurrent_servers, 4, 8, args.concurrent_rounds)
    if 'contention' in only:
        results['contention'] = bench_contention(6, args.contention_rounds)
    if args.output:
        with open(args.output, 'w') as f:
            json.dump(results, f, indent=2, sort_keys=True)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return
    print_summary(results)


def print_summary(results):
    if 'boot' in results:
        b = results['boot']
        print('boot, resources:FPGA=1 / no device context: %.2fx; '
              "Nova's PCI alias / none: %.2fx; resources:FPGA=1 / Nova's "
              'PCI alias: %.2fx' % (b['ratio_context_vs_none'],
                                    b['ratio_alias_vs_none'],
                                    b['ratio_context_vs_alias']))
        print('boot, resources:FPGA=8 / resources:FPGA=1 (8-FPGA pool): '
              '%.2fx (candidates query %.2fx; candidates %s)' % (
                  b['ratio_8_devices_vs_1'],
                  b['ratio_8_devices_vs_1_candidates_query'],
                  b['candidates']))
    for name, series in results.get('wide', {}).items():
        print('wide %s (%d pool(s)), boot / G=1, candidates query / G=1, '
              'candidates:' % (name, series['pools']))
        for groups, r in series['by_groups'].items():
            print('  G=%-2s %5.2fx %6.2fx %5d' % (
                groups, r['ratio'], r['ratio_candidates_query'],
                r['candidates']))
    if 'concurrent' in results:
        c = results['concurrent']
        print('concurrent, %d boots on %d hosts x %d FPGAs, ACTIVE per s '
              'with a context / without: %.2fx; ACTIVE/ERROR per round: %s'
              % (c['servers'], c['hosts'], c['devices_per_host'],
                 c['ratio'], {k: [(r['active'], r['error']) for r in v]
                              for k, v in c['rounds'].items()}))
    if 'contention' in results:
        c = results['contention']
        print('contention, %d concurrent boots on %d devices: devices used '
              'schedule_attempts=3 %s vs 1 %s (%.2fx)' % (
                  c['servers'], c['devices'], c['used_nova_acc'],
                  c['used_baseline'], c['ratio']))


if __name__ == '__main__':
    main()
