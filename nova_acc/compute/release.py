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
"""Release: reset a device nobody holds any more, or keep it out of service.

Called with a ledger record whose holder is gone (the reconcile decides
that, see ``nova_acc.compute.reconcile``) and with the ledger locked. A device
nova-acc manages is reset before it is ``free`` again; one whose reset
fails, or that offers no reset method, becomes ``dirty`` and is never
handed out until an operator clears it. A device of an ID-based context
(a Cyborg ARQ) belongs to its backend: it is unbound there, and its
record leaves the ledger. A mediated device is removed (which returns its
capacity to its parent, and gives the next tenant a new mdev) and its
record leaves the ledger; one that cannot be removed is ``dirty``, and
nova-compute tries again at every reconcile.
"""

from __future__ import annotations

from collections.abc import Callable

import os_acc
from os_acc import configurator as os_acc_configurator
from os_acc import exception as acc_exc
from oslo_log import log as logging

from nova_acc.compute import ledger
from nova_acc import request_groups

LOG = logging.getLogger(__name__)

#: unbind(instance_uuid, [context_id, ...]) -> None; raises on failure.
Unbinder = Callable[[str, list], None]


#: reset_device(address, sysfs_root) -> bool, as os_acc.reset_device.
Resetter = Callable[[str, str], bool]

#: remove_mdev(uuid) -> None, as nova_acc.compute.mdev.remove; raises on
#: failure.
MdevRemover = Callable[[str], object]


def _reset_here(address: str, sysfs_root: str) -> bool:
    return os_acc.reset_device(address, sysfs_root=sysfs_root)


class ResetNotAttempted(Exception):
    """The reset could not be attempted: nothing is known of the device.

    The privsep daemon did not start, timed out or went away, or the
    process lacks the privilege. The device is neither freed nor made
    dirty: it stays ``releasing`` (out of service) and is reset at the
    next attempt.
    """


def reset(record: ledger.DeviceRecord, sysfs_root: str,
          resetter: Resetter = _reset_here) -> tuple[bool, str]:
    """Reset a device: (True, '') or (False, why it was not reset).

    :param resetter: how to reset; nova-compute passes its privsep
        entrypoint (``nova_acc.compute.privsep.reset_for_release``, which
        leaves the sysfs root to the daemon's own configuration); the operator
        command goes through the same daemon, or resets in its own
        process with the same checks (``nova_acc.cmd.manage``). Its
        verdicts on the device are os_acc exceptions (``ResetFailed``,
        ``DeviceNotFound``, ``DeviceNotManaged``...); anything else means
        the reset was not attempted.
    :raises ResetNotAttempted: see there.
    """
    try:
        if resetter(record.address, sysfs_root):
            return True, ''
        return False, 'the device offers no reset method'
    except acc_exc.OsAccException as e:
        return False, 'reset failed: %s' % e
    except Exception as e:  # privsep's, the channel's, the OS's
        raise ResetNotAttempted('%s: %s' % (type(e).__name__, e)) from e


def release(records: dict[str, ledger.DeviceRecord],
            record: ledger.DeviceRecord, why: str, *,
            reset_on_release: bool, sysfs_root: str,
            unbind: Unbinder | None = None,
            resetter: Resetter = _reset_here,
            remove_mdev: MdevRemover | None = None) -> None:
    """Release ``record``'s device (the ledger must be locked).

    :param why: what happened to the holder, for the log.
    :param remove_mdev: how to remove an mdev (required for mdev records).
    """
    # A device of a pool picked for a device context of nova-acc-api (the
    # local backend): the host owns and resets the device as for an inline
    # spec, and the context is let go too once the release is done. Its
    # requester id names the context; the release clears it.
    context_id = None if record.backend_owned else \
        request_groups.context_id_of(record.requester_id)
    holder_uuid = record.instance_uuid
    _release(records, record, why, reset_on_release=reset_on_release,
             sysfs_root=sysfs_root, unbind=unbind, resetter=resetter,
             remove_mdev=remove_mdev)
    released = records.get(record.address) is not record or \
        record.state != ledger.RELEASING
    if context_id and holder_uuid and unbind is not None and released:
        try:
            unbind(holder_uuid, [context_id])
        except Exception as e:  # the backend's errors are many
            # The device is released: the context is taken over by the
            # next server bound to it (its holder is gone), see
            # nova_acc.backends.local.
            LOG.error('Could not unbind device context %s of server %s '
                      'after releasing device %s: %s', context_id,
                      holder_uuid, record.address, e)


def _release(records: dict[str, ledger.DeviceRecord],
             record: ledger.DeviceRecord, why: str, *,
             reset_on_release: bool, sysfs_root: str,
             unbind: Unbinder | None,
             resetter: Resetter,
             remove_mdev: MdevRemover | None) -> None:
    holder = record.holder or 'no known holder'
    if record.configured_by and not record.backend_owned:
        _unconfigure(record, holder)
    if record.is_mdev and not record.backend_owned:
        _remove_mdev(records, record, why, holder, remove_mdev)
        return
    if record.backend_owned:
        try:
            if unbind is not None and record.instance_uuid:
                unbind(record.instance_uuid, [record.context_id])
        except Exception as e:  # the backend's errors are many
            # Keep the record: the next reconcile tries again.
            LOG.error('Could not unbind device context %s of server %s '
                      '(device %s): %s; retrying at the next periodic run.',
                      record.context_id, holder, record.address, e)
            return
        LOG.info('Released device %s of device context %s from server %s '
                 '(%s); its backend owns and resets it.', record.address,
                 record.context_id, holder, why)
        if record.is_mdev:
            # nova-compute created it from the attach handle, as Nova does
            # for Cyborg's mdevs: it goes with the binding.
            record.context_id = None
            _remove_mdev(records, record, why, holder, remove_mdev)
            return
        del records[record.address]
        return
    if not reset_on_release:
        record.free(reset=False, reason='released without a reset: '
                    '[nova_acc] reset_on_release is false')
        LOG.warning('Released device %s from %s (%s) without a reset '
                    '([nova_acc] reset_on_release is false).',
                    record.address, holder, why)
        return
    try:
        done, problem = reset(record, sysfs_root, resetter)
    except ResetNotAttempted as e:
        # Fail closed: nothing is known of the device, so it is neither
        # handed out nor declared dirty; the next reconcile tries again.
        LOG.error('Device %s released from %s (%s) could not be reset '
                  'now: %s. It stays out of service (releasing) and '
                  'nova-compute tries again at its next resource update.',
                  record.address, holder, why, e)
        reason = 'reset not attempted yet: %s' % e
        if record.state == ledger.RELEASING and record.reason != reason:
            record.reason = reason
        return
    if done:
        record.free(reset=True)
        LOG.info('Released and reset device %s from %s (%s).',
                 record.address, holder, why)
    else:
        record.dirty('%s after %s left' % (problem, holder))
        LOG.error('Device %s released from %s (%s) is dirty: %s. It stays '
                  'out of service until an operator clears it with '
                  '"nova-acc-manage devices clear-dirty %s".',
                  record.address, holder, why, problem, record.address)


def _unconfigure(record: ledger.DeviceRecord, holder: str) -> None:
    """Undo the holder's config data, before the reset (best effort).

    A failure is logged: the reset (or the mdev's removal) that follows is
    what protects the next tenant. The mark stays until the release is
    done (``free``, ``dirty`` or the record's removal clear it), so a
    release that is retried unconfigures again.
    """
    name = record.configured_by or ''
    address = record.parent if record.is_mdev else record.address
    try:
        os_acc_configurator.load(name).unconfigure(address)
    except Exception as e:  # a plugin's errors too
        LOG.error('Could not unconfigure device %s (configurator %s) '
                  'released from %s: %s; resetting it anyway.', address,
                  name, holder, e)
        return
    LOG.info('Unconfigured device %s (configurator %s) released from %s.',
             address, name, holder)


def _remove_mdev(records: dict[str, ledger.DeviceRecord],
                 record: ledger.DeviceRecord, why: str, holder: str,
                 remove_mdev: MdevRemover | None) -> None:
    try:
        if remove_mdev is None:
            raise RuntimeError('no way to remove mdevs here')
        remove_mdev(record.address)
    except Exception as e:  # libvirt's and the vendor driver's errors
        reason = 'removal failed: %s' % e
        if record.state != ledger.DIRTY or record.reason != reason:
            record.dirty(reason)
        LOG.error('mdev %s of type %s on %s released from %s (%s) could '
                  'not be removed: %s. Its capacity stays out of service; '
                  'nova-compute tries again at its next resource update.',
                  record.address, record.mdev_type, record.parent, holder,
                  why, e)
        return
    LOG.info('Released and removed mdev %s of type %s on %s from %s (%s).',
             record.address, record.mdev_type, record.parent, holder, why)
    del records[record.address]


def clear_dirty(record: ledger.DeviceRecord, sysfs_root: str,
                force: bool = False,
                resetter: Resetter = _reset_here) -> tuple[bool, str]:
    """Operator action: reset a dirty device again and free it.

    With ``force`` the operator vouches that the device was cleaned by
    other means (power cycle, reflash) and it is freed without a reset.
    :param resetter: how to reset (see ``reset``).
    :returns: (freed, why not)
    """
    if record.state != ledger.DIRTY:
        return False, 'device %s is %s, not dirty' % (record.address,
                                                      record.state)
    if record.is_mdev and not force:
        # Removing it needs nova-compute's libvirt connection, which
        # retries at every resource update.
        return False, ('mdev %s is removed by nova-compute, which retries at '
                       'every resource update (last error: %s); if it was '
                       'removed by other means ("virsh nodedev-destroy"), '
                       'forget it with --force' % (record.address,
                                                   record.reason))
    if force:
        record.free(reset=False, reason='cleared by an operator without a '
                    'reset')
        return True, ''
    try:
        done, problem = reset(record, sysfs_root, resetter)
    except ResetNotAttempted as e:
        return False, 'the reset could not be attempted: %s' % e
    if not done:
        first = record.reason or ''
        record.dirty(problem if problem in first else
                     '%s (before: %s)' % (problem, first))
        return False, problem
    record.free(reset=True, reason='reset and cleared by an operator')
    return True, ''
