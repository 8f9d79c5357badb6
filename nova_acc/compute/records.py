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
"""The device ledger's records: what the host knows of one device.

The ledger (``nova_acc.compute.ledger``) stores them, one file per compute
node, and changes them only inside its transaction; the transitions below
are the only code that changes a record's state.

States of a device (``DeviceRecord.state``):

``free``
    Nobody holds it; it may be handed out.
``claimed``
    Claimed for a server whose build is in progress on this host.
``attached``
    A server's guest is defined with it.
``orphaned``
    Its server left this host (deleted while nova-compute was down, for
    example) but a guest still holds the device. It is released - and reset
    - when that guest is gone.
``foreign``
    A guest Nova does not know (or a server not bound to it) holds it.
``releasing``
    Its holder is gone and no guest uses it; nova-acc is releasing it
    (reset, unbind or mdev removal). Recorded *before* the reset runs, so a
    reset never happens unless the ledger already says the device is no
    longer held: a ledger that cannot be written releases nothing, and a
    write that fails after the reset does not make the next attempt reset
    the device again (see ``nova_acc.compute.reconciler``). A release that
    could not be attempted (the privsep daemon down) leaves the device here,
    out of service, and nova-compute tries again at its next resource
    update.
``dirty``
    Released but not reset: the reset failed or the device has none. It is
    never handed out until an operator clears it
    (``nova-acc-manage devices clear-dirty``).

Only ``free`` devices are handed out; ``orphaned``, ``foreign``,
``releasing`` and ``dirty`` ones are reported ``reserved`` to placement.

Mediated devices (vGPUs) are recorded too, under their UUID instead of a
PCI address, with their parent and type (``DeviceRecord.is_mdev``). They
exist only while a server holds them: a claim records them (``claimed``)
before the host creates them, and their release removes them and drops
their record; one that cannot be removed is ``dirty`` and keeps its
capacity out of service until it is.
"""

from __future__ import annotations

import dataclasses
import datetime

import os_acc

from nova_acc import exception

FREE = 'free'
CLAIMED = 'claimed'
ATTACHED = 'attached'
ORPHANED = 'orphaned'
FOREIGN = 'foreign'
RELEASING = 'releasing'
DIRTY = 'dirty'
STATES = (FREE, CLAIMED, ATTACHED, ORPHANED, FOREIGN, RELEASING, DIRTY)
#: States in which a device must not be offered by placement.
OUT_OF_SERVICE = frozenset({ORPHANED, FOREIGN, RELEASING, DIRTY})
#: States in which a server holds the device.
HELD = frozenset({CLAIMED, ATTACHED, ORPHANED})
#: States in which the device serves its server: claimed for it or in its
#: guest (held and not orphaned).
ACTIVE = frozenset({CLAIMED, ATTACHED})


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec='seconds')


@dataclasses.dataclass
class DeviceRecord:
    """What the host knows of one device.

    :ivar address: PCI address (``0000:81:00.0``) - the device's identity
        on the host; for an mdev, its UUID.
    :ivar state: one of ``STATES``.
    :ivar instance_uuid: the server holding it (claimed, attached,
        orphaned).
    :ivar guest: UUID of the libvirt domain holding it when that is not a
        server bound to it (``foreign``).
    :ivar rp_uuid, resource_class, traits: the provider (the device's pool),
        resource class and traits the device was allocated from, kept while
        it is held so a changed ``[nova_acc] device_spec`` does not move a
        device from under its server.
    :ivar requester_id: the request group of the server the device serves
        (a group asking for 4 devices of a pool is served by 4 records).
    :ivar migration_id: set on the destination of a resize or cold
        migration: the move (Nova's migration ID) the device was claimed
        for. Until the move is confirmed the server holds its source devices
        too (on the same host: untagged records), and a reverted move
        releases exactly the devices tagged with it.
    :ivar context_id: for devices of ID-based contexts (a Cyborg ARQ): the
        context; its backend owns the device and resets it, nova-acc only
        records who holds it.
    :ivar changed_at: when the state last changed (UTC, ISO 8601).
    :ivar last_reset: when nova-acc last reset the device.
    :ivar reason: why it is in this state, for operators.
    :ivar parent: for an mdev: the PCI address of its parent (the GPU).
    :ivar mdev_type: for an mdev: its type.
    :ivar configured_by: the configurator (``os_acc.configurators`` name)
        that was asked to apply the server's config data to the device.
        Set *before* it is called: a crash in between leaves the mark, so
        the release unconfigures the device before resetting it rather
        than handing a configured device to the next tenant. Cleared once
        the device is unconfigured or released.
    """

    address: str
    state: str = FREE
    instance_uuid: str | None = None
    guest: str | None = None
    rp_uuid: str | None = None
    requester_id: str | None = None
    migration_id: int | None = None
    resource_class: str | None = None
    traits: list[str] = dataclasses.field(default_factory=list)
    context_id: str | None = None
    changed_at: str | None = None
    last_reset: str | None = None
    reason: str | None = None
    parent: str | None = None
    mdev_type: str | None = None
    configured_by: str | None = None

    @property
    def is_mdev(self) -> bool:
        return self.mdev_type is not None

    def accelerator(self) -> os_acc.Accelerator:
        """The device as os_acc attaches it to and detaches it from a
        guest."""
        if self.is_mdev:
            return os_acc.Accelerator(interface_type='mdev',
                                      mdev_uuid=self.address)
        return os_acc.Accelerator(interface_type='pci', address=self.address)

    @property
    def holder(self) -> str | None:
        return self.instance_uuid or self.guest

    @property
    def backend_owned(self) -> bool:
        return self.context_id is not None

    def to_dict(self) -> dict:
        """Every field, as the ledger file holds it (a copy).

        Not ``dataclasses.asdict``, which deep-copies field by field: the
        ledger writes every record of a host on each change, 2048 and more
        on a host with many VFs. The one mutable field is copied.
        """
        return dict(vars(self), traits=list(self.traits))

    def copy(self) -> DeviceRecord:
        """A record equal to this one that changes on its own."""
        return self._from_fields(vars(self))

    @classmethod
    def _from_fields(cls, fields: dict) -> DeviceRecord:
        """A new record from another's ``__dict__`` (its own traits list)."""
        record = cls.__new__(cls)
        record.__dict__.update(fields)
        record.traits = list(fields['traits'])
        return record

    @classmethod
    def from_dict(cls, data: dict) -> DeviceRecord:
        fields = _RECORD_FIELDS
        record = cls(**{k: v for k, v in data.items() if k in fields})
        if record.state not in STATES:
            raise exception.LedgerError('device %s has unknown state %r' % (
                record.address, record.state))
        return record

    # ---- transitions: the only code that changes a record ---------------

    def _set(self, state: str, reason: str | None = None, **fields) -> None:
        for name, value in fields.items():
            setattr(self, name, value)
        self.state = state
        self.reason = reason
        self.changed_at = now()

    def claim(self, instance_uuid: str, rp_uuid: str | None,
              resource_class: str | None, traits, context_id: str | None,
              requester_id: str | None = None,
              migration_id: int | None = None) -> None:
        self._set(CLAIMED, instance_uuid=instance_uuid, guest=None,
                  rp_uuid=rp_uuid, resource_class=resource_class,
                  traits=sorted(traits or ()), context_id=context_id,
                  requester_id=requester_id, migration_id=migration_id)

    def configuring(self, configurator: str) -> None:
        # Not a state change: the device stays claimed (or attached).
        self.configured_by = configurator

    def unconfigured(self) -> None:
        self.configured_by = None

    def attach(self) -> None:
        self._set(ATTACHED, reason=None)

    def orphan(self, reason: str) -> None:
        self._set(ORPHANED, reason=reason)

    def held_by_guest(self, guest: str, reason: str) -> None:
        self._set(FOREIGN, reason=reason, guest=guest, instance_uuid=None,
                  context_id=None, requester_id=None, migration_id=None)

    def releasing(self, reason: str) -> None:
        # The holder's fields stay: the release needs them (the backend
        # context to unbind, the server to name in the log).
        self._set(RELEASING, reason=reason)

    def free(self, reset: bool, reason: str | None = None) -> None:
        if reset:
            self.last_reset = now()
        self._set(FREE, reason=reason, instance_uuid=None, guest=None,
                  rp_uuid=None, resource_class=None, traits=[],
                  context_id=None, requester_id=None, migration_id=None,
                  configured_by=None)

    def dirty(self, reason: str) -> None:
        self._set(DIRTY, reason=reason, instance_uuid=None, guest=None,
                  context_id=None, requester_id=None, migration_id=None,
                  configured_by=None)


_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(DeviceRecord))


def describe_unavailable(rec: DeviceRecord) -> str:
    if rec.is_mdev and rec.state == DIRTY:
        return ('mdev %s on %s could not be removed (%s) and keeps its '
                'capacity out of service' % (rec.address, rec.parent,
                                             rec.reason))
    if rec.state == DIRTY:
        return ('device %s is dirty (%s) and out of service until an '
                'operator clears it' % (rec.address, rec.reason or
                                        'released without a reset'))
    if rec.state == FOREIGN:
        return ('device %s is used by guest %s, which Nova does not know as '
                'its holder' % (rec.address, rec.guest))
    if rec.state == RELEASING:
        return ('device %s is being released (%s) and is handed out once '
                'it is reset' % (rec.address, rec.reason))
    if rec.state == ORPHANED:
        return ('device %s is still held by the guest of server %s, which '
                'left this host' % (rec.address, rec.instance_uuid))
    return 'device %s is %s by server %s' % (rec.address, rec.state,
                                             rec.instance_uuid)
