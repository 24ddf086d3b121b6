"""The stored pairings: one read of every list a trigger may change, one write of what changed.

Core statements compiled once (this is on every event's path), on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlmodel import Session

from shared.db import OnConflictStatement

from .models import PairingRecord
from .publication import DISMISSED, Kind, StoredPair, seed_office_of

_PAIRING = PairingRecord.__table__  # type: ignore[attr-defined]
# Taken by every transaction that changes stored lists: replicas on PostgreSQL change them one at a
# time, as SQLite's write lock (BEGIN IMMEDIATE) makes them anyway.
_LISTS_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('matchnet-matcher-pairings'))")


def _read_for(kind: Kind) -> Any:
    """A need: its own pairs (it enters no seed's list). A seed: its own pairs, and the whole lists of
    the needs it may enter: those named, and those whose lists hold it."""
    if kind == "need":
        return select(_PAIRING).where(_PAIRING.c.need_id == bindparam("profile_id"))
    holding = select(_PAIRING.c.need_id).where(_PAIRING.c.seed_id == bindparam("profile_id"), _PAIRING.c.in_need_list)
    return select(_PAIRING).where(or_(
        _PAIRING.c.seed_id == bindparam("profile_id"),
        and_(_PAIRING.c.in_need_list, or_(
            _PAIRING.c.need_id.in_(bindparam("counterparts", expanding=True)), _PAIRING.c.need_id.in_(holding),
        )),
    ))


_READ: dict[str, Any] = {"need": _read_for("need"), "seed": _read_for("seed")}
_READ_IDS = select(_PAIRING).where(_PAIRING.c.pairing_id.in_(bindparam("ids", expanding=True)))
_READ_DISMISSED = select(_PAIRING.c.seed_id, _PAIRING.c.need_id).where(_PAIRING.c.verdict == DISMISSED)
_DELETE = delete(_PAIRING).where(_PAIRING.c.pairing_id.in_(bindparam("ids", expanding=True)))


def _upsert(dialect: str) -> Any:
    statement = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(_PAIRING)
    columns = ("seed_office_id", "score", "pairing", "in_need_list", "in_seed_list", "verdict", "updated_at")
    return statement.on_conflict_do_update(
        index_elements=["pairing_id"], set_={c: statement.excluded[c] for c in columns}
    )


_UPSERT = OnConflictStatement(_upsert, column_keys=[column.name for column in _PAIRING.columns])


def lock_lists(session: Session) -> Connection:
    """The transaction's connection, holding the lists' lock on PostgreSQL."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_LISTS_LOCK)
    return connection


def stored_pair(row: Any) -> StoredPair:
    return StoredPair(
        row.pairing_id, row.seed_id, row.need_id, row.score, row.pairing, in_need_list=row.in_need_list,
        in_seed_list=row.in_seed_list, verdict=row.verdict,
    )


def read_lists(connection: Connection, kind: Kind, profile_id: str, counterparts: list[str]) -> dict[str, StoredPair]:
    """One statement: every stored pair of ``profile_id`` and the lists of its counterparts."""
    parameters = {"profile_id": profile_id, **({"counterparts": counterparts} if kind == "seed" else {})}
    rows = connection.execute(_READ[kind], parameters)
    return {row.pairing_id: stored_pair(row) for row in rows}


def read_pairs(connection: Connection, pairing_ids: list[str]) -> dict[str, StoredPair]:
    return {row.pairing_id: stored_pair(row) for row in connection.execute(_READ_IDS, {"ids": pairing_ids})}


def dismissed_pairs(connection: Connection) -> set[tuple[str, str]]:
    """Every dismissed (seed_id, need_id): never to be ranked again."""
    return {(row.seed_id, row.need_id) for row in connection.execute(_READ_DISMISSED)}


def write_pairs(connection: Connection, writes: Iterable[StoredPair], deletes: list[str]) -> None:
    now = datetime.now(UTC)
    rows: list[Mapping[str, object]] = [
        {
            "pairing_id": pair.id, "seed_id": pair.seed_id, "need_id": pair.need_id,
            "office_id": pair.pairing.need.office_id, "seed_office_id": seed_office_of(pair.pairing),
            "score": pair.score, "pairing": pair.content, "in_need_list": pair.in_need_list,
            "in_seed_list": pair.in_seed_list, "verdict": pair.verdict, "updated_at": now,
        }
        for pair in writes
    ]
    if rows:
        _UPSERT.execute(connection, rows)
    if deletes:
        connection.execute(_DELETE, {"ids": deletes})
