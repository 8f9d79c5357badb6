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
"""The default backend: device contexts of nova-acc's own API.

Inline specs and ``profile:NAME`` need no backend. A hint value that is a
UUID names a device context a user created in nova-acc-api before the
boot, like a Neutron port. Unlike a Cyborg ARQ, such a context only holds
a spec: its groups go to nova-acc's own device pools (the capability
trait is required, as for an inline spec), the conductor's pre-bind marks
the context bound to the server and host, and the host picks the devices
from its ledger as for an inline spec (the ledger stays the host's one
record of which device a server holds). The context is unbound when the
server lets go of its devices on that host.

Without ``[device_context_api]`` credentials a context ID is refused, as
before the API existed.
"""

from __future__ import annotations

from nova.compute import task_states
from nova.compute import vm_states
from nova import context as nova_context
from nova import exception as nova_exc
from nova import objects
from oslo_log import log as logging

from nova_acc.api import client as api_client
from nova_acc.backends import base
from nova_acc.backends import contexts_api
from nova_acc import conf
from nova_acc import exception
from nova_acc import hint
from nova_acc import policy

CONF = conf.CONF
LOG = logging.getLogger(__name__)

#: States of the API's device contexts (contract of issue 21).
UNBOUND, BOUND, ERROR = 'unbound', 'bound', 'error'

#: Every refusal of the API (404, 409, 5xx and unreachable, and the
#: others: a 403 says Nova's credentials lack the ``service`` role).
_API_ERRORS = (api_client.ContextAPIError,)
#: The prefix of config keys in a context's ``config`` (the spec grammar's).
ACCEL_PREFIX = 'accel:'


def _why(context_id: str, what: str, error: Exception) -> str:
    """A failed call, in words that name the context and say why."""
    if isinstance(error, api_client.ContextNotFound):
        return 'device context %s no longer exists' % context_id
    if isinstance(error, api_client.ContextConflict):
        return 'device context %s could not be %s: %s' % (
            context_id, what, error)
    if isinstance(error, api_client.ContextAPIUnavailable):
        return 'cannot reach the device-context API: device context %s ' \
            'could not be %s: %s' % (context_id, what, error)
    return 'the device-context API refused: device context %s could not ' \
        'be %s: %s' % (context_id, what, error)


class LocalBackend(base.Backend):
    picks_devices = False

    # Not a class attribute: the trait is an option.
    @property  # type: ignore[override]
    def required_traits(self) -> frozenset[str]:
        """The groups of a context go to nova-acc's pools, as inline ones."""
        return frozenset({CONF.nova_acc.capability_trait})

    @staticmethod
    def _client(what: str) -> api_client.DeviceContextClient:
        try:
            return contexts_api.client()
        except contexts_api.NotConfigured as e:
            raise exception.BackendUnavailable(
                'no device-context API to %s: %s' % (what, e)) from e

    # ---- step 1: resolve ----------------------------------------------------

    def resolve(self, context, request_spec, context_id):
        if not contexts_api.is_configured():
            raise exception.ContextRefused(
                'device_context %r looks like the ID of a device context '
                'object, but this cloud has no device-context API '
                '([device_context_api] is not configured); use an inline '
                'spec or profile:NAME' % context_id)
        # Another project's context is refused with the very words of one
        # that does not exist: a user learns nothing of other projects'.
        not_found = exception.ContextRefused(
            'device context %s does not exist in your project' % context_id)
        try:
            ctx = self._client('read device context %s' % context_id).get(
                context_id)
        except api_client.ContextNotFound:
            raise not_found from None
        except api_client.ContextAPIError as e:
            raise exception.BackendUnavailable(
                _why(context_id, 'read', e)) from e
        instance_uuid = request_spec.instance_uuid
        owner = ctx.get('project_id')
        if owner != request_spec.project_id and not policy.may_use_any(
                context, owner):
            LOG.info('Refusing device context %s to server %s of project '
                     '%s: it belongs to project %s, and policy %s does not '
                     'let this user use it. The user is told it does not '
                     'exist.', context_id, instance_uuid,
                     request_spec.project_id, owner, policy.USE_ANY_PROJECT)
            raise not_found
        self._check_usable(context_id, ctx, instance_uuid)
        return base.ResolvedContext(context_id,
                                    self.spec_of(context_id, ctx))

    @staticmethod
    def _check_usable(context_id: str, ctx: dict, instance_uuid) -> None:
        """Refuse a context another server holds, or one in error.

        One bound to this very server is being moved (resize, migration,
        evacuation) or rescheduled: its new host binds it there.
        """
        holder = ctx.get('server_id')
        if holder and holder != instance_uuid and _server_is_gone(holder):
            # Its server is gone but the release never reached the API
            # (the API was down then, or the server was deleted in ERROR
            # on no host): the bind takes the context over.
            LOG.warning('Device context %s is bound to server %s, which is '
                        'deleted; it is given to server %s.', context_id,
                        holder, instance_uuid)
            return
        if holder and holder != instance_uuid:
            raise exception.ContextRefused(
                'device context %s is bound to server %s; it can boot a '
                'server once that server is deleted or lets it go' % (
                    context_id, holder))
        if ctx.get('state') == ERROR and holder != instance_uuid:
            raise exception.ContextRefused(
                'device context %s is in error (%s)' % (
                    context_id, ctx.get('fault') or 'no fault recorded'))

    @staticmethod
    def spec_of(context_id: str, ctx: dict):
        """The DeviceContext of an API context ``ctx``, with its config
        data on each group (also what an attach places).

        :raises ContextRefused: the spec cannot be used.
        """
        # Imported here: request_groups imports the backends.
        from nova_acc import request_groups
        spec = ctx.get('spec')
        if not isinstance(spec, str) or hint.context_id(spec) is not None:
            raise exception.ContextRefused(
                'device context %s has no usable spec' % context_id)
        try:
            device_context = request_groups.resolve(spec)
        except exception.InvalidDeviceContextHint as e:
            raise exception.ContextRefused(
                'device context %s cannot be used: %s' % (context_id, e)
            ) from e
        # The context's config data (accel:* keys, validated by the API)
        # applies to each of its groups; a key the spec sets itself wins.
        config = ctx.get('config') or {}
        for group in device_context.groups:
            for key, value in config.items():
                name = key[len(ACCEL_PREFIX):]
                if key.startswith(ACCEL_PREFIX) and isinstance(value, str):
                    group.config.setdefault(name, value)
        return device_context

    # ---- step 3: bind -----------------------------------------------------

    def bind(self, context, instance, hostname, device_rps):
        """Mark the contexts bound to the server on ``hostname``.

        The API binds atomically: of two servers that bind one context at
        once exactly one gets it, the other a conflict. All or nothing:
        what this call bound is unbound again when one context fails.
        The providers do not matter here: the host picks the devices.
        """
        client = self._client('bind device contexts %s' % ', '.join(
            sorted(device_rps)))
        bound: list[str] = []
        for context_id in sorted(device_rps):
            try:
                self._bind_one(client, context, instance, hostname,
                               context_id)
            except _API_ERRORS as e:
                self._undo(client, instance, bound, hostname)
                raise exception.BackendUnavailable(
                    _why(context_id, 'bound to this server', e)) from e
            bound.append(context_id)

    @staticmethod
    def _bind_one(client, context, instance, hostname, context_id) -> None:
        try:
            client.bind(context_id, instance.uuid, hostname,
                        instance.project_id)
            return
        except api_client.ContextConflict:
            # Bound to a server that is gone: repaired, then bound (the
            # API's compare-and-swap still gives it to one server only).
            holder = client.get(context_id).get('server_id')
            if not holder or holder == instance.uuid or \
                    not _server_is_gone(holder):
                raise
            LOG.warning('Unbinding device context %s from deleted server '
                        '%s to bind it to this server.', context_id, holder,
                        instance=instance)
            client.unbind(context_id, holder)
            client.bind(context_id, instance.uuid, hostname,
                        instance.project_id)
            return
        except api_client.ContextNotFound:
            # An admin may boot with another project's context (policy):
            # the API is then told the context's own project.
            owner = client.get(context_id).get('project_id')
            if owner == instance.project_id or not policy.may_use_any(
                    context, owner):
                raise
        client.bind(context_id, instance.uuid, hostname, owner)

    @staticmethod
    def _undo(client, instance, context_ids, hostname) -> None:
        for context_id in context_ids:
            try:
                client.unbind(context_id, instance.uuid, host=hostname)
            except _API_ERRORS as e:
                LOG.error('Could not unbind device context %s after a '
                          'failed bind: %s', context_id, e,
                          instance=instance)

    # ---- step 4: attach -----------------------------------------------------

    def wait_bound(self, context, instance, virtapi, device_rps,
                   hostname=None):
        """Nothing to wait for or attach: the host picks from its pools.

        The compute asks this only for bindings of a backend that picks
        devices (``picks_devices``); the bindings of local contexts are
        pool bindings.
        """
        return {}

    def record_devices(self, instance_uuid, hostname, held) -> None:
        """Tell the API which devices the host picked for each context.

        See the base class; the devices of inline groups are not sent.

        :raises BackendUnavailable: naming the context and why.
        """
        devices = devices_by_context(held)
        if not devices:
            return
        client = self._client('record devices')
        for context_id, picked in sorted(devices.items()):
            try:
                self._record_one(client, context_id, instance_uuid,
                                 hostname, picked)
            except _API_ERRORS as e:
                raise exception.BackendUnavailable(
                    _why(context_id, 'given its devices', e)) from e

    @staticmethod
    def _record_one(client, context_id: str, instance_uuid: str,
                    hostname: str, picked: list[dict[str, str]]) -> None:
        try:
            client.record_devices(context_id, instance_uuid, hostname,
                                  picked)
            return
        except api_client.ContextConflict as conflict:
            # A move under way: the context is bound to this server on the
            # host it comes from (the destination of a resize or migration
            # before its confirm, the source of a revert). The server's
            # guest runs here now: so does its context.
            try:
                ctx = client.get(context_id)
            except api_client.ContextAPIError:
                raise conflict
            if ctx.get('server_id') != instance_uuid or \
                    ctx.get('host') == hostname:
                raise
        client.bind(context_id, instance_uuid, hostname, ctx['project_id'])
        client.record_devices(context_id, instance_uuid, hostname, picked)

    # ---- step 5: release ----------------------------------------------------

    def unbind(self, context, instance, context_ids, hostname=None):
        """See the base class; the API unbinds only this server's."""
        self._release(instance.uuid, context_ids, hostname)

    def unbind_orphaned(self, admin_context, instance_uuid, context_ids,
                        hostname=None):
        """See the base class; the same service call as ``unbind``."""
        self._release(instance_uuid, context_ids, hostname)

    def _release(self, instance_uuid: str, context_ids, hostname) -> None:
        if not context_ids:
            return
        if not contexts_api.is_configured():
            # Nothing could have been bound without it.
            LOG.warning('Not unbinding device contexts %s of server %s: '
                        '[device_context_api] is not configured.',
                        ', '.join(sorted(context_ids)), instance_uuid)
            return
        client = self._client('unbind device contexts')
        server = _lives_on_after_release(instance_uuid, hostname) \
            if hostname else None
        if server is not None:
            self._follow(client, server, context_ids, hostname)
            return
        failed = []
        for context_id in sorted(context_ids):
            try:
                # Idempotent, and a no-op unless the context is bound to
                # this server (on this host, when given).
                client.unbind(context_id, instance_uuid, host=hostname)
            except api_client.ContextNotFound:
                LOG.info('Device context %s of server %s is gone: nothing '
                         'to unbind.', context_id, instance_uuid)
            except api_client.ContextAPIError as e:
                failed.append(_why(context_id, 'unbound', e))
        if failed:
            raise exception.BackendUnavailable('; '.join(failed))

    def _follow(self, client, server, context_ids, hostname) -> None:
        """Keep the contexts bound to a server that lives on elsewhere.

        A move's source (resize or migration confirmed, an evacuated
        server's old host) lets the devices go, not the server: its
        contexts are bound to it on the node it runs on now.
        """
        if server.node == hostname:
            LOG.info('Keeping device contexts %s bound to server %s: it '
                     'still lives on node %s.', ', '.join(sorted(
                         context_ids)), server.uuid, hostname)
            return
        admin = nova_context.get_admin_context()
        for context_id in sorted(context_ids):
            try:
                ctx = client.get(context_id)
                if (ctx.get('server_id'), ctx.get('host')) == (
                        server.uuid, server.node):
                    # The new host bound it already, with the devices it
                    # picked (``record_devices``): binding again would
                    # clear them.
                    continue
                self._bind_one(client, admin, server, server.node,
                               context_id)
            except _API_ERRORS as e:
                raise exception.BackendUnavailable(
                    _why(context_id, 'bound on node %s' % server.node, e)
                ) from e
            LOG.info('Device context %s of server %s follows it from node '
                     '%s to node %s.', context_id, server.uuid, hostname,
                     server.node)


def devices_by_context(held) -> dict[str, list[dict[str, str]]]:
    """The devices of ``held`` ledger records, by the context they serve.

    As the API records them: ``{"pool": <pool provider UUID>, "address":
    <PCI address>}`` or ``{"pool": ..., "mdev_uuid": <UUID>}``. Only the
    records of groups that came from a context ID (their requester id
    names it), picked by the host (not a backend's own devices).
    """
    # Imported here: request_groups imports the backends.
    from nova_acc import request_groups
    result: dict[str, list[dict[str, str]]] = {}
    for rec in sorted(held, key=lambda r: r.address):
        context_id = request_groups.context_id_of(rec.requester_id)
        if context_id is None or rec.backend_owned:
            continue
        key = 'mdev_uuid' if rec.is_mdev else 'address'
        result.setdefault(context_id, []).append(
            {'pool': rec.rp_uuid, key: rec.address})
    return result


# A server in these states lets go of its contexts with its devices: it
# is deleted, shelved offloaded, or its build failed here (a reschedule
# binds them again on its next host).
_LETTING_GO_VM_STATES = frozenset({vm_states.BUILDING, vm_states.ERROR,
                                   vm_states.DELETED,
                                   vm_states.SHELVED_OFFLOADED})
_LETTING_GO_TASKS = frozenset({task_states.DELETING,
                               task_states.SHELVING_OFFLOADING})


def _lives_on_after_release(instance_uuid: str, hostname: str):
    """The server, if it keeps its contexts after ``hostname`` let go.

    None when the contexts are to be unbound: the server is gone, being
    deleted or offloaded, has no node, or its build failed.

    :raises BackendUnavailable: Nova's database cannot be read.
    """
    try:
        server = objects.Instance.get_by_uuid(
            nova_context.get_admin_context(read_deleted='yes'),
            instance_uuid, expected_attrs=[])
    except nova_exc.InstanceNotFound:
        return None
    except Exception as e:  # the database's and the conductor's errors
        raise exception.BackendUnavailable(
            'cannot tell whether server %s still holds its device contexts:'
            ' %s' % (instance_uuid, e)) from e
    if (server.deleted or not server.node or
            server.vm_state in _LETTING_GO_VM_STATES or
            server.task_state in _LETTING_GO_TASKS):
        return None
    return server


def _server_is_gone(server_uuid: str) -> bool:
    """Is the server deleted (or archived)? False when Nova cannot tell.

    Read from the API database's instance mapping and the server's cell,
    as the conductor and scheduler can; fails closed: a server that may
    still exist keeps its context.
    """
    admin = nova_context.get_admin_context(read_deleted='yes')
    try:
        mapping = objects.InstanceMapping.get_by_instance_uuid(
            admin, server_uuid)
    except nova_exc.InstanceMappingNotFound:
        return True  # archived: deleted long ago
    except Exception as e:  # no API database here, or it is down
        LOG.info('Cannot tell whether server %s still exists: %s',
                 server_uuid, e)
        return False
    if mapping.cell_mapping is None:
        return False  # not scheduled yet: it exists
    try:
        with nova_context.target_cell(admin, mapping.cell_mapping) as cctxt:
            server = objects.Instance.get_by_uuid(cctxt, server_uuid,
                                                  expected_attrs=[])
    except nova_exc.InstanceNotFound:
        return True
    except Exception as e:  # the cell database is down
        LOG.info('Cannot tell whether server %s still exists: %s',
                 server_uuid, e)
        return False
    return bool(server.deleted)
