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
"""Options of nova-acc-api (``/etc/nova-acc/nova-acc-api.conf``).

The service reads its own ``cfg.ConfigOpts`` instance, never Nova's global
``CONF``: it runs without Nova. oslo.db's ``[database]``,
keystonemiddleware's ``[keystone_authtoken]``, oslo.policy's
``[oslo_policy]`` and oslo.middleware's groups are registered by those
libraries; :func:`list_opts` lists ours for oslo-config-generator.
"""

from __future__ import annotations

import os
import typing as ty

from oslo_config import cfg
from oslo_db import options as db_options
from oslo_log import log as logging
from oslo_policy import opts as policy_opts

from nova_acc.api import attachment

#: The project name oslo.config uses to find the file:
#: ``/etc/nova-acc/nova-acc-api.conf``.
PROJECT = 'nova-acc'
PROG = 'nova-acc-api'
CONFIG_FILE = 'nova-acc-api.conf'
#: An environment variable naming another directory for CONFIG_FILE, as
#: placement's OS_PLACEMENT_CONFIG_DIR does (uwsgi's ``--env``).
CONFIG_DIR_ENV = 'NOVA_ACC_API_CONFIG_DIR'

API_GROUP = cfg.OptGroup('api', title='nova-acc-api service')
API_OPTS = [
    cfg.StrOpt(
        'auth_strategy',
        default='keystone',
        choices=[
            ('keystone', 'Keystone tokens, checked by keystonemiddleware '
                         '(configure [keystone_authtoken]).'),
            ('noauth2', 'No authentication: the X-Auth-Token header is '
                        '"user:project" and X-Roles gives the roles. For '
                        'tests and the demo only, never a deployment.'),
        ],
        help='How callers are authenticated.'),
    cfg.IntOpt(
        'attachment_timeout',
        default=600,
        min=0,
        help='Seconds a device context may stay attaching or detaching '
             '(its compute at work) before the API shows it in error, '
             'saying the attach or detach did not finish (a compute down, '
             'a cast lost with an API process); a detach then cleans up. '
             'A compute that finishes later still ends it bound or '
             'unbound.'),
]

QUOTA_GROUP = cfg.OptGroup('quota', title='Quotas')
QUOTA_OPTS = [
    cfg.IntOpt(
        'device_contexts',
        default=100,
        min=-1,
        help='The most device contexts one project may have; -1 is '
             'unlimited. Counted in nova-acc-api\'s own database (not '
             'Keystone unified limits): see the operator guide.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register nova-acc-api's options and the libraries' on ``conf``."""
    for group, opts in ((API_GROUP, API_OPTS), (QUOTA_GROUP, QUOTA_OPTS)):
        # A group object of its own for each ConfigOpts: register_group
        # keeps a shallow copy, whose option table (values, overrides) is
        # the module-level group's; sharing it, an override made on one
        # ConfigOpts (a test's quota) would show in every other one.
        conf.register_group(cfg.OptGroup(group.name, title=group.title,
                                         help=group.help))
        conf.register_opts(opts, group=group.name)
    attachment.register_opts(conf)
    db_options.set_defaults(conf)
    # New defaults and scope checks on: the service is new, it has no
    # deprecated rules to keep working.
    policy_opts.set_defaults(conf, enforce_scope=True,
                             enforce_new_defaults=True)
    logging.register_options(conf)


def config_files(env: ty.Mapping[str, str] | None = None) -> list[str] | None:
    """The file to read, or None for oslo.config's default locations."""
    env = os.environ if env is None else env
    dirname = env.get(CONFIG_DIR_ENV, '').strip()
    if dirname:
        return [os.path.join(dirname, CONFIG_FILE)]
    return None


def load(argv: ty.Sequence[str] = (),
         default_config_files: list[str] | None = None) -> cfg.ConfigOpts:
    """A new, parsed ConfigOpts with nova-acc-api's options."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    if default_config_files is None:
        default_config_files = config_files()
    if default_config_files is None:
        default_config_files = cfg.find_config_files(
            project=PROJECT, prog=PROG)
    conf(list(argv), project=PROJECT, prog=PROG,
         default_config_files=default_config_files)
    return conf


def list_opts() -> list[tuple[cfg.OptGroup, ty.Sequence[cfg.Opt]]]:
    """Entry point of ``oslo.config.opts`` (nova_acc.api)."""
    return [(API_GROUP, API_OPTS), (QUOTA_GROUP, QUOTA_OPTS)] + [
        (cfg.OptGroup(name), opts) for name, opts in attachment.list_opts()]
