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
"""The compute rooms of one host, built and wired together.

The one place that knows every room: the libvirt driver seam builds them
once (``build``) and calls each for its own step. What a room must not
import back is given to it here: the reconciler gets the release (reset
through privsep, unbind through the attach handles, mdev removal through
the host) and the guest-XML reader of ``os_acc``; the claims get the
reconcile they run first.
"""

from __future__ import annotations

import dataclasses

import os_acc

from nova_acc import conf
from nova_acc.compute import attach_handles
from nova_acc.compute import claiming
from nova_acc.compute import guest
from nova_acc.compute import ledger
from nova_acc.compute import moves
from nova_acc.compute import privsep
from nova_acc.compute import reconcile
from nova_acc.compute import reconciler
from nova_acc.compute import release
from nova_acc.compute import report
from nova_acc.compute import snapshot

CONF = conf.CONF


@dataclasses.dataclass(frozen=True)
class ComputeRooms:
    """nova-acc's compute side of one libvirt host, one room per job."""

    host: snapshot.Host
    attach_handles: attach_handles.AttachHandles
    reconciler: reconciler.Reconciler
    claims: claiming.Claims
    guests: guest.GuestDevices
    moves: moves.Moves
    report: report.PoolReport


def host_releaser(host: snapshot.Host,
                  handles: attach_handles.AttachHandles
                  ) -> reconcile.Releaser:
    """The release of this host: ``release.release`` with its means."""

    def release_one(records: dict[str, ledger.DeviceRecord],
                    record: ledger.DeviceRecord, why: str) -> None:
        release.release(records, record, why,
                        reset_on_release=CONF.nova_acc.reset_on_release,
                        sysfs_root=CONF.nova_acc.sysfs_root,
                        unbind=handles.unbind_released,
                        resetter=privsep.reset_for_release,
                        remove_mdev=host.remove_mdev)
    return release_one


def build(libvirt_host, device_specs: list[dict]) -> ComputeRooms:
    """The rooms for the driver's ``nova.virt.libvirt.host.Host``."""
    host = snapshot.Host(libvirt_host, device_specs)
    teardown_contexts = attach_handles.TeardownContexts()
    handles = attach_handles.AttachHandles(host, teardown_contexts)
    the_reconciler = reconciler.Reconciler(
        host, release=host_releaser(host, handles),
        guest_devices=os_acc.guest_devices,
        teardown_contexts=teardown_contexts)
    claims = claiming.Claims(host, reconcile=the_reconciler.reconcile)
    return ComputeRooms(
        host=host, attach_handles=handles, reconciler=the_reconciler,
        claims=claims, guests=guest.GuestDevices(host, claims),
        moves=moves.Moves(host, claims, handles),
        report=report.PoolReport(host, the_reconciler))
