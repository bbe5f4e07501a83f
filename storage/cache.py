"""What every command reads - the sender's member row and units - kept in memory.

Kept right by the writes that change them: a flush that inserts, updates or
deletes a Member or a Unit forgets it at once, and again when its transaction
ends (commit or rollback, savepoints included), so a value read between a
change and its commit never outlives that transaction; a bulk UPDATE or
DELETE of either table forgets everything. Only rows read by a write transaction
and not changed by it are put in. A hit is merged into the session without SQL.

Only for a database this process alone writes (SQLite): on PostgreSQL other
processes write too, so there is no cache and every read goes to the database.
"""

from __future__ import annotations

from itertools import chain
from typing import Any, TypeVar

from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from .models import Member, Unit

T = TypeVar("T", Member, Unit)

# The column each model is looked up by.
KEYS: dict[type, str] = {Member: "im_id", Unit: "id"}
TABLES = {model.__table__ for model in KEYS}  # type: ignore[attr-defined]


class RowCache:
    def __init__(self) -> None:
        self._rows: dict[tuple[type, Any], Any] = {}  # (model, key) -> a detached copy

    def get(self, session: Session, model: type[T], key: Any) -> T | None:
        """The cached row as an instance of `session`, or None (not cached)."""
        row = self._rows.get((model, key))
        if row is None:
            return None
        identity = inspect(row).key
        present = session.identity_map.get(identity)
        if present is not None:  # the session's own instance, with whatever it changed
            return present
        return session.merge(row, load=False)

    def put(self, session: Session, instance: Member | Unit) -> None:
        """Remember `instance` as committed, unless this transaction changed it. Only from
        a write transaction: writers take turns, so theirs is the latest committed state,
        while a read session keeps the snapshot of its first read."""
        key = (type(instance), getattr(instance, KEYS[type(instance)]))
        if not session.info.get("writer") or key in _touched(session):
            return
        if session.info.get("cache_cleared"):
            return
        state = inspect(instance)
        if state.modified or not state.persistent:
            return
        mapper = inspect(type(instance))
        copy = mapper.class_manager.new_instance()
        for attr in mapper.column_attrs:
            set_committed_value(copy, attr.key, getattr(instance, attr.key))
        make_transient_to_detached(copy)
        self._rows[key] = copy

    def forget(self, key: tuple[type, Any]) -> None:
        self._rows.pop(key, None)

    def clear(self) -> None:
        self._rows.clear()


class StoreSession(Session):
    """The sessions of `storage.db.Database`: they keep its RowCache right (events below)."""


def _cache(session: Session) -> RowCache | None:
    return session.info.get("cache")


def _touched(session: Session) -> set[tuple[type, Any]]:
    return session.info.setdefault("cache_touched", set())


@event.listens_for(StoreSession, "after_flush")
def _forget_flushed(session: Session, _context: Any) -> None:
    cache = _cache(session)
    if cache is None:
        return
    for obj in chain(session.new, session.dirty, session.deleted):
        if type(obj) in KEYS:
            key = (type(obj), getattr(obj, KEYS[type(obj)]))
            cache.forget(key)
            _touched(session).add(key)


@event.listens_for(StoreSession, "do_orm_execute")
def _forget_bulk(state: ORMExecuteState) -> None:
    cache = _cache(state.session)
    if cache is None or not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if table in TABLES:
        cache.clear()
        state.session.info["cache_cleared"] = True


@event.listens_for(StoreSession, "after_transaction_end")
def _forget_at_end(session: Session, transaction: SessionTransaction) -> None:
    cache = _cache(session)
    if cache is None or transaction.parent is not None:
        return  # a savepoint's end: the transaction (another event's work too) goes on
    for key in session.info.pop("cache_touched", ()):
        cache.forget(key)
    if session.info.pop("cache_cleared", False):
        cache.clear()
