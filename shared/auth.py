"""API keys: ``Authorization: Bearer <key>``; roles admin, operator, office, partner.

A key is ``mnk_<key_id>_<secret>``: the key id is public (it names the key in lists, audit and
events), the secret is 256 random bits shown once when the key is issued. Databases hold only the
secret's SHA-256 (``api_key`` table), compared in constant time. One service owns the registry
(notifications: issue, list, revoke); every service keeps a replica of the table, fed by the
``matchnet.apikeys`` topic and loaded over HTTP at start (``shared.apikeys``), so each one verifies
a key locally, with no call per request. The admin key of ``MATCHNET_BOOTSTRAP_ADMIN_KEY`` is
accepted by every service without a table row (it bootstraps the registry).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, model_validator
from sqlmodel import Field, Session, SQLModel

from shared.db import Database, UtcDateTime
from shared.errors import Problem
from shared.ids import new_id
from shared.reference import OFFICE_IDS, office_id_for

KEY_PREFIX = "mnk_"
KEY_ID_PREFIX = "key"
BOOTSTRAP_ADMIN_KEY_ID = "bootstrap-admin"
SECRET_BYTES = 32  # 256 bits: a plain SHA-256 of it cannot be brute-forced, no slow hash needed
_TOKEN_SHAPE = re.compile(rf"^{KEY_PREFIX}(?P<key_id>{KEY_ID_PREFIX}_[0-9a-f]{{28}})_(?P<secret>[0-9a-f]{{64}})$")


class Role(StrEnum):
    admin = "admin"
    operator = "operator"
    office = "office"
    partner = "partner"


class Principal(BaseModel):
    role: Role
    office_id: str | None = None
    partner_id: str | None = None
    key_id: str

    @model_validator(mode="after")
    def _scoped(self) -> Principal:
        if self.role == Role.office and self.office_id not in OFFICE_IDS:
            raise ValueError("an office key names a known office_id")
        if self.role == Role.partner and not self.partner_id:
            raise ValueError("a partner key names its partner_id")
        return self


class ApiKey(SQLModel, table=True):
    """An issued API key, as every service stores it: the owner's registry, or a replica of it.

    Never the key or its secret: ``secret_hash`` is the SHA-256 (hex) of the secret.
    """

    __tablename__ = "api_key"

    key_id: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=20, index=True)
    office_id: str | None = Field(default=None, max_length=64)
    partner_id: str | None = Field(default=None, max_length=100)
    label: str | None = Field(default=None, max_length=200)
    secret_hash: str = Field(max_length=64)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True, index=True)

    @property
    def id(self) -> str:
        """The key id, under the name cursor pagination expects."""
        return self.key_id


@dataclass(frozen=True)
class NewKey:
    """A key as issued: the token (shown once) and what is stored of it."""

    key_id: str
    token: str
    secret_hash: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> NewKey:
    """A fresh ``mnk_<key_id>_<secret>`` and the hash to store in its place."""
    key_id = new_id(KEY_ID_PREFIX)
    secret = secrets.token_hex(SECRET_BYTES)
    return NewKey(key_id=key_id, token=f"{KEY_PREFIX}{key_id}_{secret}", secret_hash=hash_secret(secret))


def split_api_key(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, else None."""
    match = _TOKEN_SHAPE.match(token)
    return (match["key_id"], match["secret"]) if match else None


def principal_of(record: ApiKey) -> Principal:
    return Principal(role=Role(record.role), office_id=record.office_id, partner_id=record.partner_id,
                     key_id=record.key_id)


def bootstrap_principal(token: str, admin_key: str | None) -> Principal | None:
    """The admin principal if ``token`` is the bootstrap admin key (no database involved)."""
    if admin_key and hmac.compare_digest(token.encode(), admin_key.encode()):
        return Principal(role=Role.admin, key_id=BOOTSTRAP_ADMIN_KEY_ID)
    return None


def verify_api_key(token: str, *, db: Database | None, admin_key: str | None) -> Principal | None:
    """The principal of a valid, unrevoked key, looked up in the local table; None otherwise."""
    if (principal := bootstrap_principal(token, admin_key)) is not None:
        return principal
    parts = split_api_key(token)
    if parts is None or db is None:
        return None
    key_id, secret = parts
    with db.session() as session:
        record = find_api_key(session, key_id)
    if record is None or record.revoked_at is not None:
        return None
    if not hmac.compare_digest(record.secret_hash, hash_secret(secret)):
        return None
    return principal_of(record)


def find_api_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller, or 401.

    Async, so that FastAPI does not hop to its thread pool for every request: only a key that must
    be looked up in the database goes to a thread (the bootstrap admin key needs none).
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    principal = None
    if scheme.lower() == "bearer" and token:
        token = token.strip()
        admin_key = request.app.state.settings.bootstrap_admin_key
        principal = bootstrap_principal(token, admin_key)
        runtime = getattr(request.app.state, "runtime", None)
        if principal is None and runtime is not None:
            principal = await run_in_threadpool(verify_api_key, token, db=runtime.db, admin_key=None)
    if principal is None:
        raise Problem(
            401, "Unauthorized", "send a valid API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="matchnet"'},
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise Problem(403, "Forbidden", f"this action needs one of the roles: {', '.join(roles)}")


def check_may_register(principal: Principal, prefecture: str, what: str) -> None:
    """Admins register anywhere; an office registers the seeds and needs of its own prefecture."""
    if principal.role == Role.admin:
        return
    if principal.role == Role.office and principal.office_id == office_id_for(prefecture):
        return
    raise Problem(403, "Forbidden", f"only an admin or the office of the {what}'s prefecture may register it")
