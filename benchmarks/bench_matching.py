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
"""The group -> provider matcher (``nova_acc.matching``), pure CPU.

Unshelve, evacuate and the destination of a move match a server's device
groups to the providers of its allocation. Before the matcher, a search
over every order of the groups took 1 s for 8 groups and 10 s for 9 when
no assignment existed, and the documented maximum is 16. Each result is a
ratio against matching one group in the same run (see README.md), and the
matcher's own step count, which is exact:

* ``one_kind``: 16 groups of ``resources:FPGA=1`` on 16 pools of one
  device (16 single-shape providers: one flow);
* ``no_assignment``: the same 16 groups on 15 such pools (refused);
* ``last_needs_first``: 15 groups fit any of 16 pools, the 16th only the
  pool the others are offered first;
* ``mixed``: 16 groups of amounts 1..16 on two pools of 68 units (mixed
  providers: the bounded search), and on 68 + 67 (refused).

Run: ``.venv/bin/python benchmarks/bench_matching.py [--json]`` (seconds).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from nova_acc import matching  # noqa: E402

Option = matching.Option.of


def one_device_pools(groups, pools, last_needs_first=False):
    capacity = {'p%02d' % j: {'FPGA': 1} for j in range(pools)}
    demands = [matching.Demand('g%02d' % i, tuple(
        Option(p, {'FPGA': 1}) for p in sorted(capacity)))
        for i in range(groups)]
    if last_needs_first:
        demands[-1] = matching.Demand(demands[-1].name,
                                      (Option('p00', {'FPGA': 1}),))
    return demands, capacity


def mixed(short):
    demands = [matching.Demand('g%02d' % a, (
        Option('p1', {'FPGA': a}), Option('p2', {'FPGA': a})))
        for a in range(1, 17)]
    return demands, {'p1': {'FPGA': 68}, 'p2': {'FPGA': 68 - short}}


CASES = {
    'one_kind': lambda: one_device_pools(16, 16),
    'no_assignment': lambda: one_device_pools(16, 15),
    'last_needs_first': lambda: one_device_pools(16, 16, True),
    'mixed': lambda: mixed(0),
    'mixed_refused': lambda: mixed(1),
}


def run(demands, capacity, repeats):
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            steps, outcome = matching.match(demands, capacity).steps, 'match'
        except matching.MatchFailed as e:
            steps, outcome = e.steps, type(e).__name__
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    return best, steps, outcome


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=20,
                        help='runs per case; the fastest counts')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    base, _steps, _outcome = run(*one_device_pools(1, 1), args.repeats)
    results = {}
    for name, make in CASES.items():
        seconds, steps, outcome = run(*make(), args.repeats)
        results[name] = {'seconds': seconds, 'ratio': seconds / base,
                         'steps': steps, 'outcome': outcome}
    if args.json:
        print(json.dumps({'one_group_seconds': base, 'cases': results},
                         indent=2))
        return
    print('matching 16 groups / 1 group (steps; outcome):')
    for name, r in results.items():
        print('  %-17s %8.1fx  (%d steps; %s)' % (
            name, r['ratio'], r['steps'], r['outcome']))


if __name__ == '__main__':
    main()
