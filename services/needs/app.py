"""The needs service: ``uvicorn services.needs.app:app`` or ``python -m services.needs``."""

from __future__ import annotations

from fastapi import FastAPI

from shared.audit import audit_router
from shared.registry import expiry_sweep
from shared.service import create_service_app

from .api import router
from .domain import NEEDS
from .settings import NeedsSettings


def create_app(settings: NeedsSettings | None = None) -> FastAPI:
    settings = settings or NeedsSettings()
    return create_service_app(
        settings=settings,
        title="matchnet needs",
        description="Companies' technology needs (problems, missing capabilities) with confidentiality levels: "
        "register, edit (ETag / If-Match), change status, withdraw, list and search; the audit trail.",
        routers=[router, audit_router()],
        background=[expiry_sweep(NEEDS, settings.expiry_sweep_interval_s)],
    )


app = create_app()
