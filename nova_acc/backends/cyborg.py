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
per project: a user only ever sees their own project's.
"""

from __future__ import annotations

from nova import service_auth
from nova import utils as nova_utils
import os_acc
from os_acc import exception as acc_exc
from oslo_log import log as logging
import os_traits

from nova_acc.backends import base
from nova_acc import conf
from nova_acc import policy

CONF = conf.CONF
LOG = logging.getLogger(__name__)

ARQ_URL = '/accelerator_requests'
DEVICE_PROFILE_URL = '/device_profiles'
BOUND_EVENT = 'accelerator-request-bound'
BINDABLE = ('Initial', 'Unbound')
# States a failed bind leaves behind; an unbind puts the ARQ back in
# Unbound (Cyborg 17 keeps a bind to an unknown provider in BindStarted).
RECOVERABLE = ('BindStarted', 'BindFailed')


class CyborgBackend(base.Backend):
    # Cyborg's providers are Cyborg's, never Nova's.
    forbidden_traits = frozenset({os_traits.OWNER_NOVA})

    def _client(self, context):
        auth = service_auth.get_service_user_token_auth_plugin(context)
        return nova_utils.get_sdk_adapter('accelerator', admin=False,
                                          ksa_auth=auth)

    def _call(self, context, method, url, what, expected=(200,), **kwargs):
        try:
            resp = getattr(self._client(context), method)(
                url, raise_exc=False, **kwargs)
        except Exception as e:  # keystoneauth/sdk raise many kinds
            raise base.BackendUnavailable(
                'cannot reach Cyborg to %s: %s' % (what, e)) from e
        if resp.status_code not in expected and resp.status_code != 404:
            raise base.BackendUnavailable(
                'Cyborg refused to %s: HTTP %s %s' % (
                    what, resp.status_code, resp.text[:200]))
        return resp

    # ---- step 1: resolve ----------------------------------------------------

    def get_arq(self, context, arq_uuid: str) -> dict | None:
        resp = self._call(context, 'get', '%s/%s' % (ARQ_URL, arq_uuid),
                          'read device context %s' % arq_uuid)
        return None if resp.status_code == 404 else resp.json()

    def resolve(self, context, request_spec, context_id):
        arq = self.get_arq(context, context_id)
        if arq is None:
            raise base.ContextRefused(
                'device context %s does not exist in your project'
                % context_id)
        project = request_spec.project_id
        if arq.get('project_id') != project and not policy.may_use_any(
                context, arq.get('project_id')):
            raise base.ContextRefused(
                'device context %s belongs to another project' % context_id)
        state = arq.get('state')
        bound_to = arq.get('instance_uuid')
        own = bound_to in (None, '', request_spec.instance_uuid)
        if not (state in BINDABLE or (state in RECOVERABLE and own)):
            raise base.ContextRefused(
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
            raise base.ContextRefused(
                'device profile %r of device context %s cannot be used: %s'
                % (arq.get('device_profile_name'), context_id, e))
        return base.ResolvedContext(context_id, ctx)

    def _profile_group(self, context, arq) -> dict:
        name = arq.get('device_profile_name')
        resp = self._call(context, 'get', DEVICE_PROFILE_URL,
                          'read device profile %s' % name,
                          params={'name': name})
        profiles = [] if resp.status_code == 404 else resp.json().get(
            'device_profiles', [])
        if len(profiles) != 1:
            raise base.ContextRefused(
                'device profile %r of device context %s is gone' % (
                    name, arq['uuid']))
        groups = profiles[0].get('groups') or []
        index = arq.get('device_profile_group_id') or 0
        if not 0 <= index < len(groups):
            raise base.ContextRefused(
                'device context %s names group %s of device profile %r, '
                'which has %d groups' % (arq['uuid'], index, name,
                                         len(groups)))
        return groups[index]

    # ---- step 3: bind -----------------------------------------------------

    def _patch(self, context, patch, what):
        resp = self._call(context, 'patch', ARQ_URL, what, json=patch,
                          expected=(200, 202))
        if resp.status_code == 404:
            raise base.BackendUnavailable(
                'Cyborg refused to %s: %s' % (what, resp.text[:200]))

    def bind(self, context, instance, hostname, device_rps):
        stale = [arq_uuid for arq_uuid in device_rps
                 if (self.get_arq(context, arq_uuid) or {}).get('state')
                 in RECOVERABLE]
        if stale:
            # A bind that failed earlier left these half-bound.
            self.unbind(context, instance, stale)
        patch = {arq_uuid: [
            {'path': '/hostname', 'op': 'add', 'value': hostname},
            {'path': '/device_rp_uuid', 'op': 'add', 'value': rp_uuid},
            {'path': '/instance_uuid', 'op': 'add', 'value': instance.uuid},
        ] for arq_uuid, rp_uuid in device_rps.items()}
        try:
            self._patch(context, patch, 'bind device contexts %s' % ', '.join(
                sorted(device_rps)))
        except base.BackendUnavailable:
            # Cyborg binds one ARQ after the other; undo the ones that made
            # it so no context stays bound to a server that will not run.
            try:
                self.unbind(context, instance, list(device_rps))
            except base.BackendUnavailable as e:
                LOG.error('Could not unbind device contexts after a failed '
                          'bind: %s', e, instance=instance)
            raise

    def unbind(self, context, instance, context_ids):
        if not context_ids:
            return
        patch = {arq_uuid: [
            {'path': '/hostname', 'op': 'remove'},
            {'path': '/device_rp_uuid', 'op': 'remove'},
            {'path': '/instance_uuid', 'op': 'remove'},
        ] for arq_uuid in context_ids}
        self._patch(context, patch, 'unbind device contexts %s' % ', '.join(
            sorted(context_ids)))

    # ---- step 5: attach -----------------------------------------------------

    def wait_bound(self, context, instance, virtapi, context_ids):
        events = [(BOUND_EVENT, arq_uuid) for arq_uuid in context_ids]

        def failed(event_name, instance):
            raise base.BackendUnavailable(
                'Cyborg reported that binding %s failed' % event_name)

        with virtapi.wait_for_instance_event(
                instance, events, timeout=CONF.nova_acc.cyborg_bind_timeout,
                error_callback=failed):
            # Cyborg binds synchronously, so its event usually reached Nova
            # before this wait began and would never be seen here.
            arqs = {u: self.get_arq(context, u) for u in context_ids}
            done = [(BOUND_EVENT, u) for u, arq in arqs.items()
                    if arq and arq.get('state') in ('Bound', 'BindFailed')]
            if done:
                virtapi.exit_wait_early(done)
        result = {}
        for arq_uuid in context_ids:
            arq = self.get_arq(context, arq_uuid) or {}
            if arq.get('state') != 'Bound' or \
                    arq.get('instance_uuid') != instance.uuid:
                raise base.BackendUnavailable(
                    'device context %s is %s, not Bound to this server' % (
                        arq_uuid, arq.get('state', 'gone')))
            result[arq_uuid] = _accelerator(arq)
        return result


def _accelerator(arq) -> os_acc.Accelerator:
    """The attach handle of a bound ARQ, validated by os_acc."""
    handle_type = arq.get('attach_handle_type')
    info = arq.get('attach_handle_info') or {}
    try:
        if handle_type == 'PCI':
            acc = os_acc.Accelerator(
                interface_type='pci', address='%s:%s:%s.%s' % (
                    info['domain'], info['bus'], info['device'],
                    info['function']))
        elif handle_type == 'MDEV':
            acc = os_acc.Accelerator(interface_type='mdev',
                                     mdev_uuid=info['uuid'])
        else:
            raise KeyError(handle_type)
        os_acc.get_config(acc)  # validates address / UUID
    except (KeyError, acc_exc.InvalidAccelerator) as e:
        raise base.BackendUnavailable(
            'device context %s has an unusable attach handle %s %s: %s' % (
                arq.get('uuid'), handle_type, info, e))
    return acc
