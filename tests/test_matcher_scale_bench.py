"""bench/matcher_scale.py on a tiny corpus: it runs and reports every figure (speed is never asserted)."""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from services.matcher.settings import MatcherSettings

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("matcher_scale")
    finally:
        sys.path.remove(str(BENCH))


def test_the_scale_bench_reports_every_figure_on_a_tiny_corpus(bench: ModuleType) -> None:
    out = io.StringIO()
    thresholds = gc.get_threshold()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = bench.main(["--sizes", "60", "--queries", "4", "--exact-queries", "2", "--updates", "3",
                               "--rounds", "1", "--no-pin", "--json"])
        # The bench tunes its collector as the matcher does (MATCHNET_GC_YOUNG_THRESHOLD).
        assert gc.get_threshold()[0] == MatcherSettings().gc_young_threshold
    finally:
        gc.set_threshold(*thresholds)  # the process is the test run's: leave it as it was
    assert code == 0
    [row] = json.loads(out.getvalue())
    assert row["seeds"] == 60
    for figure in ("build_seeds_per_s", "index_mb", "rss_mb", "need_p50_ms", "need_p99_ms", "need_events_per_s",
                   "exact_p50_ms", "recall_at_20", "update_p50_ms", "load_average_1m"):
        assert row[figure] is not None
    assert 0 <= row["recall_at_20"] <= 1


def test_the_synthetic_corpus_is_the_same_for_the_same_seed_and_mixes_languages(bench: ModuleType) -> None:
    first, second = bench.Corpus(seed=3), bench.Corpus(seed=3)
    seeds = [first.seed_profile(i) for i in range(40)]
    assert [s.description for s in seeds[:5]] == [second.seed_profile(i).description for i in range(5)]
    assert {s.language for s in seeds} == {"ja", "en"}
    assert all(150 <= len(s.description) <= 2000 for s in seeds)
