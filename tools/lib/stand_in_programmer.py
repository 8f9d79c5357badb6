#!/usr/bin/python3 -I
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
"""A stand-in FPGA programming tool for CI's VFIO host VM; CI only.

    stand_in_programmer.py [--log FILE] [--sysfs-root DIR] program ADDR IMAGE
    stand_in_programmer.py [--log FILE] [--sysfs-root DIR] erase ADDR

tools/run-vfio-host.sh installs it in its VM as
/usr/local/sbin/nova-acc-stand-in-programmer and names it in the VM's
``[fpga_bitstream] program_command`` (``program {address} {image}``) and
``erase_command`` (``erase {address}``): the ``fpga_bitstream``
configurator's privsep daemon runs it as root, as it would run a vendor's
programming tool. The VM has no FPGA, so it programs nothing and never
touches the device: it checks its arguments as a real tool would (a PCI
address of a device the host has, an image it can read whole) and appends
what it was asked to do to its log, which only root can write:

    programmed ADDRESS SHA256-OF-THE-IMAGE
    erased ADDRESS

The tempest scenario of config data (nova_acc_tempest_plugin, ``[nova_acc]
bitstream_log_command``) reads that log to see that the image a device
context named reached the device it was given. Exit status: 0 done, 1
refused or failed (stderr says why; nothing is logged), 2 bad usage.
Standard library only: it runs with the VM's own python3.
"""

import argparse
import fcntl
import hashlib
import os
import re
import stat
import sys
from typing import List, Optional, Sequence

LOG = '/var/log/nova-acc/stand-in-programmer.log'
# A canonical PCI address, as the fpga_bitstream configurator passes it.
ADDRESS_RE = re.compile(r'[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]')
# The largest image read: [fpga_bitstream] max_image_bytes' default.
MAX_IMAGE_BYTES = 1 << 30
_CHUNK = 1 << 20


class Refused(Exception):
    """An argument a programming tool must not act on; says which."""


def check_address(address: str, sysfs_root: str) -> str:
    """ADDRESS, if it is a PCI device of this host."""
    if ADDRESS_RE.fullmatch(address) is None:
        raise Refused('%r is not a PCI address such as 0000:01:00.0'
                      % address)
    if not os.path.isdir(os.path.join(sysfs_root, 'bus', 'pci', 'devices',
                                      address)):
        raise Refused('no PCI device %s on this host' % address)
    return address


def image_sha256(path: str) -> str:
    """The SHA-256 of the regular file PATH (the configurator passes
    /dev/fd/N, its private verified copy)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise Refused('cannot open the image %s: %s' % (path, e.strerror))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or \
            not 0 < st.st_size <= MAX_IMAGE_BYTES:
        os.close(fd)
        raise Refused('the image %s is not a regular file of 1 to %d bytes'
                      % (path, MAX_IMAGE_BYTES))
    with os.fdopen(fd, 'rb') as f:
        # From the start: the caller may have left its offset at the end.
        f.seek(0)
        digest = hashlib.sha256()
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()


def record(log: str, line: str) -> None:
    """Appends LINE to LOG (made 0644 if missing), never through a link."""
    directory = os.path.dirname(log)
    if directory:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                 0o644)
    with os.fdopen(fd, 'a') as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise Refused('the log %s is not a regular file' % log)
        # Two devices programmed at once: whole lines, one after the other.
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        f.write(line + '\n')


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='nova-acc-stand-in-programmer',
        description=__doc__.split('\n\n')[0])
    parser.add_argument('--log', default=LOG,
                        help='the log it appends to (default %(default)s)')
    parser.add_argument('--sysfs-root', default='/sys',
                        help='where sysfs is (default %(default)s)')
    sub = parser.add_subparsers(dest='action', required=True)
    program = sub.add_parser('program', help='"program" IMAGE into ADDRESS')
    program.add_argument('address')
    program.add_argument('image')
    erase = sub.add_parser('erase', help='"erase" ADDRESS')
    erase.add_argument('address')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        address = check_address(args.address, args.sysfs_root)
        words: List[str] = ['erased', address]
        if args.action == 'program':
            words = ['programmed', address, image_sha256(args.image)]
        record(args.log, ' '.join(words))
    except (Refused, OSError) as e:
        print('nova-acc-stand-in-programmer: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
