"""The needs service: ``uvicorn services.needs.app:app`` or ``python -m services.needs``."""

from __future__ import annotations

from fastapi import FastAPI

from shared.service import create_service_app

from .api import router
from .settings import NeedsSettings


def create_app(settings: NeedsSettings | None = None) -> FastAPI:
    return create_service_app(
        settings=settings or NeedsSettings(),
        title="matchnet needs",
        description="Companies' technology needs: problems and missing capabilities, with confidentiality levels.",
        routers=[router],
    )


app = create_app()
