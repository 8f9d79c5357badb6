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
"""The group -> provider matcher, alone (its callers: test_binding)."""

import collections
import inspect
import itertools
import random
import sys

from oslotest import base

from nova_acc import matching

Option = matching.Option.of


_GENERATORS = (inspect.CO_GENERATOR | inspect.CO_COROUTINE |
               inspect.CO_ASYNC_GENERATOR)


class TooManyCalls(BaseException):
    """Not an Exception: no ``except Exception`` on the way may eat it."""


def calls_within(limit, func, *args, **kwargs):
    """Run ``func``, counting Python function calls; abort beyond ``limit``.

    A count, not a time: the same on any machine, and code that would run
    for hours (a factorial search) is stopped after ``limit`` calls instead
    of hanging the test run.

    :returns: (what ``func`` returned or the Exception it raised, calls).
    :raises AssertionError: ``func`` made more than ``limit`` calls.
    """
    calls = 0

    def tracer(frame, event, arg):
        nonlocal calls
        if event == 'call':
            calls += 1
            # Not on a generator's start: CPython can lose an exception
            # raised there (``all(<genexpr>)`` then reads an empty one).
            if calls > limit and not frame.f_code.co_flags & _GENERATORS:
                raise TooManyCalls()
        return None  # no line events: only calls are counted

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        try:
            result = func(*args, **kwargs)
        except Exception as e:
            result = e
        except TooManyCalls:
            result = TooManyCalls
    finally:
        sys.settrace(previous)
    if result is TooManyCalls:
        raise AssertionError('%s made more than %d Python calls' % (
            getattr(func, '__qualname__', func), limit))
    return result, calls


def brute_force_fits(demands, capacity):
    """Does any assignment exist? Every combination of options, tried."""
    for combo in itertools.product(*[d.options for d in demands]):
        used = collections.Counter()
        for option in combo:
            for rc, amount in option.resources:
                used[option.provider, rc] += amount
        if all(n <= capacity.get(p, {}).get(rc, 0)
               for (p, rc), n in used.items()):
            return True
    return False


class MatchTest(base.BaseTestCase):

    def assert_valid(self, demands, capacity, assignment):
        self.assertEqual(sorted(d.name for d in demands), sorted(assignment))
        left = {p: dict(r) for p, r in capacity.items()}
        for d in demands:
            option = assignment[d.name]
            self.assertIn(option, d.options)
            for rc, amount in option.resources:
                left[option.provider][rc] -= amount
        for provider, resources in left.items():
            for rc, n in resources.items():
                self.assertGreaterEqual(n, 0, '%s %s overcommitted' % (
                    provider, rc))

    def match(self, demands, capacity, **kwargs):
        result = matching.match(demands, capacity, **kwargs)
        self.assert_valid(demands, capacity, result.assignment)
        return result

    def test_sixteen_groups_without_an_assignment_are_refused_at_once(self):
        # 16 groups of one device, 15 providers of one device each: the
        # backtracking it replaces tried 15! orders before giving up (8
        # groups took 1 s, 9 took 10 s). One kind, 15 slots: a flow of 15.
        demands = [matching.Demand('g%02d' % i, tuple(
            Option('p%02d' % j, {'FPGA': 1}) for j in range(15)))
            for i in range(16)]
        capacity = {'p%02d' % j: {'FPGA': 1} for j in range(15)}
        result, calls = calls_within(20000, matching.match, demands,
                                     capacity)
        self.assertIsInstance(result, matching.NoMatch)
        self.assertEqual([], result.unserved)
        # At most 16 augmenting paths over 1 kind x 15 providers.
        self.assertLess(result.steps, 16 * (2 * 15 + 1) + 16 * 15)

    def test_sixteen_distinct_groups_without_an_assignment(self):
        # 16 groups that are not interchangeable (different traits, so
        # different providers), 15 providers that each suit two groups.
        demands = [matching.Demand('g%02d' % i, tuple(
            Option('p%02d' % j, {'FPGA': 1}) for j in range(15)
            if j in (i % 15, (i + 1) % 15, i // 2))) for i in range(16)]
        capacity = {'p%02d' % j: {'FPGA': 1} for j in range(15)}
        result, _calls = calls_within(20000, matching.match, demands,
                                      capacity)
        self.assertIsInstance(result, matching.NoMatch)

    def test_sixteen_groups_fill_sixteen_providers(self):
        demands = [matching.Demand('g%02d' % i, tuple(
            Option('p%02d' % j, {'FPGA': 1}) for j in range(16)))
            for i in range(16)]
        capacity = {'p%02d' % j: {'FPGA': 1} for j in range(16)}
        result, _calls = calls_within(20000, self.match, demands, capacity)
        self.assertEqual(16, len({o.provider for o in
                                  result.assignment.values()}))

    def test_a_group_placed_first_is_moved_for_one_with_less_choice(self):
        # 'a' may use both pools, 'b' only p1: whichever is tried first,
        # the flow reroutes 'a' to p2.
        demands = [matching.Demand('a', (Option('p1', {'FPGA': 1}),
                                         Option('p2', {'FPGA': 1}))),
                   matching.Demand('b', (Option('p1', {'FPGA': 1}),))]
        result = self.match(demands, {'p1': {'FPGA': 1}, 'p2': {'FPGA': 1}})
        self.assertEqual({'a': 'p2', 'b': 'p1'},
                         {n: o.provider for n, o in
                          result.assignment.items()})

    def test_groups_share_a_provider_and_leave_units_over(self):
        demands = [matching.Demand(n, (Option('pool', {'FPGA': 2}),))
                   for n in 'abc']
        # 7 units: 6 for the groups, one the flavor's.
        result = self.match(demands, {'pool': {'FPGA': 7}})
        self.assertEqual({'pool'}, {o.provider for o in
                                    result.assignment.values()})
        self.assertRaises(matching.NoMatch, matching.match, demands,
                          {'pool': {'FPGA': 5}})

    def test_a_group_of_several_resource_classes_is_served_whole(self):
        both = {'FPGA': 1, 'CUSTOM_MEM': 4}
        demands = [matching.Demand('a', (Option('x', both),
                                         Option('y', both)))]
        # x has the FPGA, y the memory, neither both.
        e = self.assertRaises(
            matching.NoMatch, matching.match, demands,
            {'x': {'FPGA': 1}, 'y': {'CUSTOM_MEM': 4}})
        self.assertEqual(['a'], e.unserved)
        result = self.match(demands, {'x': {'FPGA': 1},
                                      'y': {'FPGA': 1, 'CUSTOM_MEM': 4}})
        self.assertEqual('y', result.assignment['a'].provider)

    def test_a_multi_class_group_and_single_class_groups_share(self):
        demands = [
            matching.Demand('big', (Option('x', {'FPGA': 1, 'MEM': 2}),
                                    Option('y', {'FPGA': 1, 'MEM': 2}))),
            matching.Demand('f1', (Option('x', {'FPGA': 1}),
                                   Option('y', {'FPGA': 1}))),
            matching.Demand('f2', (Option('x', {'FPGA': 1}),
                                   Option('y', {'FPGA': 1})))]
        self.match(demands, {'x': {'FPGA': 2}, 'y': {'FPGA': 1, 'MEM': 2}})
        self.assertRaises(matching.NoMatch, matching.match, demands,
                          {'x': {'FPGA': 1}, 'y': {'FPGA': 1, 'MEM': 2}})

    def test_different_amounts_on_two_pools_first_fit_would_miss(self):
        # 5+4+3+3+3+2 = 20 into two pools of 10: {5,3,2} and {4,3,3}.
        # First-fit by size puts 5 and 4 together and then fails.
        amounts = [5, 4, 3, 3, 3, 2]
        demands = [matching.Demand('g%d' % i, (Option('p1', {'FPGA': a}),
                                               Option('p2', {'FPGA': a})))
                   for i, a in enumerate(amounts)]
        capacity = {'p1': {'FPGA': 10}, 'p2': {'FPGA': 10}}
        result = self.match(demands, capacity)
        per_pool = {}
        for name, option in result.assignment.items():
            per_pool[option.provider] = per_pool.get(option.provider, 0) + \
                dict(option.resources)['FPGA']
        self.assertEqual({'p1': 10, 'p2': 10}, per_pool)

    def test_a_partition_that_does_not_exist_is_proven_absent(self):
        # 16 groups of amounts 1..16 (136 units) into pools of 68 and 67:
        # one unit short. The search remembers the states that failed.
        demands = [matching.Demand('g%02d' % a, (
            Option('p1', {'FPGA': a}), Option('p2', {'FPGA': a})))
            for a in range(1, 17)]
        result, _calls = calls_within(
            20000, matching.match, demands,
            {'p1': {'FPGA': 68}, 'p2': {'FPGA': 67}})
        self.assertIsInstance(result, matching.NoMatch)
        result = self.match(demands, {'p1': {'FPGA': 68},
                                      'p2': {'FPGA': 68}})
        self.assertEqual(16, len(result.assignment))

    def test_the_search_stops_at_its_bound(self):
        amounts = [5, 4, 3, 3, 3, 2]
        demands = [matching.Demand('g%d' % i, (Option('p1', {'FPGA': a}),
                                               Option('p2', {'FPGA': a})))
                   for i, a in enumerate(amounts)]
        e = self.assertRaises(
            matching.SearchTooLarge, matching.match, demands,
            {'p1': {'FPGA': 10}, 'p2': {'FPGA': 10}}, max_steps=3)
        self.assertIn('gave up matching the groups to providers after %d '
                      'steps' % e.steps, str(e))
        # Stopped at the bound: the steps before the search (one per
        # option looked at, 12) and the bound, and at most one step more.
        self.assertLessEqual(e.steps, 12 + 3 + len(demands) + 2)

    def test_no_bound_where_no_provider_is_mixed(self):
        # Every provider serves one amount: the flow decides, unbounded.
        demands = [matching.Demand('g%d' % i, (Option('p1', {'FPGA': 1}),
                                               Option('p2', {'FPGA': 1})))
                   for i in range(4)]
        self.match(demands, {'p1': {'FPGA': 2}, 'p2': {'FPGA': 2}},
                   max_steps=0)

    def test_a_group_no_provider_can_serve_is_named(self):
        demands = [matching.Demand('ok', (Option('p', {'FPGA': 1}),)),
                   matching.Demand('big', (Option('p', {'FPGA': 3}),)),
                   matching.Demand('none', ())]
        e = self.assertRaises(matching.NoMatch, matching.match, demands,
                              {'p': {'FPGA': 2}})
        self.assertEqual(['big', 'none'], e.unserved)
        self.assertIn('big, none', str(e))

    def test_the_same_input_gives_the_same_answer(self):
        demands = [matching.Demand('g%d' % i, tuple(
            Option('p%d' % j, {'FPGA': 1 + i % 2}) for j in range(3)))
            for i in range(6)]
        capacity = {'p%d' % j: {'FPGA': 4} for j in range(3)}
        first = self.match(demands, capacity).assignment
        self.assertEqual(first, self.match(list(reversed(demands)),
                                           capacity).assignment)

    def test_bad_input(self):
        self.assertRaises(ValueError, Option, 'p', {'FPGA': 0})
        self.assertRaises(ValueError, Option, 'p', {})
        self.assertRaises(ValueError, matching.match, [
            matching.Demand('a', ()), matching.Demand('a', ())], {})

    def test_agrees_with_trying_every_combination(self):
        # Small random allocations with one or two classes, groups with
        # one or two classes, providers mixed or not: an assignment is
        # found exactly when one exists, and it is valid.
        rng = random.Random(19)
        for _ in range(1500):
            providers = ['p%d' % i for i in range(rng.randint(1, 4))]
            capacity = {p: {rc: rng.randint(0, 6) for rc in ('A', 'B')
                            if rng.random() < 0.7} for p in providers}
            shapes = [{rc: rng.randint(1, 3) for rc in
                       rng.sample(['A', 'B'], rng.randint(1, 2))}
                      for _ in range(rng.randint(1, 3))]
            demands = []
            for g in range(rng.randint(1, 6)):
                shape = rng.choice(shapes)
                demands.append(matching.Demand('g%d' % g, tuple(
                    Option(p, shape if rng.random() < 0.9
                           else rng.choice(shapes))
                    for p in providers if rng.random() < 0.8)))
            expected = brute_force_fits(demands, capacity)
            try:
                self.match(demands, capacity)
                found = True
            except matching.NoMatch:
                found = False
            self.assertEqual(expected, found, (demands, capacity))
