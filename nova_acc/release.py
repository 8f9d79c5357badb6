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
that, see ``nova_acc.reconcile``) and with the ledger locked. A device
nova-acc manages is reset before it is ``free`` again; one whose reset
fails, or that offers no reset method, becomes ``dirty`` and is never
handed out until an operator clears it. A device of an ID-based context
(a Cyborg ARQ) belongs to its backend: it is unbound there, and its
record leaves the ledger.
"""

from __future__ import annotations

from collections.abc import Callable

import os_acc
from os_acc import exception as acc_exc
from oslo_log import log as logging

from nova_acc import ledger

LOG = logging.getLogger(__name__)

#: unbind(instance_uuid, [context_id, ...]) -> None; raises on failure.
Unbinder = Callable[[str, list], None]


#: reset_device(address, sysfs_root) -> bool, as os_acc.reset_device.
Resetter = Callable[[str, str], bool]


def _reset_here(address: str, sysfs_root: str) -> bool:
    return os_acc.reset_device(address, sysfs_root=sysfs_root)


def reset(record: ledger.DeviceRecord, sysfs_root: str,
          resetter: Resetter = _reset_here) -> tuple[bool, str]:
    """Reset a device: (True, '') or (False, why it was not reset).

    :param resetter: how to reset; nova-compute passes its privsep
        entrypoint (``nova_acc.privsep.reset_device``), the operator command
        (run as root) resets in its own process.
    """
    try:
        if resetter(record.address, sysfs_root):
            return True, ''
        return False, 'the device offers no reset method'
    except (acc_exc.OsAccException, OSError) as e:
        return False, 'reset failed: %s' % e


def release(records: dict[str, ledger.DeviceRecord],
            record: ledger.DeviceRecord, why: str, *,
            reset_on_release: bool, sysfs_root: str,
            unbind: Unbinder | None = None,
            resetter: Resetter = _reset_here) -> None:
    """Release ``record``'s device (the ledger must be locked).

    :param why: what happened to the holder, for the log.
    """
    holder = record.holder or 'no known holder'
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
        del records[record.address]
        return
    if not reset_on_release:
        record.free(reset=False, reason='released without a reset: '
                    '[nova_acc] reset_on_release is false')
        LOG.warning('Released device %s from %s (%s) without a reset '
                    '([nova_acc] reset_on_release is false).',
                    record.address, holder, why)
        return
    done, problem = reset(record, sysfs_root, resetter)
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


def clear_dirty(record: ledger.DeviceRecord, sysfs_root: str,
                force: bool = False) -> tuple[bool, str]:
    """Operator action: reset a dirty device again and free it.

    With ``force`` the operator vouches that the device was cleaned by
    other means (power cycle, reflash) and it is freed without a reset.
    :returns: (freed, why not)
    """
    if record.state != ledger.DIRTY:
        return False, 'device %s is %s, not dirty' % (record.address,
                                                      record.state)
    if force:
        record.free(reset=False, reason='cleared by an operator without a '
                    'reset')
        return True, ''
    done, problem = reset(record, sysfs_root)
    if not done:
        first = record.reason or ''
        record.dirty(problem if problem in first else
                     '%s (before: %s)' % (problem, first))
        return False, problem
    record.free(reset=True, reason='reset and cleared by an operator')
    return True, ''
