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
"""Configuration options of nova-acc's tempest plugin.

``[service_available] nova_acc`` turns the tests on; ``[nova_acc]`` says
what the cloud under test has. ``[service_available] nova_acc_api`` turns
on the tests of nova-acc-api, the device-context API, whose service client
``[device_context]`` configures (tools/run-tempest.sh and the devstack
plugin set it when Keystone's catalog has the service type).
"""

from oslo_config import cfg

service_available_opts = [
    cfg.BoolOpt('nova_acc',
                default=False,
                help='Whether the cloud runs nova-acc (nova-acc-scheduler, '
                     'nova-acc-conductor and nova_acc.LibvirtAccDriver); '
                     'the tests of this plugin run only then.'),
    cfg.BoolOpt('nova_acc_api',
                default=False,
                help='Whether the cloud runs nova-acc-api, the device-'
                     'context API (Keystone service type device-context); '
                     'its tests and the boot-by-ID tests run only then.'),
]

device_context_group = cfg.OptGroup(
    name='device_context',
    title='nova-acc-api, the device-context API',
    help='How the service client reaches nova-acc-api.')

device_context_opts = [
    cfg.StrOpt('catalog_type',
               default='device-context',
               help='The Keystone service type of nova-acc-api.'),
    cfg.StrOpt('endpoint_type',
               default='public',
               choices=['public', 'admin', 'internal',
                        'publicURL', 'adminURL', 'internalURL'],
               help='The endpoint type of nova-acc-api to use.'),
    cfg.StrOpt('region',
               default='',
               help='The region of nova-acc-api\'s endpoint; empty: '
                    '[identity] region.'),
    cfg.IntOpt('state_timeout',
               default=120,
               help='Seconds a device context may take to reach the state '
                    'a test waits for (unbound after its server is '
                    'deleted).'),
]

nova_acc_group = cfg.OptGroup(
    name='nova_acc',
    title='nova-acc device contexts',
    help='What the cloud under test offers for device contexts.')

nova_acc_opts = [
    cfg.StrOpt('unsatisfiable_context',
               default='resources:FPGA=1',
               help='A valid inline device context that no host of the '
                    'cloud can satisfy: a boot with it must fail with '
                    'NoValidHost and leave no allocation.'),
    cfg.StrOpt('profile',
               help='The name of a profile the cloud defines ([nova_acc] '
                    'profile of its scheduler and conductors). Unset: the '
                    'profile:NAME tests of a known profile are skipped.'),
    cfg.BoolOpt('profile_satisfiable',
                default=False,
                help='Whether a host has a free device for the profile '
                     "named by 'profile'. False: profile:NAME must fail "
                     'with NoValidHost. True: it must boot ACTIVE.'),
    cfg.StrOpt('profile_resource_class',
               help="The resource class of the profile's devices (e.g. "
                    'CUSTOM_EDU): tests that use them do not overlap with '
                    'other tests using devices of that class. Unset: only '
                    'with the other tests of the profile.'),
    cfg.IntOpt('profile_pool_size',
               default=0,
               min=0,
               help='With profile_satisfiable: how many free devices the '
                    "cloud has for the profile; the no-free-device test "
                    'holds that many servers before it boots one more. '
                    '0: that test is skipped where the profile is '
                    'satisfiable.'),
    cfg.StrOpt('device_context',
               help='A device context that a host of the cloud CAN '
                    'satisfy, e.g. resources:CUSTOM_EDU=1 or profile:edu. '
                    'Unset: the tests that need a matching device are '
                    'skipped.'),
    cfg.StrOpt('device_resource_class',
               help='The resource class of the devices device_context '
                    'asks for, for the placement usage checks. Default: '
                    'taken from device_context when it is an inline spec.'),
    cfg.StrOpt('libvirt_uri',
               help='libvirt URI of the compute host (e.g. qemu:///system '
                    'or qemu+ssh://root@compute/system), to read the '
                    "domain XML of a server with 'virsh dumpxml' as "
                    'whitebox-tempest-plugin does. Unset: the domain XML '
                    'is not checked.'),
    cfg.StrOpt('libvirt_host',
               help="The compute host (as in a server's "
                    "OS-EXT-SRV-ATTR:host) whose libvirt libvirt_uri "
                    'reaches. Unset: libvirt_uri reaches every host (one '
                    'compute). Set: the domain XML of servers on other '
                    'hosts is not checked.'),
    cfg.StrOpt('virsh_command',
               default='virsh',
               help='The virsh command used with libvirt_uri, split as a '
                    'shell would (e.g. "tools/run-vfio-host.sh --ssh '
                    'virsh" to run it in the VFIO host VM).'),
    cfg.IntOpt('device_pool_size',
               default=0,
               min=0,
               help='How many devices the pool of device_context has, all '
                    'free: that many servers get different devices and one '
                    'more fails naming the context. 0: not tested.'),
    cfg.StrOpt('device_pci_id',
               help='VENDOR:PRODUCT of the devices of device_context as '
                    "the guest's console lists them (0x1af4:0x1044). "
                    "Unset: the guest's console is not checked."),
    cfg.IntOpt('console_timeout',
               default=1200,
               help='Seconds a guest may take to list its PCI functions '
                    'on its console (a nested guest under TCG: minutes).'),
    cfg.StrOpt('vf_context',
               help='A device context for one VF of an SR-IOV PF. Unset: '
                    'the VF tests are skipped.'),
    cfg.StrOpt('pf_context',
               help="A device context for that VF's PF as a whole device "
                    '(refused while a VF of it is in use).'),
    cfg.StrOpt('no_reset_context',
               help='A device context for a device without a reset method '
                    '(the edu): released, it must become dirty and stay '
                    'out of service until cleared. Unset: not tested.'),
    cfg.StrOpt('manage_command',
               help="The command that runs nova-acc-manage with the "
                    "compute host's configuration, split as a shell would "
                    '(e.g. "tools/run-vfio-host.sh --ssh nova-acc-manage '
                    '--config-file /etc/nova/nova.conf"): the ledger\'s '
                    'record of resets and dirty devices. Unset: the ledger '
                    'is not checked.'),
    cfg.StrOpt('bitstream_context',
               help='An inline device context (resources:RC=1) of a pool '
                    "whose device_spec entry lets contexts' config data "
                    'set accel:bitstream_id (configurator fpga_bitstream), '
                    'for the config data scenarios. Unset: skipped.'),
    cfg.StrOpt('bitstream_log_command',
               help="The command that prints the log of the compute host's "
                    'programming tool, one "programmed ADDRESS SHA256" or '
                    '"erased ADDRESS" a line, split as a shell would: CI\'s '
                    'stand-in tool (tools/lib/stand_in_programmer.py, '
                    '"tools/run-vfio-host.sh --stand-in-log"). Unset: the '
                    'config data scenarios are skipped.'),
    cfg.BoolOpt('same_host_resize',
                default=False,
                help='Whether the cloud allows a resize to the same host '
                     '(allow_resize_to_same_host) and the host of '
                     'device_context has a free device for the resized '
                     'server besides its own: the resize scenarios run '
                     'then.'),
    cfg.IntOpt('ledger_timeout',
               default=120,
               help='Seconds a released device may take to be reset and '
                    'recorded free (or dirty) in the ledger.'),
    cfg.StrOpt('openstack_command',
               default='openstack',
               help="The 'openstack' command of an environment with "
                    "'nova-acc[cli]' installed (it has the server create "
                    '--device-context option), for the CLI tests.'),
    cfg.IntOpt('cli_timeout',
               default=120,
               help='Seconds one openstack command may take.'),
]
