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
"""The device ledger: who holds which device on this compute host.

One JSON file per compute node (``[nova_acc] ledger_dir``/``<node>.json``)
is the host's record of every device nova-acc manages there: its state and
who holds it. nova-compute claims devices for a build against it, and every
release (reset, unbind, free) is driven by it, never guessed from a
server's task state. Like Nova's PCI tracker (which keeps its record in the
``pci_devices`` table) and the checkpoint file of Kubernetes' DRA example
driver, it is what the host knows, kept where the host can always read it:
on the host's own disk, so it survives restarts and crashes of nova-compute
and needs no service to be up.

Writes are atomic (a temporary file in the same directory, ``fsync``,
``rename``, ``fsync`` of the directory): after a crash the file is the old
or the new ledger, never a mix. Every change happens inside
``DeviceLedger.transaction``, under a lock that is both a thread lock and a
file lock, so the operator command (``nova-acc-manage``) and nova-compute
never overwrite each other.

The records and their transitions - the states of a device, who holds it
- are ``nova_acc.compute.records`` (named here too, for callers that read
them from the ledger); which devices a claim picks is
``nova_acc.compute.claims``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
import uuid as uuid_lib
from collections.abc import Iterator, Mapping

from oslo_concurrency import lockutils
from oslo_log import log as logging

from nova_acc import exception
# The records, their states and transitions, by their old names here.
from nova_acc.compute.records import ACTIVE  # noqa: F401
from nova_acc.compute.records import ATTACHED  # noqa: F401
from nova_acc.compute.records import CLAIMED  # noqa: F401
from nova_acc.compute.records import describe_unavailable  # noqa: F401
from nova_acc.compute.records import DeviceRecord
from nova_acc.compute.records import DIRTY  # noqa: F401
from nova_acc.compute.records import FOREIGN  # noqa: F401
from nova_acc.compute.records import FREE  # noqa: F401
from nova_acc.compute.records import HELD  # noqa: F401
from nova_acc.compute.records import now
from nova_acc.compute.records import ORPHANED  # noqa: F401
from nova_acc.compute.records import OUT_OF_SERVICE  # noqa: F401
from nova_acc.compute.records import RELEASING  # noqa: F401
from nova_acc.compute.records import STATES  # noqa: F401
# The picking moved to claims; named here until every caller calls it
# there (claims imports records, not this module).
from nova_acc.compute.claims import claim  # noqa: F401
from nova_acc.compute.claims import PoolRequest  # noqa: F401

LOG = logging.getLogger(__name__)

FORMAT_VERSION = 1

#: Mode of the ledger file and its lock file: nova-compute's user reads and
#: writes them, its group may read them.
FILE_MODE = 0o640
#: Mode of a ledger directory nova-compute creates.
DIR_MODE = 0o750


def default_dir() -> str:
    from nova_acc import conf
    return conf.CONF.nova_acc.ledger_dir or os.path.join(
        conf.CONF.state_path, 'nova_acc')


def _new_file_owner(dir_fd: int, filename: str) -> tuple[int, int] | None:
    """(uid, gid) a file this process creates in the directory gets.

    The ledger file's owner (never followed if it is a link), else the
    directory's: when root writes, the files stay nova-compute's user's.
    None when that is this process's own user and group.
    """
    try:
        st = os.stat(filename, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            st = os.fstat(dir_fd)
    except FileNotFoundError:
        st = os.fstat(dir_fd)
    owner = (st.st_uid, st.st_gid)
    return None if owner == (os.geteuid(), os.getegid()) else owner


class _LedgerLock:
    """The lock of one ledger: a thread lock, then a file lock.

    The file lock is a POSIX lock (``lockf``) on ``nova-acc-ledger-<node>``
    in the ledger directory, the file and kind of lock oslo.concurrency's
    external locks take (which nova-acc used before), so nova-compute and
    nova-acc-manage of any version exclude each other. POSIX locks belong
    to a process, so threads of one process exclude each other with the
    thread lock first (the one ``lockutils.lock`` takes for the same name).
    The lock file is opened without following links and, created by root,
    given to the ledger's owner.
    """

    def __init__(self, dir_fd: int, directory: str, lock_name: str,
                 ledger_filename: str):
        self._dir_fd = dir_fd
        self._directory = directory
        self._lock_name = lock_name
        self._ledger_filename = ledger_filename

    def _open(self) -> int:
        dir_fd, lock_name = self._dir_fd, self._lock_name
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        where = os.path.join(self._directory, lock_name)
        try:
            try:
                fd = os.open(lock_name, flags | os.O_CREAT | os.O_EXCL,
                             FILE_MODE, dir_fd=dir_fd)
                created = True
            except FileExistsError:
                fd = os.open(lock_name, flags, dir_fd=dir_fd)
                created = False
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise exception.LedgerUnreadable(
                    'the lock file %s of the device ledger is a symbolic '
                    'link; nova-acc never follows links in its ledger '
                    'directory: remove it' % where)
            raise exception.LedgerUnreadable(
                'cannot open the lock file %s of the device ledger: %s'
                % (where, e))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise exception.LedgerUnreadable(
                    'the lock file %s of the device ledger is not a regular '
                    'file: remove it' % where)
            owner = (_new_file_owner(dir_fd, self._ledger_filename)
                     if created else None)
            if owner is not None:
                # Created by root: nova-compute must be able to lock it too.
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, *owner)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with lockutils.internal_lock(self._lock_name):
            fd = self._open()
            try:
                delay = 0.01
                while True:
                    try:
                        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as e:
                        if e.errno not in (errno.EACCES, errno.EAGAIN):
                            raise exception.LedgerUnreadable(
                                'cannot lock the device ledger %s: %s'
                                % (os.path.join(self._directory,
                                                self._ledger_filename), e))
                    # Not a blocking lockf: under eventlet that would stop
                    # every green thread of nova-compute while the other
                    # process holds the lock.
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
                try:
                    yield
                finally:
                    fcntl.lockf(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def _encode(nodename: str, records: Mapping[str, DeviceRecord]) -> bytes:
    """The ledger file's bytes: JSON, one line per device.

    Each record is encoded by the json module's C encoder (which an
    indented ``json.dumps`` of the whole ledger does not use): the ledger
    of a host with 2048 VFs is written on every change.
    """
    devices = ',\n'.join(
        '  %s: %s' % (json.dumps(address), json.dumps(
            {k: v for k, v in rec.to_dict().items() if k != 'address'},
            sort_keys=True))
        for address, rec in sorted(records.items()))
    return ('{\n "devices": {%s},\n "node": %s,\n "version": %d\n}\n' % (
        '\n%s\n ' % devices if devices else '', json.dumps(nodename),
        FORMAT_VERSION)).encode('utf-8')


def _fields_of(records: Mapping[str, DeviceRecord]) -> dict[str, dict]:
    """The fields of the records a file holds, to make them again from
    (``DeviceLedger._read``: a copy of each, not their JSON decoded again).

    Never changed once made: each record made from them gets its own
    traits list (``DeviceRecord._from_fields``).
    """
    return {address: dict(vars(rec), address=address,
                          traits=list(rec.traits))
            for address, rec in records.items()}


# Records read from a ledger file, and the fields they were made from.
_Loaded = tuple[dict[str, DeviceRecord], Mapping[str, dict]]


def _changed(records: Mapping[str, DeviceRecord],
             made_from: Mapping[str, dict]) -> bool:
    """Whether ``records`` differ from the fields they were made from.

    One dict comparison per record, nothing copied before the transaction's
    body runs: a host's ledger holds a record per device, 2048 and more on
    a host with many VFs. A field changed, a traits list changed in place,
    a record added, removed or replaced by an unequal one all count.
    """
    return records.keys() != made_from.keys() or any(
        vars(rec) != made_from[address] for address, rec in records.items())


class DeviceLedger:
    """The ledger of one compute node, stored in ``<directory>/<node>.json``.

    Read it with ``records()`` or ``read()``; change it only inside
    ``transaction()``.

    The directory belongs to nova-compute's user, and ``nova-acc-manage``
    may run as root: nothing here follows a link or reopens a name that
    process could have swapped. A transaction opens the directory once and
    reaches every file from that descriptor (``openat``), with
    ``O_NOFOLLOW``; the mode and owner of a new file are set on its open
    descriptor; a link, a special file or a directory where a ledger file
    or the lock file should be is refused, never followed.
    """

    def __init__(self, nodename: str, directory: str | None = None):
        if not nodename or '/' in nodename or '\0' in nodename or \
                nodename.startswith('.'):
            raise exception.LedgerError(
                'node name %r cannot name a device ledger file' % nodename)
        self.nodename = nodename
        self.directory = directory or default_dir()
        self.filename = '%s.json' % nodename
        self.path = os.path.join(self.directory, self.filename)
        # The name oslo.concurrency's external lock used before: any two
        # versions of nova-compute and nova-acc-manage exclude each other.
        self.lock_name = 'nova-acc-ledger-%s' % nodename
        # Set when the file was corrupt and moved aside: the caller decides
        # what to do with the devices (reconcile resets them).
        self.recovered_from: str | None = None
        # The bytes last read and the fields of the records they hold: a
        # ledger that did not change since is not decoded again (a host
        # with 2048 VFs reads it on every resource update).
        self._decoded: tuple[bytes, dict[str, dict]] | None = None

    # ---- storage ------------------------------------------------------------

    @contextlib.contextmanager
    def _open_dir(self) -> Iterator[int | None]:
        """The ledger directory, opened once for a whole operation.

        Its path is configuration (trusted); what is in it is reached from
        this descriptor only. Yields None when there is no directory.

        :raises LedgerUnreadable: it cannot be opened.
        """
        try:
            fd = os.open(self.directory,
                         os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield None
            return
        except OSError as e:
            raise exception.LedgerUnreadable(
                'cannot open the device ledger directory %s: %s'
                % (self.directory, e))
        try:
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _lock(self, dir_fd: int) -> Iterator[None]:
        """Hold the ledger lock (``_LedgerLock``)."""
        with _LedgerLock(dir_fd, self.directory, self.lock_name,
                         self.filename).held():
            yield

    def _exists_in(self, dir_fd: int) -> bool:
        try:
            os.stat(self.filename, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise exception.LedgerUnreadable(
                'cannot look up device ledger %s: %s' % (self.path, e))
        return True

    def exists(self) -> bool:
        """Whether there is a ledger file (a link there counts: it is not
        followed, and not nothing either).

        :raises LedgerUnreadable: it cannot be looked up (an I/O error).
        """
        with self._open_dir() as dir_fd:
            return dir_fd is not None and self._exists_in(dir_fd)

    def _read(self, dir_fd: int | None = None) -> dict[str, DeviceRecord]:
        """The records of the file; {} when there is none.

        :raises LedgerUnreadable: it cannot be read now; it is kept.
        :raises LedgerCorrupt: what it holds is not a ledger.
        """
        if dir_fd is None:
            with self._open_dir() as fd:
                return {} if fd is None else self._read(fd)
        return self._read_with_fields(dir_fd)[0]

    def _read_with_fields(self, dir_fd: int) -> _Loaded:
        """``_read``, and the fields its records were made from."""
        try:
            # O_NONBLOCK: a FIFO planted there must not hang the reader.
            fd = os.open(self.filename, os.O_RDONLY | os.O_NOFOLLOW |
                         os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return {}, {}
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise exception.LedgerUnreadable(
                    'device ledger %s is a symbolic link; nova-acc never '
                    'follows links in its ledger directory: replace it by '
                    'the file it points to' % self.path)
            raise exception.LedgerUnreadable(
                'cannot read device ledger %s: %s' % (self.path, e))
        try:
            with os.fdopen(fd, 'rb') as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise exception.LedgerUnreadable(
                        'device ledger %s is not a regular file: replace it '
                        'by the ledger file' % self.path)
                raw = f.read()
        except OSError as e:
            raise exception.LedgerUnreadable(
                'cannot read device ledger %s: %s' % (self.path, e))
        decoded = self._decoded
        if decoded is not None and decoded[0] == raw:
            return {address: DeviceRecord._from_fields(fields)
                    for address, fields in decoded[1].items()}, decoded[1]
        records = self._decode(raw)
        self._decoded = (raw, _fields_of(records))
        return records, self._decoded[1]

    def _decode(self, raw: bytes) -> dict[str, DeviceRecord]:
        """The records of a ledger file's bytes.

        :raises LedgerCorrupt: they are not a ledger.
        """
        try:
            data = json.loads(raw.decode('utf-8'))
        except ValueError as e:  # UnicodeDecodeError too
            raise exception.LedgerCorrupt(
                'device ledger %s is corrupt: not JSON (%s)' % (self.path, e))
        if not isinstance(data, dict) or data.get('version') != \
                FORMAT_VERSION or not isinstance(data.get('devices'), dict):
            raise exception.LedgerCorrupt(
                'device ledger %s is not a version %d ledger' % (
                    self.path, FORMAT_VERSION))
        try:
            return {address: DeviceRecord.from_dict(dict(rec,
                                                         address=address))
                    for address, rec in data['devices'].items()}
        except (TypeError, ValueError, exception.LedgerError) as e:
            raise exception.LedgerCorrupt(
                'device ledger %s has a bad record: %s' % (self.path, e))

    def _write(self, records: dict[str, DeviceRecord], dir_fd: int) -> None:
        """Replace the file atomically: a new file, fsync, rename, fsync.

        The new file is created exclusively without following links, and
        its mode and owner are set on its descriptor, never by name.
        """
        payload = _encode(self.nodename, records)
        owner = _new_file_owner(dir_fd, self.filename)
        tmp = '.%s.%s.tmp' % (self.nodename, uuid_lib.uuid4().hex[:12])
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                     os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, 'wb') as f:
                os.fchmod(f.fileno(), FILE_MODE)
                if owner is not None:
                    # The operator command runs as root; the file must stay
                    # nova-compute's user's all the same.
                    with contextlib.suppress(PermissionError):
                        os.fchown(f.fileno(), *owner)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
                written = os.fstat(f.fileno())
            # Whatever another process put under the temporary name is not
            # installed as the ledger (it could not harm anyone but the
            # directory's owner, but it is not what was written).
            there = os.stat(tmp, dir_fd=dir_fd, follow_symlinks=False)
            if (there.st_dev, there.st_ino) != (written.st_dev,
                                                written.st_ino):
                raise exception.LedgerError(
                    'the new device ledger %s was replaced by another file '
                    'while it was written; not installing it'
                    % os.path.join(self.directory, tmp))
            os.replace(tmp, self.filename, src_dir_fd=dir_fd,
                       dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
        # What was written is what the next read finds, unless another
        # process writes in between (then the bytes differ and are
        # decoded): a build reads back the claim it wrote.
        self._decoded = (payload, _fields_of(records))

    def _ensure_dir(self) -> None:
        # Only nova-compute creates a ledger (the operator command never
        # does), as the user that must own it.
        try:
            os.makedirs(self.directory, mode=DIR_MODE, exist_ok=True)
        except OSError as e:
            raise exception.LedgerError(
                'cannot create the device ledger directory %s: %s'
                % (self.directory, e))

    def _load_or_recover(self, dir_fd: int) -> _Loaded:
        """``_read_with_fields``; a corrupt file is moved aside: ({}, {}).

        Only a file that holds something other than a ledger is corrupt.
        One that cannot be read now (an I/O error, too many open files)
        says nothing of the devices: the error is raised and the file
        stays, with every claim and mdev it records.

        :raises LedgerUnreadable: as ``_read``, or the corrupt file cannot
            be moved aside (then it is kept and nothing is rebuilt).
        """
        try:
            return self._read_with_fields(dir_fd)
        except exception.LedgerCorrupt as e:
            # Never stop the host for a bad file: keep it for the operator
            # and start over. The reconcile then treats every device no
            # server is known to hold as released (reset before reuse).
            aside = '%s.corrupt-%s' % (
                self.filename, now().replace(':', ''))
            try:
                os.replace(self.filename, aside, src_dir_fd=dir_fd,
                           dst_dir_fd=dir_fd)
            except OSError as move_error:
                raise exception.LedgerUnreadable(
                    '%s, and it cannot be moved aside (%s); it is kept as it '
                    'is' % (e, move_error))
            aside = os.path.join(self.directory, aside)
            LOG.error('%s; moved it to %s and rebuilding the ledger from '
                      'the servers and guests on this host.', e, aside)
            self.recovered_from = aside
            return {}, {}

    # ---- API ----------------------------------------------------------------

    def read(self) -> dict[str, DeviceRecord]:
        """The ledger: address -> record (copies); {} when there is none.

        :raises LedgerUnreadable: the file cannot be read now.
        :raises LedgerCorrupt: the file is not a ledger.
        """
        return self._read()

    def records(self) -> dict[str, DeviceRecord]:
        """The ledger as last written, for decisions that hand nothing out.

        {} when there is no ledger, and when the file is corrupt (logged):
        nothing in a corrupt file can be trusted, and the next
        ``transaction`` moves it aside and rebuilds the ledger, resetting
        every device no server is known to hold before it is handed out.
        Devices are only ever handed out inside a transaction.

        :raises LedgerUnreadable: the file cannot be read now (an I/O
            error, too many open files, a link): nothing is known of the
            devices, and the caller must not act as if none were held.
        """
        try:
            return self._read()
        except exception.LedgerCorrupt as e:
            LOG.warning('%s', e)
            return {}

    @contextlib.contextmanager
    def transaction(self, recover: bool = True
                    ) -> Iterator[dict[str, DeviceRecord]]:
        """Lock, load, let the caller change the records, write if changed.

        Nothing is written when nothing changed, and nothing when the body
        raises (all or nothing).

        :param recover: a corrupt file is moved aside and the ledger starts
            empty (``recovered_from`` is set); nova-compute's reconcile then
            rebuilds it. Without, a corrupt file raises LedgerCorrupt and
            stays.
        :raises LedgerUnreadable: the ledger cannot be read (or locked)
            now; nothing changed, the file is kept.
        """
        self._ensure_dir()
        with self._open_dir() as dir_fd:
            if dir_fd is None:
                raise exception.LedgerUnreadable(
                    'the device ledger directory %s is gone' % self.directory)
            with self._lock(dir_fd):
                load = self._load_or_recover if recover else \
                    self._read_with_fields
                records, made_from = load(dir_fd)
                yield records
                if _changed(records, made_from) or \
                        not self._exists_in(dir_fd):
                    self._write(records, dir_fd)
