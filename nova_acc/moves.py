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
"""Moves of servers with device contexts: which are done, which refused.

What each operation does (the support matrix of the user guide):

* resize and cold migration, to another host or the same one: the
  scheduler asks placement for the server's groups again; the destination
  binds them to the pools of the new allocation and picks their devices
  (``nova_acc.compute.moves.Moves.claim_for_move``); the source keeps
  its devices until the move is confirmed, and a revert gives them back and
  releases the destination's (``nova_acc.compute.reconcile``);
* evacuate: Nova's conductor binds nothing for such servers; the new
  host binds the groups to its pools in the evacuation's allocation when
  Nova rebuilds the server there through the driver's ``spawn``
  (``Moves.rebind_for_evacuation``), claims their devices tagged with
  the evacuation, and binds them back if it fails; the old host releases
  and resets its devices when Nova cleans up the evacuated guest there;
* live migration: by unplug and replug, for servers whose groups are
  all bound to pools of devices the operator marked ``"live_migration":
  "replug"`` in ``[nova_acc] device_spec`` (their pools have the trait
  ``CUSTOM_ACC_LIVE_MIGRATION_REPLUG``): the guest loses its devices during
  the move and gets devices of the destination after it
  (``nova_acc.compute.live_migration``); vGPUs of ``mdev_type`` entries
  marked ``"live_migration": "migrate"`` (trait
  ``CUSTOM_ACC_LIVE_MIGRATION_MIGRATE``) stay in the guest and migrate
  with it to mdevs the destination creates, and whole devices of entries
  marked ``"migrate"`` (VFIO variant drivers) migrate with their state to
  devices the destination claims (``nova_acc.compute.live_migration_pci``).
  Refused before anything moves otherwise, with the reason: other pools (a
  passed-through device's state cannot move with a running guest unless
  its driver can migrate it), servers mixing both kinds,
  the contexts of a backend (Cyborg ARQs), single-device bindings;
* suspend is no move: the server keeps its devices, which leave the guest
  while its memory is saved and come back on resume
  (``nova_acc.compute.suspend``).

Contexts that are IDs of a backend's objects (Cyborg ARQs) move with
their server: the destination has the backend bind them to the providers
of the move's allocation there (the backend unbinds them from the source
first), and a revert binds them back to the source's providers, which the
source allocation held for the server meanwhile. Servers bound to single
devices before device pools existed are refused resize and cold migration
with a message that says how to rebind them (shelve and unshelve).
"""

from __future__ import annotations

from collections.abc import Callable

from os_acc.internal import device_spec

from nova_acc import binding

REPLUG_TRAIT = device_spec.LIVE_MIGRATION_REPLUG_TRAIT
MIGRATE_TRAIT = device_spec.LIVE_MIGRATION_MIGRATE_TRAIT

LIVE_MIGRATION_REFUSED = (
    'live migration of servers with device contexts is not supported for '
    '%s; cold migrate the server instead')
NOT_REPLUGGABLE = (
    'device group(s) %s: their devices cannot move with a running guest, '
    'and the operator did not allow unplugging them for the move or '
    'migrating them with it ("live_migration": "replug" or "migrate" in '
    '[nova_acc] device_spec of node %s)')
MIXED_KINDS = (
    'device groups %s whose devices migrate with the guest and groups %s '
    'whose devices are unplugged for the move, in one server')
BACKEND_CONTEXTS = 'device contexts of a backend (%s)'

COLD_MIGRATION_OF_SINGLE_DEVICES_REFUSED = (
    'this server was bound to single devices before device pools (%s); '
    'resize and cold migration need pool bindings: shelve and unshelve the '
    'server once instead')


def live_migration_refusal(instance, pool_traits: Callable[[str], set]
                           ) -> str | None:
    """Why a live migration of the server is refused, or None.

    :param pool_traits: a pool provider's UUID -> its traits in placement.
    """
    bindings = binding.load(instance)
    if not bindings:
        return None
    backend = sorted(b.context_id for b in bindings if b.context_id)
    if backend:
        return LIVE_MIGRATION_REFUSED % (BACKEND_CONTEXTS % ', '.join(backend))
    if cold_migration_refusal(instance):
        return LIVE_MIGRATION_REFUSED % (
            'servers bound to single devices before device pools')
    traits = {b.requester_id: pool_traits(b.rp_uuid) for b in bindings}
    refused = sorted(r for r, t in traits.items()
                     if REPLUG_TRAIT not in t and MIGRATE_TRAIT not in t)
    if refused:
        return LIVE_MIGRATION_REFUSED % (NOT_REPLUGGABLE % (
            ', '.join(refused), bindings[0].nodename))
    migrated = sorted(r for r, t in traits.items() if MIGRATE_TRAIT in t)
    replugged = sorted(set(traits) - set(migrated))
    if migrated and replugged:
        # The source unplugs all of a server's devices or none.
        return LIVE_MIGRATION_REFUSED % (MIXED_KINDS % (
            ', '.join(migrated), ', '.join(replugged)))
    return None


def cold_migration_refusal(instance) -> str | None:
    """Why a resize or cold migration of the server is refused, or None."""
    bindings = binding.load(instance)
    single = sorted(b.requester_id for b in bindings
                    if not b.is_pool and not b.context_id)
    if single:
        return COLD_MIGRATION_OF_SINGLE_DEVICES_REFUSED % ', '.join(single)
    return None
