"""Every service process raises the garbage collector's young-generation threshold at start."""

from __future__ import annotations

import gc

import pytest
import uvicorn
from pydantic import ValidationError

from services.matcher.settings import MatcherSettings
from shared import service


def test_serve_sets_the_young_threshold_from_the_settings_and_keeps_the_older_ratios(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MATCHNET_GC_YOUNG_THRESHOLD", "12345")
    settings = MatcherSettings()
    monkeypatch.setattr(uvicorn.Config, "load_app", lambda self: None)
    monkeypatch.setattr(service._DrainingServer, "run", lambda self, sockets=None: None)
    before = gc.get_threshold()
    try:
        service.serve("services.matcher.app:app", settings)
        assert gc.get_threshold() == (12345, before[1], before[2])
    finally:
        gc.set_threshold(*before)


def test_the_default_is_50000_and_a_tiny_threshold_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MATCHNET_GC_YOUNG_THRESHOLD", raising=False)
    assert MatcherSettings().gc_young_threshold == 50_000
    monkeypatch.setenv("MATCHNET_GC_YOUNG_THRESHOLD", "10")
    with pytest.raises(ValidationError, match="MATCHNET_GC_YOUNG_THRESHOLD"):
        MatcherSettings()
