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
same cloud, so the numbers compare across machines:

* ``boot``: seconds per boot with a device context / without one.
* ``wide``: seconds per boot with G single-device groups / with one group,
  on a host with 8 same-class devices (the placement blow-up of wide,
  symmetric trees), with placement's default candidate generation and with
  ``breadth-first`` + ``max_allocation_candidates``.
* ``contention``: devices put to use when K concurrent boots compete for
  fewer devices, nova-acc's scheduler / Nova's claim-first-candidate
  behaviour (``[nova_acc] schedule_attempts = 1`` and no candidate pruning
  is not reachable from config, so the baseline is attempts = 1).

Run: ``.venv/bin/python benchmarks/bench_scheduling.py [--json]``.
"""

import argparse
from concurrent import futures
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from nova_acc.tests.demo import cloud  # noqa: E402


def timed_boots(case, contexts, count):
    durations = []
    for _ in range(count):
        start = time.perf_counter()
        server = case.boot(*contexts)
        durations.append(time.perf_counter() - start)
        case.delete_and_wait(server)
    return statistics.median(durations)


def bench_boot(repeats):
    with cloud.running() as case:
        case.start_fpga_host('compute1', num_fpgas=2)
        timed_boots(case, (), 1)  # warm-up: first boot loads everything
        base = timed_boots(case, (), repeats)
        with_ctx = timed_boots(case, ('resources:FPGA=1',), repeats)
    return {'baseline_s': base, 'device_context_s': with_ctx,
            'ratio': with_ctx / base}


def bench_wide(max_groups, repeats, breadth_first):
    with cloud.running() as case:
        case.flags(max_groups_per_server=16, group='nova_acc')
        if breadth_first:
            case.placement_fixture.conf_fixture.config(
                max_allocation_candidates=1000,
                allocation_candidates_generation_strategy='breadth-first',
                group='placement')
        case.start_fpga_host('compute1', num_fpgas=8)
        timed_boots(case, ('resources:FPGA=1',), 1)
        base = timed_boots(case, ('resources:FPGA=1',), repeats)
        result = {'baseline_s': base, 'ratio_by_groups': {}}
        for groups in range(2, max_groups + 1):
            spec = ';'.join(['resources:FPGA=1'] * groups)
            result['ratio_by_groups'][groups] = (
                timed_boots(case, (spec,), repeats) / base)
    return result


def devices_used_under_contention(attempts, servers):
    with cloud.running() as case:
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--wide-max-groups', type=int, default=4,
                        help='largest G for the default placement strategy '
                             '(6 takes ~35 s a boot here, 8 much longer)')
    parser.add_argument('--wide-max-groups-breadth-first', type=int,
                        default=6)
    parser.add_argument('--contention-rounds', type=int, default=2)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()

    results = {
        'boot': bench_boot(args.repeats),
        'wide_depth_first': bench_wide(args.wide_max_groups, 1, False),
        'wide_breadth_first': bench_wide(
            args.wide_max_groups_breadth_first, 1, True),
        'contention': bench_contention(6, args.contention_rounds),
    }
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return
    boot = results['boot']
    print('boot with a device context / without: %.2fx' % boot['ratio'])
    for name in ('wide_depth_first', 'wide_breadth_first'):
        ratios = ', '.join('G=%s: %.1fx' % kv for kv in
                           results[name]['ratio_by_groups'].items())
        print('%s, boot time vs one group: %s' % (name, ratios))
    c = results['contention']
    print('contention, %d concurrent boots on %d devices: devices used '
          'nova-acc %s vs claim-first-candidate %s (%.1fx)' % (
              c['servers'], c['devices'], c['used_nova_acc'],
              c['used_baseline'], c['ratio']))


if __name__ == '__main__':
    main()
