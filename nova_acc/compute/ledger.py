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

States of a device (``DeviceRecord.state``):

``free``
    Nobody holds it; it may be handed out.
``claimed``
    Claimed for a server whose build is in progress on this host.
``attached``
    A server's guest is defined with it.
``orphaned``
    Its server left this host (deleted while nova-compute was down, for
    example) but a guest still holds the device. It is released - and reset
    - when that guest is gone.
``foreign``
    A guest Nova does not know (or a server not bound to it) holds it.
``releasing``
    Its holder is gone and no guest uses it; nova-acc is releasing it
    (reset, unbind or mdev removal). Recorded *before* the reset runs, so a
    reset never happens unless the ledger already says the device is no
    longer held: a ledger that cannot be written releases nothing, and a
    write that fails after the reset does not make the next attempt reset
    the device again (see ``nova_acc.compute.hostdev``). A release that could
    not be attempted (the privsep daemon down) leaves the device here, out of
    service, and nova-compute tries again at its next resource update.
``dirty``
    Released but not reset: the reset failed or the device has none. It is
    never handed out until an operator clears it
    (``nova-acc-manage devices clear-dirty``).

Only ``free`` devices are handed out; ``orphaned``, ``foreign``,
``releasing`` and ``dirty`` ones are reported ``reserved`` to placement.

Mediated devices (vGPUs) are recorded too, under their UUID instead of a
PCI address, with their parent and type (``DeviceRecord.is_mdev``). They
exist only while a server holds them: a claim records them (``claimed``)
before the host creates them, and their release removes them and drops
their record; one that cannot be removed is ``dirty`` and keeps its
capacity out of service until it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import os
import stat
import time
import typing as ty
import uuid as uuid_lib
from collections.abc import Iterator, Mapping, Set

from oslo_concurrency import lockutils
from oslo_log import log as logging

from nova_acc import exception

LOG = logging.getLogger(__name__)

FORMAT_VERSION = 1

FREE = 'free'
CLAIMED = 'claimed'
ATTACHED = 'attached'
ORPHANED = 'orphaned'
FOREIGN = 'foreign'
RELEASING = 'releasing'
DIRTY = 'dirty'
STATES = (FREE, CLAIMED, ATTACHED, ORPHANED, FOREIGN, RELEASING, DIRTY)
#: States in which a device must not be offered by placement.
OUT_OF_SERVICE = frozenset({ORPHANED, FOREIGN, RELEASING, DIRTY})
#: States in which a server holds the device.
HELD = frozenset({CLAIMED, ATTACHED, ORPHANED})
#: States in which the device serves its server: claimed for it or in its
#: guest (held and not orphaned).
ACTIVE = frozenset({CLAIMED, ATTACHED})


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec='seconds')


@dataclasses.dataclass
class DeviceRecord:
    """What the host knows of one device.

    :ivar address: PCI address (``0000:81:00.0``) - the device's identity
        on the host; for an mdev, its UUID.
    :ivar state: one of ``STATES``.
    :ivar instance_uuid: the server holding it (claimed, attached,
        orphaned).
    :ivar guest: UUID of the libvirt domain holding it when that is not a
        server bound to it (``foreign``).
    :ivar rp_uuid, resource_class, traits: the provider (the device's pool),
        resource class and traits the device was allocated from, kept while
        it is held so a changed ``[nova_acc] device_spec`` does not move a
        device from under its server.
    :ivar requester_id: the request group of the server the device serves
        (a group asking for 4 devices of a pool is served by 4 records).
    :ivar migration_id: set on the destination of a resize or cold
        migration: the move (Nova's migration ID) the device was claimed
        for. Until the move is confirmed the server holds its source devices
        too (on the same host: untagged records), and a reverted move
        releases exactly the devices tagged with it.
    :ivar context_id: for devices of ID-based contexts (a Cyborg ARQ): the
        context; its backend owns the device and resets it, nova-acc only
        records who holds it.
    :ivar changed_at: when the state last changed (UTC, ISO 8601).
    :ivar last_reset: when nova-acc last reset the device.
    :ivar reason: why it is in this state, for operators.
    :ivar parent: for an mdev: the PCI address of its parent (the GPU).
    :ivar mdev_type: for an mdev: its type.
    """

    address: str
    state: str = FREE
    instance_uuid: str | None = None
    guest: str | None = None
    rp_uuid: str | None = None
    requester_id: str | None = None
    migration_id: int | None = None
    resource_class: str | None = None
    traits: list[str] = dataclasses.field(default_factory=list)
    context_id: str | None = None
    changed_at: str | None = None
    last_reset: str | None = None
    reason: str | None = None
    parent: str | None = None
    mdev_type: str | None = None

    @property
    def is_mdev(self) -> bool:
        return self.mdev_type is not None

    @property
    def holder(self) -> str | None:
        return self.instance_uuid or self.guest

    @property
    def backend_owned(self) -> bool:
        return self.context_id is not None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DeviceRecord:
        fields = {f.name for f in dataclasses.fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in fields})
        if record.state not in STATES:
            raise exception.LedgerError('device %s has unknown state %r' % (
                record.address, record.state))
        return record

    # ---- transitions: the only code that changes a record ---------------

    def _set(self, state: str, reason: str | None = None, **fields) -> None:
        for name, value in fields.items():
            setattr(self, name, value)
        self.state = state
        self.reason = reason
        self.changed_at = now()

    def claim(self, instance_uuid: str, rp_uuid: str | None,
              resource_class: str | None, traits, context_id: str | None,
              requester_id: str | None = None,
              migration_id: int | None = None) -> None:
        self._set(CLAIMED, instance_uuid=instance_uuid, guest=None,
                  rp_uuid=rp_uuid, resource_class=resource_class,
                  traits=sorted(traits or ()), context_id=context_id,
                  requester_id=requester_id, migration_id=migration_id)

    def attach(self) -> None:
        self._set(ATTACHED, reason=None)

    def orphan(self, reason: str) -> None:
        self._set(ORPHANED, reason=reason)

    def held_by_guest(self, guest: str, reason: str) -> None:
        self._set(FOREIGN, reason=reason, guest=guest, instance_uuid=None,
                  context_id=None, requester_id=None, migration_id=None)

    def releasing(self, reason: str) -> None:
        # The holder's fields stay: the release needs them (the backend
        # context to unbind, the server to name in the log).
        self._set(RELEASING, reason=reason)

    def free(self, reset: bool, reason: str | None = None) -> None:
        if reset:
            self.last_reset = now()
        self._set(FREE, reason=reason, instance_uuid=None, guest=None,
                  rp_uuid=None, resource_class=None, traits=[],
                  context_id=None, requester_id=None, migration_id=None)

    def dirty(self, reason: str) -> None:
        self._set(DIRTY, reason=reason, instance_uuid=None, guest=None,
                  context_id=None, requester_id=None, migration_id=None)


#: Mode of the ledger file and its lock file: nova-compute's user reads and
#: writes them, its group may read them.
FILE_MODE = 0o640
#: Mode of a ledger directory nova-compute creates.
DIR_MODE = 0o750


def default_dir() -> str:
    from nova_acc import conf
    return conf.CONF.nova_acc.ledger_dir or os.path.join(
        conf.CONF.state_path, 'nova_acc')


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

    def _new_file_owner(self, dir_fd: int) -> tuple[int, int] | None:
        """(uid, gid) a file this process creates in the directory gets.

        The ledger file's owner (never followed if it is a link), else the
        directory's: when root writes, the files stay nova-compute's user's.
        None when that is this process's own user and group.
        """
        try:
            st = os.stat(self.filename, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                st = os.fstat(dir_fd)
        except FileNotFoundError:
            st = os.fstat(dir_fd)
        owner = (st.st_uid, st.st_gid)
        return None if owner == (os.geteuid(), os.getegid()) else owner

    def _open_lock_file(self, dir_fd: int) -> int:
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        where = os.path.join(self.directory, self.lock_name)
        try:
            try:
                fd = os.open(self.lock_name, flags | os.O_CREAT | os.O_EXCL,
                             FILE_MODE, dir_fd=dir_fd)
                created = True
            except FileExistsError:
                fd = os.open(self.lock_name, flags, dir_fd=dir_fd)
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
            owner = self._new_file_owner(dir_fd) if created else None
            if owner is not None:
                # Created by root: nova-compute must be able to lock it too.
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, *owner)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _lock(self, dir_fd: int) -> Iterator[None]:
        """Hold the ledger lock: a thread lock, then a file lock.

        The file lock is a POSIX lock (``lockf``) on ``nova-acc-ledger-
        <node>`` in the ledger directory, the file and kind of lock
        oslo.concurrency's external locks take (which nova-acc used
        before), so nova-compute and nova-acc-manage of any version
        exclude each other. POSIX locks belong to a process, so threads of
        one process exclude each other with the thread lock first (the one
        ``lockutils.lock`` takes for the same name). The lock file is
        opened without following links and, created by root, given to the
        ledger's owner.
        """
        with lockutils.internal_lock(self.lock_name):
            fd = self._open_lock_file(dir_fd)
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
                                % (self.path, e))
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
        try:
            # O_NONBLOCK: a FIFO planted there must not hang the reader.
            fd = os.open(self.filename, os.O_RDONLY | os.O_NOFOLLOW |
                         os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return {}
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
        data = {'version': FORMAT_VERSION, 'node': self.nodename,
                'devices': {a: {k: v for k, v in r.to_dict().items()
                                if k != 'address'}
                            for a, r in sorted(records.items())}}
        payload = (json.dumps(data, indent=1, sort_keys=True) +
                   '\n').encode('utf-8')
        owner = self._new_file_owner(dir_fd)
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

    def _ensure_dir(self) -> None:
        # Only nova-compute creates a ledger (the operator command never
        # does), as the user that must own it.
        try:
            os.makedirs(self.directory, mode=DIR_MODE, exist_ok=True)
        except OSError as e:
            raise exception.LedgerError(
                'cannot create the device ledger directory %s: %s'
                % (self.directory, e))

    def _load_or_recover(self, dir_fd: int) -> dict[str, DeviceRecord]:
        """The records; a corrupt file is moved aside and {} returned.

        Only a file that holds something other than a ledger is corrupt.
        One that cannot be read now (an I/O error, too many open files)
        says nothing of the devices: the error is raised and the file
        stays, with every claim and mdev it records.

        :raises LedgerUnreadable: as ``_read``, or the corrupt file cannot
            be moved aside (then it is kept and nothing is rebuilt).
        """
        try:
            return self._read(dir_fd)
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
            return {}

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
                records = (self._load_or_recover(dir_fd) if recover
                           else self._read(dir_fd))
                before = {a: r.to_dict() for a, r in records.items()}
                yield records
                after = {a: r.to_dict() for a, r in records.items()}
                if after != before or not self._exists_in(dir_fd):
                    self._write(records, dir_fd)


@dataclasses.dataclass(frozen=True)
class PoolRequest:
    """``count`` devices of pool ``rp_uuid`` for group ``requester_id``.

    :ivar candidates: the addresses of the pool's devices on the host now,
        in the order to try them; for an mdev pool, of its parents.
    :ivar mdev_type: set for an mdev pool: ``count`` new mdevs of this type
        are recorded, on parents with capacity left.
    """

    requester_id: str
    rp_uuid: str
    count: int
    candidates: tuple[str, ...]
    resource_class: str | None = None
    traits: tuple[str, ...] = ()
    mdev_type: str | None = None


def claim(records: dict[str, DeviceRecord], instance_uuid: str,
          wanted: list[dict], pools: list[PoolRequest] = (),
          blocked: frozenset[str] | set[str] = frozenset(),
          relatives: Mapping[str, Set[str]] | None = None,
          migration_id: int | None = None,
          held_tags: Set[int | None] | None = None,
          mdev_capacity: Mapping[tuple[str, str], int] | None = None,
          new_uuid: ty.Callable[[], str] = lambda: str(uuid_lib.uuid4()),
          ) -> list[DeviceRecord]:
    """Claim devices for a server, all or nothing.

    :param wanted: specific devices, one dict each: ``address`` and
        optionally ``rp_uuid``, ``resource_class``, ``traits``,
        ``context_id``, ``requester_id`` (the devices of backend contexts,
        whose backend chose them, and bindings made before pools).
    :param pools: devices for the host to pick: for each request, the
        devices the server already holds for that group count first (a
        rebuild or a retried spawn claims nothing twice), then free devices
        of the pool that no other claim of this call took and that are not
        ``blocked`` (a PF whose VFs are in use, or the reverse).
    :param relatives: address -> the devices that must not be in use at the
        same time (a PF's VFs, a VF's PF): a device picked here blocks its
        relatives for the rest of this claim too, so one server never gets
        a PF and one of its VFs.
    :param migration_id: the move (resize, cold migration) the devices are
        claimed for on its destination: recorded with them, and only what
        the server holds for the same move counts as already held (on the
        same host the server keeps its source devices meanwhile).
    :param held_tags: the ``migration_id`` values of the records that count
        as already held by the server (default: ``migration_id`` alone).
    :param mdev_capacity: (parent address, mdev type) -> how many more mdevs
        of that type the parent can take now, for mdev pools. A parent that
        gets an mdev here is not handed out whole in the same claim.
    :param new_uuid: makes the UUID of each new mdev.
    :raises DeviceNotFree: a specific device is held by someone else, dirty
        or out of service, or a pool has fewer free devices than asked;
        nothing was claimed.
    """
    for want in wanted:
        rec = records.get(want['address'])
        if (rec is None or rec.state == FREE) and \
                want['address'] not in blocked:
            continue
        if rec is not None and rec.state in ACTIVE and \
                rec.instance_uuid == instance_uuid:
            continue  # idempotent: a rebuild or a retried spawn
        if rec is None or rec.state == FREE:
            raise exception.DeviceNotFree(
                'device %s is blocked: its PF or one of its VFs is in use'
                % want['address'])
        raise exception.DeviceNotFree(describe_unavailable(rec))
    relatives = relatives or {}
    if held_tags is None:
        held_tags = {migration_id}
    taken = {w['address'] for w in wanted}
    blocked = set(blocked)
    for address in taken:
        blocked |= set(relatives.get(address, ()))
    for want in wanted:
        clash = set(relatives.get(want['address'], ())) & taken
        if clash:
            raise exception.DeviceNotFree(
                'device %s cannot be claimed together with its PF or VF %s'
                % (want['address'], ', '.join(sorted(clash))))
    picks: list[tuple[PoolRequest, list[str]]] = []
    new_mdevs: dict[str, tuple[str, str]] = {}
    capacity_left = dict(mdev_capacity or {})
    for req in pools:
        if req.mdev_type is not None:
            picks.append((req, _pick_mdevs(
                records, instance_uuid, req, held_tags, taken | blocked,
                capacity_left, new_mdevs, new_uuid)))
            blocked |= {new_mdevs[u][0] for u in picks[-1][1]
                        if u in new_mdevs}
            continue
        mine = [a for a, r in sorted(records.items())
                if r.instance_uuid == instance_uuid and
                r.state in ACTIVE and
                r.requester_id == req.requester_id and
                r.migration_id in held_tags][:req.count]
        chosen = list(mine)
        for address in mine:
            blocked |= set(relatives.get(address, ()))
        for address in req.candidates:
            if len(chosen) == req.count:
                break
            rec = records.get(address)
            if address in taken or address in blocked or address in chosen \
                    or (rec is not None and rec.state != FREE):
                continue
            chosen.append(address)
            blocked |= set(relatives.get(address, ()))
        if len(chosen) < req.count:
            # Say why the others are not free: what an operator acts on.
            why = [describe_unavailable(records[a]) for a in req.candidates
                   if a in records and records[a].state != FREE and
                   records[a].instance_uuid != instance_uuid][:3]
            why += ['device %s is blocked: its PF or one of its VFs is in '
                    'use' % a for a in req.candidates
                    if a in blocked and a not in chosen and
                    (a not in records or records[a].state == FREE)][:1]
            raise exception.DeviceNotFree(
                'device group %s needs %d device(s) of pool %s, only %d '
                'free%s' % (req.requester_id, req.count, req.rp_uuid,
                            len(chosen),
                            ' (%s)' % '; '.join(why) if why else ''))
        taken.update(chosen)
        picks.append((req, chosen))
    claimed = []
    for want in wanted:
        rec = records.setdefault(want['address'],
                                 DeviceRecord(address=want['address']))
        if rec.state == FREE:
            rec.claim(instance_uuid, want.get('rp_uuid'),
                      want.get('resource_class'), want.get('traits'),
                      want.get('context_id'), want.get('requester_id'),
                      migration_id)
        claimed.append(rec)
    for req, chosen in picks:
        for address in chosen:
            if address in new_mdevs:
                parent, mdev_type = new_mdevs[address]
                records[address] = DeviceRecord(
                    address=address, parent=parent, mdev_type=mdev_type)
            rec = records.setdefault(address, DeviceRecord(address=address))
            if rec.state == FREE:
                rec.claim(instance_uuid, req.rp_uuid, req.resource_class,
                          req.traits, None, req.requester_id,
                          migration_id)
            claimed.append(rec)
    return claimed


def _pick_mdevs(records: dict[str, DeviceRecord], instance_uuid: str,
                req: PoolRequest, held_tags: Set[int | None],
                unavailable: Set[str],
                capacity_left: dict[tuple[str, str], int],
                new_mdevs: dict[str, tuple[str, str]],
                new_uuid: ty.Callable[[], str]) -> list[str]:
    """The mdevs of one request: those held for it, then new ones.

    New ones are packed on the first parents (in ``req.candidates`` order)
    with capacity left, so that other parents stay free for other types or
    for being handed out whole.
    """
    mdev_type = ty.cast(str, req.mdev_type)
    chosen = [a for a, r in sorted(records.items())
              if r.instance_uuid == instance_uuid and
              r.state in ACTIVE and
              r.requester_id == req.requester_id and
              r.migration_id in held_tags][:req.count]
    for parent in req.candidates:
        if parent in unavailable:
            continue
        while len(chosen) < req.count and \
                capacity_left.get((parent, mdev_type), 0) > 0:
            uuid = new_uuid()
            new_mdevs[uuid] = (parent, mdev_type)
            capacity_left[(parent, mdev_type)] -= 1
            chosen.append(uuid)
    if len(chosen) < req.count:
        raise exception.DeviceNotFree(
            'device group %s needs %d mdev(s) of type %s from pool %s, only '
            '%d can be created now (parents %s: full, or used whole or for '
            'another mdev type)' % (
                req.requester_id, req.count, mdev_type, req.rp_uuid,
                len(chosen), ', '.join(req.candidates) or 'none'))
    return chosen


def describe_unavailable(rec: DeviceRecord) -> str:
    if rec.is_mdev and rec.state == DIRTY:
        return ('mdev %s on %s could not be removed (%s) and keeps its '
                'capacity out of service' % (rec.address, rec.parent,
                                             rec.reason))
    if rec.state == DIRTY:
        return ('device %s is dirty (%s) and out of service until an '
                'operator clears it' % (rec.address, rec.reason or
                                        'released without a reset'))
    if rec.state == FOREIGN:
        return ('device %s is used by guest %s, which Nova does not know as '
                'its holder' % (rec.address, rec.guest))
    if rec.state == RELEASING:
        return ('device %s is being released (%s) and is handed out once '
                'it is reset' % (rec.address, rec.reason))
    if rec.state == ORPHANED:
        return ('device %s is still held by the guest of server %s, which '
                'left this host' % (rec.address, rec.instance_uuid))
    return 'device %s is %s by server %s' % (rec.address, rec.state,
                                             rec.instance_uuid)
