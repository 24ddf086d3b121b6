"""The index's fast path against exact scoring: budgeted postings, the per-slot sums, compaction."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from unittest.mock import patch

import numpy as np

from services.matcher import index as index_module
from services.matcher import kernels
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


def numpy_candidates(kind: KindIndex, query: index_module.Signature, idf: np.ndarray) -> np.ndarray:
    """The fast path's selections as np.argpartition made them before the prefilter kernel."""
    weights = query.tf * idf[query.term_ids]
    lists, lengths, list_weights = kind._query_postings(
        query, weights, np.argsort(-weights)[: index_module.QUERY_TERMS], idf
    )
    hit, text = kernels.text_estimates(
        np.frombuffer(b"".join(lists), dtype=np.int32), lengths, list_weights, kind.slot_sums, kind.slot_touched,
        kind.norm, max(float(np.sqrt(weights @ weights)), 1e-6),
    )
    if len(hit) > index_module.PREFILTER_DEPTH:
        best = np.argpartition(-text, index_module.PREFILTER_DEPTH)[: index_module.PREFILTER_DEPTH]
        hit, text = hit[best], text[best]
    estimates = kind._estimates(hit, text, query, True)
    if len(hit) > index_module.RESCORE_DEPTH:
        best = np.argpartition(-estimates, index_module.RESCORE_DEPTH)[: index_module.RESCORE_DEPTH]
        hit, estimates = hit[best], estimates[best]
    return np.sort(hit[estimates > 0])


def test_the_candidates_are_the_set_the_numpy_selections_gave_ties_included() -> None:
    index = small_corpus(200, 40, rng_seed=9)
    rng = random.Random(11)
    for i in range(200):  # seeds twice over: equal estimates at either boundary
        text = "の".join(rng.choices(WORDS, k=rng.randint(3, 12)))
        for copy in ("a", "b"):
            index.upsert(seed_profile(
                f"twin_{i:03d}{copy}", title=text[:8], summary=text, description=text, keywords=rng.sample(WORDS, 1),
                fields=["energy"], trl=5, offers=["license"], prefecture="13", created_at=NOW, updated_at=NOW,
            ))
    seeds, idf = index.kinds["seed"], index.vocabulary.idf()
    for i in range(200):  # (their norms: each with the idf of its time)
        seeds.norm[seeds.slot_of[f"twin_{i:03d}b"]] = seeds.norm[seeds.slot_of[f"twin_{i:03d}a"]]
    for prefilter, depth in ((120, 30), (60, 50), (200, 10), (2, 1), (100, 21), (150, 41), (81, 25), (33, 7)):
        with (
            patch.object(index_module, "FAST_PATH_FROM", 0), patch.object(index_module, "PREFILTER_DEPTH", prefilter),
            patch.object(index_module, "RESCORE_DEPTH", depth),
        ):
            for i in range(40):
                query = index.kinds["need"].signature(f"need_{i:03d}")
                assert query is not None
                got = np.sort(seeds.candidates(query, True, idf))
                assert np.array_equal(got, numpy_candidates(seeds, query, idf)), (prefilter, depth, i)
