"""Helpers for the registry tests: register, change and inspect profiles through the routes."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import col, select

from shared.audit import AuditRecord
from shared.auth import Role
from shared.outbox import OutboxEvent
from tests.api_harness import ADMIN, Api
from tests.factories import NEED_BODY, SEED_BODY


def outbox_events(api: Api) -> list[dict[str, Any]]:
    """Every event the service has written, oldest first (CloudEvents envelopes)."""
    with api.db.session() as session:
        rows = session.exec(select(OutboxEvent).order_by(col(OutboxEvent.seq))).all()
        return [json.loads(row.envelope) for row in rows]


def audit_records(api: Api) -> list[AuditRecord]:
    with api.db.session() as session:
        return list(session.exec(select(AuditRecord).order_by(col(AuditRecord.id))).all())


def register(api: Api, kind: str, headers: dict[str, str] | None = None, **changes: Any) -> dict[str, Any]:
    """Register a seed or need (the factory body with ``changes``) and return it."""
    body = {**(SEED_BODY if kind == "seeds" else NEED_BODY), **changes}
    response = api.client.post(f"/v1/{kind}", headers=headers or ADMIN, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def if_match(version: int, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {**(headers or ADMIN), "If-Match": f'"{version}"'}


def office(api: Api, prefecture: str) -> dict[str, str]:
    return api.key(Role.office, office_id=f"office-{prefecture}")


def partner(api: Api) -> dict[str, str]:
    return api.key(Role.partner, partner_id="bank-1")


def operator(api: Api) -> dict[str, str]:
    return api.key(Role.operator)
