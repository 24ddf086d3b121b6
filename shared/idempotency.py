"""``Idempotency-Key`` on POST: a replay with the same key and body returns the original result.

The record is written in the same transaction as the resource it created, so a key never points
at a write that did not happen.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlmodel import Field, Session, SQLModel

from shared.errors import Problem

MAX_KEY_LENGTH = 200


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_record"

    scope: str = Field(primary_key=True, max_length=300)  # caller key id + route + client key
    request_hash: str = Field(max_length=64)
    status_code: int
    response_body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def request_fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def idempotency_scope(key_id: str, route: str, key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Problem(
            400, "Invalid idempotency key", f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} characters",
            kind="validation", errors=[{"field": "Idempotency-Key", "message": "invalid length"}],
        )
    return f"{key_id}:{route}:{key}"


def find_replay(session: Session, scope: str, fingerprint: str) -> IdempotencyRecord | None:
    """The stored result for this key, or None; 422 if the key was used with a different body."""
    record = session.get(IdempotencyRecord, scope)
    if record is not None and record.request_hash != fingerprint:
        raise Problem(
            422, "Idempotency key reused", "this Idempotency-Key was used with a different request body",
            kind="idempotency-key-reused", errors=[{"field": "Idempotency-Key", "message": "reused with another body"}],
        )
    return record


def remember(session: Session, scope: str, fingerprint: str, status_code: int, body: Any) -> None:
    session.add(
        IdempotencyRecord(
            scope=scope, request_hash=fingerprint, status_code=status_code,
            response_body=json.dumps(body, default=str, ensure_ascii=False),
        )
    )
