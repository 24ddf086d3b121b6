"""The seeds service: ``uvicorn services.seeds.app:app`` or ``python -m services.seeds``."""

from __future__ import annotations

from fastapi import FastAPI

from shared.service import create_service_app

from .api import router
from .settings import SeedsSettings


def create_app(settings: SeedsSettings | None = None) -> FastAPI:
    return create_service_app(
        settings=settings or SeedsSettings(),
        title="matchnet seeds",
        description="Technology seeds (patents, know-how, research results) offered for collaboration.",
        routers=[router],
    )


app = create_app()
