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
"""The ``fpga_bitstream`` configurator: program an FPGA image from Glance.

``accel:bitstream_id=<image UUID>`` (Cyborg's meaning) asks for the FPGA to
be programmed with that Glance image before the guest gets it. The operator
allows it per ``device_spec`` entry::

    {"vendor_id": "10ee", "resource_class": "FPGA",
     "configurator": "fpga_bitstream", "config": {"bitstream_id": "uuid"}}

and names the programming tool in ``[fpga_bitstream] program_command``.

Who does what, and why:

* nova-compute (as the ``nova`` user, with the user's request context)
  reads the image's metadata from Glance (so a user can only program an
  image they can see), refuses an image without a checksum, and downloads
  it into ``[fpga_bitstream] staging_dir`` under a name of its choosing.
* The privsep daemon (:func:`program`, its own privilege context with the
  capabilities a programming tool needs) trusts none of that: it checks
  that the address is a device of its own ``device_spec`` whose entry
  names this configurator, opens the staged file by a name it validates,
  in its own configured directory, without following links, copies it into
  a file nobody else can reach while hashing it, compares the hash with the
  one Glance gave, and only then runs its own configured command on its
  own copy (no shell; ``{address}`` and ``{image}`` are the only
  substitutions).
* On release, before the reset, :meth:`BitstreamConfigurator.unconfigure`
  runs ``[fpga_bitstream] erase_command`` if the operator set one; the
  reset that follows is what protects the next tenant either way.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
import subprocess
import tempfile
import uuid as uuid_lib

from nova import exception as nova_exc
from nova.image import glance
from oslo_config import cfg
from oslo_log import log as logging
from oslo_privsep import capabilities
from oslo_privsep import priv_context

import os_acc
from os_acc import configurator
from os_acc import exception as acc_exc

from nova_acc import conf

LOG = logging.getLogger(__name__)
CONF = conf.CONF

NAME = 'fpga_bitstream'
#: The config key this configurator reads (``accel:bitstream_id``).
KEY = 'bitstream_id'

GROUP = cfg.OptGroup(
    NAME, title='nova-acc FPGA programming',
    help='The fpga_bitstream device configurator: programs FPGA images '
         'from Glance given as accel:bitstream_id. Read by nova-compute and '
         'by its privsep daemon.')

OPTS = [
    cfg.ListOpt(
        'program_command', default=[],
        help='The programming command and its arguments, run as root by '
             'the privsep daemon without a shell. "{address}" (the PCI '
             'address) and "{image}" (a path to the verified image) are '
             'replaced where they are a whole argument. Empty: images '
             'cannot be programmed (every request fails with a fault).'),
    cfg.ListOpt(
        'erase_command', default=[],
        help='Run on release before the reset, as program_command but '
             'with "{address}" only. Empty: nothing is run; the reset is '
             'what clears the device.'),
    cfg.StrOpt(
        'staging_dir', default='/var/lib/nova/nova-acc/fpga-images',
        help='Where nova-compute downloads images for the privsep daemon '
             'to verify. Owned by the nova user; the daemon opens only '
             'names it generated, without following links.'),
    cfg.IntOpt(
        'max_image_bytes', default=1 << 30, min=1,
        help='Largest image accepted, in bytes.'),
    cfg.IntOpt(
        'command_timeout', default=600, min=1,
        help='Seconds a programming or erase command may take.'),
]

CONF.register_group(GROUP)
CONF.register_opts(OPTS, group=GROUP)


def list_opts():
    """Entry point of ``oslo.config.opts`` for oslo-config-generator."""
    return [(GROUP, OPTS)]


program_pctxt = priv_context.PrivContext(
    'nova_acc',
    cfg_section='nova_acc_fpga',
    pypath=__name__ + '.program_pctxt',
    # A vendor programming tool writes to the device's BARs and sysfs
    # (CAP_SYS_ADMIN, CAP_SYS_RAWIO) and reads root's files.
    capabilities=[capabilities.CAP_SYS_ADMIN, capabilities.CAP_SYS_RAWIO,
                  capabilities.CAP_DAC_OVERRIDE],
)

#: Hash algorithms Glance reports (``os_hash_algo``) that we verify.
_ALGORITHMS = frozenset({'sha256', 'sha384', 'sha512', 'md5'})
_STAGED_NAME_RE = re.compile(r'[0-9a-f]{32}\.bit')
_HEX_RE = re.compile(r'[0-9a-f]{32,128}')
_CHUNK = 1 << 20


def _fail(msg: str, *args: object) -> acc_exc.ConfigureFailed:
    return acc_exc.ConfigureFailed(msg % args)


def _check_managed(address: str) -> None:
    """Refuse any address but a device this configurator may program."""
    try:
        if str(os_acc.PciAddress.parse(address)) != address:
            raise ValueError(address)
    except ValueError:
        raise _fail('%r is not a PCI address', address)
    specs = conf.device_specs()
    for device in os_acc.discover(specs, sysfs_root=CONF.nova_acc.sysfs_root):
        if device.address != address or device.mdev_type is not None:
            continue
        rules = os_acc.config_rules_for(device, specs)
        if rules is not None and rules.configurator == NAME:
            return
    raise acc_exc.DeviceNotManaged(
        'no [nova_acc] device_spec entry with configurator %s selects %s' %
        (NAME, address))


def _open_staged(name: str) -> int:
    """Open a staged image in the configured directory, following no link."""
    if _STAGED_NAME_RE.fullmatch(name) is None:
        raise _fail('%r is not a staged image name', name)
    dir_fd = os.open(CONF.fpga_bitstream.staging_dir,
                     os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK,
                     dir_fd=dir_fd)
    except OSError as e:
        raise _fail('the staged image cannot be opened: %s', e.strerror)
    finally:
        os.close(dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or \
            st.st_size > CONF.fpga_bitstream.max_image_bytes:
        os.close(fd)
        raise _fail('the staged image is not a regular file of at most %d '
                    'bytes', CONF.fpga_bitstream.max_image_bytes)
    return fd


def _verified_copy(name: str, algorithm: str, expected: str):
    """A private copy of the staged image whose hash is ``expected``."""
    if algorithm not in _ALGORITHMS or _HEX_RE.fullmatch(expected) is None:
        raise _fail('unsupported image checksum %s', algorithm)
    digest = hashlib.new(algorithm)
    src = _open_staged(name)
    # Unlinked at once: no other process can open or swap it by name.
    copy = tempfile.TemporaryFile()
    try:
        with os.fdopen(src, 'rb') as f:
            size = 0
            while chunk := f.read(_CHUNK):
                size += len(chunk)
                if size > CONF.fpga_bitstream.max_image_bytes:
                    raise _fail('the image grew while it was read')
                digest.update(chunk)
                copy.write(chunk)
        copy.flush()
        if not hmac.compare_digest(digest.hexdigest(), expected):
            raise _fail('the image does not match its %s checksum in '
                        'Glance', algorithm)
        return copy
    except BaseException:
        copy.close()
        raise


def _run(command: list[str], substitutions: dict[str, str],
         pass_fds: tuple[int, ...] = ()) -> None:
    argv = [substitutions.get(arg, arg) for arg in command]
    try:
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True,
            pass_fds=pass_fds, timeout=CONF.fpga_bitstream.command_timeout,
            check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        LOG.error('FPGA command %s failed: %s', argv, e)
        raise _fail('the programming command could not run: %s',
                    type(e).__name__)
    if result.returncode != 0:
        LOG.error('FPGA command %s exited %d: %s', argv, result.returncode,
                  result.stderr.decode(errors='replace')[-2000:])
        raise _fail('the programming command exited with status %d',
                    result.returncode)


def program_verified(address: str, staged_name: str, algorithm: str,
                     expected: str) -> None:
    """Check everything, then program ``address``; see the module doc.

    What the daemon runs for :func:`program`.

    :raises os_acc.exception.DeviceNotManaged: not a device this
        configurator may program.
    :raises os_acc.exception.ConfigureFailed: saying why.
    """
    if not CONF.fpga_bitstream.program_command:
        raise _fail('this host has no FPGA programming command '
                    '([fpga_bitstream] program_command)')
    _check_managed(address)
    with _verified_copy(staged_name, algorithm, expected) as copy:
        _run(CONF.fpga_bitstream.program_command,
             {'{address}': address, '{image}': '/dev/fd/%d' % copy.fileno()},
             pass_fds=(copy.fileno(),))


def erase_verified(address: str) -> None:
    """Run the erase command on a device this configurator may program."""
    if not CONF.fpga_bitstream.erase_command:
        return
    _check_managed(address)
    _run(CONF.fpga_bitstream.erase_command, {'{address}': address})


@program_pctxt.entrypoint
def program(address: str, staged_name: str, algorithm: str,
            expected: str) -> None:
    """``program_verified`` as root: only names and hashes cross over."""
    program_verified(address, staged_name, algorithm, expected)


@program_pctxt.entrypoint
def erase(address: str) -> None:
    """``erase_verified`` as root."""
    erase_verified(address)


def _image_checksum(image: dict, image_id: str) -> tuple[str, str]:
    algorithm = image.get('os_hash_algo')
    value = image.get('os_hash_value')
    if algorithm in _ALGORITHMS and value:
        return algorithm, value
    if image.get('checksum'):
        return 'md5', image['checksum']
    raise _fail('image %s has no checksum in Glance; it cannot be verified '
                'before programming', image_id)


class BitstreamConfigurator(configurator.ConfiguratorBase):
    """Program ``accel:bitstream_id`` into the device; see the module doc."""

    def __init__(self, image_api=None) -> None:
        self._image_api = image_api

    @property
    def image_api(self):
        if self._image_api is None:
            self._image_api = glance.API()
        return self._image_api

    def configure(self, request: configurator.ConfigureRequest) -> None:
        image_id = request.config.get(KEY)
        if image_id is None:
            return
        try:
            image = self.image_api.get(request.request_context, image_id)
        except (nova_exc.ImageNotFound, nova_exc.ImageNotAuthorized):
            raise _fail('image %s (accel:%s) was not found', image_id, KEY)
        algorithm, expected = _image_checksum(image, image_id)
        staging = CONF.fpga_bitstream.staging_dir
        os.makedirs(staging, mode=0o700, exist_ok=True)
        name = uuid_lib.uuid4().hex + '.bit'
        path = os.path.join(staging, name)
        try:
            try:
                self.image_api.download(request.request_context, image_id,
                                        dest_path=path)
            except Exception as e:
                LOG.error('Downloading image %s for device context %s '
                          'failed: %s', image_id, request.context_id, e)
                raise _fail('image %s could not be downloaded', image_id)
            program(request.address, name, algorithm, expected)
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def unconfigure(self, address: str) -> None:
        erase(address)
