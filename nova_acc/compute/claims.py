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
"""Claims: which devices of the host serve a server's request.

The picking, run on the device ledger's records inside its transaction
(``nova_acc.compute.ledger`` stores the records of
``nova_acc.compute.records`` and decides nothing): specific devices a
backend chose, and devices of a pool for the host to pick, all or
nothing. Beside it, the rules that keep a device out of a claim because
of a relative (``blocked``, ``relatives``, ``parents_with_mdevs``): a PF
and its VFs are never in use at once, and a GPU with mdevs is not handed
out whole. The provider tree (``nova_acc.compute.inventory``) reports the
same devices as reserved, by the same rules.

As Nova keeps its PCI tracker's records (``nova/pci/manager.py``) apart
from the picking (``nova/pci/stats.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
import dataclasses
import typing as ty
import uuid as uuid_lib

import os_acc

from nova_acc.compute.records import ACTIVE
from nova_acc.compute.records import describe_unavailable
from nova_acc.compute.records import DeviceRecord
from nova_acc.compute.records import FREE
from nova_acc import exception


@dataclasses.dataclass(frozen=True)
class PoolRequest:
    """``count`` devices of pool ``rp_uuid`` for group ``requester_id``.

    :ivar candidates: the addresses of the pool's devices on the host now,
        in the order to try them; for an mdev pool, of its parents.
    :ivar mdev_type: set for an mdev pool: ``count`` new mdevs of this type
        are recorded, on parents with capacity left.
    """

    requester_id: str
    rp_uuid: str
    count: int
    candidates: tuple[str, ...]
    resource_class: str | None = None
    traits: tuple[str, ...] = ()
    mdev_type: str | None = None


# ---- the blocking rules ------------------------------------------------


def blocked(managed: Mapping[str, os_acc.Device],
            records: Mapping[str, DeviceRecord],
            parents_with_mdevs: Set[str] = frozenset()) -> set[str]:
    """Free devices that must not be handed out because of a relative.

    A PF and its VFs are never used at once: a PF is blocked while any of
    its VFs is not free, and each VF while its PF is not free. A parent
    with mdevs (``parents_with_mdevs``) is not handed out whole.
    """
    busy = {a for a, rec in records.items() if rec.state != FREE}
    by_mdevs = {a for a in parents_with_mdevs
                if a in managed and a not in busy}
    if not busy:
        return by_mdevs
    pfs_with_busy_vfs = {managed[a].physfn for a in busy
                         if a in managed and managed[a].physfn}
    return by_mdevs | {address for address, dev in managed.items()
                       if address not in busy and
                       ((dev.physfn is not None and dev.physfn in busy) or
                        address in pfs_with_busy_vfs)}


def parents_with_mdevs(records: Mapping[str, DeviceRecord],
                       host_mdevs: Mapping[str, os_acc.MediatedDevice]
                       ) -> set[str]:
    """Parents with mdevs, recorded or on the host: not to be used whole."""
    return ({r.parent for r in records.values() if r.is_mdev and r.parent} |
            {m.parent for m in host_mdevs.values() if m.parent})


def relatives(managed: Mapping[str, os_acc.Device]) -> dict[str, set[str]]:
    """address -> the devices that must not be in use with it (PF <-> VFs)."""
    result: dict[str, set[str]] = {}
    for address, dev in managed.items():
        if dev.physfn and dev.physfn in managed:
            result.setdefault(address, set()).add(dev.physfn)
            result.setdefault(dev.physfn, set()).add(address)
    return result


# ---- the picking -----------------------------------------------------------


def claim(records: dict[str, DeviceRecord], instance_uuid: str,
          wanted: list[dict], pools: ty.Sequence[PoolRequest] = (),
          blocked: frozenset[str] | set[str] = frozenset(),
          relatives: Mapping[str, Set[str]] | None = None,
          migration_id: int | None = None,
          held_tags: Set[int | None] | None = None,
          mdev_capacity: Mapping[tuple[str, str], int] | None = None,
          new_uuid: Callable[[], str] = lambda: str(uuid_lib.uuid4()),
          ) -> list[DeviceRecord]:
    """Claim devices for a server, all or nothing.

    :param wanted: specific devices, one dict each: ``address`` and
        optionally ``rp_uuid``, ``resource_class``, ``traits``,
        ``context_id``, ``requester_id`` (the devices of backend contexts,
        whose backend chose them, and bindings made before pools).
    :param pools: devices for the host to pick: for each request, the
        devices the server already holds for that group count first (a
        rebuild or a retried spawn claims nothing twice), then free devices
        of the pool that no other claim of this call took and that are not
        ``blocked`` (a PF whose VFs are in use, or the reverse).
    :param relatives: address -> the devices that must not be in use at the
        same time (a PF's VFs, a VF's PF): a device picked here blocks its
        relatives for the rest of this claim too, so one server never gets
        a PF and one of its VFs.
    :param migration_id: the move (resize, cold migration) the devices are
        claimed for on its destination: recorded with them, and only what
        the server holds for the same move counts as already held (on the
        same host the server keeps its source devices meanwhile).
    :param held_tags: the ``migration_id`` values of the records that count
        as already held by the server (default: ``migration_id`` alone).
    :param mdev_capacity: (parent address, mdev type) -> how many more mdevs
        of that type the parent can take now, for mdev pools. A parent that
        gets an mdev here is not handed out whole in the same claim.
    :param new_uuid: makes the UUID of each new mdev.
    :raises DeviceNotFree: a specific device is held by someone else, dirty
        or out of service, or a pool has fewer free devices than asked;
        nothing was claimed.
    """
    _check_wanted(records, instance_uuid, wanted, blocked)
    relatives = relatives or {}
    if held_tags is None:
        held_tags = {migration_id}
    taken = {w['address'] for w in wanted}
    unavailable = set(blocked)
    for address in taken:
        unavailable |= set(relatives.get(address, ()))
    for want in wanted:
        clash = set(relatives.get(want['address'], ())) & taken
        if clash:
            raise exception.DeviceNotFree(
                'device %s cannot be claimed together with its PF or VF %s'
                % (want['address'], ', '.join(sorted(clash))))
    picks: list[tuple[PoolRequest, list[str]]] = []
    new_mdevs: dict[str, tuple[str, str]] = {}
    capacity_left = dict(mdev_capacity or {})
    for req in pools:
        if req.mdev_type is not None:
            chosen = _pick_mdevs(records, instance_uuid, req, held_tags,
                                 taken | unavailable, capacity_left,
                                 new_mdevs, new_uuid)
            unavailable |= {new_mdevs[u][0] for u in chosen
                            if u in new_mdevs}
        else:
            chosen = _pick_devices(records, instance_uuid, req, held_tags,
                                   taken, unavailable, relatives)
            taken.update(chosen)
        picks.append((req, chosen))
    return _record(records, instance_uuid, wanted, picks, new_mdevs,
                   migration_id)


def _check_wanted(records: Mapping[str, DeviceRecord],
                  instance_uuid: str, wanted: list[dict],
                  blocked: Set[str]) -> None:
    """Refuse specific devices held by someone else, or blocked."""
    for want in wanted:
        rec = records.get(want['address'])
        if (rec is None or rec.state == FREE) and \
                want['address'] not in blocked:
            continue
        if rec is not None and rec.state in ACTIVE and \
                rec.instance_uuid == instance_uuid:
            continue  # idempotent: a rebuild or a retried spawn
        if rec is None or rec.state == FREE:
            raise exception.DeviceNotFree(
                'device %s is blocked: its PF or one of its VFs is in use'
                % want['address'])
        raise exception.DeviceNotFree(describe_unavailable(rec))


def _held_for(records: Mapping[str, DeviceRecord],
              instance_uuid: str, req: PoolRequest,
              held_tags: Set[int | None]) -> list[str]:
    """What the server holds for the group already (at most its count)."""
    return [a for a, r in sorted(records.items())
            if r.instance_uuid == instance_uuid and
            r.state in ACTIVE and
            r.requester_id == req.requester_id and
            r.migration_id in held_tags][:req.count]


def _pick_devices(records: Mapping[str, DeviceRecord],
                  instance_uuid: str, req: PoolRequest,
                  held_tags: Set[int | None], taken: Set[str],
                  unavailable: set[str],
                  relatives: Mapping[str, Set[str]]) -> list[str]:
    """The whole devices of one request: those held for it, then free ones.

    Each pick blocks its relatives (``unavailable`` grows) for the rest of
    the claim.
    """
    mine = _held_for(records, instance_uuid, req, held_tags)
    chosen = list(mine)
    for address in mine:
        unavailable |= set(relatives.get(address, ()))
    for address in req.candidates:
        if len(chosen) == req.count:
            break
        rec = records.get(address)
        if address in taken or address in unavailable or \
                address in chosen or \
                (rec is not None and rec.state != FREE):
            continue
        chosen.append(address)
        unavailable |= set(relatives.get(address, ()))
    if len(chosen) < req.count:
        raise exception.DeviceNotFree(
            'device group %s needs %d device(s) of pool %s, only %d '
            'free%s' % (req.requester_id, req.count, req.rp_uuid,
                        len(chosen),
                        _why_not_free(records, instance_uuid, req, chosen,
                                      unavailable)))
    return chosen


def _why_not_free(records: Mapping[str, DeviceRecord],
                  instance_uuid: str, req: PoolRequest, chosen: list[str],
                  unavailable: Set[str]) -> str:
    """Why a pool's other devices are not free: what an operator acts on."""
    why = [describe_unavailable(records[a]) for a in req.candidates
           if a in records and records[a].state != FREE and
           records[a].instance_uuid != instance_uuid][:3]
    why += ['device %s is blocked: its PF or one of its VFs is in use' % a
            for a in req.candidates
            if a in unavailable and a not in chosen and
            (a not in records or records[a].state == FREE)][:1]
    return ' (%s)' % '; '.join(why) if why else ''


def _pick_mdevs(records: dict[str, DeviceRecord], instance_uuid: str,
                req: PoolRequest, held_tags: Set[int | None],
                unavailable: Set[str],
                capacity_left: dict[tuple[str, str], int],
                new_mdevs: dict[str, tuple[str, str]],
                new_uuid: Callable[[], str]) -> list[str]:
    """The mdevs of one request: those held for it, then new ones.

    New ones are packed on the first parents (in ``req.candidates`` order)
    with capacity left, so that other parents stay free for other types or
    for being handed out whole.
    """
    mdev_type = ty.cast(str, req.mdev_type)
    chosen = _held_for(records, instance_uuid, req, held_tags)
    for parent in req.candidates:
        if parent in unavailable:
            continue
        while len(chosen) < req.count and \
                capacity_left.get((parent, mdev_type), 0) > 0:
            uuid = new_uuid()
            new_mdevs[uuid] = (parent, mdev_type)
            capacity_left[(parent, mdev_type)] -= 1
            chosen.append(uuid)
    if len(chosen) < req.count:
        raise exception.DeviceNotFree(
            'device group %s needs %d mdev(s) of type %s from pool %s, only '
            '%d can be created now (parents %s: full, or used whole or for '
            'another mdev type)' % (
                req.requester_id, req.count, mdev_type, req.rp_uuid,
                len(chosen), ', '.join(req.candidates) or 'none'))
    return chosen


def _record(records: dict[str, DeviceRecord], instance_uuid: str,
            wanted: list[dict], picks: list[tuple[PoolRequest, list[str]]],
            new_mdevs: Mapping[str, tuple[str, str]],
            migration_id: int | None) -> list[DeviceRecord]:
    """Record the claim: every pick was possible, nothing is refused now."""
    claimed = []
    for want in wanted:
        rec = records.setdefault(want['address'],
                                 DeviceRecord(address=want['address']))
        if rec.state == FREE:
            rec.claim(instance_uuid, want.get('rp_uuid'),
                      want.get('resource_class'), want.get('traits'),
                      want.get('context_id'), want.get('requester_id'),
                      migration_id)
        claimed.append(rec)
    for req, chosen in picks:
        for address in chosen:
            if address in new_mdevs:
                parent, mdev_type = new_mdevs[address]
                records[address] = DeviceRecord(
                    address=address, parent=parent, mdev_type=mdev_type)
            rec = records.setdefault(address,
                                     DeviceRecord(address=address))
            if rec.state == FREE:
                rec.claim(instance_uuid, req.rp_uuid, req.resource_class,
                          req.traits, None, req.requester_id,
                          migration_id)
            claimed.append(rec)
    return claimed
