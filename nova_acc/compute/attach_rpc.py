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
"""nova-acc's RPC endpoint on each compute host: attach and detach casts.

nova-acc-api casts ``attach_device_context`` / ``detach_device_context``
to Nova's compute topic, server = the compute's host, in the RPC namespace
``nova_acc`` (``nova_acc.api.attachment``). nova-compute's own RPC server
serves them: the libvirt driver adds this endpoint to the compute
manager's ``additional_endpoints`` in ``init_host``, before Nova's
``Service.start`` creates that server from them (as the manager adds its
own ``_ComputeV5Proxy``). Nova starts and stops it with the service, waits
for its calls in progress on a graceful shutdown, and a compute whose start
fails never listens. Each call runs as Nova's compute runs an operation on a
server: under the per-instance lock, with an instance action and an event
(``openstack server event list`` shows ``attach_device_context`` /
``detach_device_context``), recorded through the conductor.

Version history: 1.0 - attach_device_context, detach_device_context.
1.1 - list_boot_contexts and check_boot_context (calls) and
detach_boot_context (a cast): a context given at boot without an ID, by
its index (``attach_boot``).
"""

from __future__ import annotations

from nova.compute import utils as compute_utils
from nova import context as nova_context
from nova import exception as nova_exc
from nova import objects
from nova import utils
from oslo_log import log as logging
import oslo_messaging as messaging

from nova_acc.api import client as api_client
from nova_acc.backends import contexts_api
from nova_acc.compute import attach
from nova_acc.compute import attach_boot
from nova_acc.compute import attach_spec

LOG = logging.getLogger(__name__)

#: The same names as nova-acc-api's (``nova_acc.api.attachment``), which
#: must not import this module (it runs without Nova).
NAMESPACE = 'nova_acc'
VERSION = '1.1'


class AttachEndpoint:
    """The methods nova-acc-api casts to this host."""

    target = messaging.Target(namespace=NAMESPACE, version=VERSION)

    def __init__(self, attacher: attach.Attacher, host: str) -> None:
        self._attacher = attacher
        self._host = host

    def attach_device_context(self, ctxt, context_id: str,
                              server_id: str) -> None:
        self._run(ctxt, 'attach_device_context', context_id, server_id,
                  self._attacher.attach)

    def detach_device_context(self, ctxt, context_id: str,
                              server_id: str) -> None:
        self._run(ctxt, 'detach_device_context', context_id, server_id,
                  self._attacher.detach)

    def check_boot_context(self, ctxt, server_id: str,
                           index: int) -> list | None:
        """Since 1.1, a call: [status, reason] if the boot-time context
        ``index`` cannot be detached now, else None (read only)."""
        if not _is_index(index):
            return [400, 'not a context index: %r' % (index,)]
        try:
            instance = objects.Instance.get_by_uuid(
                ctxt.elevated(), server_id,
                expected_attrs=['system_metadata'])
        except nova_exc.InstanceNotFound:
            return [404, 'Server %s could not be found.' % server_id]
        found = attach_boot.refusal(self._attacher, ctxt.elevated(),
                                    instance, index)
        return list(found) if found else None

    def list_boot_contexts(self, ctxt, server_id: str) -> dict:
        """Since 1.1, a call: ``{"contexts": [...]}`` (``attach_boot.
        listing``), or ``{"status": 404|409, "reason": ...}``."""
        admin = ctxt.elevated()
        try:
            instance = objects.Instance.get_by_uuid(
                admin, server_id, expected_attrs=['system_metadata'])
            return {'contexts': attach_boot.listing(admin, instance)}
        except nova_exc.InstanceNotFound:
            return {'status': 404,
                    'reason': 'Server %s could not be found.' % server_id}
        except attach_spec.SpecNotUpdated as e:
            return {'status': 409, 'reason': str(e)}

    def detach_boot_context(self, ctxt, server_id: str, index: int) -> None:
        """Since 1.1: the context given at boot at ``index`` (no ID).

        There is no context object: what went wrong is the failed event
        of the instance action, and the log.
        """
        if not _is_index(index):
            LOG.warning('detach_boot_context of server %s with index %r '
                        'ignored: not a context index', server_id, index)
            return

        def work(admin, instance, _label) -> None:
            attach_boot.detach_boot(self._attacher, admin, instance, index)

        self._run(ctxt, 'detach_boot_context', '#%d' % index, server_id,
                  work, has_object=False)

    def _run(self, ctxt, action: str, context_id: str, server_id: str,
             work, has_object: bool = True) -> None:
        """``work`` under the server's lock, in an instance action.

        :param has_object: ``context_id`` is a context of nova-acc-api,
            which carries the fault (else it only names the context).
        """
        admin = ctxt.elevated()
        try:
            instance = objects.Instance.get_by_uuid(
                admin, server_id, expected_attrs=['system_metadata',
                                                  'flavor'])
        except nova_exc.InstanceNotFound:
            if has_object:
                _server_gone(context_id, server_id)
            return

        @utils.synchronized(instance.uuid)
        def locked() -> None:
            try:
                instance.refresh()
                objects.InstanceAction.action_start(
                    ctxt, instance.uuid, action, want_result=False)
                with compute_utils.EventReporter(
                        ctxt, 'compute_' + action, self._host,
                        instance.uuid):
                    work(admin, instance, context_id)
            except attach.AttachFailed as e:
                LOG.warning('%s', e.reason, instance=instance)
            except api_client.ContextAPIError as e:
                # The context is not (or no longer) this server's to
                # attach or detach; the API's state stays as it is.
                LOG.warning('%s of device context %s refused by '
                            'nova-acc-api: %s', action, context_id, e,
                            instance=instance)
            except nova_exc.InstanceNotFound:
                if has_object:
                    _server_gone(context_id, server_id)
            except Exception as e:  # the ledger's, libvirt's, a bug
                LOG.exception('%s of device context %s failed',
                              action, context_id, instance=instance)
                if not has_object:
                    return
                _fault_quietly(context_id, server_id,
                               '%s of device context %s failed on host %s: '
                               '%s' % (action, context_id, self._host, e))
        locked()


def _is_index(index: object) -> bool:
    """Is ``index`` (from a message) a context index?"""
    return isinstance(index, int) and not isinstance(index, bool) and \
        index >= 0


def _fault_quietly(context_id: str, server_id: str, fault: str) -> None:
    """Say on the context why its attach or detach stopped (best effort)."""
    try:
        contexts_api.client().set_fault(context_id, server_id, fault[:2048])
    except (api_client.ContextAPIError, contexts_api.NotConfigured) as e:
        LOG.error('Could not record the fault of device context %s: %s',
                  context_id, e)


def _server_gone(context_id: str, server_id: str) -> None:
    """The server was deleted meanwhile: the context is let go."""
    LOG.info('Server %s was deleted before device context %s was attached '
             'or detached.', server_id, context_id)
    try:
        contexts_api.client().unbind(
            context_id, server_id, fault=(
                'server %s was deleted before device context %s was '
                'attached or detached' % (server_id, context_id)))
    except (api_client.ContextAPIError, contexts_api.NotConfigured) as e:
        LOG.error('Could not unbind device context %s of deleted server '
                  '%s: %s', context_id, server_id, e)


def repair_host(attacher: attach.Attacher, host: str) -> None:
    """Give back what attaches that did not finish left in placement.

    Best effort, server by server under its lock: a failure is logged and
    the next start tries again; nothing here stops the compute starting.
    """
    ctxt = nova_context.get_admin_context()
    try:
        instances = objects.InstanceList.get_by_host(
            ctxt, host, expected_attrs=['system_metadata'])
    except Exception as e:  # the conductor's, the database's
        LOG.error('Could not list the servers of host %s to repair '
                  'unfinished attaches: %s', host, e)
        return
    for instance in instances:

        @utils.synchronized(instance.uuid)
        def locked(instance=instance) -> None:
            instance.refresh()
            attacher.repair(ctxt, instance)

        try:
            locked()
        except Exception as e:  # placement's, the server gone meanwhile
            LOG.error('Could not repair the allocation of server %s: %s',
                      instance.uuid, e)


def register(attacher: attach.Attacher, host: str,
             endpoints: list) -> None:
    """Repair, then add the endpoint to nova-compute's RPC endpoints.

    :param endpoints: the compute manager's ``additional_endpoints``,
        which ``Service.start`` serves once ``init_host`` returned.
    """
    repair_host(attacher, host)
    endpoints.append(AttachEndpoint(attacher, host))
