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
"""Provider-tree benchmarks: what a host's devices cost its resource updates.

Ratios against a baseline measured in the same run (see README.md):

* ``periodic``: hosts with N FPGAs (one device pool), N = 8, 64, 512, and a
  host without devices, in one cloud; and hosts with N FPGAs (512) whose
  ``device_spec`` also has an mdev entry (``fpga<N>_mdev``). Each host's
  ``device_spec`` is pinned here (``FPGA_DEVICE_SPEC``,
  ``FPGA_MDEV_DEVICE_SPEC``), not taken from the demo cloud. The periodic
  resource update (``ComputeManager.update_available_resource``) and the
  provider-tree update in it (``ResourceTracker._update_to_placement``:
  the driver's ``update_provider_tree`` and the sync to placement) of a
  host with N / of the host without; the same N devices on a host where
  nova-acc manages none (no ``device_spec``) separate Nova's own cost of N
  PCI devices.
  Placement requests: the first report's writes, a periodic run's GETs and
  writes.
* ``big_host``: a host with one PF with 2048 VFs plus 8 GPUs (3 pools,
  ``VF_HOST_DEVICE_SPEC``, which the host without devices has too) /
  the host without devices: the first report and unchanged periodic runs
  (which must write nothing to placement), with and without a server
  holding 4 VFs.
* ``pure_cpu``: ``nova_acc.compute.inventory.update_provider_tree`` alone on
  Nova's ``ProviderTree`` with ``os_acc.Device`` objects, no cloud: PF +
  2048 VFs + 8 GPUs / 8 GPUs, and PF + 2048 VFs / PF + 256 VFs (8x the
  devices).

For each host of ``periodic`` and ``big_host`` a *floor* too
(``_floors``): its ratios if nova-acc's own work took no time.

Run: ``.venv/bin/python benchmarks/bench_inventory.py [--json]``.
"""

import argparse
import json
import os
import statistics
import sys
import time
import uuid as uuid_lib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# First: it patches eventlet before anything else of OpenStack is imported.
import bench_scheduling as common  # noqa: E402

from nova.compute import provider_tree as nova_provider_tree  # noqa: E402
from nova import context as nova_context  # noqa: E402
import os_acc  # noqa: E402

from nova_acc.compute import inventory  # noqa: E402
from nova_acc.compute import ledger  # noqa: E402
from nova_acc import pools  # noqa: E402


def _warm_up(case):
    """A first host, not measured: the first start in a cloud does more.

    (loads code, creates the capability trait in placement, ...)
    """
    case.start_compute('warm-up')
    case.start_compute('warm-up-2')


def _start_empty(case, requests):
    """The hosts without devices; the median of their first reports.

    One first report is a single sample; three make the baseline steadier.
    Only ``empty`` takes part in the periodic runs.
    """
    firsts = [_start(case, requests, name)
              for name in ('empty', 'empty-2', 'empty-3')]
    result = dict(firsts[0])
    for key in ('start_s', 'tree_update_s', 'nova_placement_s'):
        result[key] = statistics.median(f[key] for f in firsts)
    return result


def _first_report(requests, hostname, start_compute):
    """Start a compute; its first report: seconds and placement requests."""
    mark = requests.mark()
    start = time.perf_counter()
    start_compute()
    seconds = time.perf_counter() - start
    tree = [t for t in requests.tree_updates if t[0] == hostname]
    return {'start_s': seconds, 'tree_update_s': tree[0][1],
            'nova_placement_s': tree[0][4],
            'requests': requests.counts(mark)}


def _start(case, requests, hostname, **kwargs):
    return _first_report(requests, hostname,
                         lambda: case.start_compute(hostname, **kwargs))


def _start_fpgas(case, requests, hostname, num_fpgas):
    return _first_report(requests, hostname, lambda: common.start_fpga_host(
        case, hostname, num_fpgas))


def _periodic(case, requests, hostname):
    """One periodic resource update of a host: seconds and requests."""
    ctxt = nova_context.get_admin_context()
    mark = requests.mark()
    updates = len(requests.tree_updates)
    start = time.perf_counter()
    case.computes[hostname].manager.update_available_resource(ctxt)
    seconds = time.perf_counter() - start
    tree = requests.tree_updates[updates:]
    return {'periodic_s': seconds, 'tree_update_s': tree[0][1],
            'nova_placement_s': tree[0][4],
            'requests': requests.counts(mark)}


def _periodics(case, requests, hostnames, repeats):
    """Interleaved periodic runs: medians and the last run's requests."""
    runs = {h: [] for h in hostnames}
    for _ in range(repeats):
        for hostname in hostnames:
            runs[hostname].append(_periodic(case, requests, hostname))
    return {h: dict({key: statistics.median(r[key] for r in v)
                     for key in ('periodic_s', 'tree_update_s',
                                 'nova_placement_s')},
                    writes=[r['requests']['writes'] for r in v],
                    gets=v[-1]['requests']['get'])
            for h, v in runs.items()}


def _ratios(results, baseline, key):
    return {h: r[key] / results[baseline][key] for h, r in results.items()}


def _floors(first, runs, baseline='empty'):
    """The ratios each host would have if nova-acc's own work took no time.

    What no change in nova-acc can take away, measured in the same run: the
    time Nova's report client spends on the host's tree (reading every
    provider's allocations, creating the pools' providers, resource
    classes, inventories and traits) beyond the baseline's. A target below
    a host's floor cannot be met in this harness.

    Listing the host's devices is not in it: Nova's libvirt driver lists
    them once per process, and nova-acc, on an unchanged host, lists only
    their names and describes again only the mdev-capable ones
    (``nova_acc.compute.listing``).
    """
    base_first, base = first[baseline], runs[baseline]

    def extra(results, key, host, base_results):
        return results[host][key] - base_results[key]

    return {h: {
        'first_tree_update': (base_first['tree_update_s'] + extra(
            first, 'nova_placement_s', h, base_first)) /
        base_first['tree_update_s'],
        'tree_update': (base['tree_update_s'] + extra(
            runs, 'nova_placement_s', h, base)) / base['tree_update_s'],
        'periodic': (base['periodic_s'] + extra(
            runs, 'nova_placement_s', h, base)) / base['periodic_s'],
    } for h in runs}


#: ``[nova_acc] device_spec`` of the hosts of ``periodic``: their FPGAs...
FPGA_DEVICE_SPEC = [common.FPGA_SPEC]
#: ... and the same with an mdev entry, which selects none of their devices
#: (``fpga<N>_mdev``): what every update of a host costs for it.
FPGA_MDEV_DEVICE_SPEC = [common.FPGA_SPEC, common.VGPU_SPEC]


def bench_periodic(sizes, mdev_sizes, repeats):
    with common.running() as case:
        requests = common.PlacementRequests(case)
        common.pin_device_spec(case, FPGA_DEVICE_SPEC)
        _warm_up(case)
        first = {'empty': _start_empty(case, requests)}
        common.pin_device_spec(case, [])
        for n in sizes:
            first['nova%d' % n] = _start_fpgas(case, requests, 'nova%d' % n,
                                               n)
        common.pin_device_spec(case, FPGA_DEVICE_SPEC)
        for n in sizes:
            first['fpga%d' % n] = _start_fpgas(case, requests, 'fpga%d' % n,
                                               n)
        common.pin_device_spec(case, FPGA_MDEV_DEVICE_SPEC)
        for n in mdev_sizes:
            first['fpga%d_mdev' % n] = _start_fpgas(
                case, requests, 'fpga%d_mdev' % n, n)
        pools = len(case.pool_rps())
        runs = _periodics(case, requests, list(first), repeats)
    return {
        'sizes': list(sizes), 'mdev_sizes': list(mdev_sizes),
        'device_spec': FPGA_DEVICE_SPEC,
        'device_spec_mdev': FPGA_MDEV_DEVICE_SPEC,
        'pools': pools, 'first_report': first,
        'periodic': runs,
        'ratio_periodic': _ratios(runs, 'empty', 'periodic_s'),
        'ratio_tree_update': _ratios(runs, 'empty', 'tree_update_s'),
        'ratio_first_tree_update': _ratios(first, 'empty', 'tree_update_s'),
        'floor': _floors(first, runs),
    }


def bench_big_host(num_vfs, num_gpus, repeats):
    with common.running() as case:
        requests = common.PlacementRequests(case)
        common.pin_device_spec(case, common.VF_HOST_DEVICE_SPEC)
        _warm_up(case)
        first = {'empty': _start_empty(case, requests)}
        common.pin_device_spec(case, [])
        first['big_nova_only'] = _start(
            case, requests, 'big_nova_only',
            pci_info=common.vf_host_pci_info(case, num_vfs, num_gpus))
        common.pin_device_spec(case, common.VF_HOST_DEVICE_SPEC)
        first['big'] = _start(
            case, requests, 'big',
            pci_info=common.vf_host_pci_info(case, num_vfs, num_gpus))
        pools = {name: inv for rp, name in case.pool_rps().items()
                 for inv in [case.provider_inventory(rp)]}
        runs = _periodics(case, requests, list(first), repeats)
        # A server holding 4 VFs: the PF is reserved at the next update (a
        # PF and its VFs are never in two guests), then nothing changes.
        mark = requests.mark()
        server = case.wait_for_build_end(case.boot(
            'resources:CUSTOM_NIC_VF=4', wait=False), timeout=180)
        boot_writes = requests.counts(mark)
        if server['status'] != 'ACTIVE':
            raise RuntimeError('the server holding 4 VFs is %s: %s\n%s' % (
                server['status'], server.get('fault', {}).get('message'),
                common.failure_log(case)))
        in_use = [_periodic(case, requests, 'big') for _ in range(2)]
        reserved_in_use = _reserved(case)
        mark = requests.mark()
        case.delete_and_wait(server)
        delete_writes = requests.counts(mark)
        freed = [_periodic(case, requests, 'big') for _ in range(2)]
        reserved_freed = _reserved(case)
    return {
        'vfs': num_vfs, 'gpus': num_gpus,
        'device_spec': common.VF_HOST_DEVICE_SPEC,
        'pools': {name: {rc: {k: v for k, v in i.items()
                              if k in ('total', 'reserved')}
                         for rc, i in inv.items()}
                  for name, inv in pools.items()},
        'first_report': first, 'periodic': runs,
        'ratio_first_start': _ratios(first, 'empty', 'start_s'),
        'ratio_first_tree_update': _ratios(first, 'empty', 'tree_update_s'),
        'ratio_periodic': _ratios(runs, 'empty', 'periodic_s'),
        'ratio_tree_update': _ratios(runs, 'empty', 'tree_update_s'),
        'floor': _floors(first, runs),
        'boot_4_vfs': boot_writes,
        'server_holding_4_vfs': [r['requests'] for r in in_use],
        'reserved_while_held': reserved_in_use,
        'delete': delete_writes,
        'after_delete': [r['requests'] for r in freed],
        'reserved_after_delete': reserved_freed,
    }


def _reserved(case):
    """Pool name -> reserved units, as placement has them now."""
    return {name: sum(i['reserved'] for i in case.provider_inventory(
        rp).values()) for rp, name in case.pool_rps().items()}


# ---- pure CPU ---------------------------------------------------------------


def _pci(bus, index):
    b, slot, function = common._address(bus, index)
    return '0000:%02x:%02x.%d' % (b, slot, function)


def cpu_devices(num_vfs, num_gpus):
    """os_acc Devices: a PF with ``num_vfs`` VFs (if any), ``num_gpus``."""
    devices = []
    if num_vfs:
        pf = _pci(0x81, 0)
        devices.append(os_acc.Device(
            address=pf, vendor_id='8086', product_id='1528',
            sriov_totalvfs=num_vfs, sriov_numvfs=num_vfs,
            resource_class='CUSTOM_NIC_PF'))
        devices += [os_acc.Device(
            address=_pci(0x81, x), vendor_id='8086', product_id='1515',
            physfn=pf, resource_class='CUSTOM_NIC_VF')
            for x in range(1, num_vfs + 1)]
    devices += [os_acc.Device(
        address=_pci(0x40, 8 * g), vendor_id='10de', product_id='1eb8',
        resource_class='CUSTOM_GPU') for g in range(num_gpus)]
    return devices


def _one_vf_in_use(devices):
    vf = next((d for d in devices if d.physfn), None)
    if vf is None:
        return {}
    rec = ledger.DeviceRecord(address=vf.address)
    rec.claim(str(uuid_lib.uuid4()),
              pools.pool_uuid('host', pools.PoolKey.of(vf)),
              vf.resource_class, (), None, 'nova_acc_0_0')
    rec.attach()
    return {vf.address: rec}


def _time_update(devices, records, repeats):
    """Fastest (first report, unchanged run) of ``repeats`` fresh trees."""
    first, again = [], []
    for _ in range(repeats):
        tree = nova_provider_tree.ProviderTree()
        tree.new_root('host', str(uuid_lib.uuid4()))
        for times in (first, again):
            start = time.perf_counter()
            inventory.update_provider_tree(
                tree, 'host', devices, 'CUSTOM_NOVA_ACC',
                has_allocations=lambda rp: False, records=records)
            times.append(time.perf_counter() - start)
    return min(first), min(again)


def _fastest(repeats, func, *args):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def bench_pure_cpu(num_vfs, num_gpus, repeats):
    cases = {'gpus_%d' % num_gpus: (0, num_gpus),
             'vfs_256': (256, 0),
             'vfs_%d' % num_vfs: (num_vfs, 0),
             'vfs_%d_gpus_%d' % (num_vfs, num_gpus): (num_vfs, num_gpus)}
    result = {}
    for name, (vfs, gpus) in cases.items():
        devices = cpu_devices(vfs, gpus)
        managed = {d.address: d for d in devices}
        records = _one_vf_in_use(devices)
        first, again = _time_update(devices, {}, repeats)
        _first, in_use = _time_update(devices, records, repeats)
        blocked_s = _fastest(repeats, inventory.blocked, managed, records)
        pools_of_s = _fastest(repeats, pools.pools_of, 'host', devices)
        result[name] = {'devices': len(devices), 'first_s': first,
                        'unchanged_s': again, 'one_vf_in_use_s': in_use,
                        'blocked_s': blocked_s, 'pools_of_s': pools_of_s}
    big = result['vfs_%d_gpus_%d' % (num_vfs, num_gpus)]
    gpus = result['gpus_%d' % num_gpus]
    vfs, vfs_256 = result['vfs_%d' % num_vfs], result['vfs_256']
    return {
        'cases': result,
        'ratio_big_vs_gpus_first': big['first_s'] / gpus['first_s'],
        'ratio_big_vs_gpus_unchanged': big['unchanged_s'] /
        gpus['unchanged_s'],
        'ratio_vfs_vs_256_unchanged': vfs['unchanged_s'] /
        vfs_256['unchanged_s'],
        'device_ratio_vfs_vs_256': vfs['devices'] / vfs_256['devices'],
        # update_provider_tree groups the devices into pools once.
        'share_of_pools_of_in_big_unchanged': big['pools_of_s'] /
        big['unchanged_s'],
        'share_of_blocked_in_big_one_vf_in_use': big['blocked_s'] /
        big['one_vf_in_use_s'],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', default='periodic,big_host,pure_cpu',
                        help='comma-separated benchmarks to run '
                             '[%(default)s]')
    parser.add_argument('--sizes', default='8,64,512',
                        help='FPGAs per host in "periodic" [%(default)s]')
    parser.add_argument('--mdev-sizes', default='512',
                        help='FPGAs per host in "periodic" with an mdev '
                             'entry in device_spec [%(default)s]')
    parser.add_argument('--repeats', type=int, default=5,
                        help='periodic runs per host (median), pure-CPU '
                             'runs (fastest) [%(default)s]')
    parser.add_argument('--vfs', type=int, default=2048,
                        help='VFs of the PF of "big_host" and "pure_cpu" '
                             '[%(default)s]')
    parser.add_argument('--gpus', type=int, default=8)
    parser.add_argument('--json', action='store_true',
                        help='print every number as JSON (after the log '
                             'lines the clouds print when they stop)')
    parser.add_argument('--output', metavar='FILE',
                        help='also write every number as JSON to FILE')
    args = parser.parse_args()
    only = set(args.only.split(','))
    results = {}
    if 'pure_cpu' in only:
        results['pure_cpu'] = bench_pure_cpu(args.vfs, args.gpus,
                                             args.repeats)
    if 'periodic' in only:
        results['periodic'] = bench_periodic(
            [int(n) for n in args.sizes.split(',')],
            [int(n) for n in args.mdev_sizes.split(',') if n],
            args.repeats)
    if 'big_host' in only:
        results['big_host'] = bench_big_host(args.vfs, args.gpus,
                                             max(3, args.repeats // 2))
    if args.output:
        with open(args.output, 'w') as f:
            json.dump(results, f, indent=2, sort_keys=True)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return
    print_summary(results)


def print_summary(results):
    if 'pure_cpu' in results:
        p = results['pure_cpu']
        print('pure CPU, update_provider_tree, PF+VFs+GPUs / GPUs only: '
              'first %.0fx, unchanged %.0fx; %.1fx the VFs: unchanged '
              '%.1fx; grouping into pools %.0f%% of it, blocked() %.1f%% '
              'with a VF in use' % (
                  p['ratio_big_vs_gpus_first'],
                  p['ratio_big_vs_gpus_unchanged'],
                  p['device_ratio_vfs_vs_256'],
                  p['ratio_vfs_vs_256_unchanged'],
                  100 * p['share_of_pools_of_in_big_unchanged'],
                  100 * p['share_of_blocked_in_big_one_vf_in_use']))
    if 'periodic' in results:
        p = results['periodic']
        for h in p['periodic']:
            f, r = p['first_report'][h], p['periodic'][h]
            print('periodic %-8s / empty: %5.2fx (tree update %5.2fx); '
                  'GETs %d, writes %s; first report writes %d' % (
                      h, p['ratio_periodic'][h], p['ratio_tree_update'][h],
                      r['gets'], r['writes'], f['requests']['writes']))
            _print_floor('periodic %-8s' % h, p['floor'][h])
    if 'big_host' in results:
        b = results['big_host']
        for h in b['periodic']:
            f, r = b['first_report'][h], b['periodic'][h]
            print('big host %-13s / empty: first report: start %5.2fx, '
                  'tree update %5.2fx, %d writes; periodic %5.2fx (tree '
                  'update %5.2fx), GETs %d, writes %s' % (
                      h, b['ratio_first_start'][h],
                      b['ratio_first_tree_update'][h],
                      f['requests']['writes'], b['ratio_periodic'][h],
                      b['ratio_tree_update'][h], r['gets'], r['writes']))
            _print_floor('big host %-13s' % h, b['floor'][h])
        print('big host, a server holding 4 VFs: writes of the 2 periodic '
              'runs after its boot %s, reserved then %s; writes of its '
              'delete %s, of the 2 periodic runs after it %s, reserved then '
              '%s' % (
                  [r['write_paths'] for r in b['server_holding_4_vfs']],
                  b['reserved_while_held'], b['delete']['write_paths'],
                  [r['write_paths'] for r in b['after_delete']],
                  b['reserved_after_delete']))


def _print_floor(what, floor):
    print('%s floor (nova-acc at 0 ms): first report tree update %5.2fx; '
          'periodic %5.2fx (tree update %5.2fx)' % (
              what, floor['first_tree_update'], floor['periodic'],
              floor['tree_update']))


if __name__ == '__main__':
    main()
