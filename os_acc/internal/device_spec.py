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
"""Operator device specs: which host devices os_acc manages, and how.

An entry is modelled on Nova's ``[pci] device_spec``::

    {"vendor_id": "10ee", "product_id": "5000", "address": "0000:3b:*",
     "resource_class": "FPGA", "traits": ["CUSTOM_XILINX"]}

Match keys (``vendor_id``, ``product_id``, ``address``, ``physfn``) must all
match; a device takes ``resource_class`` and ``traits`` from the first entry
that matches it.

An entry with ``mdev_type`` selects mdev-capable parents (GPUs) to offer
mediated devices of that type instead of the whole function::

    {"vendor_id": "10de", "mdev_type": "nvidia-35",
     "resource_class": "VGPU", "traits": "CUSTOM_A40_2Q"}

Whole-function entries and mdev entries are matched separately: a device
takes its whole-function tags from the first entry without ``mdev_type``
that matches it, and for each mdev type the tags of the first entry of that
type that matches it, if the device lists that type. One GPU can so be
offered whole and as vGPUs; the host then hands it out one way at a time.
The resource class of an mdev entry defaults to ``VGPU``.

An entry may let device contexts configure the devices it selects: it names
the configurator (an ``os_acc.configurators`` plugin) and, for each
``accel:`` key it allows, which values: ``"uuid"`` (any UUID), ``"string"``
(any value the spec grammar accepts) or a list of the literal values::

    {"vendor_id": "10ee", "resource_class": "FPGA",
     "configurator": "fpga_bitstream", "config": {"bitstream_id": "uuid"}}

Each allowed key also becomes a trait of the devices
(``CUSTOM_ACC_CONFIG_BITSTREAM_ID``, see :func:`config_trait`) that a request
group using the key requires, so placement only offers devices whose entry
allows it; the host checks the values again when it claims the device.

``"live_migration": "replug"`` lets a live migration unplug the devices of
the entry from the guest and plug devices of the destination after it (the
guest loses them during the move); their pools get the trait
``CUSTOM_ACC_LIVE_MIGRATION_REPLUG``, which the conductor and the
destination check. Whole-device entries only.

``"live_migration": "migrate"`` lets a live migration carry the devices
with the guest, their state migrated by libvirt (post-copy off); their
pools get the trait ``CUSTOM_ACC_LIVE_MIGRATION_MIGRATE``. On ``mdev_type``
entries (vGPUs) the destination creates mdevs of the same type (libvirt >=
8.6.0 and QEMU >= 8.1.0 on both hosts); on whole-device entries (devices
bound to a VFIO variant driver that supports migration, the operator's
word) the destination claims devices of the same pool and the guest's
hostdevs are rewritten to their addresses (libvirt >= 10.0.0 and QEMU >=
8.2.2 on both hosts, as Nova's ``live_migratable`` devices).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import fnmatch
import re
import typing as ty

from os_acc import exception
from os_acc.internal import grammar
from os_acc import objects

MATCH_KEYS = ('vendor_id', 'product_id', 'address', 'physfn')
TAG_KEYS = ('resource_class', 'traits', 'mdev_type')
CONFIG_KEYS = ('configurator', 'config')
#: What a live migration of a server does with the devices of the entry.
MOVE_KEYS = ('live_migration',)
#: ``"live_migration": "replug"``: unplugged from the guest on the source
#: before the migration, devices of the destination plugged after it (the
#: guest loses the device meanwhile, as with Nova's direct SR-IOV ports).
LIVE_MIGRATION_REPLUG = 'replug'
#: The trait of the pools of such devices: the conductor refuses a live
#: migration unless every pool a server uses on its host has it.
LIVE_MIGRATION_REPLUG_TRAIT = 'CUSTOM_ACC_LIVE_MIGRATION_REPLUG'
#: ``"live_migration": "migrate"``: the guest keeps its devices through the
#: move and libvirt migrates their state (vGPUs: the destination creates
#: mdevs of the same type; whole devices on VFIO variant drivers: the
#: destination claims devices of the same pool; Nova's minimums apply).
LIVE_MIGRATION_MIGRATE = 'migrate'
#: The trait of the pools of such devices.
LIVE_MIGRATION_MIGRATE_TRAIT = 'CUSTOM_ACC_LIVE_MIGRATION_MIGRATE'
ANY = '*'
#: Allowed-value kinds of a ``config`` key.
CONFIG_ANY_UUID = 'uuid'
CONFIG_ANY_STRING = 'string'
CONFIG_TRAIT_PREFIX = 'CUSTOM_ACC_CONFIG_'

_ID_RE = re.compile(r'(?:0[xX])?([0-9a-fA-F]{1,4})')
# Hex digits, the address separators and fnmatch syntax, nothing else: a
# pattern can then only ever be compared with sysfs names.
_ADDRESS_GLOB_RE = re.compile(r'[0-9a-fA-F:.*?\[\]!-]+')
# What kernels name mdev types: "nvidia-35", "i915-GVTg_V5_4",
# "mlx5_core-local". Nothing that could escape a sysfs path or an XML
# attribute.
_MDEV_TYPE_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}')
# Entry point names: a configurator name is looked up, never a path.
_CONFIGURATOR_RE = re.compile(r'[a-z][a-z0-9_]{0,63}')
_UUID_RE = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                      r'[0-9a-f]{12}')
#: The resource class of an mdev entry that names none, as in Nova.
DEFAULT_MDEV_RESOURCE_CLASS = 'VGPU'


def _error(key: object, msg: str,
           *args: object) -> exception.InvalidDeviceSpec:
    return exception.InvalidDeviceSpec(
        'Invalid device_spec key %r: %s' % (key, msg % args))


def _parse_id(key: str, value: object) -> str | None:
    if not isinstance(value, str):
        raise _error(key, 'expected a string, got %r', value)
    if value.strip() == ANY:
        return None
    m = _ID_RE.fullmatch(value.strip())
    if m is None:
        raise _error(key, '%r is not a hexadecimal ID of at most 4 digits '
                     'or %r', value, ANY)
    return m.group(1).lower().zfill(4)


def _parse_address_glob(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _error(key, 'expected a string glob, got %r', value)
    pattern = value.strip().lower()
    if (_ADDRESS_GLOB_RE.fullmatch(pattern) is None or
            pattern.count(':') > 2):
        raise _error(key, '%r is not a PCI address glob such as '
                     '"0000:3b:00.*" or "3b:00.1"', value)
    # The short form "BB:SS.F" has a two-character bus before its only
    # colon; it is taken as being in PCI domain 0000. A pattern such as
    # "0001:*" starts with a domain and is left alone.
    if pattern.count(':') == 1 and len(pattern.partition(':')[0]) == 2:
        pattern = '0000:' + pattern
    return pattern


def _parse_resource_class(key: str, value: object) -> str:
    if not grammar.is_valid_resource_class(value):
        raise _error(key, '%r is not a standard resource class nor '
                     'CUSTOM_[A-Z0-9_]+', value)
    if not grammar.is_device_resource_class(value):
        # A device offered as VCPU or MEMORY_MB would be a pool no device
        # context can ask for (the grammar refuses such classes).
        raise _error(key, '%r is not a device class: use one of %s or '
                     'CUSTOM_[A-Z0-9_]+', value,
                     ', '.join(sorted(grammar.DEVICE_RESOURCE_CLASSES)))
    return ty.cast(str, value)


def _parse_traits(key: str, value: object) -> frozenset[str]:
    if isinstance(value, str):
        # An empty string is how an operator says "no traits".
        names = [n.strip() for n in value.split(',')] if value.strip() else []
    elif isinstance(value, list):
        names = value
    else:
        raise _error(key, 'expected a list or a comma-separated string, got '
                     '%r', value)
    for name in names:
        if not grammar.is_valid_trait(name):
            raise _error(key, '%r is not a standard trait nor '
                         'CUSTOM_[A-Z0-9_]+', name)
    return frozenset(names)


def is_valid_mdev_type(value: object) -> bool:
    """Whether ``value`` is a name the kernel could give an mdev type.

    It reaches libvirt XML and sysfs paths, hence the narrow grammar.
    """
    return isinstance(value, str) and \
        _MDEV_TYPE_RE.fullmatch(value) is not None


def _parse_mdev_type(key: str, value: object) -> str:
    if not isinstance(value, str) or not is_valid_mdev_type(value):
        raise _error(key, '%r is not an mdev type name such as '
                     '"nvidia-35" or "i915-GVTg_V5_4"', value)
    return value


def config_trait(key: str) -> str:
    """The trait of devices whose entry allows the ``accel:`` key ``key``.

    Keys match ``[A-Za-z0-9_.-]+`` (the grammar); trait names only allow
    ``[A-Z0-9_]``, so other characters become ``_``.
    """
    return CONFIG_TRAIT_PREFIX + re.sub(r'[^A-Z0-9_]', '_', key.upper())


def _parse_live_migration(key: str, value: object,
                          mdev_type: str | None) -> str:
    if value not in (LIVE_MIGRATION_REPLUG, LIVE_MIGRATION_MIGRATE):
        raise _error(key, '%r is not supported; the values are %r and %r',
                     value, LIVE_MIGRATION_REPLUG, LIVE_MIGRATION_MIGRATE)
    if value == LIVE_MIGRATION_REPLUG and mdev_type is not None:
        # An mdev is created for its server on its host: replugging one
        # means creating another on the destination, not done.
        raise _error(key, '%r is for whole PCI devices, not for entries '
                     'with "mdev_type"', value)
    return str(value)


def _parse_configurator(key: str, value: object) -> str:
    if not isinstance(value, str) or \
            _CONFIGURATOR_RE.fullmatch(value) is None:
        raise _error(key, '%r is not a configurator name such as '
                     '"fpga_bitstream"', value)
    return value


def _parse_allowed_config(key: str, value: object
                          ) -> dict[str, str | frozenset[str]]:
    if not isinstance(value, collections.abc.Mapping) or not value:
        raise _error(key, 'expected a non-empty dict of accel key -> '
                     '"uuid", "string" or a list of values, got %r', value)
    allowed: dict[str, str | frozenset[str]] = {}
    for name, values in value.items():
        if not isinstance(name, str):
            raise _error(key, 'accel key %r is not a string', name)
        try:
            grammar.check_accel_name(name, name)
        except exception.InvalidDeviceContext as e:
            raise _error(key, '%s', e) from e
        if values in (CONFIG_ANY_UUID, CONFIG_ANY_STRING):
            allowed[name] = ty.cast(str, values)
            continue
        if not isinstance(values, list) or not values:
            raise _error(key, 'the values of %r must be "uuid", "string" or '
                         'a non-empty list of strings, got %r', name, values)
        for item in values:
            if not isinstance(item, str):
                raise _error(key, 'value %r of %r is not a string', item,
                             name)
            try:
                grammar.check_accel_value(item, '%s=%s' % (name, item))
            except exception.InvalidDeviceContext as e:
                raise _error(key, '%s', e) from e
        allowed[name] = frozenset(values)
    return allowed


@dataclasses.dataclass(frozen=True)
class ConfigRules:
    """What config data the devices of one entry accept, and who applies it.

    :ivar configurator: the ``os_acc.configurators`` plugin name.
    :ivar allowed: accel key -> ``"uuid"``, ``"string"`` or the set of
        allowed values.
    """

    configurator: str
    allowed: ty.Mapping[str, str | frozenset[str]]

    def check(self, config: ty.Mapping[str, str]) -> None:
        """Refuse config data this entry does not allow.

        :raises os_acc.exception.InvalidConfig: naming the key and what is
            allowed instead.
        """
        for name, value in sorted(config.items()):
            rule = self.allowed.get(name)
            if rule is None:
                raise exception.InvalidConfig(
                    'accel:%s is not allowed on this device; allowed: %s' %
                    (name, ', '.join('accel:' + k
                                     for k in sorted(self.allowed))))
            if rule == CONFIG_ANY_UUID:
                if _UUID_RE.fullmatch(value) is None:
                    raise exception.InvalidConfig(
                        'accel:%s=%s: the value must be a UUID in lowercase '
                        'canonical form' % (name, value))
            elif rule != CONFIG_ANY_STRING and value not in rule:
                raise exception.InvalidConfig(
                    'accel:%s=%s is not allowed on this device; allowed '
                    'values: %s' % (name, value, ', '.join(sorted(rule))))


class DeviceSpec:
    """One validated ``device_spec`` entry."""

    def __init__(self, spec: ty.Mapping[str, ty.Any]) -> None:
        if not isinstance(spec, collections.abc.Mapping):
            raise exception.InvalidDeviceSpec(
                'A device_spec entry must be a dict, not %r' % (spec,))
        known = MATCH_KEYS + TAG_KEYS + CONFIG_KEYS + MOVE_KEYS
        unknown = set(spec) - set(known)
        if unknown:
            raise _error(min(unknown, key=repr),
                         'unknown key; expected one of %s', ', '.join(known))
        # An entry that matches on nothing would claim every PCI function of
        # the host, host bridges included; ask for an explicit "*" instead.
        if not any(key in spec for key in MATCH_KEYS):
            raise exception.InvalidDeviceSpec(
                'A device_spec entry needs at least one of %s; use '
                '{"address": "*"} to match every device' %
                ', '.join(MATCH_KEYS))
        self.vendor_id = (_parse_id('vendor_id', spec['vendor_id'])
                          if 'vendor_id' in spec else None)
        self.product_id = (_parse_id('product_id', spec['product_id'])
                           if 'product_id' in spec else None)
        self.address = (_parse_address_glob('address', spec['address'])
                        if 'address' in spec else None)
        self.physfn = (_parse_address_glob('physfn', spec['physfn'])
                       if 'physfn' in spec else None)
        self.resource_class = (
            _parse_resource_class('resource_class', spec['resource_class'])
            if 'resource_class' in spec else None)
        self.traits = (_parse_traits('traits', spec['traits'])
                       if 'traits' in spec else frozenset())
        self.mdev_type = (_parse_mdev_type('mdev_type', spec['mdev_type'])
                          if 'mdev_type' in spec else None)
        self.config_rules = self._parse_config_rules(spec)
        self.live_migration = (
            _parse_live_migration('live_migration', spec['live_migration'],
                                  self.mdev_type)
            if 'live_migration' in spec else None)
        # Placement offers the devices only to groups whose keys they allow.
        self.device_traits = self.traits | frozenset(
            config_trait(name) for name in (
                self.config_rules.allowed if self.config_rules else ()))
        if self.live_migration == LIVE_MIGRATION_REPLUG:
            self.device_traits |= {LIVE_MIGRATION_REPLUG_TRAIT}
        elif self.live_migration == LIVE_MIGRATION_MIGRATE:
            self.device_traits |= {LIVE_MIGRATION_MIGRATE_TRAIT}

    @staticmethod
    def _parse_config_rules(spec: ty.Mapping[str, ty.Any]
                            ) -> ConfigRules | None:
        if 'configurator' not in spec and 'config' not in spec:
            return None
        if 'configurator' not in spec or 'config' not in spec:
            raise exception.InvalidDeviceSpec(
                'A device_spec entry that allows config data needs both '
                '"configurator" and "config"')
        return ConfigRules(
            configurator=_parse_configurator('configurator',
                                             spec['configurator']),
            allowed=_parse_allowed_config('config', spec['config']))

    def match(self, device: objects.Device) -> bool:
        if self.vendor_id is not None and device.vendor_id != self.vendor_id:
            return False
        if (self.product_id is not None and
                device.product_id != self.product_id):
            return False
        if (self.address is not None and
                not fnmatch.fnmatchcase(device.address, self.address)):
            return False
        if self.physfn is not None and (
                device.physfn is None or
                not fnmatch.fnmatchcase(device.physfn, self.physfn)):
            return False
        return True

    def resource_class_for(self, device: objects.Device) -> str:
        if self.resource_class is not None:
            return self.resource_class
        if self.mdev_type is not None:
            return DEFAULT_MDEV_RESOURCE_CLASS
        # The name Nova gives PCI devices it reports to placement.
        return ('CUSTOM_PCI_%s_%s' % (device.vendor_id,
                                      device.product_id)).upper()


def parse_device_specs(
        device_specs: ty.Iterable[ty.Mapping[str, ty.Any]],
) -> list[DeviceSpec]:
    """Validate ``device_specs``.

    :raises os_acc.exception.InvalidDeviceSpec: naming the bad key.
    """
    if isinstance(device_specs, (str, bytes, collections.abc.Mapping)):
        raise exception.InvalidDeviceSpec(
            'device_specs must be a list of dicts, not %r' % (device_specs,))
    return [DeviceSpec(entry) for entry in device_specs]


def match_devices(devices: ty.Iterable[objects.Device],
                  specs: ty.Sequence[DeviceSpec]) -> list[objects.Device]:
    """Return copies of the devices that a spec matches, sorted by address.

    Each copy carries the ``resource_class`` and ``traits`` of the first
    matching spec; devices no spec matches are left out. A device matched
    by entries with ``mdev_type`` gives one more copy per type it lists,
    with ``mdev_type`` set (see the module documentation).
    """
    selected = []
    for device in devices:
        types_done: set[str | None] = set()
        for entry in specs:
            if entry.mdev_type in types_done or not entry.match(device):
                continue
            if entry.mdev_type is not None and \
                    entry.mdev_type not in device.mdev_types:
                continue  # this parent cannot create that type
            types_done.add(entry.mdev_type)
            selected.append(dataclasses.replace(
                device,
                resource_class=entry.resource_class_for(device),
                traits=set(entry.device_traits), mdev_type=entry.mdev_type))
    return sorted(selected, key=lambda d: (d.address, d.mdev_type or ''))


def config_rules_for(device: objects.Device,
                     specs: ty.Sequence[DeviceSpec]) -> ConfigRules | None:
    """The config rules of the entry that gave ``device`` its tags.

    ``device`` is one of :func:`match_devices`' results (its ``mdev_type``
    says which kind of entry selected it); None when that entry allows no
    config data.
    """
    for entry in specs:
        if entry.mdev_type == device.mdev_type and entry.match(device):
            return entry.config_rules
    return None


def select_devices(
        devices: ty.Iterable[objects.Device],
        device_specs: ty.Iterable[ty.Mapping[str, ty.Any]],
) -> list[objects.Device]:
    """Validate ``device_specs``, then :func:`match_devices`."""
    return match_devices(devices, parse_device_specs(device_specs))
