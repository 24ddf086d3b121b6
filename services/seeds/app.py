"""The seeds service: ``uvicorn services.seeds.app:app`` or ``python -m services.seeds``."""

from __future__ import annotations

from fastapi import FastAPI

from shared.audit import audit_router
from shared.registry import expiry_sweep
from shared.service import create_service_app

from .api import router
from .domain import SEEDS
from .settings import SeedsSettings


def create_app(settings: SeedsSettings | None = None) -> FastAPI:
    settings = settings or SeedsSettings()
    return create_service_app(
        settings=settings,
        title="matchnet seeds",
        description="Technology seeds (patents, know-how, research results) offered for collaboration: "
        "register, edit (ETag / If-Match), change status, withdraw, list and search; the audit trail.",
        routers=[router, audit_router()],
        background=[expiry_sweep(SEEDS, settings.expiry_sweep_interval_s)],
    )


app = create_app()
