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
"""nova-acc-api's policy rules, defaults in code.

Personas as in placement's and Cinder's new defaults: a project's
``reader`` may look, its ``member`` may create, change and delete, the
``admin`` may do anything, and Nova's side calls the binding calls with a
user that has the ``service`` role (as Cyborg requires for binding
accelerator requests). All rules are project-scoped; ``enforce_scope``
and ``enforce_new_defaults`` are on by default (conf.py). Operators
override them in ``/etc/nova-acc/policy.yaml``; listed through the
``oslo.policy.policies`` entry point ``nova_acc.api``.
"""

from __future__ import annotations

from oslo_config import cfg
from oslo_context import context as oslo_context
from oslo_policy import policy

ADMIN = 'role:admin'
SERVICE = 'role:service'
PROJECT_READER = 'role:reader and project_id:%(project_id)s'
PROJECT_MEMBER = 'role:member and project_id:%(project_id)s'

PREFIX = 'device_context:'
CREATE = PREFIX + 'create'
LIST = PREFIX + 'list'
LIST_ALL_PROJECTS = PREFIX + 'list:all_projects'
SHOW = PREFIX + 'show'
UPDATE = PREFIX + 'update'
DELETE = PREFIX + 'delete'
BIND = PREFIX + 'binding:update'
UNBIND = PREFIX + 'binding:delete'
RECORD_DEVICES = PREFIX + 'devices:update'
SET_FAULT = PREFIX + 'fault:update'
ATTACH = PREFIX + 'attachment:create'
DETACH = PREFIX + 'attachment:delete'

_PATH = '/v1/device-contexts'


def _rule(name: str, check_str: str, description: str, method: str,
          path: str) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(
        name=name, check_str=check_str, description=description,
        operations=[{'method': method, 'path': path}],
        scope_types=['project'])


RULES = [
    _rule(CREATE, '%s or (%s)' % (ADMIN, PROJECT_MEMBER),
          'Create a device context in the caller\'s project.',
          'POST', _PATH),
    policy.DocumentedRuleDefault(
        name=LIST,
        check_str='%s or %s or (%s)' % (ADMIN, SERVICE, PROJECT_READER),
        description='List the device contexts of the caller\'s project, '
        'or those a server of it was given at boot.',
        operations=[{'method': 'GET', 'path': _PATH},
                    {'method': 'GET',
                     'path': '/v1/servers/{server_id}/boot-contexts'}],
        scope_types=['project']),
    _rule(LIST_ALL_PROJECTS, '%s or %s' % (ADMIN, SERVICE),
          'List the device contexts of all projects (all_projects=True).',
          'GET', _PATH),
    _rule(SHOW, '%s or %s or (%s)' % (ADMIN, SERVICE, PROJECT_READER),
          'Show a device context. Refused as not found (404) when the '
          'context is another project\'s.',
          'GET', _PATH + '/{id}'),
    _rule(UPDATE, '%s or (%s)' % (ADMIN, PROJECT_MEMBER),
          'Change the name, description or config of a device context.',
          'PATCH', _PATH + '/{id}'),
    _rule(DELETE, '%s or (%s)' % (ADMIN, PROJECT_MEMBER),
          'Delete an unbound device context.',
          'DELETE', _PATH + '/{id}'),
    _rule(BIND, '%s or %s' % (ADMIN, SERVICE),
          'Bind a device context to a server (Nova\'s side).',
          'PUT', _PATH + '/{id}/binding'),
    _rule(UNBIND, '%s or %s' % (ADMIN, SERVICE),
          'Unbind a device context from a server (Nova\'s side).',
          'DELETE', _PATH + '/{id}/binding'),
    _rule(RECORD_DEVICES, '%s or %s' % (ADMIN, SERVICE),
          'Record the devices a compute picked (Nova\'s side).',
          'PUT', _PATH + '/{id}/devices'),
    _rule(SET_FAULT, '%s or %s' % (ADMIN, SERVICE),
          'Put a bound device context in the error state (Nova\'s side).',
          'PUT', _PATH + '/{id}/fault'),
    _rule(ATTACH, '%s or (%s)' % (ADMIN, PROJECT_MEMBER),
          'Attach a device context to a running or stopped server of its '
          'project.',
          'PUT', _PATH + '/{id}/attachment'),
    # One rule for both detaches: a context given at boot without an ID
    # is detached by its server and index, with a token of the server's
    # project.
    policy.DocumentedRuleDefault(
        name=DETACH, check_str='%s or (%s)' % (ADMIN, PROJECT_MEMBER),
        description='Detach a device context from its server.',
        operations=[
            {'method': 'DELETE', 'path': _PATH + '/{id}/attachment'},
            {'method': 'DELETE',
             'path': '/v1/servers/{server_id}/boot-contexts/{index}'}],
        scope_types=['project']),
]


def list_rules() -> list[policy.DocumentedRuleDefault]:
    """Entry point of ``oslo.policy.policies`` (nova_acc.api)."""
    return RULES


def enforcer(conf: cfg.ConfigOpts) -> policy.Enforcer:
    """An enforcer with nova-acc-api's rules, reading ``conf``."""
    result = policy.Enforcer(conf)
    result.register_defaults(RULES)
    return result


def allows(rules: policy.Enforcer, context: oslo_context.RequestContext,
           rule: str, project_id: str | None) -> bool:
    """May ``context`` apply ``rule`` to an object of ``project_id``?"""
    try:
        return bool(rules.authorize(rule, {'project_id': project_id},
                                    context, do_raise=False))
    except policy.InvalidScope:
        return False
