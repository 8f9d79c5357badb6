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
"""Device contexts as Cyborg accelerator requests (ARQs).

The user creates an ARQ from a device profile, then boots with its UUID,
like a Neutron port created before the boot. Unlike Nova's own Cyborg
support (ARQs created from the flavor and deleted with the server), the ARQ
belongs to the user: deleting the server unbinds it and never deletes it.

Calls go to Cyborg's v2 API with the ``[cyborg]`` client settings Nova
already has, as the user (the user's token plus Nova's service token when
``[service_user] send_service_user_token`` is set, which Cyborg requires
for bind and unbind), exactly as Nova's own client does. Cyborg keeps ARQs
per project: a user only ever sees their own project's. nova-compute's
cleanup of servers that are gone (``unbind_orphaned``) has no user token:
it calls Cyborg with the service credentials of ``[cyborg]`` (``auth_type``
and the plugin's options, which Nova itself does not register there) plus
the service token.

Cyborg 17 does not serialise changes to one ARQ: two binds of the same ARQ
that arrive together can both be accepted (HTTP 202), with the ARQ left
bound to one server and, often, with the attach handle of the other
server's device; or both fail and leave the ARQ half-bound to one of them.
So an answer from Cyborg never says alone who holds an ARQ: every bind is
checked by reading the ARQs back, and nothing is unbound without reading
first whom it is bound to.

``CyborgHTTP`` is the REST client (credentials, one call, the ARQ and
profile reads, the PATCHes); ``CyborgBackend`` is the bind logic on top of
it, one method per step of the flow.
"""

from __future__ import annotations

from keystoneauth1 import loading as ks_loading
from nova import exception as nova_exc
from nova import service_auth
from nova import utils as nova_utils
import os_acc
from os_acc import exception as acc_exc
from oslo_log import log as logging
import os_traits

from nova_acc.backends import base
from nova_acc import conf
from nova_acc import exception
from nova_acc import policy

CONF = conf.CONF
LOG = logging.getLogger(__name__)

#: The keystoneauth options of Nova's own credentials for Cyborg
#: (``[cyborg]``, Nova's group); not ``conf.CYBORG_GROUP``, which is
#: nova-acc's ``[nova_acc_cyborg]``.
CYBORG_AUTH_GROUP = 'cyborg'
ARQ_URL = '/accelerator_requests'
DEVICE_PROFILE_URL = '/device_profiles'
BOUND_EVENT = 'accelerator-request-bound'
BOUND = 'Bound'
BINDING = 'BindStarted'
BINDABLE = ('Initial', 'Unbound')
# States a failed bind leaves behind; an unbind puts the ARQ back in
# Unbound (Cyborg 17 keeps a bind to an unknown provider in BindStarted).
RECOVERABLE = ('BindStarted', 'BindFailed')
# States in which an ARQ holds (or is being given) a device.
BIND_STATES = (BOUND,) + RECOVERABLE


def register_opts(conf):
    """Register the ``[cyborg]`` auth options nova-compute's cleanup reads.

    Nova registers only session and adapter options in ``[cyborg]``: it
    calls Cyborg as the user. The plugin's own options (``username``...)
    are registered by keystoneauth when the credentials are loaded.
    """
    ks_loading.register_auth_conf_options(conf, CYBORG_AUTH_GROUP)


def list_opts():
    """The ``[cyborg]`` options nova-acc adds, for oslo-config-generator."""
    return [(CYBORG_AUTH_GROUP, ks_loading.get_auth_common_conf_options() +
             ks_loading.get_auth_plugin_conf_options('password'))]


register_opts(CONF)


def _holder(arq: dict) -> str | None:
    return arq.get('instance_uuid') or None


class CyborgHTTP:
    """Cyborg's REST API as the backend calls it: ARQs and device profiles.

    As the user (user token plus Nova's service token), or, for Nova's own
    tasks without a user, with Nova's credentials of ``[cyborg]``. Every
    failure is ``BackendUnavailable`` naming what was being done; a 404 is
    returned for the caller to read as "no such object".
    """

    def _client(self, context, admin=False):
        if admin:
            # No user here: Nova's own credentials stand in for the user
            # token. Cyborg still wants a service token for bind and unbind.
            auth = service_auth.get_service_user_token_auth_plugin(
                context, user_auth=self._service_credentials())
        else:
            auth = service_auth.get_service_user_token_auth_plugin(context)
        return nova_utils.get_sdk_adapter('accelerator', admin=admin,
                                          ksa_auth=auth)

    @staticmethod
    def _service_credentials():
        try:
            auth = service_auth.get_service_auth_plugin(CYBORG_AUTH_GROUP)
        except Exception as e:  # keystoneauth's loading errors are many
            raise exception.BackendUnavailable(
                'cannot load the Cyborg credentials of [cyborg]: %s' % e
            ) from e
        if auth is None:
            raise exception.BackendUnavailable(
                'no Cyborg credentials: [cyborg] auth_type is not set, so '
                'nova-compute cannot unbind device contexts of servers that '
                'are gone')
        return auth

    def _call(self, context, method, url, what, expected=(200,),
              admin=False, **kwargs):
        # Nova's own tasks (a periodic reap of a deleted server's guest)
        # pass an admin context with no user token; like Nova's Neutron
        # client, use Nova's credentials then.
        admin = admin or (context.is_admin and not context.auth_token)
        try:
            resp = getattr(self._client(context, admin=admin), method)(
                url, raise_exc=False, **kwargs)
        except exception.BackendUnavailable:
            raise
        except Exception as e:  # keystoneauth/sdk raise many kinds
            raise exception.BackendUnavailable(
                'cannot reach Cyborg to %s: %s' % (what, e)) from e
        if resp.status_code not in expected and resp.status_code != 404:
            raise exception.BackendUnavailable(
                'Cyborg refused to %s: HTTP %s %s' % (
                    what, resp.status_code, resp.text[:200]))
        return resp

    def get_arq(self, context, arq_uuid: str, admin=False) -> dict | None:
        resp = self._call(context, 'get', '%s/%s' % (ARQ_URL, arq_uuid),
                          'read device context %s' % arq_uuid, admin=admin)
        return None if resp.status_code == 404 else resp.json()

    def _profile_group(self, context, arq) -> dict:
        name = arq.get('device_profile_name')
        resp = self._call(context, 'get', DEVICE_PROFILE_URL,
                          'read device profile %s' % name,
                          params={'name': name})
        profiles = [] if resp.status_code == 404 else resp.json().get(
            'device_profiles', [])
        if len(profiles) != 1:
            raise exception.ContextRefused(
                'device profile %r of device context %s is gone' % (
                    name, arq['uuid']))
        groups = profiles[0].get('groups') or []
        index = arq.get('device_profile_group_id') or 0
        if not 0 <= index < len(groups):
            raise exception.ContextRefused(
                'device context %s names group %s of device profile %r, '
                'which has %d groups' % (arq['uuid'], index, name,
                                         len(groups)))
        return groups[index]

    def _patch(self, context, patch, what, admin=False, microversion=None):
        kwargs = {'microversion': microversion} if microversion else {}
        resp = self._call(context, 'patch', ARQ_URL, what, json=patch,
                          expected=(200, 202), admin=admin, **kwargs)
        if resp.status_code == 404:
            raise exception.BackendUnavailable(
                'Cyborg refused to %s: %s' % (what, resp.text[:200]))

    def _unbind_now(self, context, arq_uuids, admin=False):
        """One unbind PATCH for ARQs already checked to be unbindable."""
        patch = {arq_uuid: [
            {'path': '/hostname', 'op': 'remove'},
            {'path': '/device_rp_uuid', 'op': 'remove'},
            {'path': '/instance_uuid', 'op': 'remove'},
        ] for arq_uuid in arq_uuids}
        self._patch(context, patch, 'unbind device contexts %s' % ', '.join(
            sorted(arq_uuids)), admin=admin)

    def _read_all(self, context, arq_uuids) -> dict[str, dict | None]:
        return {u: self.get_arq(context, u) for u in arq_uuids}


class CyborgBackend(CyborgHTTP, base.Backend):
    # Cyborg's providers are Cyborg's, never Nova's.
    forbidden_traits = frozenset({os_traits.OWNER_NOVA})

    # ---- step 1: resolve ----------------------------------------------------

    def resolve(self, context, request_spec, context_id):
        # Another project's ARQ is refused with the very words of one that
        # does not exist: a user learns nothing of other projects' ARQs.
        not_found = exception.ContextRefused(
            'device context %s does not exist in your project' % context_id)
        arq = self.get_arq(context, context_id)
        if arq is None:
            raise not_found
        project = request_spec.project_id
        if arq.get('project_id') != project and not policy.may_use_any(
                context, arq.get('project_id')):
            LOG.info('Refusing device context %s to server %s of project '
                     '%s: it belongs to project %s, and policy %s does not '
                     'let this user use it. The user is told it does not '
                     'exist.', context_id, request_spec.instance_uuid,
                     project, arq.get('project_id'), policy.USE_ANY_PROJECT)
            raise not_found
        state = arq.get('state')
        bound_to = arq.get('instance_uuid')
        own = bound_to in (None, '', request_spec.instance_uuid)
        # Bound to this very server: it is being moved (resize, cold
        # migration, evacuate); the destination binds it there.
        moving = state == BOUND and bound_to and \
            bound_to == request_spec.instance_uuid
        if not (state in BINDABLE or (state in RECOVERABLE and own) or
                moving):
            raise exception.ContextRefused(
                'device context %s is %s%s; it can boot a server when it is '
                'Initial or Unbound' % (
                    context_id, state,
                    ' to server %s' % bound_to if bound_to else ''))
        group = self._profile_group(context, arq)
        try:
            ctx = os_acc.parse_device_context([group])
            # Cyborg makes one ARQ per accelerator of a group (a group
            # asking for FPGA=2 yields two ARQs), so an ARQ asks for one.
            for rc in ctx.groups[0].resources:
                ctx.groups[0].resources[rc] = 1
        except acc_exc.InvalidDeviceContext as e:
            raise exception.ContextRefused(
                'device profile %r of device context %s cannot be used: %s'
                % (arq.get('device_profile_name'), context_id, e))
        return base.ResolvedContext(context_id, ctx)

    # ---- step 3: bind -----------------------------------------------------

    @staticmethod
    def _held_elsewhere(arqs: dict, instance_uuid: str) -> list[str]:
        """Why ARQs another server holds (or is being bound to) are taken."""
        return ['device context %s is in use by server %s (%s)' % (
            u, _holder(a), a.get('state'))
            for u, a in sorted(arqs.items())
            if a and _holder(a) not in (None, instance_uuid)]

    @staticmethod
    def _undoable(arqs: dict, instance_uuid: str) -> list[str]:
        """ARQs this server's (failed) binds left (half-)bound.

        Half-bound ARQs that name no server count too; one that another
        server holds never does.
        """
        return sorted(u for u, a in arqs.items()
                      if a and a.get('state') in BIND_STATES and
                      _holder(a) in (None, instance_uuid))

    def bind(self, context, instance, hostname, device_rps):
        what = 'bind device contexts %s' % ', '.join(sorted(device_rps))
        for attempt in (1, 2):
            before = self._prepare_bind(context, instance, device_rps)
            patch, microversion = _bind_patch(context, instance, hostname,
                                              device_rps, before)
            error = None
            try:
                self._patch(context, patch, what, microversion=microversion)
            except exception.BackendUnavailable as e:
                error = e
            try:
                arqs = self._read_all(context, device_rps)
            except exception.BackendUnavailable as e:
                LOG.error('Cannot tell whether device contexts %s are bound '
                          'after a bind: %s', ', '.join(sorted(device_rps)),
                          e, instance=instance)
                raise error or e
            wrong = {u: a for u, a in arqs.items() if not (
                a and a.get('state') == BOUND and
                _holder(a) == instance.uuid and
                a.get('hostname') == hostname and
                a.get('device_rp_uuid') == device_rps[u])}
            if error is None and not wrong:
                return
            taken = self._held_elsewhere(arqs, instance.uuid)
            if taken and error is None:
                # Cyborg accepted this bind and a concurrent one of the same
                # ARQ, and the other won. The winner's ARQ may have this
                # server's attach handle now: nothing here can repair that,
                # so say it where operators look.
                LOG.warning('Cyborg accepted binding device contexts %s but '
                            'a concurrent bind won: %s. Cyborg may have '
                            'left an attach handle allocated.',
                            ', '.join(sorted(device_rps)), '; '.join(taken),
                            instance=instance)
            undone = self._undo(context, instance, arqs)
            # Two binds of one ARQ that arrive together can both fail and
            # leave it half-bound to one of the two servers. That server,
            # and only that one (so the two do not collide again), tries
            # once more.
            if attempt == 1 and not taken and any(
                    _holder(arqs[u]) == instance.uuid for u in undone):
                LOG.warning('Binding device contexts %s failed (%s); trying '
                            'once more.', ', '.join(sorted(device_rps)),
                            error or 'not bound as asked', instance=instance)
                continue
            if taken:
                raise exception.BackendUnavailable('; '.join(taken)) from error
            raise error or exception.BackendUnavailable(
                'Cyborg accepted the bind, but %s' % '; '.join(
                    'device context %s is %s' % (u, _describe(a, where=True))
                    for u, a in sorted(wrong.items())))

    def _prepare_bind(self, context, instance, device_rps
                      ) -> dict[str, dict]:
        """Refuse ARQs another server holds; unbind this server's leftovers.

        :returns: the ARQs as they were read before.

        :raises BackendUnavailable: an ARQ is gone or in use by another
            server; nothing was changed.
        """
        arqs = self._read_all(context, device_rps)
        gone = sorted(u for u, a in arqs.items() if a is None)
        if gone:
            raise exception.BackendUnavailable(
                'device contexts %s no longer exist' % ', '.join(gone))
        taken = self._held_elsewhere(arqs, instance.uuid)
        if taken:
            # Checked before the bind, never undone after it: undoing would
            # unbind the ARQ from the server that holds it.
            raise exception.BackendUnavailable('; '.join(taken))
        # What a failed bind of this server left, or a build of it on the
        # host it was rescheduled from. Cyborg binds no ARQ to a server that
        # still has one, so these are unbound first.
        stale = self._undoable(arqs, instance.uuid)
        if stale:
            LOG.info('Unbinding device contexts %s left (half-)bound to this '
                     'server before binding them again, or bound to it on '
                     'the host it moves from.', ', '.join(stale),
                     instance=instance)
            self._unbind_now(context, stale)
        return arqs

    def _undo(self, context, instance, arqs) -> list[str]:
        """Unbind what a failed bind left bound to this server."""
        undo = self._undoable(arqs, instance.uuid)
        if not undo:
            return []
        # Cyborg binds one ARQ after the other; undo the ones that made it
        # so no context stays bound to a server that will not run.
        try:
            self._unbind_now(context, undo)
        except exception.BackendUnavailable as e:
            LOG.error('Could not unbind device contexts after a failed '
                      'bind: %s', e, instance=instance)
            return []
        return undo

    # ---- step 5: release ----------------------------------------------------

    def unbind(self, context, instance, context_ids, hostname=None):
        """See the base class.

        :param hostname: the node whose cleanup this is, if it is one: an
            ARQ that is bound to the same server on another node (it was
            rescheduled or moved there since) is left alone.
        """
        self._release(context, instance.uuid, context_ids, admin=False,
                      hostname=hostname)

    def unbind_orphaned(self, admin_context, instance_uuid, context_ids,
                        hostname=None):
        """See the base class; ``hostname`` as for ``unbind``."""
        self._release(admin_context, instance_uuid, context_ids, admin=True,
                      hostname=hostname)

    def _release(self, context, instance_uuid, context_ids, admin,
                 hostname=None):
        if not context_ids:
            return
        mine = []
        for arq_uuid in context_ids:
            # Cyborg has no conditional PATCH: read first, so that an ARQ
            # another server got in the meantime is not unbound under it.
            arq = self.get_arq(context, arq_uuid, admin=admin)
            holder = _holder(arq) if arq else None
            if arq is None or arq.get('state') in BINDABLE:
                LOG.info('Device context %s of server %s is %s: nothing to '
                         'unbind.', arq_uuid, instance_uuid,
                         arq.get('state') if arq else 'gone')
            elif holder not in (None, instance_uuid) or (
                    admin and holder is None):
                LOG.info('Not unbinding device context %s from server %s: '
                         'it is %s.', arq_uuid, instance_uuid,
                         _describe(arq))
            elif hostname and arq.get('hostname') not in (None, hostname):
                LOG.info('Not unbinding device context %s from server %s on '
                         'node %s: it is bound on node %s now.', arq_uuid,
                         instance_uuid, hostname, arq.get('hostname'))
            else:
                mine.append(arq_uuid)
        if mine:
            self._unbind_now(context, mine, admin=admin)

    # ---- step 4: attach -----------------------------------------------------

    def wait_bound(self, context, instance, virtapi, device_rps,
                   hostname=None):
        try:
            return self._wait_bound(context, instance, virtapi, device_rps,
                                    hostname or instance.node)
        except (exception.BackendUnavailable, nova_exc.InstanceEventTimeout):
            # The server will not run here with these: whatever of them is
            # bound to it is released now. The ledger does not know them
            # yet, so nothing else would release them if the server ends up
            # in ERROR.
            try:
                self.unbind(context, instance, list(device_rps))
            except exception.BackendUnavailable as e:
                LOG.error('Could not unbind device contexts %s refused at '
                          'attach: %s', ', '.join(sorted(device_rps)), e,
                          instance=instance)
            raise

    def _wait_bound(self, context, instance, virtapi, device_rps, hostname):
        events = [(BOUND_EVENT, arq_uuid) for arq_uuid in device_rps]

        def failed(event_name, instance):
            raise exception.BackendUnavailable(
                'Cyborg reported that binding %s failed' % event_name)

        with virtapi.wait_for_instance_event(
                instance, events, timeout=CONF.nova_acc_cyborg.bind_timeout,
                error_callback=failed):
            # Cyborg binds synchronously, so its event usually reached Nova
            # before this wait began and would never be seen here. Only an
            # ARQ Cyborg is still binding for this server can change by
            # waiting; the check below says what is wrong with the others,
            # and when one is wrong there is nothing to wait for.
            arqs = self._read_all(context, device_rps)
            waiting = {u for u, arq in arqs.items()
                       if arq and arq.get('state') == BINDING and
                       _holder(arq) == instance.uuid}
            done = [e for e in events if e[1] not in waiting]
            if any(_binding_problem(u, arqs[u], instance, device_rps[u],
                                    hostname)
                   for u in arqs if u not in waiting):
                done = events
            if done:
                virtapi.exit_wait_early(done)
        arqs = self._read_all(context, device_rps)
        problems = [p for p in (
            _binding_problem(u, arqs[u], instance, device_rps[u], hostname)
            for u in sorted(device_rps)) if p]
        if problems:
            raise exception.BackendUnavailable('; '.join(problems))
        return {u: _accelerator(arq) for u, arq in arqs.items()}


def _describe(arq: dict | None, where=False) -> str:
    if arq is None:
        return 'gone'
    holder = _holder(arq)
    text = '%s%s' % (arq.get('state'),
                     ' to server %s' % holder if holder else '')
    if where and holder:
        text += ' on host %s, resource provider %s' % (
            arq.get('hostname'), arq.get('device_rp_uuid'))
    return text


#: The first Cyborg API version whose ARQ patch takes a project_id.
PROJECT_ID_VERSION = '2.1'


def _bind_patch(context, instance, hostname: str, device_rps: dict,
                arqs: dict) -> tuple[dict, str | None]:
    """The JSON patch that binds the ARQs, and the API version it needs.

    Cyborg 17 gives a bound ARQ to the project of the token that binds it.
    An admin who boots or moves another project's server (cold migration
    and evacuate are admin operations) would take the user's ARQ into the
    admin's project: the admin's bind names the ARQ's own project instead,
    which Cyborg allows admins from API 2.1 on.
    """
    patch, microversion = {}, None
    for arq_uuid, rp_uuid in device_rps.items():
        ops = [
            {'path': '/hostname', 'op': 'add', 'value': hostname},
            {'path': '/device_rp_uuid', 'op': 'add', 'value': rp_uuid},
            {'path': '/instance_uuid', 'op': 'add', 'value': instance.uuid},
        ]
        owner = (arqs.get(arq_uuid) or {}).get('project_id')
        if context.is_admin and owner and owner != context.project_id:
            ops.append({'path': '/project_id', 'op': 'add', 'value': owner})
            microversion = PROJECT_ID_VERSION
        patch[arq_uuid] = ops
    return patch, microversion


def _binding_problem(arq_uuid, arq, instance, rp_uuid, hostname
                     ) -> str | None:
    """What is wrong with an ARQ bound to ``rp_uuid`` on ``hostname``, if any.

    The compute attaches only what the pre-bind (or the destination of a
    move) bound: this server, this node (binds name the node) and the
    provider placement allocated to the server.
    """
    if arq is None or arq.get('state') != BOUND or \
            _holder(arq) != instance.uuid:
        return 'device context %s is %s, not Bound to this server' % (
            arq_uuid, _describe(arq))
    if arq.get('hostname') != hostname:
        return ('device context %s is bound on host %s, not on %s where '
                'this server is built' % (arq_uuid, arq.get('hostname'),
                                          hostname))
    if arq.get('device_rp_uuid') != rp_uuid:
        return ('device context %s is bound to resource provider %s, not '
                'to %s allocated to this server' % (
                    arq_uuid, arq.get('device_rp_uuid'), rp_uuid))
    return None


def _accelerator(arq) -> os_acc.Accelerator:
    """The attach handle of a bound ARQ, validated by os_acc."""
    handle_type = arq.get('attach_handle_type')
    info = arq.get('attach_handle_info') or {}
    try:
        if handle_type == 'PCI':
            acc = os_acc.Accelerator(
                interface_type='pci', address=str(
                    os_acc.PciAddress.from_hex_fields(
                        info['domain'], info['bus'], info['device'],
                        info['function'])))
        elif handle_type == 'MDEV':
            # As Nova's libvirt driver reads Cyborg's mdev handles
            # (_allocate_cyborg_mdevs): the handle's UUID is the mdev's,
            # its info names the parent GPU and the type to create.
            # It goes into libvirt's node-device XML when nova-compute
            # creates the mdev.
            mdev_type = info['asked_type']
            if not os_acc.is_valid_mdev_type(mdev_type):
                raise KeyError('asked_type %r' % (mdev_type,))
            acc = os_acc.Accelerator(
                interface_type='mdev',
                mdev_uuid=arq.get('attach_handle_uuid') or info.get('uuid'),
                parent=str(os_acc.PciAddress.from_hex_fields(
                    info['domain'], info['bus'], info['device'],
                    info['function'])),
                mdev_type=mdev_type)
        else:
            raise KeyError(handle_type)
        os_acc.get_config(acc)  # validates address / UUID
    except (KeyError, acc_exc.InvalidAccelerator,
            acc_exc.InvalidDeviceAddress) as e:
        raise exception.BackendUnavailable(
            'device context %s has an unusable attach handle %s %s: %s' % (
                arq.get('uuid'), handle_type, info, e))
    return acc
