"""API keys: ``Authorization: Bearer <key>``; roles admin, operator, office, partner.

The admin key is bootstrapped from ``MATCHNET_BOOTSTRAP_ADMIN_KEY``. Other keys are minted by an
admin and signed (HMAC-SHA256) with the network's shared secret, so every service verifies them
without a call to another service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel, model_validator

from shared.errors import Problem
from shared.reference import OFFICE_IDS, office_id_for

KEY_PREFIX = "mnk_"


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


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def mint_api_key(secret: str, role: Role, office_id: str | None = None, partner_id: str | None = None) -> str:
    principal = Principal(role=role, office_id=office_id, partner_id=partner_id, key_id=secrets.token_hex(8))
    payload = _b64(json.dumps(principal.model_dump(mode="json", exclude_none=True)).encode())
    return f"{KEY_PREFIX}{payload}.{_signature(secret, payload)}"


def verify_api_key(token: str, *, secret: str, admin_key: str | None) -> Principal | None:
    if admin_key and hmac.compare_digest(token.encode(), admin_key.encode()):
        return Principal(role=Role.admin, key_id="bootstrap-admin")
    if not token.startswith(KEY_PREFIX) or "." not in token:
        return None
    payload, signature = token[len(KEY_PREFIX):].rsplit(".", 1)
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        return None
    try:
        return Principal.model_validate_json(_unb64(payload))
    except ValueError:
        return None


def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    settings = request.app.state.settings
    principal = None
    if scheme.lower() == "bearer" and token:
        principal = verify_api_key(
            token.strip(), secret=settings.signing_secret, admin_key=settings.bootstrap_admin_key
        )
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
