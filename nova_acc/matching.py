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
"""Which provider of an allocation serves which device group.

Placement allocates a server's device groups without saying, where Nova
did not keep the mapping, which provider serves which group: unshelve and
evacuate (``binding.map_from_allocation``) and the destination of a move
(``binding.for_move``) find it again here, with this one matcher. Pure
Python, no Nova: callers turn their groups into :class:`Demand` objects
(the providers a group may use, with what it takes from each) and the
allocation into capacities.

The problem. Each group (a *demand*) must be served whole by exactly one
provider (same-provider request groups); a group may take several
resource classes at once; several groups may share a provider; a provider
may be left with units over (the flavor's own resources in the same tree).

Not polynomial in general. It contains PARTITION: two pools of one
resource class on a host, differing in a trait the groups do not ask
about, each allocated S/2 units, and groups of amounts a_1..a_n that fit
either pool. Placement can make exactly this allocation, so an assignment
exists; but a polynomial algorithm that always found one would decide
PARTITION (run it, check its answer), so unless P = NP none is exact for
every allocation.

What is exact and polynomial, and is what nova-acc mostly produces:

1. Groups that may use the same providers with the same resources are
   interchangeable (which of them lands where "does not change which
   devices the server gets"): they collapse into one *kind* with a count.
   8 groups of ``resources:FPGA=1`` are one kind of 8, not 8! orders.
2. A provider is *single-shape* when every group that may use it would
   take the same resources from it: then it holds ``n`` such groups
   exactly when ``n`` times those resources fit, so it has a number of
   *slots*, and assigning kinds to single-shape providers is a
   transportation problem (bipartite b-matching), solved exactly by an
   integral maximum flow: at most G augmenting paths (G = the groups),
   each O(V + E) with V = kinds + providers and E <= kinds x providers.
   This covers any number of interchangeable groups, groups that ask for
   different pools, backend contexts of one device each, and any groups
   that share a pool with groups of the same amount.

A provider that groups of different resources may use (a *mixed* one:
``resources:FPGA=2`` and ``resources:FPGA=1`` both fitting two FPGA
pools) is where PARTITION lives. How many groups of each kind go to each
mixed provider is searched depth first (kinds with bigger groups first,
most groups first), and each complete choice is finished by the flow
above over the single-shape providers. Two things keep it small: a state
that failed (kinds decided, units the mixed providers have left, groups
left to the single-shape providers) is never searched again, so the
search is bounded by the number of such states (pseudo-polynomial: a
product over the mixed providers of their units plus one, times the
kinds); and a state is cut as soon as, for some resource class, the
groups still to place need more units than are still usable (units of a
mixed provider too few for any group that could still go there are not).
It is also cut at a hard bound, :data:`MAX_STEPS` steps (a step is a unit
of work: one search node per mixed provider and kind, or one edge a flow
looks at): never exponential in time.

So: :func:`match` returns an assignment or raises :class:`NoMatch`, a
proof that none exists, whenever no provider is mixed, and whenever the
search over mixed providers ends within :data:`MAX_STEPS`; otherwise it
raises :class:`SearchTooLarge`, which says so. Exactness is never traded
for speed silently: an assignment returned is always valid.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Mapping, Sequence

#: The hard bound on the search over mixed providers, in steps (a search
#: node costs a step per mixed provider and kind; a flow a step per edge it
#: looks at). A few tenths of a second of CPU at most; nova-acc's at most
#: 16 groups per server stay far below it unless groups of many different
#: amounts may share several pools.
MAX_STEPS = 200_000
#: Deepest search (kinds plus their options on mixed providers) attempted.
_MAX_DEPTH = 400


@dataclasses.dataclass(frozen=True, order=True)
class Option:
    """A demand may be served by ``provider``, taking ``resources``."""

    provider: str
    #: (resource class, amount) pairs, sorted: hashable and comparable.
    resources: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, provider: str, resources: Mapping[str, int]) -> Option:
        for rc, amount in resources.items():
            if not isinstance(amount, int) or amount < 1:
                raise ValueError('amount %r of %s is not a positive '
                                 'integer' % (amount, rc))
        if not resources:
            raise ValueError('an option takes at least one resource')
        return cls(provider, tuple(sorted(resources.items())))


@dataclasses.dataclass(frozen=True)
class Demand:
    """One group to serve whole from one of ``options``."""

    name: str
    options: tuple[Option, ...]


@dataclasses.dataclass(frozen=True)
class Match:
    """Demand name -> the option that serves it; ``steps`` it took."""

    assignment: dict[str, Option]
    steps: int


class MatchFailed(Exception):
    """No assignment was found; ``steps`` says how much was tried."""

    def __init__(self, message: str, steps: int):
        super().__init__(message)
        self.steps = steps


class NoMatch(MatchFailed):
    """No assignment exists.

    :ivar unserved: demands that no provider can serve even alone (empty
        when the groups fit one by one but not all together).
    """

    def __init__(self, message: str, steps: int,
                 unserved: Sequence[str] = ()):
        super().__init__(message, steps)
        self.unserved = list(unserved)


class SearchTooLarge(MatchFailed):
    """The search over mixed providers reached :data:`MAX_STEPS`."""


class _Steps:
    def __init__(self, limit: int | None = None):
        self.count = 0
        self.limit = limit

    def tick(self, n: int = 1) -> None:
        self.count += n
        if self.limit is not None and self.count > self.limit:
            raise SearchTooLarge(
                'gave up matching the groups to providers after %d steps '
                '(groups of different amounts that may share several '
                'providers)' % self.count, self.count)


def _slots(left: Mapping[str, int], resources: Iterable[tuple[str, int]]
           ) -> int:
    """How many groups taking ``resources`` fit in ``left``."""
    return min(left.get(rc, 0) // amount for rc, amount in resources)


def _take(left: dict[str, int], resources: Iterable[tuple[str, int]],
          n: int) -> None:
    for rc, amount in resources:
        left[rc] = left.get(rc, 0) - n * amount


@dataclasses.dataclass
class _Kind:
    """Interchangeable demands: the same options."""

    options: tuple[Option, ...]
    names: list[str]
    #: Its options on mixed providers, searched.
    mixed: list[Option] = dataclasses.field(default_factory=list)
    #: Its single-shape providers, left to the flow.
    single: list[str] = dataclasses.field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.names)


def _transport(supply: Sequence[int], kinds: Sequence[_Kind],
               slots: Mapping[str, int], steps: _Steps
               ) -> list[dict[str, int]] | None:
    """Integral maximum flow: ``supply[k]`` groups of kind k into slots.

    One group per augmenting path, found breadth first from every kind
    with groups left: kind -> any of its providers; provider -> a kind
    whose groups there could move elsewhere; it ends at a provider with a
    free slot. So at most ``sum(supply)`` paths.

    :returns: per kind, provider -> groups; None when not all fit.
    """
    users: dict[str, list[int]] = collections.defaultdict(list)
    for k, kind in enumerate(kinds):
        for p in kind.single:
            users[p].append(k)
    sent = [0] * len(supply)
    used: dict[str, int] = collections.Counter()
    flow: list[dict[str, int]] = [collections.Counter() for _ in supply]
    for _ in range(sum(supply)):
        # kind index -> the provider it was reached from (None: a start);
        # provider -> the kind it was reached from.
        via_provider: dict[int, str | None] = {
            k: None for k in range(len(supply)) if sent[k] < supply[k]}
        via_kind: dict[str, int] = {}
        queue = collections.deque(via_provider)
        end = None
        while queue and end is None:
            k = queue.popleft()
            for p in kinds[k].single:
                steps.tick()
                if p in via_kind:
                    continue
                via_kind[p] = k
                if used[p] < slots[p]:
                    end = p
                    break
                for other in users[p]:
                    steps.tick()
                    if other not in via_provider and flow[other][p] > 0:
                        via_provider[other] = p
                        queue.append(other)
        if end is None:
            return None
        # Push one group along the path, back to its starting kind.
        used[end] += 1
        p = end
        while True:
            k = via_kind[p]
            flow[k][p] += 1
            back = via_provider[k]
            if back is None:
                sent[k] += 1
                break
            flow[k][back] -= 1
            p = back
    return [{p: n for p, n in f.items() if n} for f in flow]


def match(demands: Sequence[Demand],
          capacity: Mapping[str, Mapping[str, int]],
          max_steps: int | None = None) -> Match:
    """Serve every demand whole from one of its options, within capacity.

    :param demands: the groups; names must be unique.
    :param capacity: provider -> resource class -> units allocated.
    :param max_steps: the bound on the search over mixed providers;
        :data:`MAX_STEPS` by default.
    :returns: a valid assignment; the same input gives the same one.
    :raises NoMatch: no assignment exists.
    :raises SearchTooLarge: the search over mixed providers reached
        ``max_steps`` (see the module's docstring); never when no provider
        is mixed.
    """
    names = [d.name for d in demands]
    if len(set(names)) != len(names):
        raise ValueError('demand names are not unique: %s' % names)
    steps = _Steps()
    by_options: dict[tuple[Option, ...], list[str]] = {}
    unserved = []
    for d in demands:
        steps.tick(len(d.options))
        options = tuple(sorted({
            o for o in d.options
            if _slots(capacity.get(o.provider, {}), o.resources) >= 1}))
        if options:
            by_options.setdefault(options, []).append(d.name)
        else:
            unserved.append(d.name)
    if unserved:
        raise NoMatch('no provider of the allocation can serve %s'
                      % ', '.join(unserved), steps.count, unserved)
    # Bigger groups first: the search then fails early where they do not
    # fit (as first-fit-decreasing packs), and the order is deterministic.
    kinds = [_Kind(options, sorted(members)) for options, members in sorted(
        by_options.items(),
        key=lambda item: (-max(sum(a for _rc, a in o.resources)
                               for o in item[0]), item[0]))]

    shapes: dict[str, set] = collections.defaultdict(set)
    for kind in kinds:
        for o in kind.options:
            shapes[o.provider].add(o.resources)
    mixed = sorted(p for p, s in shapes.items() if len(s) > 1)
    slots = {p: _slots(capacity[p], next(iter(s)))
             for p, s in shapes.items() if len(s) == 1}
    for kind in kinds:
        kind.mixed = [o for o in kind.options if o.provider in mixed]
        kind.single = [o.provider for o in kind.options
                       if o.provider in slots]

    if not mixed:
        flow = _transport([k.count for k in kinds], kinds, slots, steps)
        if flow is None:
            raise NoMatch('the groups do not fit the allocation together',
                          steps.count)
        return Match(_assignment(kinds, [[] for _ in kinds], flow),
                     steps.count)
    return _search(kinds, mixed, slots, capacity, steps,
                   MAX_STEPS if max_steps is None else max_steps)


class _VolumeBound:
    """A necessary condition for a search state to be completed.

    Per resource class: the units the groups still to place need at the
    least must not exceed the units still usable, where units of a mixed
    provider too few for the smallest group that could still go there are
    not usable (the bin-packing waste bound).
    """

    def __init__(self, kinds: list[_Kind], mixed: list[str],
                 slots: Mapping[str, int],
                 capacity: Mapping[str, Mapping[str, int]]):
        self.kinds = kinds
        self.mixed = mixed
        self.classes = sorted({rc for k in kinds for o in k.options
                               for rc, _a in o.resources})

        def least(options: Iterable[Option], rc: str) -> int:
            amounts = [dict(o.resources).get(rc, 0) for o in options]
            return min(amounts) if amounts else 0

        #: Units of each class a group of kind k takes at the least,
        #: anywhere / on a single-shape provider.
        self.need = [{rc: least(k.options, rc) for rc in self.classes}
                     for k in kinds]
        self.need_single = [
            {rc: least([o for o in k.options if o.provider in slots], rc)
             for rc in self.classes} for k in kinds]
        #: Units the single-shape providers can give, slot by slot.
        self.single_units = {rc: 0 for rc in self.classes}
        for p, n in slots.items():
            shape = next(dict(o.resources) for k in kinds for o in k.options
                         if o.provider == p)
            for rc, amount in shape.items():
                self.single_units[rc] += n * amount
        #: smallest[i][p][rc]: the least units of rc a group of kind i or
        #: later takes from mixed provider p (absent: none can go there).
        self.smallest: list[dict[str, dict[str, int]]] = []
        running: dict[str, dict[str, int]] = {}
        for kind in reversed(kinds):
            running = {p: dict(r) for p, r in running.items()}
            for o in kind.mixed:
                mins = running.setdefault(o.provider, {})
                amounts = dict(o.resources)
                for rc in self.classes:
                    a = amounts.get(rc, 0)
                    mins[rc] = min(mins.get(rc, a), a)
            self.smallest.append(running)
        self.smallest.reverse()
        self.smallest.append({})

    def may_fit(self, i: int, left: Mapping[str, Mapping[str, int]],
                rest: Sequence[int]) -> bool:
        smallest = self.smallest[i]
        for rc in self.classes:
            usable = self.single_units[rc]
            for p in self.mixed:
                units = left[p].get(rc, 0)
                least = smallest.get(p, {}).get(rc)
                if least is not None and units >= least:
                    usable += units
            needed = sum(rest[k] * self.need_single[k][rc]
                         for k in range(i))
            needed += sum(k.count * self.need[n][rc]
                          for n, k in enumerate(self.kinds[i:], i))
            if needed > usable:
                return False
        return True


def _search(kinds: list[_Kind], mixed: list[str], slots: dict[str, int],
            capacity: Mapping[str, Mapping[str, int]], steps: _Steps,
            max_steps: int) -> Match:
    """Groups per mixed provider searched; the rest by ``_transport``."""
    if len(kinds) + sum(len(k.mixed) for k in kinds) > _MAX_DEPTH:
        raise SearchTooLarge('too many groups and providers to search '
                             '(more than %d)' % _MAX_DEPTH, steps.count)
    steps.limit = steps.count + max_steps
    left = {p: dict(capacity[p]) for p in mixed}
    # Groups of each kind on each of its mixed options, and to the flow.
    placed = [[0] * len(k.mixed) for k in kinds]
    rest = [0] * len(kinds)
    room = [sum(slots[p] for p in k.single) for k in kinds]
    failed: set = set()
    bound = _VolumeBound(kinds, mixed, slots, capacity)

    def search(i: int) -> list[dict[str, int]] | None:
        key = (i, tuple(tuple(sorted(left[p].items())) for p in mixed),
               tuple(rest[:i]))
        steps.tick(len(mixed) + len(kinds))
        if key in failed:
            return None
        if not bound.may_fit(i, left, rest):
            result = None
        elif i == len(kinds):
            result = _transport(rest, kinds, slots, steps)
        else:
            result = place(i, 0, kinds[i].count)
        if result is None:
            failed.add(key)
        return result

    def place(i: int, j: int, remaining: int
              ) -> list[dict[str, int]] | None:
        kind = kinds[i]
        if j == len(kind.mixed):
            if remaining > room[i]:
                return None
            rest[i] = remaining
            return search(i + 1)
        option = kind.mixed[j]
        pool = left[option.provider]
        for n in range(min(remaining, _slots(pool, option.resources)),
                       -1, -1):
            steps.tick()
            _take(pool, option.resources, n)
            placed[i][j] = n
            result = place(i, j + 1, remaining - n)
            _take(pool, option.resources, -n)
            if result is not None:
                return result
        placed[i][j] = 0
        return None

    flow = search(0)
    if flow is None:
        raise NoMatch('the groups do not fit the allocation together',
                      steps.count)
    return Match(_assignment(kinds, placed, flow), steps.count)


def _assignment(kinds: list[_Kind], placed: list[list[int]],
                flow: list[dict[str, int]]) -> dict[str, Option]:
    """Demand names in order: first to mixed options, then the flow's."""
    result = {}
    for kind, on_mixed, on_single in zip(kinds, placed, flow):
        names = iter(kind.names)
        targets = [o for o, n in zip(kind.mixed, on_mixed)
                   for _ in range(n)]
        by_provider = {o.provider: o for o in kind.options
                       if o.provider in on_single}
        targets += [by_provider[p] for p in sorted(on_single)
                    for _ in range(on_single[p])]
        for option in targets:
            result[next(names)] = option
    return result
