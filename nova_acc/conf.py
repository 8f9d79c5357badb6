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
"""The ``[nova_acc]`` options of nova.conf."""

import typing as ty

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
from oslo_serialization import jsonutils

from nova_acc import exception

GROUP = cfg.OptGroup(
    'nova_acc',
    title='nova-acc device contexts',
    help='Options of the nova-acc extension: device contexts passed with '
         'the ``device_context`` scheduler hint.')

OPTS = [
    cfg.MultiStrOpt(
        'device_spec',
        default=[],
        help='''
Selects the host PCI functions that nova-acc reports to placement, one JSON
object per line, modelled on ``[pci] device_spec``.

Match keys: ``vendor_id``, ``product_id`` (hex, ``*`` matches any),
``address`` (glob on the ``0000:3b:00.1`` form) and ``physfn`` (glob on the
address of a VF's parent). ``resource_class`` and ``traits`` set what the
device's resource provider reports. Each value is one line; repeat the
option for more specs. Example::

    [nova_acc]
    device_spec = {"vendor_id": "1172", "resource_class": "FPGA"}

A device must not also be listed in ``[pci] device_spec``: nova-compute
refuses to start when both would hand out the same device.
'''),
    cfg.MultiStrOpt(
        'profile',
        default=[],
        help='''
Operator-defined device contexts that users name with
``device_context=profile:NAME``, one ``NAME=SPEC`` per line. ``SPEC`` uses the
device-context grammar, for example::

    [nova_acc]
    profile = gzip=resources:FPGA=1,trait:CUSTOM_GZIP=required
'''),
    cfg.StrOpt(
        'capability_trait',
        default='CUSTOM_NOVA_ACC',
        regex=r'^CUSTOM_[A-Z0-9_]+$',
        help='Trait set on every compute node that runs the nova-acc compute '
             'driver and on each device provider it reports. Device-context '
             'requests require it, so servers only land on hosts and devices '
             'that nova-acc manages.'),
    cfg.BoolOpt(
        'pool_by_numa',
        default=False,
        help='Split device pools by NUMA node as well. Devices with the same '
             'resource class and traits (and, for VFs, the same PF) form one '
             'pool, one resource provider whose inventory is the number of '
             'devices; a request group gets all its devices from one pool. '
             'By default a pool spans the host\'s NUMA nodes, so a server can '
             'have all 8 GPUs of a two-socket host in one group. With this '
             'set, each NUMA node\'s devices are a pool of their own: a '
             'group\'s devices then share a NUMA node, and a server asking '
             'for more devices than one node has needs several groups. '
             'Changing it on a host whose devices are in use keeps the used '
             'devices in their old pool until they are released.'),
    cfg.IntOpt(
        'max_groups_per_server',
        default=8,
        min=1,
        max=16,
        help='Largest number of request groups (summed over all device '
             'contexts; each Cyborg ARQ is one group) one server may ask '
             'for. Each group is one granular request group in the '
             'placement query, and asks for a count of devices of one pool: '
             '``resources:FPGA=8`` is one group. Placement combines each '
             'group with each pool of a host that can serve it. Where one '
             'pool of a host matches the groups (devices of one resource '
             'class and traits are one pool), a host has one candidate '
             'whatever the number of groups: measured with 16 FPGAs, 16 '
             'groups cost about 1.3 times a one-group boot. Where identical '
             'groups match two pools of a host (``pool_by_numa``, or the VFs '
             'of two PFs), a host has up to 2^G candidates: measured with two '
             'pools of 8 FPGAs, 8 groups cost about 1.2 times what one costs, '
             '12 groups 7.5 times, 14 groups took 36 s a boot and 16 did not '
             'finish (see benchmarks/README.md). 8 is the most that stays '
             'cheap with any pool layout. Raise it (at most 16) only where '
             'each group matches one pool per host, or together with '
             'placement\'s ``[placement] '
             'allocation_candidates_generation_strategy = breadth-first`` '
             'and ``max_allocation_candidates = 1000`` (operator guide, '
             '"Wide requests").'),
    cfg.IntOpt(
        'schedule_attempts',
        default=3,
        min=1,
        max=10,
        help='How often the scheduler asks placement for fresh allocation '
             'candidates when every claim for a server with device contexts '
             'failed. Concurrent boots can claim the same device in the same '
             'instant; the loser finds the remaining free devices on the next '
             'attempt instead of failing with NoValidHost.'),
    cfg.StrOpt(
        'backend',
        default='local',
        help='Service that owns ID-based device contexts (a hint value that '
             'is a UUID), loaded from the ``nova_acc.backends`` entry points: '
             '``local`` reads them from nova-acc-api (``[device_context_api]``'
             '; without it, inline specs and profiles only) and the hosts '
             'pick their devices from nova-acc\'s pools; ``cyborg`` treats '
             'the UUID as a Cyborg accelerator request, reached with the '
             '``[cyborg]`` client options.'),
    cfg.BoolOpt(
        'reset_on_release',
        default=True,
        help='Issue a PCI function-level reset through sysfs when a device '
             'is released (its server was deleted, reclaimed, shelved '
             'offloaded, failed to build here or left the host), so no data '
             'is left on it for the next tenant. A device whose reset fails '
             'or that has no reset method becomes dirty and stays out of '
             'service until cleared with ``nova-acc-manage devices '
             'clear-dirty``. Set it to false only where devices are cleaned '
             'by other means: devices are then freed without a reset.'),
    cfg.StrOpt(
        'ledger_dir',
        help='Directory of the device ledger, the host\'s record of which '
             'device each server holds (one JSON file per compute node, '
             '``<node>.json``). Defaults to ``$state_path/nova_acc``. Keep '
             'it on local, persistent storage: it must survive restarts of '
             'nova-compute and of the host. ``nova-acc-manage devices`` '
             'reads it.'),
]


CYBORG_GROUP = cfg.OptGroup(
    'nova_acc_cyborg',
    title='nova-acc: device contexts that are Cyborg ARQs',
    help='Options of ``[nova_acc] backend = cyborg``.')

CYBORG_OPTS = [
    cfg.IntOpt(
        'bind_timeout',
        default=300,
        min=1,
        deprecated_opts=[cfg.DeprecatedOpt('cyborg_bind_timeout',
                                           group='nova_acc')],
        help='Seconds nova-compute waits for Cyborg\'s '
             '``accelerator-request-bound`` events of a server\'s device '
             'contexts before it gives up on the build on this host.'),
]


CONTEXT_API_GROUP = cfg.OptGroup(
    'device_context_api',
    title='nova-acc: the device-context API (nova-acc-api)',
    help='''
How nova-conductor, nova-scheduler and nova-compute reach nova-acc-api, the
service that keeps device contexts created before a boot (``[nova_acc]
backend = local``). Nova calls it with these service credentials (a user
with the ``service`` role), never with the user's token: it passes the
server's project, and the API refuses another project's context as
unknown. Without ``auth_type`` a context ID in a boot is refused, and only
inline specs and profiles work. Keystone's catalog gives the endpoint
(service type ``device-context``) unless ``endpoint_override`` is set.
''')
#: The Keystone service type of nova-acc-api.
CONTEXT_API_SERVICE_TYPE = 'device-context'


_ADAPTER_VERSION_OPTS = ('version', 'min_version', 'max_version')


def _never_set(value: object) -> None:
    return None


_ADAPTER_VERSION_PLACEHOLDERS = [cfg.Opt(name, type=_never_set)
                                 for name in _ADAPTER_VERSION_OPTS]


def _context_api_adapter_opts() -> list[cfg.Opt]:
    opts = ks_loading.get_adapter_conf_options(include_deprecated=False)
    # The client knows the API version it speaks (/v1); the operator
    # does not set one, as for Nova's own service groups.
    opts = [o for o in opts if o.dest not in _ADAPTER_VERSION_OPTS]
    cfg.set_defaults(opts, valid_interfaces=['internal', 'public'],
                     service_type=CONTEXT_API_SERVICE_TYPE)
    return opts


def _context_api_list_opts() -> list[cfg.Opt]:
    return (ks_loading.get_session_conf_options() +
            ks_loading.get_auth_common_conf_options() +
            ks_loading.get_auth_plugin_conf_options('password') +
            _context_api_adapter_opts())


# Options only tests set; not listed for operators (list_opts).
TEST_OPTS = [
    cfg.StrOpt(
        'sysfs_root',
        default='/sys',
        help='Root of the sysfs tree used for device resets. Tests point it '
             'at a tree of their own; never change it on a real host.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(GROUP)
    conf.register_opts(OPTS + TEST_OPTS, group=GROUP)
    conf.register_group(CYBORG_GROUP)
    conf.register_opts(CYBORG_OPTS, group=CYBORG_GROUP)
    _register_context_api_opts(conf)


def _register_context_api_opts(conf: cfg.ConfigOpts) -> None:
    """``[device_context_api]``: keystoneauth session, auth and adapter.

    Registered as Nova registers its ``[cyborg]`` group
    (``nova.conf.utils.register_ksa_opts``), with the auth options too:
    Nova calls nova-acc-api as itself, not as the user.
    """
    group = CONTEXT_API_GROUP.name
    conf.register_group(CONTEXT_API_GROUP)
    ks_loading.register_session_conf_options(conf, group)
    ks_loading.register_auth_conf_options(conf, group)
    conf.register_opts(_context_api_adapter_opts(), group=group)
    # keystoneauth's adapter loader reads them: present, but never set.
    # The same Opt objects each time: an OptGroup keeps the options
    # registered in it, so new ones would clash on a second ConfigOpts.
    conf.register_opts(_ADAPTER_VERSION_PLACEHOLDERS, group=group)


def device_specs() -> list[dict[str, ty.Any]]:
    """The ``[nova_acc] device_spec`` entries, one dict per option line.

    Read by nova-compute (discovery) and by the privsep daemon (which
    devices it may reset), each from its own configuration. Only the JSON
    is checked here; the entries themselves are validated by os_acc when
    devices are selected (``InvalidDeviceSpec``).

    :raises InvalidDeviceSpecConfig: naming the line that is not a JSON
        object.
    """
    specs = []
    for line in CONF.nova_acc.device_spec:
        try:
            spec = jsonutils.loads(line)
        except ValueError as e:
            raise exception.InvalidDeviceSpecConfig(
                '[nova_acc] device_spec %r is not valid JSON: %s' % (line, e))
        if not isinstance(spec, dict):
            raise exception.InvalidDeviceSpecConfig(
                '[nova_acc] device_spec %r must be a JSON object' % line)
        specs.append(spec)
    return specs


def list_opts():
    """Entry point of ``oslo.config.opts`` for oslo-config-generator."""
    return [(GROUP, OPTS), (CYBORG_GROUP, CYBORG_OPTS),
            (CONTEXT_API_GROUP, _context_api_list_opts())]


CONF = cfg.CONF
register_opts(CONF)
