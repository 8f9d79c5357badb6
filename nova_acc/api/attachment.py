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
"""Attach a device context to a running server, and detach it (issue 23).

``PUT /v1/device-contexts/{id}/attachment`` ``{"attachment": {"server_id":
S}}`` and ``DELETE /v1/device-contexts/{id}/attachment``, as a Neutron port
is attached with ``server add port``: the API checks what it can answer at
once (the context is the caller's and unbound, the server is the caller's
project's, ACTIVE or SHUTOFF with no task, on which host), moves the
context to ``attaching``/``detaching`` with one guarded UPDATE (of two
attaches at once exactly one wins) and casts the work to the server's
compute (Nova's topic :data:`TOPIC`, server = its host, namespace
:data:`NAMESPACE`), answering 202. The compute
ends the transition: ``bound`` with devices, ``unbound`` (with a fault when
the attach failed), or ``error`` with a fault.

The server is read from Nova's API with nova-acc-api's own service
credentials (``[nova]``): its project, status, task state and host (an
admin-only attribute). No Nova import: the cast is plain oslo.messaging on
the API's own ``transport_url``, which must be the compute cell's.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing as ty

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
from oslo_context import context as oslo_context
from oslo_log import log as logging
import oslo_messaging as messaging

from nova_acc.api import exception

LOG = logging.getLogger(__name__)

#: The RPC topic of nova-acc on each compute host; the server of the
#: target is the compute's host (``nova_acc.compute.attach_rpc``).
#: Nova's compute topic; nova-acc's endpoint there has a namespace of its
#: own (``nova_acc.compute.attach_rpc``).
TOPIC = 'compute'
NAMESPACE = 'nova_acc'
#: The exchange Nova's services use (nova.rpc sets it as the transport's
#: default control_exchange); oslo.messaging's own default, 'openstack',
#: is one no nova-compute listens on. nova-acc-api.conf's [DEFAULT]
#: control_exchange still overrides it.
EXCHANGE = 'nova'
#: The version of the compute's RPC API this side speaks.
RPC_VERSION = '1.0'
#: The version that has check_boot_context and detach_boot_context.
BOOT_DETACH_VERSION = '1.1'
#: Seconds the API waits for a compute's answer to check_boot_context.
CHECK_TIMEOUT = 30
NOVA_GROUP = 'nova'
#: Server states an attach or a detach may start from (Nova's API names).
USABLE_STATUSES = ('ACTIVE', 'SHUTOFF')


@dataclasses.dataclass(frozen=True)
class Server:
    """What the API needs to know of a server."""

    id: str
    project_id: str
    status: str
    task_state: str | None
    host: str | None


class NovaUnavailable(Exception):
    """Nova's API could not be asked (down, credentials refused)."""


class NovaServers:
    """Servers read from Nova's API with the service's credentials."""

    def __init__(self, adapter: ty.Any) -> None:
        self.adapter = adapter

    def get(self, server_id: str) -> Server | None:
        """The server, or None if Nova does not know it.

        :raises NovaUnavailable:
        """
        try:
            response = self.adapter.get('/servers/%s' % server_id,
                                        raise_exc=False)
        except ks_exceptions.ClientException as e:
            raise NovaUnavailable(str(e)) from e
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise NovaUnavailable('Nova answered %d reading server %s'
                                  % (response.status_code, server_id))
        try:
            found = response.json()['server']
            return Server(id=found['id'], project_id=found['tenant_id'],
                          status=found['status'],
                          task_state=found.get('OS-EXT-STS:task_state'),
                          host=found.get('OS-EXT-SRV-ATTR:host'))
        except (ValueError, KeyError, TypeError) as e:
            raise NovaUnavailable('Nova\'s answer for server %s is not a '
                                  'server: %s' % (server_id, e)) from e


class ComputeRPC:
    """Casts to nova-acc's endpoint on one compute host."""

    def __init__(self, transport: ty.Any) -> None:
        self.client = messaging.get_rpc_client(
            transport, messaging.Target(topic=TOPIC, namespace=NAMESPACE,
                                        version=RPC_VERSION))

    def cast(self, context: oslo_context.RequestContext, host: str,
             method: str, context_id: str, server_id: str) -> None:
        """Cast ``method`` to ``host``; raises what oslo.messaging raises."""
        self.client.prepare(server=host, version=RPC_VERSION).cast(
            _rpc_context(context), method, context_id=context_id,
            server_id=server_id)

    def check_boot_detach(self, context: oslo_context.RequestContext,
                          host: str, server_id: str,
                          index: int) -> tuple[int, str] | None:
        """Ask ``host`` whether the boot-time context ``index`` can be
        detached now: (HTTP status, reason) if not, else None.

        :raises: what oslo.messaging raises (MessagingTimeout among them).
        """
        found = self.client.prepare(
            server=host, version=BOOT_DETACH_VERSION,
            timeout=CHECK_TIMEOUT).call(
                _rpc_context(context), 'check_boot_context',
                server_id=server_id, index=index)
        if not found:
            return None
        status, reason = found
        return int(status), str(reason)

    def list_boot(self, context: oslo_context.RequestContext, host: str,
                  server_id: str) -> dict[str, ty.Any]:
        """The server's contexts by index, as its compute reads them.

        :raises: what oslo.messaging raises (MessagingTimeout among them).
        """
        found = self.client.prepare(
            server=host, version=BOOT_DETACH_VERSION,
            timeout=CHECK_TIMEOUT).call(
                _rpc_context(context), 'list_boot_contexts',
                server_id=server_id)
        return found if isinstance(found, dict) else {}

    def cast_boot_detach(self, context: oslo_context.RequestContext,
                         host: str, server_id: str, index: int) -> None:
        """Detach the server's boot-time context ``index`` (no ID); a
        compute older than 1.1 makes oslo.messaging raise."""
        self.client.prepare(server=host, version=BOOT_DETACH_VERSION).cast(
            _rpc_context(context), 'detach_boot_context',
            server_id=server_id, index=index)


def _rpc_context(context: oslo_context.RequestContext) -> dict[str, ty.Any]:
    """What the compute learns of the caller: who asked (for the instance
    action), and the request IDs (for the logs); never the token."""
    return {'user_id': context.user_id, 'project_id': context.project_id,
            'request_id': context.request_id,
            'global_request_id': context.global_request_id,
            'roles': list(context.roles), 'is_admin': False}


@dataclasses.dataclass
class Attachments:
    """The two outside parties of an attach: Nova's API and the computes."""

    servers: NovaServers
    compute: ComputeRPC

    def visible_server(self, server_id: str, project_id: str) -> Server:
        """The server, if it is ``project_id``'s.

        :raises NotFound: unknown, or another project's.
        :raises Conflict: Nova could not be asked.
        """
        try:
            server = self.servers.get(server_id)
        except NovaUnavailable as e:
            LOG.warning('Cannot read server %s from Nova: %s', server_id, e)
            raise exception.Conflict(
                'server %s cannot be checked with Nova now; try again '
                'later' % server_id)
        if server is None or server.project_id != project_id:
            raise exception.NotFound('Server %s could not be found.'
                                     % server_id)
        return server

    def usable_server(self, server_id: str, project_id: str) -> Server:
        """The server, if an attach or detach may start on it now.

        :raises NotFound: unknown, or another project's.
        :raises Conflict: not ACTIVE/SHUTOFF, a task in progress, no host,
            or Nova could not be asked.
        """
        server = self.visible_server(server_id, project_id)
        if server.status not in USABLE_STATUSES or server.task_state:
            raise exception.Conflict(
                'server %s is %s%s: a device context is attached to or '
                'detached from an ACTIVE or SHUTOFF server with no task in '
                'progress' % (server_id, server.status,
                              ' (task %s)' % server.task_state
                              if server.task_state else ''))
        if not server.host:
            raise exception.Conflict('server %s has no host' % server_id)
        return server


def register_opts(conf: cfg.ConfigOpts) -> None:
    """``[nova]``: keystoneauth options of Nova's API for this service."""
    conf.register_group(cfg.OptGroup(NOVA_GROUP, title='Nova API access'))
    ks_loading.register_session_conf_options(conf, NOVA_GROUP)
    ks_loading.register_auth_conf_options(conf, NOVA_GROUP)
    ks_loading.register_adapter_conf_options(conf, NOVA_GROUP)
    conf.set_default('service_type', 'compute', group=NOVA_GROUP)
    _register_messaging_opts(conf)


#: Option groups oslo.messaging (18.3) reads from the transport's
#: ConfigOpts on every cast but registers on the global CONF only, by
#: module: this service has a ConfigOpts of its own, on which every cast
#: raised NoSuchOptError (the real cloud answered each attach 409). The
#: list oslo_messaging.ConfFixture registers; each module's list of
#: options is named as its group.
_MESSAGING_GLOBAL_ONLY = (
    ('oslo_messaging._metrics.client', 'oslo_messaging_metrics'),
    ('oslo_messaging._tracing.client', 'oslo_messaging_tracing'),
)


def _register_messaging_opts(conf: cfg.ConfigOpts) -> None:
    for module_name, group in _MESSAGING_GLOBAL_ONLY:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an oslo.messaging without that feature
            continue
        conf.register_opts(getattr(module, group), group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    opts = (ks_loading.get_session_conf_options() +
            ks_loading.get_auth_common_conf_options() +
            ks_loading.get_adapter_conf_options(include_deprecated=False))
    return [(NOVA_GROUP, opts)]


def from_conf(conf: cfg.ConfigOpts) -> Attachments | None:
    """The deployment's Nova and transport, or None without ``[nova]``."""
    if not conf[NOVA_GROUP].auth_type:
        return None
    auth = ks_loading.load_auth_from_conf_options(conf, NOVA_GROUP)
    session = ks_loading.load_session_from_conf_options(
        conf, NOVA_GROUP, auth=auth)
    adapter = ks_loading.load_adapter_from_conf_options(
        conf, NOVA_GROUP, session=session, auth=auth)
    messaging.set_transport_defaults(control_exchange=EXCHANGE)
    transport = messaging.get_rpc_transport(conf)
    return Attachments(servers=NovaServers(adapter),
                       compute=ComputeRPC(transport))
