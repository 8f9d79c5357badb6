#!/usr/bin/env python3
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
"""nova-acc's settings in a nova.conf, written from this one place.

Used by tools/run-cloud.sh (the cloud's nova.conf), tools/run-vfio-host.sh
(the compute VM's nova.conf, made from the cloud's) and devstack/plugin.sh
(devstack's nova.conf and the cell conductors' files). Standard library
only: devstack and the scripts run it with the machine's python3::

    nova_conf.py set FILE [SETTINGS]
        merges SETTINGS into FILE (made 0600 when missing), keeping every
        other line, comment and repeated (multi-valued) option as it is
    nova_conf.py compute-host CLOUD_CONF OUTPUT [SETTINGS]
        writes OUTPUT: CLOUD_CONF's transport URL and service-user sections
        without what belongs to the cloud's own machine (databases, API
        listeners, my_ip, [nova_acc]), then SETTINGS
    nova_conf.py get FILE SECTION OPTION
        prints the option's values, one a line; exit status 1 when unset
    nova_conf.py node-uuid HOST
        the UUID tools/run-vfio-host.sh gives compute node HOST first
        (Nova's compute_id file), the same for the same HOST

SETTINGS are nova-acc's (``--compute-driver``, ``--device-spec``,
``--profile``, ``--privsep-helper``, ``--device-context-api-auth-from``
...; ``--help`` lists them) and any ``--set SECTION OPTION VALUE``. A
repeated ``--device-spec`` or ``--profile`` (or one value of several
lines, one entry a line, as devstack's NOVA_ACC_DEVICE_SPEC) replaces all
of that option's values; an empty one leaves them as they are.

The file is edited as oslo.config reads it (oslo_config/iniparser.py), not
with configparser, which would drop comments and all but one value of a
multi-valued option such as ``device_spec``. Values are checked before
anything is written: no line breaks (a value cannot add options or
sections), a device_spec entry is a JSON object, a profile NAME=SPEC.
"""

import argparse
import json
import os
import re
import sys
import tempfile
import uuid
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

# [DEFAULT] compute_driver: Nova prefixes it with nova.virt., where nova-acc
# ships its shim package nova/virt/nova_acc.
COMPUTE_DRIVER = 'nova_acc.LibvirtAccDriver'
# The privsep context of nova-acc's own daemon (device resets).
NOVA_ACC_PRIVSEP = 'nova_acc_sys_admin'
# Nova's privsep contexts a compute starts daemons for. Without sudo and
# rootwrap (a compute running as root) each needs a helper_command.
NOVA_PRIVSEP = ('nova_sys_admin', 'privsep_osbrick', 'vif_plug_ovs_privileged',
                'vif_plug_linux_bridge_privileged')
# QEMU's "edu" PCI device (1234:11e8): no device of a real machine has it,
# so on one nova-acc reports no devices; a VM started with "-device edu"
# (tools/run-vfio-host.sh) has one.
EDU_DEVICE_SPEC = json.dumps({'vendor_id': '1234', 'product_id': '11e8',
                              'resource_class': 'CUSTOM_EDU'})
EDU_PROFILE = 'edu=resources:CUSTOM_EDU=1'
# The other devices of tools/run-vfio-host.sh's VM (its DEVICES), before
# the edu, first match wins: the virtio-rng pool (FLR), the VFs of the nvme
# PF (the same vendor and product as their PF, so before it), the PF. The
# virtio-rng pool also takes config data, accel:bitstream_id, which the
# fpga_bitstream configurator "programs" with the VM's stand-in tool (see
# run-vfio-host.sh); contexts without config data get its devices as before.
VFIO_HOST_DEVICE_SPECS = tuple(json.dumps(spec) for spec in (
    {'vendor_id': '1af4', 'product_id': '1044',
     'resource_class': 'CUSTOM_RNG', 'configurator': 'fpga_bitstream',
     'config': {'bitstream_id': 'uuid'}},
    {'vendor_id': '1b36', 'product_id': '0010', 'physfn': '*',
     'resource_class': 'CUSTOM_NVME_VF'},
    {'vendor_id': '1b36', 'product_id': '0010',
     'resource_class': 'CUSTOM_NVME'},
))
# [device_context_api]: how Nova's services reach nova-acc-api (Keystone
# service type device-context) with their service credentials. Its
# keystoneauth password options are copied from another section of the same
# file (Nova's [service_user]), so no password goes on a command line.
CONTEXT_API_SECTION = 'device_context_api'
KEYSTONEAUTH_PASSWORD_OPTIONS = (
    'auth_type', 'auth_url', 'username', 'user_id', 'password',
    'user_domain_name', 'user_domain_id', 'project_name', 'project_id',
    'project_domain_name', 'project_domain_id', 'region_name')
KEYSTONEAUTH_REQUIRED = ('auth_url', 'username', 'password')

NAME_RE = re.compile(r'^[A-Za-z0-9_.-]+$')
PROFILE_RE = re.compile(r'^[A-Za-z0-9_.-]+=\S.*$')

# (section, option, values): the option gets exactly these values, one
# line each; no values removes it.
Setting = Tuple[str, str, Tuple[str, ...]]


class SettingError(ValueError):
    """A setting that must not be written (says which and why)."""


# ---------------------------------------------------------------------------
# The file, as oslo.config's parser reads it.

def _is_header(line: str) -> bool:
    return line.startswith('[')


def _is_comment_or_blank(line: str) -> bool:
    return not line.strip() or line.lstrip()[0] in '#;'


def _option_name(line: str) -> Optional[str]:
    """The option a key line sets; None for any other line.

    oslo.config splits at the first ':' or '=' (iniparser._split_key_value);
    a line that starts with whitespace continues the previous value.
    """
    if _is_comment_or_blank(line) or _is_header(line) or line[0].isspace():
        return None
    cut = min((i for i in (line.find('='), line.find(':')) if i >= 0),
              default=-1)
    if cut < 0:
        return None
    return line[:cut].strip()


class ConfFile:
    """An oslo.config ini file as its lines, edited where options are.

    A section may appear more than once (oslo.config merges them) and an
    option more than once in a section (a multi-valued option's values).
    """

    def __init__(self, text: str = '') -> None:
        self.lines: List[str] = text.splitlines()

    def text(self) -> str:
        return '\n'.join(self.lines) + '\n' if self.lines else ''

    def _spans(self) -> Iterator[Tuple[Optional[str], int, int]]:
        """(section, first line after its header, end) in file order."""
        name: Optional[str] = None
        start = 0
        for i, line in enumerate(self.lines):
            if _is_header(line):
                yield name, start, i
                name = line.strip()[1:].split(']', 1)[0].strip()
                start = i + 1
        yield name, start, len(self.lines)

    def sections(self) -> List[str]:
        seen: List[str] = []
        for name, _, _ in self._spans():
            if name is not None and name not in seen:
                seen.append(name)
        return seen

    def _option_lines(self, section: str, option: str) -> List[int]:
        """Indexes of OPTION's key lines and their continuation lines."""
        found: List[int] = []
        for name, start, end in self._spans():
            if name != section:
                continue
            inside = False
            for i in range(start, end):
                line = self.lines[i]
                if line[:1].isspace() and line.strip() and inside:
                    found.append(i)
                    continue
                inside = _option_name(line) == option
                if inside:
                    found.append(i)
        return found

    def get(self, section: str, option: str) -> List[str]:
        values: List[str] = []
        for i in self._option_lines(section, option):
            line = self.lines[i]
            if line[:1].isspace():
                values[-1] += '\n' + line.strip()
            else:
                values.append(re.split(r'[=:]', line, maxsplit=1)[1].strip())
        return values

    def section_lines(self, section: str) -> List[str]:
        """Every line of SECTION (all its parts), headers excluded."""
        lines: List[str] = []
        for name, start, end in self._spans():
            if name == section:
                lines += self.lines[start:end]
        return lines

    def set(self, section: str, option: str, values: Sequence[str]) -> None:
        """OPTION of SECTION gets VALUES (in order), replacing its lines.

        The new lines go where the option was; else at the end of the
        section's last part; else into a new section at the end.
        """
        new = ['%s = %s' % (option, value) for value in values]
        old = self._option_lines(section, option)
        if old:
            at = old[0]
            for i in reversed(old):
                del self.lines[i]
            self.lines[at:at] = new
            return
        if not new:
            return
        ends = [end for name, _, end in self._spans() if name == section]
        if not ends:
            if self.lines and self.lines[-1].strip():
                self.lines.append('')
            self.lines += ['[%s]' % section] + new
            return
        at = ends[-1]
        while at > 0 and not self.lines[at - 1].strip():
            at -= 1
        self.lines[at:at] = new

    def apply(self, settings: Iterable[Setting]) -> None:
        for section, option, values in settings:
            self.set(section, option, values)


# ---------------------------------------------------------------------------
# nova-acc's settings.

def _entries(texts: Iterable[str]) -> List[str]:
    """Each text's lines, stripped, blank ones dropped."""
    return [line.strip() for text in texts for line in text.splitlines()
            if line.strip()]


def check_device_spec(entry: str) -> str:
    try:
        spec = json.loads(entry)
    except ValueError as exc:
        raise SettingError('[nova_acc] device_spec %r is not JSON: %s'
                           % (entry, exc))
    if not isinstance(spec, dict):
        raise SettingError('[nova_acc] device_spec %r is not a JSON object'
                           % entry)
    return entry


def check_profile(entry: str) -> str:
    if not PROFILE_RE.match(entry):
        raise SettingError('[nova_acc] profile %r is not NAME=SPEC (NAME of '
                           'letters, digits, . _ -)' % entry)
    return entry


def check_setting(section: str, option: str, values: Sequence[str]) -> None:
    for name in (section, option):
        if not NAME_RE.match(name):
            raise SettingError('%r is not a section or option name (letters,'
                               ' digits, . _ -)' % name)
    for value in values:
        if '\n' in value or '\r' in value:
            raise SettingError('[%s] %s: a value of several lines would add'
                               ' lines of its own: %r'
                               % (section, option, value))


def context_api_settings(conf: ConfFile, section: str) -> List[Setting]:
    """[device_context_api] with the keystoneauth options of SECTION.

    Options SECTION does not set are removed from [device_context_api]
    (they would belong to other credentials). Raises SettingError when
    SECTION lacks what a password login needs.
    """
    missing = [o for o in KEYSTONEAUTH_REQUIRED if not conf.get(section, o)]
    if missing:
        raise SettingError('[%s] has no %s: it cannot give [%s] its '
                           'credentials' % (section, ', '.join(missing),
                                            CONTEXT_API_SECTION))
    settings: List[Setting] = []
    for option in KEYSTONEAUTH_PASSWORD_OPTIONS:
        values = tuple(conf.get(section, option)[-1:])
        if option == 'auth_type' and not values:
            values = ('password',)
        check_setting(CONTEXT_API_SECTION, option, values)
        settings.append((CONTEXT_API_SECTION, option, values))
    return settings


def settings_from(args: argparse.Namespace) -> List[Setting]:
    """The settings ARGS ask for, checked, in the order they are written.

    Raises SettingError naming the first value that may not be written.
    """
    settings: List[Setting] = []
    if args.compute_driver:
        settings.append(('DEFAULT', 'compute_driver',
                         (args.compute_driver,)))
    if args.tcg_compute:
        settings += [
            # Busybox guests ignore ACPI shutdown.
            ('DEFAULT', 'shutdown_timeout', ('5',)),
            # TCG: the machines these tools run on cannot run KVM guests.
            ('libvirt', 'virt_type', ('qemu',)),
            ('libvirt', 'cpu_mode', ('none',)),
            ('vnc', 'enabled', ('false',)),
            ('spice', 'enabled', ('false',)),
        ]
    if args.every_privsep_helper:
        settings += [(section, 'helper_command', (args.every_privsep_helper,))
                     for section in NOVA_PRIVSEP + (NOVA_ACC_PRIVSEP,)]
    if args.privsep_helper:
        settings.append((NOVA_ACC_PRIVSEP, 'helper_command',
                         (args.privsep_helper,)))
    if args.no_privsep_helper:
        settings.append((NOVA_ACC_PRIVSEP, 'helper_command', ()))
    specs = _entries(args.device_spec +
                     list(VFIO_HOST_DEVICE_SPECS) * args.vfio_host_devices +
                     [EDU_DEVICE_SPEC] * args.edu_device)
    if specs:
        settings.append(('nova_acc', 'device_spec',
                         tuple(check_device_spec(s) for s in specs)))
    profiles = _entries(args.profile + [EDU_PROFILE] * args.edu_profile)
    if profiles:
        settings.append(('nova_acc', 'profile',
                         tuple(check_profile(p) for p in profiles)))
    if args.reset_on_release:
        settings.append(('nova_acc', 'reset_on_release',
                         (args.reset_on_release,)))
    settings += [(s, o, (v,)) for s, o, v in args.set]
    settings += [(s, o, ()) for s, o in args.unset]
    for section, option, values in settings:
        check_setting(section, option, values)
    return settings


# What tools/run-vfio-host.sh's compute VM takes from the cloud's nova.conf:
# the message queue and the service users' sections. The databases, the
# API listeners, my_ip and the cloud's [nova_acc] stay the cloud's.
COMPUTE_HOST_SECTIONS = ('DEFAULT', 'keystone_authtoken', 'placement',
                         'neutron', 'service_user', 'glance',
                         'oslo_messaging_rabbit', 'libvirt',
                         CONTEXT_API_SECTION)
COMPUTE_HOST_DROPPED = ('my_ip', 'osapi_compute_listen', 'metadata_listen',
                        'enabled_apis')


def compute_host_conf(cloud: ConfFile) -> ConfFile:
    """A compute host's nova.conf made from the cloud's (see above)."""
    out = ConfFile()
    for section in COMPUTE_HOST_SECTIONS:
        if section in cloud.sections():
            if out.lines:
                out.lines.append('')
            out.lines += ['[%s]' % section] + [
                line for line in cloud.section_lines(section)
                if line.strip()]
    if 'DEFAULT' not in out.sections():
        out.lines[:0] = ['[DEFAULT]']
    for option in COMPUTE_HOST_DROPPED:
        out.set('DEFAULT', option, ())
    return out


# ---------------------------------------------------------------------------
# Files.

def read(path: str) -> ConfFile:
    with open(path) as f:
        return ConfFile(f.read())


def write(path: str, conf: ConfFile) -> None:
    """Writes PATH whole or not at all, keeping its mode (new: 0600).

    The file may hold passwords: a temporary file of mode 0600 in the same
    directory, renamed over PATH.
    """
    try:
        st: Optional[os.stat_result] = os.stat(path)
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix='.nova-conf-',
                               dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(conf.text())
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _parser() -> argparse.ArgumentParser:
    settings = argparse.ArgumentParser(add_help=False)
    group = settings.add_argument_group("nova-acc's settings")
    group.add_argument(
        '--compute-driver', nargs='?', const=COMPUTE_DRIVER, metavar='DRIVER',
        help='[DEFAULT] compute_driver (default %s)' % COMPUTE_DRIVER)
    group.add_argument(
        '--tcg-compute', action='store_true',
        help='[libvirt] virt_type = qemu, cpu_mode = none; no VNC or SPICE;'
             ' [DEFAULT] shutdown_timeout = 5 (busybox guests)')
    group.add_argument(
        '--privsep-helper', metavar='CMD',
        help='[%s] helper_command, for nova-acc\'s privsep daemon'
             % NOVA_ACC_PRIVSEP)
    group.add_argument(
        '--no-privsep-helper', action='store_true',
        help='no [%s] helper_command (the daemon starts through Nova\'s '
             'rootwrap)' % NOVA_ACC_PRIVSEP)
    group.add_argument(
        '--every-privsep-helper', metavar='CMD',
        help='helper_command of nova-acc\'s and each of Nova\'s privsep '
             'contexts (%s): a compute running as root without sudo'
             % ', '.join(NOVA_PRIVSEP))
    group.add_argument(
        '--device-spec', action='append', default=[], metavar='JSON',
        help='[nova_acc] device_spec entries (repeatable; one a line)')
    group.add_argument(
        '--vfio-host-devices', action='store_true',
        help="device_spec entries for tools/run-vfio-host.sh's VM's "
             'devices besides the edu (before it): %s'
             % '; '.join(VFIO_HOST_DEVICE_SPECS))
    group.add_argument(
        '--edu-device', action='store_true',
        help='a device_spec entry for QEMU\'s edu device: %s'
             % EDU_DEVICE_SPEC)
    group.add_argument(
        '--profile', action='append', default=[], metavar='NAME=SPEC',
        help='[nova_acc] profile entries (repeatable; one a line)')
    group.add_argument(
        '--edu-profile', action='store_true',
        help='the profile %s' % EDU_PROFILE)
    group.add_argument(
        '--reset-on-release', choices=('true', 'false'),
        help='[nova_acc] reset_on_release')
    group.add_argument(
        '--device-context-api-auth-from', metavar='SECTION',
        help='[%s] (nova-acc-api, service type device-context) gets the '
             'keystoneauth password options of SECTION of the same file, '
             'e.g. service_user' % CONTEXT_API_SECTION)
    group.add_argument(
        '--set', nargs=3, action='append', default=[],
        metavar=('SECTION', 'OPTION', 'VALUE'), help='any other option')
    group.add_argument(
        '--unset', nargs=2, action='append', default=[],
        metavar=('SECTION', 'OPTION'), help='remove an option')

    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    merge = sub.add_parser('set', parents=[settings],
                           help='merge settings into FILE')
    merge.add_argument('file')
    host = sub.add_parser('compute-host', parents=[settings],
                          help="a compute host's nova.conf from the cloud's")
    host.add_argument('cloud_conf')
    host.add_argument('output')
    get = sub.add_parser('get', help="print an option's values")
    get.add_argument('file')
    get.add_argument('section')
    get.add_argument('option')
    node = sub.add_parser('node-uuid', help="a compute node's first UUID")
    node.add_argument('host')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    prog = 'nova_conf.py'
    try:
        if args.command == 'node-uuid':
            print(uuid.uuid5(uuid.NAMESPACE_URL, 'nova-acc-vfio:' + args.host))
            return 0
        if args.command == 'get':
            values = read(args.file).get(args.section, args.option)
            for value in values:
                print(value)
            return 0 if values else 1
        settings = settings_from(args)
        if args.command == 'set':
            conf = read(args.file) if os.path.exists(args.file) \
                else ConfFile()
            target = args.file
        else:
            conf = compute_host_conf(read(args.cloud_conf))
            target = args.output
        if args.device_context_api_auth_from:
            check_setting(args.device_context_api_auth_from, 'x', ())
            settings += context_api_settings(
                conf, args.device_context_api_auth_from)
        conf.apply(settings)
        write(target, conf)
    except (SettingError, OSError) as exc:
        print('%s: %s' % (prog, exc), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
