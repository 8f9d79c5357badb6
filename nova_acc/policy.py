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
"""nova-acc's policy rules.

Read from Nova's policy file (``[oslo_policy] policy_file``), so operators
override them where they override Nova's; listed through the
``oslo.policy.policies`` entry point for ``oslopolicy-sample-generator``.
"""

from oslo_policy import policy

from nova_acc import conf

USE_ANY_PROJECT = 'nova_acc:device_context:use_any_project'

RULES = [
    policy.DocumentedRuleDefault(
        name=USE_ANY_PROJECT,
        check_str='role:admin',
        description='Boot a server with a device context (an ID-based one, '
                    'such as a Cyborg accelerator request) that belongs to '
                    'another project.',
        operations=[{'method': 'POST', 'path': '/servers'}]),
]

_ENFORCER = None


def list_rules():
    return RULES


def _enforcer():
    global _ENFORCER
    if _ENFORCER is None:
        _ENFORCER = policy.Enforcer(conf.CONF)
        _ENFORCER.register_defaults(RULES)
    return _ENFORCER


def may_use_any(context, owner_project: str | None) -> bool:
    """May ``context`` use a device context owned by ``owner_project``?"""
    return _enforcer().enforce(
        USE_ANY_PROJECT, {'project_id': owner_project},
        context.to_policy_values(), do_raise=False)
