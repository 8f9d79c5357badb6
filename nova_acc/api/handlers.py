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
"""The handlers of ``/v1/device-contexts``: one function per call.

Each handler checks the policy, validates what it was sent
(:mod:`.validation`) and makes one database call (:mod:`.db.api`).
A context of another project is answered as missing (404), never as
forbidden, so a caller never learns what another project has.
"""

from __future__ import annotations

import dataclasses
import json
import typing as ty
import urllib.parse

from oslo_config import cfg
from oslo_context import context as oslo_context
from oslo_policy import policy as oslo_policy
import webob

from nova_acc.api import attachment
from nova_acc.api import auth
from nova_acc.api.db import api as db_api
from nova_acc.api.db import models
from nova_acc.api import exception
from nova_acc.api import policy
from nova_acc.api import validation

COLLECTION = '/v1/device-contexts'


@dataclasses.dataclass
class Service:
    """What every handler needs: options, database, policy."""

    conf: cfg.ConfigOpts
    db: db_api.Database
    rules: oslo_policy.Enforcer
    #: Nova's API and the computes, for attach and detach; None when
    #: ``[nova]`` is not configured (both are then refused).
    attachments: attachment.Attachments | None = None


Handler = ty.Callable[..., webob.Response]


def _json(body: object, status: int = 200) -> webob.Response:
    return webob.Response(json_body=body, status=status,
                          content_type='application/json', charset='utf-8')


def _one(found: db_api.Context, status: int = 200) -> webob.Response:
    return _json({'device_context': found}, status)


def _body(req: webob.Request) -> object:
    try:
        return json.loads(req.body.decode('utf-8'))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise exception.BadRequest('The body is not valid JSON')


def _context_id(value: str) -> str:
    found = validation.context_id(value)
    if found is None:
        raise exception.ContextNotFound(value)
    return found


def _authorize(service: Service, context: oslo_context.RequestContext,
               rule: str, project_id: str | None) -> None:
    if not policy.allows(service.rules, context, rule, project_id):
        raise exception.Forbidden('Policy does not allow %s' % rule)


def _visible(service: Service, req: webob.Request, raw_id: str, rule: str,
             project_id: str | None = None) -> db_api.Context:
    """The context ``rule`` may be applied to; 404 if another project's."""
    context = auth.context_of(req)
    context_id = _context_id(raw_id)
    found = service.db.get(context_id)
    if found is None or (project_id is not None and
                         found['project_id'] != project_id):
        raise exception.ContextNotFound(context_id)
    if not policy.allows(service.rules, context, rule, found['project_id']):
        # Forbidden only tells a caller who may see the context that it
        # exists; to anyone else it is missing.
        if not policy.allows(service.rules, context, policy.SHOW,
                             found['project_id']):
            raise exception.ContextNotFound(context_id)
        raise exception.Forbidden('Policy does not allow %s' % rule)
    return found


# ---- user-facing calls ----------------------------------------------------

def create(service: Service, req: webob.Request) -> webob.Response:
    context = auth.context_of(req)
    _authorize(service, context, policy.CREATE, context.project_id)
    if not context.project_id:
        raise exception.Forbidden('A device context belongs to a project: '
                                  'use a project-scoped token')
    if (len(context.project_id) > models.PROJECT_LENGTH or
            len(context.user_id or '') > models.PROJECT_LENGTH):
        raise exception.BadRequest('The project or user ID of the token is '
                                   'longer than %d characters'
                                   % models.PROJECT_LENGTH)
    validation.query(req.GET, ())
    obj = validation.body_object(
        _body(req), 'device_context',
        ('spec', 'name', 'description', 'config'), required=('spec',))
    values = _names(obj)
    spec = validation.spec(obj['spec'])
    config = validation.config(obj.get('config', {}))
    limit = service.conf.quota.device_contexts
    over = ('Quota exceeded: project %s may have %d device contexts'
            % (context.project_id, limit))
    if limit >= 0 and service.db.count(context.project_id) >= limit:
        raise exception.OverQuota(over)
    created = service.db.create(context.project_id, str(context.user_id), spec,
                                config, **values)
    if limit >= 0 and service.db.delete_if_over(
            created['id'], context.project_id, limit):
        raise exception.OverQuota(over)
    response = _one(created, 201)
    response.location = '%s%s/%s' % (req.application_url, COLLECTION,
                                     created['id'])
    return response


def _names(obj: dict[str, ty.Any]) -> dict[str, ty.Any]:
    values = {}
    if 'name' in obj:
        values['name'] = validation.text(obj, 'name', models.NAME_LENGTH,
                                         nullable=True)
    if 'description' in obj:
        values['description'] = validation.text(
            obj, 'description', models.DESCRIPTION_LENGTH, nullable=True)
    return values


def index(service: Service, req: webob.Request) -> webob.Response:
    context = auth.context_of(req)
    params = validation.query(
        req.GET, ('server_id', 'state', 'all_projects', 'limit', 'marker'))
    server_id = validation.query_uuid(params, 'server_id')
    state = validation.query_state(params)
    limit = validation.query_limit(params)
    marker = validation.query_uuid(params, 'marker')
    project_id: str | None = context.project_id
    if validation.query_bool(params, 'all_projects'):
        _authorize(service, context, policy.LIST_ALL_PROJECTS, project_id)
        project_id = None
    else:
        _authorize(service, context, policy.LIST, project_id)
    found = [_expired(service, c) for c in service.db.list(
        project_id=project_id, server_id=server_id, state=state,
        limit=limit, marker=marker)]
    body: dict[str, ty.Any] = {'device_contexts': found}
    if limit is not None and len(found) == limit:
        # Neutron's and Cinder's shape: the next page starts after the
        # last one shown.
        query = dict(params, marker=found[-1]['id'])
        body['device_contexts_links'] = [{
            'rel': 'next',
            'href': '%s%s?%s' % (req.application_url, COLLECTION,
                                 urllib.parse.urlencode(sorted(
                                     query.items())))}]
    return _json(body)


def show(service: Service, req: webob.Request,
         context_id: str) -> webob.Response:
    params = validation.query(req.GET, ('project_id',))
    return _one(_expired(service, _visible(
        service, req, context_id, policy.SHOW,
        project_id=params.get('project_id'))))


def update(service: Service, req: webob.Request,
           context_id: str) -> webob.Response:
    validation.query(req.GET, ())
    found = _visible(service, req, context_id, policy.UPDATE)
    obj = validation.body_object(_body(req), 'device_context',
                                 ('name', 'description', 'config'))
    values = _names(obj)
    if 'config' in obj:
        values['config'] = validation.config(obj['config'])
    return _one(service.db.update(found['id'], values))


def delete(service: Service, req: webob.Request,
           context_id: str) -> webob.Response:
    validation.query(req.GET, ())
    found = _visible(service, req, context_id, policy.DELETE)
    service.db.delete(found['id'])
    return webob.Response(status=204)


# ---- attach to and detach from a running server (issue 23) ---------------

def _expired(service: Service, found: db_api.Context) -> db_api.Context:
    """An attach or detach its compute did not finish in time: ``error``."""
    return service.db.expire_transition(found,
                                        service.conf.api.attachment_timeout)


def _attachments(service: Service) -> attachment.Attachments:
    if service.attachments is None:
        raise exception.Conflict(
            'attaching device contexts to servers is not available: '
            'nova-acc-api has no [nova] credentials')
    return service.attachments


def _cast_to_compute(attachments: attachment.Attachments,
                     req: webob.Request, host: str, method: str,
                     context_id: str, server_id: str, why: str,
                     undo: ty.Callable[[str], object]) -> None:
    """Cast ``method`` of the attach or detach to the server's compute.

    A cast that cannot be sent (oslo.messaging's error of a broken
    transport) is undone in the database with ``undo(why)`` and answered
    409 naming the context and ``why``: nothing waits for a compute that
    was never told.
    """
    try:
        attachments.compute.cast(auth.context_of(req), host, method,
                                 context_id, server_id)
    except Exception as e:  # oslo.messaging's, of a broken transport
        undo(why)
        raise exception.Conflict('device context %s: %s (%s)'
                                 % (context_id, why, type(e).__name__))


def attach(service: Service, req: webob.Request,
           context_id: str) -> webob.Response:
    """``PUT .../attachment``: attach to a server of the same project."""
    validation.query(req.GET, ())
    found = _visible(service, req, context_id, policy.ATTACH)
    obj = validation.body_object(_body(req), 'attachment', ('server_id',),
                                 required=('server_id',))
    server_id = validation.uuid(obj, 'server_id')
    if found['state'] != models.UNBOUND:
        raise exception.ContextBound(found['id'], found['server_id'],
                                     'detach it first')
    attachments = _attachments(service)
    server = attachments.usable_server(server_id, found['project_id'])
    assert server.host is not None  # usable_server checked
    started = service.db.begin_attach(found['id'], found['project_id'],
                                      server_id, server.host)
    _cast_to_compute(
        attachments, req, server.host, 'attach_device_context', found['id'],
        server_id, 'the attach to server %s could not be sent to host %s'
        % (server_id, server.host),
        undo=lambda why: service.db.unbind(found['id'], server_id,
                                           fault=why))
    return _one(started, 202)


def detach(service: Service, req: webob.Request,
           context_id: str) -> webob.Response:
    """``DELETE .../attachment``: detach from the server it is bound to."""
    validation.query(req.GET, ())
    found = _visible(service, req, context_id, policy.DETACH)
    server_id = found['server_id']
    if server_id is None or found['state'] not in (models.BOUND,
                                                   models.ERROR):
        raise exception.Conflict(
            'device context %s is %s: only a bound context (or one in '
            'error) can be detached' % (found['id'], found['state']))
    attachments = _attachments(service)
    server = attachments.usable_server(server_id, found['project_id'])
    if server.host != found['host']:
        raise exception.Conflict(
            'device context %s is bound on another host than its server '
            'runs on now; try again once the server\'s move is over'
            % found['id'])
    started = service.db.begin_detach(found['id'], server_id)
    _cast_to_compute(
        attachments, req, str(server.host), 'detach_device_context',
        found['id'], server_id, 'the detach from server %s could not be '
        'sent to host %s; retry the detach' % (server_id, server.host),
        undo=lambda why: service.db.set_fault(found['id'], server_id, why))
    return _one(started, 202)


def list_boot_contexts(service: Service, req: webob.Request,
                       server_id: str) -> webob.Response:
    """``GET /v1/servers/{server_id}/boot-contexts``: the server's device
    contexts by index, as its RequestSpec names them (read by its
    compute), so that a user can name one given at boot without an ID."""
    validation.query(req.GET, ())
    context = auth.context_of(req)
    _authorize(service, context, policy.LIST, context.project_id)
    found_server = validation.path_uuid(server_id, 'Server')
    server = _attachments(service).visible_server(
        found_server, str(context.project_id))
    if not server.host:
        raise exception.Conflict(
            'server %s has no host now (not built yet, or shelved '
            'offloaded): its contexts cannot be read' % server.id)
    try:
        found = _attachments(service).compute.list_boot(
            context, server.host, server.id)
    except Exception as e:  # oslo.messaging's: a timeout, a broken
        # transport, a compute too old for the call
        raise exception.Conflict(
            'host %s did not answer for the contexts of server %s (%s); '
            'try again' % (server.host, server.id, type(e).__name__))
    if 'contexts' not in found:
        raise (exception.NotFound if found.get('status') == 404 else
               exception.Conflict)(str(found.get('reason') or (
                   'host %s gave no answer for server %s' % (
                       server.host, server.id))))
    return _json({'boot_contexts': found['contexts']})


def detach_boot_context(service: Service, req: webob.Request,
                        server_id: str, index: str) -> webob.Response:
    """``DELETE /v1/servers/{server_id}/boot-contexts/{index}``: detach a
    context given at boot as an inline spec or a profile, by its place in
    the server's ``device_context`` values (issue 23 item 5).

    No context object, and the values are in Nova's RequestSpec: the
    server's compute is asked (a call) whether there is such a context
    and it can be detached now, which answers the refusals at once; then
    the detach is cast. A guest that keeps the device fails the server's
    instance action ``detach_boot_context``.
    """
    validation.query(req.GET, ())
    context = auth.context_of(req)
    _authorize(service, context, policy.DETACH, context.project_id)
    found_server = validation.path_uuid(server_id, 'Server')
    position = validation.context_index(index)
    attachments = _attachments(service)
    server = attachments.usable_server(found_server,
                                       str(context.project_id))
    host = str(server.host)
    what = 'device context #%d of server %s' % (position, server.id)
    try:
        refused = attachments.compute.check_boot_detach(
            context, host, server.id, position)
    except Exception as e:  # oslo.messaging's: a timeout, a broken
        # transport, a compute too old for the call
        raise exception.Conflict(
            '%s: host %s did not answer whether it can be detached (%s); '
            'retry the detach' % (what, host, type(e).__name__))
    if refused is not None:
        status, reason = refused
        raise (exception.NotFound if status == 404 else
               exception.BadRequest if status == 400 else
               exception.Conflict)(reason)
    try:
        attachments.compute.cast_boot_detach(context, host, server.id,
                                             position)
    except Exception as e:  # oslo.messaging's, of a broken transport
        raise exception.Conflict(
            '%s: the detach could not be sent to host %s (%s); retry the '
            'detach' % (what, host, type(e).__name__))
    return webob.Response(status=202)


# ---- calls of Nova's side -------------------------------------------------

def bind(service: Service, req: webob.Request,
         context_id: str) -> webob.Response:
    validation.query(req.GET, ())
    obj = validation.body_object(
        _body(req), 'binding', ('server_id', 'host', 'project_id'),
        required=('server_id', 'host', 'project_id'))
    server_id = validation.uuid(obj, 'server_id')
    host = validation.identifier(obj, 'host', models.HOST_LENGTH)
    project_id = validation.identifier(obj, 'project_id',
                                       models.PROJECT_LENGTH)
    _authorize(service, auth.context_of(req), policy.BIND, project_id)
    return _one(service.db.bind(_context_id(context_id), project_id,
                                server_id, host))


def unbind(service: Service, req: webob.Request,
           context_id: str) -> webob.Response:
    params = validation.query(req.GET, ('server_id', 'host', 'fault'))
    server_id = validation.query_uuid(params, 'server_id')
    if server_id is None:
        raise exception.BadRequest("Query parameter 'server_id' is required")
    host = None
    if 'host' in params:
        host = validation.identifier(params, 'host', models.HOST_LENGTH)
    fault = params.get('fault')
    if fault is not None:
        _check_fault(fault)
    _authorize(service, auth.context_of(req), policy.UNBIND, None)
    found_id = validation.context_id(context_id)
    if found_id is not None:
        service.db.unbind(found_id, server_id, host, fault=fault)
    return webob.Response(status=204)


def record_devices(service: Service, req: webob.Request,
                   context_id: str) -> webob.Response:
    validation.query(req.GET, ())
    body = _body(req)
    if not isinstance(body, dict) or set(body) != {
            'devices', 'server_id', 'host'}:
        raise exception.BadRequest(
            'The body must be a JSON object with the keys devices, '
            'server_id and host')
    server_id = validation.uuid(body, 'server_id')
    host = validation.identifier(body, 'host', models.HOST_LENGTH)
    devices = validation.devices(body['devices'])
    _authorize(service, auth.context_of(req), policy.RECORD_DEVICES, None)
    return _one(service.db.record_devices(
        _context_id(context_id), server_id, host, devices))


def _is_utf8(value: str) -> bool:
    # A fault is free text (Nova's messages have newlines), but a lone
    # surrogate from a JSON escape cannot be stored in any database.
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return True


def _check_fault(fault: object) -> None:
    if not isinstance(fault, str) or not fault.strip() or (
            len(fault) > models.FAULT_LENGTH) or not _is_utf8(fault):
        raise exception.BadRequest(
            "'fault' must be a non-empty string of at most %d characters"
            % models.FAULT_LENGTH)


def set_fault(service: Service, req: webob.Request,
              context_id: str) -> webob.Response:
    validation.query(req.GET, ())
    body = _body(req)
    if not isinstance(body, dict) or set(body) != {'fault', 'server_id'}:
        raise exception.BadRequest(
            'The body must be a JSON object with the keys fault and '
            'server_id')
    server_id = validation.uuid(body, 'server_id')
    fault = body['fault']
    _check_fault(fault)
    _authorize(service, auth.context_of(req), policy.SET_FAULT, None)
    return _one(service.db.set_fault(_context_id(context_id), server_id,
                                     fault))
