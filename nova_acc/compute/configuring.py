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
"""Config data takes effect: configure the devices a server was claimed.

A group's ``accel:`` keys (its config data) reach the compute in the
server's system metadata (``nova_acc.binding.load_config``). After the
claim and before the guest is defined with them, each device the server
holds for such a group and that is not configured yet is handed to the
configurator its ``device_spec`` entry names (``os_acc.configure``), with
the entry's rules checked first.

Intent before action, as for releases: the ledger records which
configurator a device was given to (``DeviceRecord.configured_by``)
*before* the configurator runs, so a crash in between leads to an
unconfigure at the release (``nova_acc.compute.release``), never to a
configured device handed to the next tenant unnoticed.

A failure fails the operation on this host with ``DeviceNotUsable`` naming
the device context and why (the seam reschedules a build); the devices
configured so far are unconfigured first, so nothing stays configured.
"""

from __future__ import annotations

import dataclasses
import typing as ty

import os_acc
from os_acc import configurator as os_acc_configurator
from os_acc import exception as acc_exc
from oslo_log import log as logging

from nova_acc import binding
from nova_acc import conf
from nova_acc import exception
from nova_acc import request_groups
from nova_acc.compute import ledger
from nova_acc.compute import records as ledger_records
from nova_acc.compute import snapshot as host_snapshot

LOG = logging.getLogger(__name__)

#: A context manager turning ledger errors into DeviceNotUsable
#: (``Claims.reschedule_if_ledger_unusable``).
LedgerGuard = ty.Callable[[], ty.ContextManager[None]]


@dataclasses.dataclass(frozen=True)
class _Plan:
    """One device to configure: its ledger key, what and how."""

    key: str
    address: str
    rules: os_acc.ConfigRules
    config: dict[str, str]
    context: str
    context_id: str


def describe_context(requester_id: str | None) -> str:
    """The group in a fault: by its requester id, as claims name it.

    The conductor's fault (``nova_acc.seams.conductor``) replaces it with
    the device context as the user gave it (an inline spec, a profile, an
    ID), which the compute does not know.
    """
    return 'device group %s' % requester_id


def _device_of(rec: ledger_records.DeviceRecord,
               snapshot: host_snapshot.HostSnapshot
               ) -> os_acc.Device | None:
    """The device (for an mdev, its parent) ``device_spec`` selected."""
    if not rec.is_mdev:
        return snapshot.managed.get(rec.address)
    for parent in snapshot.mdev_parents:
        if parent.address == rec.parent:
            return parent
    return None


def _plan(rec: ledger_records.DeviceRecord, config: dict[str, str],
          snapshot: host_snapshot.HostSnapshot) -> _Plan:
    """What configuring ``rec`` means; checked, nothing done.

    :raises DeviceNotUsable: the device is gone, accepts no config data
        or not this config data.
    """
    context = describe_context(rec.requester_id)
    address = (rec.parent if rec.is_mdev else None) or rec.address
    device = _device_of(rec, snapshot)
    try:
        rules = os_acc.config_rules_for(device, conf.device_specs()) \
            if device is not None else None
        if rules is None:
            raise acc_exc.InvalidConfig(
                'device %s accepts no config data on node %s' % (
                    address, snapshot.nodename))
        rules.check(config)
        # Before any mark: a configurator that is not installed did
        # nothing and cannot undo anything either.
        os_acc_configurator.load(rules.configurator)
    except (acc_exc.OsAccException, exception.InvalidDeviceSpecConfig) as e:
        raise exception.DeviceNotUsable(
            '%s: its config data cannot be applied: %s' % (context, e))
    group = rec.requester_id or ''
    return _Plan(key=rec.address, address=address, rules=rules,
                 config=dict(config), context=context,
                 context_id=request_groups.context_id_of(group) or group)


def configure(book: ledger.DeviceLedger, guard: LedgerGuard, instance,
              held: list[ledger_records.DeviceRecord],
              snapshot: host_snapshot.HostSnapshot,
              request_context: ty.Any = None) -> None:
    """Configure the devices of ``held`` not configured yet.

    :param held: the records the server holds for the guest being defined.
    :param request_context: the user's request context, for configurators
        that fetch data on the user's behalf.
    :raises DeviceNotUsable: naming the device context and why; nothing
        this call configured stays configured.
    """
    config = binding.load_config(instance)
    todo = [r for r in held if r.requester_id in config and
            r.configured_by is None and not r.backend_owned]
    if not todo:
        return
    plans = [_plan(r, config[r.requester_id or ''], snapshot) for r in todo]
    with guard(), book.transaction() as records:
        for plan in plans:
            rec = records.get(plan.key)
            if rec is None or rec.instance_uuid != instance.uuid:
                raise exception.DeviceNotUsable(
                    '%s: device %s is no longer held by the server' % (
                        plan.context, plan.key))
            rec.configuring(plan.rules.configurator)
    done: list[_Plan] = []
    for plan in plans:
        try:
            os_acc.configure(plan.rules, os_acc.ConfigureRequest(
                address=plan.address, config=plan.config,
                context_id=plan.context_id, instance_uuid=instance.uuid,
                request_context=request_context))
        except Exception as e:  # a plugin's errors too: fail closed
            why = str(e) if isinstance(e, acc_exc.OsAccException) else \
                'the configurator failed unexpectedly (%s)' % (
                    type(e).__name__)
            LOG.error('Configuring device %s for %s with %s failed: %s',
                      plan.address, plan.context, plan.rules.configurator,
                      e, instance=instance)
            _undo(book, guard, instance, done + [plan], plans)
            raise exception.DeviceNotUsable(
                '%s: device %s could not be configured on node %s: %s' % (
                    plan.context, plan.address, snapshot.nodename, why))
        done.append(plan)
        LOG.info('Configured device %s for %s with %s (%s)', plan.address,
                 plan.context, plan.rules.configurator,
                 ', '.join('accel:%s' % k for k in sorted(plan.config)),
                 instance=instance)


def _undo(book: ledger.DeviceLedger, guard: LedgerGuard, instance,
          attempted: list[_Plan], plans: list[_Plan]) -> None:
    """Unconfigure ``attempted``; clear the marks of what is unconfigured.

    The device whose configure failed is unconfigured too: a configurator
    should leave nothing behind when it fails, but one that did is caught
    here (unconfigure must accept a device that is not configured). Those
    not reached were never given to the configurator. A device whose
    unconfigure fails keeps its mark: its release tries again before the
    reset.
    """
    still_configured = set()
    for plan in reversed(attempted):
        try:
            os_acc.unconfigure(plan.rules, plan.address)
        except Exception as e:  # best effort; the release tries again
            LOG.error('Could not unconfigure device %s of %s: %s',
                      plan.address, plan.context, e, instance=instance)
            still_configured.add(plan.key)
    try:
        with guard(), book.transaction() as records:
            for plan in plans:
                rec = records.get(plan.key)
                if rec is not None and plan.key not in still_configured:
                    rec.unconfigured()
    except exception.DeviceNotUsable as e:
        # The marks stay: the release unconfigures again (harmless).
        LOG.error('Could not clear the configured marks: %s', e,
                  instance=instance)
