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
"""Queries of nova-acc-api's database.

Each function is one transaction. A state change that must not race (a
bind, an unbind, a delete, a config change) is one ``UPDATE``/``DELETE``
whose ``WHERE`` says the state it expects: the database decides which of
two concurrent callers wins, on MySQL as on sqlite, with no lock held
between a read and a write. When nothing matched, the row is read again
to say why (missing, or bound to which server).
"""

from __future__ import annotations

import datetime
import typing as ty

from oslo_config import cfg
from oslo_db import api as oslo_db_api
from oslo_db.sqlalchemy import enginefacade
from oslo_serialization import jsonutils
from oslo_utils import timeutils
from oslo_utils import uuidutils
import sqlalchemy as sa

from nova_acc.api.db import models
from nova_acc.api import exception

Context = dict[str, ty.Any]
M = models.DeviceContext


@enginefacade.transaction_context_provider
class _Transaction:
    """What enginefacade hangs a transaction on, one per call."""


def _timestamp(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def _to_dict(row: M) -> Context:
    return {
        'id': row.id, 'name': row.name, 'description': row.description,
        'project_id': row.project_id, 'user_id': row.user_id,
        'spec': row.spec, 'config': jsonutils.loads(row.config),
        'state': row.state, 'server_id': row.server_id, 'host': row.host,
        'devices': jsonutils.loads(row.devices), 'fault': row.fault,
        'created_at': _timestamp(row.created_at),
        'updated_at': _timestamp(row.updated_at),
    }


#: Retry a write that InnoDB chose as a deadlock victim: each write is one
#: guarded statement in its own transaction, so running it again is safe.
_retry_on_deadlock = oslo_db_api.wrap_db_retry(max_retries=5,
                                               retry_on_deadlock=True)


class Database:
    """nova-acc-api's database, from the ``[database]`` options.

    An instance of its own (not a module-global facade as placement
    has), so that tests and the in-process fixture can run several.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._facade = enginefacade.transaction_context()
        self._facade.configure(connection=conf.database.connection,
                               max_retries=conf.database.max_retries,
                               sqlite_synchronous=(
                                   conf.database.sqlite_synchronous))

    def engine(self) -> sa.engine.Engine:
        engine: sa.engine.Engine = self._facade.writer.get_engine()
        return engine

    def dispose(self) -> None:
        self._facade.dispose_pool()

    def _writer(self) -> ty.Any:
        return self._facade.writer.using(_Transaction())

    def _reader(self) -> ty.Any:
        return self._facade.reader.using(_Transaction())

    # ---- user-facing calls ------------------------------------------------

    def create(self, project_id: str, user_id: str, spec: str,
               config: dict[str, str], name: str | None = None,
               description: str | None = None) -> Context:
        row = M(id=uuidutils.generate_uuid(), name=name,
                description=description, project_id=project_id,
                user_id=user_id, spec=spec, config=jsonutils.dumps(config),
                state=models.UNBOUND, devices='[]',
                created_at=timeutils.utcnow())
        with self._writer() as session:
            session.add(row)
            session.flush()
            return _to_dict(row)

    def count(self, project_id: str) -> int:
        with self._reader() as session:
            return int(session.scalar(
                sa.select(sa.func.count()).select_from(M).where(
                    M.project_id == project_id)) or 0)

    def get(self, context_id: str) -> Context | None:
        with self._reader() as session:
            row = session.get(M, context_id)
            return None if row is None else _to_dict(row)

    def list(self, project_id: str | None = None,
             server_id: str | None = None,
             state: str | None = None, limit: int | None = None,
             marker: str | None = None) -> list[Context]:
        """Contexts oldest first; a page of ``limit`` after ``marker``.

        :raises BadRequest: if ``marker`` is not a context of the listing
            (missing, or another project's).
        """
        query = sa.select(M).order_by(M.created_at, M.id)
        if project_id is not None:
            query = query.where(M.project_id == project_id)
        if server_id is not None:
            query = query.where(M.server_id == server_id)
        if state is not None:
            query = query.where(M.state == state)
        if limit is not None:
            query = query.limit(limit)
        with self._reader() as session:
            if marker is not None:
                after = session.get(M, marker)
                if after is None or (project_id is not None and
                                     after.project_id != project_id):
                    raise exception.BadRequest(
                        'Marker %s is not a device context of this '
                        'listing' % marker)
                query = query.where(sa.or_(
                    M.created_at > after.created_at,
                    sa.and_(M.created_at == after.created_at,
                            M.id > after.id)))
            return [_to_dict(row) for row in session.scalars(query)]

    def update(self, context_id: str, values: dict[str, ty.Any]) -> Context:
        """Change name/description/config; config only while unbound."""
        values = dict(values)
        where = [M.id == context_id]
        if 'config' in values:
            values['config'] = jsonutils.dumps(values['config'])
            where.append(M.state == models.UNBOUND)
        values['updated_at'] = timeutils.utcnow()
        self._change(where, values, context_id,
                     'its config cannot change while it is bound')
        return self._get_or_raise(context_id)

    @_retry_on_deadlock
    def delete(self, context_id: str) -> None:
        with self._writer() as session:
            deleted = session.execute(
                sa.delete(M).where(M.id == context_id,
                                   M.state == models.UNBOUND)).rowcount
        if not deleted:
            self._raise_why(context_id,
                            'delete or detach the server first')

    def delete_if_over(self, context_id: str, project_id: str,
                       limit: int) -> bool:
        """Delete a just-created context if its project is over ``limit``.

        The second half of the quota check (Nova's ``recheck_quota``):
        counted after the commit, so two racing creates both see each
        other and neither overshoots the limit.
        """
        if self.count(project_id) <= limit:
            return False
        with self._writer() as session:
            session.execute(sa.delete(M).where(M.id == context_id))
        return True

    # ---- calls of Nova's side -------------------------------------------

    def bind(self, context_id: str, project_id: str, server_id: str,
             host: str) -> Context:
        """Bind to ``server_id`` on ``host``: the compare-and-swap.

        Wins only if the context is unbound, or already this server's (a
        move or a reschedule: the host changes, the devices are cleared,
        a fault is forgotten). The end of an attach (``attaching``) keeps
        the devices its compute recorded while attaching.
        """
        self._change(
            [M.id == context_id, M.project_id == project_id,
             sa.or_(M.state == models.UNBOUND, M.server_id == server_id)],
            # devices first: MySQL assigns left to right, each later
            # expression seeing the new values, so after state = bound
            # the CASE cleared an attach's devices (sqlite and the SQL
            # standard use the old row).
            {'devices': sa.case((M.state == models.ATTACHING, M.devices),
                                else_='[]'),
             'state': models.BOUND, 'server_id': server_id, 'host': host,
             'fault': None,
             'updated_at': timeutils.utcnow()},
            context_id, project_id=project_id)
        return self._get_or_raise(context_id)

    @_retry_on_deadlock
    def unbind(self, context_id: str, server_id: str,
               host: str | None = None, fault: str | None = None) -> bool:
        """Unbind if bound to ``server_id`` (on ``host``); True if it was.

        :param fault: why (an attach that failed): kept on the unbound
            context for its owner to read; None forgets any fault.
        """
        where = [M.id == context_id, M.server_id == server_id]
        if host is not None:
            where.append(M.host == host)
        with self._writer() as session:
            return bool(session.execute(
                sa.update(M).where(*where).values(
                    state=models.UNBOUND, server_id=None, host=None,
                    devices='[]', fault=fault,
                    updated_at=timeutils.utcnow())).rowcount)

    def begin_attach(self, context_id: str, project_id: str,
                     server_id: str, host: str) -> Context:
        """A user's attach: unbound -> ``attaching`` to the server.

        The compare-and-swap of ``bind``, stricter: only an unbound
        context of the server's project; of two attaches at once exactly
        one wins, the other gets a 409 naming the server that won.
        """
        self._change(
            [M.id == context_id, M.project_id == project_id,
             M.state == models.UNBOUND],
            {'state': models.ATTACHING, 'server_id': server_id,
             'host': host, 'devices': '[]', 'fault': None,
             'updated_at': timeutils.utcnow()},
            context_id, 'detach it first', project_id=project_id)
        return self._get_or_raise(context_id)

    def expire_transition(self, found: Context, timeout: int) -> Context:
        """``found`` in ``error`` if attaching/detaching for too long.

        Guarded by the state and time read, so a compute that finishes
        meanwhile wins; a compute that finishes later still binds or
        unbinds it (both accept ``error`` of its server).
        """
        if found['state'] not in (models.ATTACHING, models.DETACHING) or \
                not found['updated_at']:
            return found
        changed_at = timeutils.parse_isotime(
            found['updated_at']).replace(tzinfo=None)
        if timeutils.utcnow() - changed_at < datetime.timedelta(
                seconds=timeout):
            return found
        what = 'attach to' if found['state'] == models.ATTACHING else \
            'detach from'
        fault = ('the %s server %s of device context %s did not finish '
                 'within %d seconds (its compute may be down); detach it to '
                 'clean up, or delete the server' % (
                     what, found['server_id'], found['id'], timeout))
        with self._writer() as session:
            session.execute(sa.update(M).where(
                M.id == found['id'], M.state == found['state'],
                M.updated_at == changed_at).values(
                    state=models.ERROR, fault=fault,
                    updated_at=timeutils.utcnow()))
        return self._get_or_raise(found['id'])

    def begin_detach(self, context_id: str, server_id: str) -> Context:
        """A user's detach: bound or error -> ``detaching``."""
        self._change(
            [M.id == context_id, M.server_id == server_id,
             M.state.in_((models.BOUND, models.ERROR))],
            {'state': models.DETACHING, 'updated_at': timeutils.utcnow()},
            context_id, server_id=server_id)
        return self._get_or_raise(context_id)

    def record_devices(self, context_id: str, server_id: str, host: str,
                       devices: ty.List[dict[str, str]]) -> Context:
        self._change(
            [M.id == context_id, M.server_id == server_id, M.host == host,
             M.state.in_((models.BOUND, models.ATTACHING))],
            {'devices': jsonutils.dumps(devices),
             'updated_at': timeutils.utcnow()},
            context_id, server_id=server_id, on_host=host)
        return self._get_or_raise(context_id)

    def set_fault(self, context_id: str, server_id: str,
                  fault: str) -> Context:
        self._change(
            [M.id == context_id, M.server_id == server_id,
             M.state.in_((models.BOUND, models.ERROR, models.ATTACHING,
                          models.DETACHING))],
            {'state': models.ERROR, 'fault': fault,
             'updated_at': timeutils.utcnow()},
            context_id, server_id=server_id)
        return self._get_or_raise(context_id)

    # ---- helpers ----------------------------------------------------------

    @_retry_on_deadlock
    def _change(self, where: ty.List[ty.Any], values: dict[str, ty.Any],
                context_id: str, action: str = '',
                project_id: str | None = None, server_id: str | None = None,
                on_host: str | None = None) -> None:
        """One guarded UPDATE; if it matched nothing, raise why.

        The SET clauses in the order of ``values`` (MySQL evaluates them
        in that order, each on the row as updated so far).
        """
        with self._writer() as session:
            changed = session.execute(
                sa.update(M).where(*where).ordered_values(
                    *values.items())).rowcount
        if not changed:
            self._raise_why(context_id, action, project_id, server_id,
                            on_host)

    def _get_or_raise(self, context_id: str) -> Context:
        found = self.get(context_id)
        if found is None:
            raise exception.ContextNotFound(context_id)
        return found

    def _raise_why(self, context_id: str, action: str = '',
                   project_id: str | None = None,
                   server_id: str | None = None,
                   on_host: str | None = None) -> ty.NoReturn:
        """Why a guarded change matched nothing: 404 or 409.

        ``server_id`` and ``on_host`` are the caller's: the binding it
        expected to find.
        """
        found = self.get(context_id)
        if found is None or (project_id is not None and
                             found['project_id'] != project_id):
            raise exception.ContextNotFound(context_id)
        if found['state'] == models.UNBOUND:
            raise exception.Conflict(
                'device context %s is not bound' % context_id)
        if server_id is None or found['server_id'] != server_id:
            raise exception.ContextBound(context_id, found['server_id'],
                                         action)
        if on_host is not None and found['host'] != on_host:
            raise exception.Conflict(
                'device context %s is not bound on host %s'
                % (context_id, on_host))
        raise exception.Conflict(
            'device context %s is in state %s' % (context_id,
                                                  found['state']))
