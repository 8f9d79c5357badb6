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
"""Start one of Nova's services with a nova-acc manager.

The same steps as ``nova.cmd.scheduler`` / ``nova.cmd.conductor``; only the
manager class differs, and it is passed explicitly: nothing in Nova is
patched.
"""

import sys

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_reports import guru_meditation_report as gmr
from oslo_reports import opts as gmr_opts

import nova.conf
from nova import config
from nova import objects
from nova import service
from nova import thread_pool_factory
from nova import version

import nova_acc.conf  # noqa: F401 - registers [nova_acc]

CONF = nova.conf.CONF

# Services nova-acc extends: binary -> manager.
MANAGERS = {
    'nova-scheduler': 'nova_acc.seams.scheduler.SchedulerManager',
    'nova-conductor': 'nova_acc.seams.conductor.ConductorManager',
}


def serve(binary: str, topic: str, workers_group: str) -> None:
    """Run ``binary`` with ``[<workers_group>] workers`` worker processes.

    The group is passed rather than ``CONF.<group>.workers`` itself: that
    value is only right after parse_args below has read the config files;
    read before, it is always the default (None, one worker per CPU).
    """
    config.parse_args(sys.argv)
    logging.setup(CONF, 'nova')
    objects.register_all()
    gmr_opts.set_defaults(CONF)
    objects.Service.enable_min_version_cache()
    gmr.TextGuruMeditation.setup_autorun(version, conf=CONF)
    LOG = logging.getLogger(__name__)
    LOG.info('Starting %s with nova-acc manager %s', binary,
             MANAGERS[binary])
    server = service.Service.create(binary=binary, topic=topic,
                                    manager=MANAGERS[binary])
    # As nova.cmd does: unset, one worker per CPU.
    workers = CONF[workers_group].workers or processutils.get_worker_count()
    # As nova.cmd does: executors must not be inherited by forked workers.
    thread_pool_factory.reset_all_executors()
    service.serve(server, workers=workers)
    service.wait()
