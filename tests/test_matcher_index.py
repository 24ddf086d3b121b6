"""The index's fast path against exact scoring: budgeted postings, the per-slot sums, compaction."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from unittest.mock import patch

import numpy as np

from services.matcher import index as index_module
from services.matcher.domain import Candidate, ProfileIndex, _heaviest, _sublinear
from services.matcher.index import KindIndex
from tests.factories import need_profile, seed_profile

NOW = datetime(2026, 11, 26, tzinfo=UTC)
WORDS = [
    "熱電変換", "排熱回収", "リチウムイオン電池", "画像検査", "外観検査", "糖度計", "近赤外", "振動解析", "軸受",
    "モーター", "センサー", "ドローン", "heat pump", "battery", "sensor", "coating", "polymer", "鋳造", "溶接",
    "発酵", "酵素", "冷凍", "乾燥", "殺菌", "水処理", "膜分離", "触媒", "水素", "燃料電池", "太陽電池",
]


def small_corpus(seeds: int, needs: int, rng_seed: int = 5) -> ProfileIndex:
    """Seeds and needs drawn from one small vocabulary: many overlaps, postings of every length."""
    rng = random.Random(rng_seed)
    index = ProfileIndex(today=lambda: NOW.date())

    def text(count: int) -> str:
        return "の".join(rng.choices(WORDS, k=count))

    for i in range(seeds):
        index.upsert(seed_profile(
            f"seed_{i:03d}", title=text(2), summary=text(4), description=text(rng.randint(5, 20)),
            keywords=rng.sample(WORDS, 2), fields=[rng.choice(["energy", "manufacturing", "materials"])],
            trl=rng.randint(2, 9), offers=[rng.choice(["license", "joint_research", "technical_consulting"])],
            prefecture=rng.choice(["01", "13", "27"]), created_at=NOW, updated_at=NOW,
        ))
    for i in range(needs):
        index.upsert(need_profile(
            f"need_{i:03d}", title=text(2), summary=text(3), description=text(rng.randint(4, 12)),
            keywords=rng.sample(WORDS, 1), created_at=NOW, updated_at=NOW,
        ))
    return index


def listed(candidates: list[Candidate]) -> list[tuple[str, float]]:
    return [(c.seed_id, c.score) for c in candidates]


def test_the_fast_path_returns_the_exact_top_list_when_every_posting_fits() -> None:
    index = small_corpus(150, 12)
    with patch.object(index_module, "FAST_PATH_FROM", 0):
        for i in range(12):
            fast = index.rank(f"need_{i:03d}", 10, 0.0)
            assert listed(fast) == listed(index.rank(f"need_{i:03d}", 10, 0.0, exact=True))
            # explanations are the same too: built for the same pairs from the same signatures
            exact = index.rank(f"need_{i:03d}", 10, 0.0, exact=True)
            assert [c.explanation for c in fast] == [c.explanation for c in exact]


def test_a_small_postings_budget_still_finds_the_exact_best_seed_of_a_clear_case() -> None:
    index = small_corpus(150, 0)
    index.upsert(seed_profile("seed_clear", title="超音波洗浄機の槽", summary="超音波洗浄機", description="超音波洗浄",
                              keywords=["超音波洗浄"], created_at=NOW, updated_at=NOW))
    index.upsert(need_profile("need_clear", title="超音波洗浄機を導入したい", summary="部品の超音波洗浄",
                              description="超音波洗浄と乾燥", keywords=["超音波洗浄"], created_at=NOW, updated_at=NOW))
    with patch.object(index_module, "FAST_PATH_FROM", 0), patch.object(index_module, "POSTINGS_BUDGET", 20):
        seeds = index.kinds["seed"]
        query = index.kinds["need"].signature("need_clear")
        assert query is not None
        weights = query.tf * index.vocabulary.idf()[query.term_ids]
        lists, _, _ = seeds._query_postings(query, weights, np.argsort(-weights), index.vocabulary.idf())
        assert sum(len(postings) for postings in lists) <= 20  # the budget holds
        fast = index.rank("need_clear", 1, 0.0)
    assert listed(fast) == listed(index.rank("need_clear", 1, 0.0, exact=True))
    assert fast[0].seed_id == "seed_clear"


def posting_lengths_agree(kind: KindIndex) -> bool:
    recorded = {term_id: int(length) for term_id, length in enumerate(kind.posting_lengths.tolist()) if length}
    return recorded == {term_id: len(postings) for term_id, postings in kind.postings.items()}


def test_compaction_keeps_the_postings_lengths_and_the_rankings() -> None:
    index = small_corpus(150, 6)
    seeds = index.kinds["seed"]
    for i in range(0, 150, 3):
        index.remove(f"seed_{i:03d}")
    assert posting_lengths_agree(seeds)
    with patch.object(index_module, "FAST_PATH_FROM", 0):
        before = [listed(index.rank(f"need_{i:03d}", 10, 0.0)) for i in range(6)]
        seeds.compact()
        assert seeds.dead == 0 and len(seeds.ids) == 100
        assert posting_lengths_agree(seeds)
        after = [listed(index.rank(f"need_{i:03d}", 10, 0.0)) for i in range(6)]
    assert after == before
    assert all(seed_id != "seed_000" for ranked in after for seed_id, _ in ranked)


def test_heaviest_and_sublinear_are_the_numpy_they_replace() -> None:
    rng = np.random.default_rng(43)
    for round_number in range(3000):
        size = int(rng.integers(0, 300))
        weights = rng.random(size).astype(np.float32) * 5
        if round_number % 3 == 0:  # many ties, at the cut too
            weights = np.round(weights).astype(np.float32)
        if round_number % 7 == 0 and size:
            weights[rng.integers(0, size, 3)] = 0.0  # -0.0 and 0.0 once negated
            weights[rng.integers(0, size)] = -0.0
            weights[rng.integers(0, size)] = np.inf
        if round_number % 11 == 0 and size:
            weights[rng.integers(0, size)] = np.nan
        lightness = -weights
        kept = np.argpartition(lightness, 96)[:96] if size > 96 else np.arange(size)
        reference = kept[np.lexsort((kept, lightness[kept]))]
        assert _heaviest(lightness, 96).tolist() == reference.tolist()
        counts = np.round(rng.random(size) * 20, 1).astype(np.float32)
        if round_number % 2:
            counts = np.maximum(counts, 1).astype(np.float32)
        if round_number % 13 == 0 and size:
            counts[0] = np.nan
        reference_tf = np.where(counts >= 1, 1.0 + np.log(np.maximum(counts, 1e-9)), counts).astype(np.float32)
        assert _sublinear(counts.copy()).tobytes() == reference_tf.tobytes()
