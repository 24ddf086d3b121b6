"""The compiled kernels against plain Python and numpy: the same values, bit for bit."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pytest

from services.matcher import analysis, kernels, scoring
from services.matcher.index import KindIndex, Signature, Vocabulary


def numpy_sums_by_slot(
    lists: list[npt.NDArray[np.int32]], weights: list[float]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The fast path's sums as numpy made them before the kernel: one sort of (slot, list) keys,
    then ``np.bincount`` per run of one slot."""
    shift = max(1, (len(lists) - 1).bit_length())
    keys = np.concatenate(lists).astype(np.int64) << shift
    keys |= np.repeat(np.arange(len(lists), dtype=np.int64), [len(slots) for slots in lists])
    if not len(keys):
        return keys, np.zeros(0, dtype=np.float64)
    keys.sort()
    slots = keys >> shift
    entry_weights = np.take(np.asarray(weights, dtype=np.float64), keys & ((1 << shift) - 1))
    first = np.empty(len(keys), dtype=bool)
    first[0] = True
    np.not_equal(slots[1:], slots[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    run_of_entry = np.repeat(np.arange(len(starts)), np.diff(starts, append=len(keys)))
    return slots[starts], np.bincount(run_of_entry, weights=entry_weights, minlength=len(starts))


def summed(
    lists: list[npt.NDArray[np.int32]], weights: list[float], sums: npt.NDArray[np.float64],
    touched: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    entries = np.concatenate([np.zeros(0, dtype=np.int32), *lists])
    lengths = np.array([len(postings) for postings in lists], dtype=np.int64)
    return kernels.sum_postings(entries, lengths, np.array(weights, dtype=np.float64), sums, touched)


def test_postings_sums_are_a_running_sum_over_the_lists_in_list_order() -> None:
    rng = np.random.default_rng(3)
    capacity = 5000
    sums = np.zeros(capacity, dtype=np.float64)
    touched = np.zeros(capacity // 64 + 1, dtype=np.uint64)
    for round_number in range(60):
        size = 64 if round_number % 2 else capacity  # dense and sparse
        lists = [
            np.sort(rng.choice(size, rng.integers(0, min(size, 400)), replace=False)).astype(np.int32)
            for _ in range(rng.integers(1, 60))
        ]
        # weights of very different sizes: adding them in another order would change the last bits
        weights = (rng.random(len(lists)) * 10.0 ** rng.integers(-6, 3, len(lists))).tolist()
        slots, slot_sums = summed(lists, weights, sums, touched)
        expected: dict[int, float] = {}
        for postings, weight in zip(lists, weights, strict=True):
            for slot in postings.tolist():
                expected[slot] = expected.get(slot, 0.0) + weight
        assert slots.tolist() == sorted(expected)  # each slot once, ascending
        assert slot_sums.tolist() == [expected[slot] for slot in sorted(expected)]  # the same additions
        reference_slots, reference_sums = numpy_sums_by_slot(lists, weights)
        assert np.array_equal(slots, reference_slots)
        assert slot_sums.tobytes() == reference_sums.tobytes()
        assert not sums.any() and not touched.any()  # the scratch is left zero for the next query


def test_postings_sums_of_no_entries_are_empty() -> None:
    sums = np.zeros(64, dtype=np.float64)
    touched = np.zeros(2, dtype=np.uint64)
    slots, slot_sums = summed([np.zeros(0, dtype=np.int32)], [1.0], sums, touched)
    assert len(slots) == len(slot_sums) == 0


def test_postings_sums_reach_the_last_slot_of_every_word() -> None:
    sums = np.zeros(200, dtype=np.float64)
    touched = np.zeros(200 // 64 + 1, dtype=np.uint64)
    edges = np.array([0, 63, 64, 127, 128, 191, 199], dtype=np.int32)
    slots, slot_sums = summed([edges, edges[::2].copy()], [0.5, 0.25], sums, touched)
    assert slots.tolist() == edges.tolist()
    assert slot_sums.tolist() == [0.75, 0.5, 0.75, 0.5, 0.75, 0.5, 0.75]


def numpy_text_similarity(
    term_ids: npt.NDArray[np.int32], tf: npt.NDArray[np.float16], slots: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], query_weights: npt.NDArray[np.float32], query_norm: float,
) -> npt.NDArray[np.float32]:
    """The text component as numpy computed it before the kernel (KindIndex.score)."""
    rows = np.take(term_ids, slots, axis=0)
    doc_weights = np.take(tf, slots, axis=0).astype(np.float32) * np.take(idf, rows)
    dot = (np.take(query_weights, rows) * doc_weights).sum(axis=1)
    norms = np.sqrt((doc_weights * doc_weights).sum(axis=1)) * query_norm
    return np.where(norms > 0, dot / np.maximum(norms, 1e-9), 0.0).astype(np.float32)


def test_text_similarity_is_numpys_float32_cosine_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    vocabulary = 3000
    for width in (96, 5, 8, 13, 128):  # the signature width, and the other paths of numpy's pairwise sum
        term_ids = rng.integers(0, vocabulary, (400, width)).astype(np.int32)
        term_ids[rng.random(term_ids.shape) < 0.2] = 0  # padding
        tf = (1 + rng.random((400, width)) * 4).astype(np.float16)
        idf = (rng.random(vocabulary) * 9).astype(np.float32)
        idf[0] = 0.0
        term_ids[7] = 0  # a row of padding only: norm 0
        query_weights = np.zeros(vocabulary, dtype=np.float32)
        query_terms = rng.choice(vocabulary, 60, replace=False)
        query_weights[query_terms] = (rng.random(60) * 20).astype(np.float32)
        query_weights[0] = 0.0
        query_norm = float(np.sqrt(query_weights @ query_weights))
        slots = rng.permutation(400)[:300].astype(np.int64)
        text = kernels.text_similarity(term_ids, tf, slots, idf, query_weights, query_norm)
        expected = numpy_text_similarity(term_ids, tf, slots, idf, query_weights, query_norm)
        assert text.dtype == np.float32
        assert text.tobytes() == expected.tobytes()


def test_text_estimates_divide_the_sums_as_numpy_did() -> None:
    rng = np.random.default_rng(11)
    capacity = 3000
    sums = np.zeros(capacity, dtype=np.float64)
    touched = np.zeros(capacity // 64 + 1, dtype=np.uint64)
    norm = (0.001 + rng.random(capacity) * 30).astype(np.float32)
    for _ in range(20):
        lists = [np.sort(rng.choice(capacity, rng.integers(1, 500), replace=False)).astype(np.int32)
                 for _ in range(rng.integers(1, 40))]
        weights = (rng.random(len(lists)) * 50).tolist()
        query_norm = float(rng.random() * 40)
        entries = np.concatenate(lists)
        lengths = np.array([len(postings) for postings in lists], dtype=np.int64)
        slots, text = kernels.text_estimates(entries, lengths, np.array(weights), sums, touched, norm, query_norm)
        reference_slots, reference_sums = numpy_sums_by_slot(lists, weights)
        assert np.array_equal(slots, reference_slots)
        assert text.tobytes() == (reference_sums / (norm[reference_slots] * query_norm)).astype(np.float32).tobytes()


def numpy_estimates(
    index: KindIndex, hit: npt.NDArray[np.int64], text: npt.NDArray[np.float32], query: Signature, query_is_need: bool
) -> npt.NDArray[np.float32]:
    """The fast path's estimate as numpy computed it before the kernel (KindIndex.candidates)."""
    classification = (
        scoring.classification_overlap(
            index.groups[hit], index.subclasses[hit],
            np.array(query.groups, dtype=np.int32), np.array(query.subclasses, dtype=np.int32),
        ) if query.groups or query.subclasses else np.zeros(len(hit), dtype=np.float32)
    )
    fields = scoring.field_overlap(index.fields[hit], query.fields)
    estimates = scoring.relevance(np.minimum(text, 1.0), classification, fields)
    if query_is_need:
        estimates *= scoring.form_credit(index.forms[hit], query.forms)
        estimates *= scoring.stage_credit(index.stage[hit], query.stage)
    else:
        estimates *= scoring.form_credit(query.forms, index.forms[hit])
        estimates *= scoring.stage_credit(query.stage, index.stage[hit])
    estimates *= index.alive[hit]
    return estimates


def test_estimates_are_the_numpy_relevance_form_and_stage_bit_for_bit() -> None:
    rng = np.random.default_rng(13)
    size = 2000
    index = KindIndex(Vocabulary(), capacity=size)
    index.groups[:] = rng.integers(0, 12, index.groups.shape) * (rng.random(index.groups.shape) < 0.4)
    index.subclasses[:] = rng.integers(0, 8, index.subclasses.shape) * (rng.random(index.subclasses.shape) < 0.4)
    index.fields[:] = rng.integers(0, 1 << 12, size)
    index.forms[:] = rng.integers(0, len(scoring.FORM_CREDIT), size)
    index.stage[:] = rng.integers(0, 10, size)
    index.alive[:] = rng.random(size) < 0.9
    for round_number in range(40):
        query_is_need = round_number % 2 == 0
        stage = int(rng.integers(0, 121)) if query_is_need else int(rng.integers(0, 10))
        if not query_is_need:
            index.stage[:] = rng.integers(0, 121, size)
        else:
            index.stage[:] = rng.integers(0, 10, size)
        query = Signature(
            term_ids=np.zeros(0, dtype=np.int32), tf=np.zeros(0, dtype=np.float32),
            fields=int(rng.integers(0, 1 << 12)) if round_number % 5 else 0,
            groups=rng.choice(np.arange(1, 12), rng.integers(0, 3), replace=False).tolist(),
            subclasses=rng.choice(np.arange(1, 8), rng.integers(0, 3), replace=False).tolist(),
            forms=int(rng.integers(0, len(scoring.FORM_CREDIT))), stage=stage, prefecture=0, block=0, size=0,
            updated_day=0, expires_day=0,
        )
        hit = rng.permutation(size)[:700].astype(np.int64)
        text = (rng.random(700) * 1.2).astype(np.float32)  # above 1 too: the estimate caps it
        got = kernels.estimates(
            hit, text, index.groups, index.subclasses, np.array(query.groups, dtype=np.int32),
            np.array(query.subclasses, dtype=np.int32), index.fields, query.fields, index.forms, index.stage,
            index.alive, query.forms, query.stage, query_is_need,
        )
        assert got.tobytes() == numpy_estimates(index, hit, text, query, query_is_need).tobytes()


def numpy_shared_terms(
    term_ids: npt.NDArray[np.int32], tf: npt.NDArray[np.float16], slots: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], query_weights: npt.NDArray[np.float32], pool: int,
) -> list[list[tuple[int, float]]]:
    """The explanation's shared terms as numpy and Python chose them before the kernel."""
    rows = term_ids[slots]
    row_of, column = np.nonzero(query_weights[rows])
    ids = rows[row_of, column]
    weights = (
        query_weights[ids].astype(np.float64) * tf[slots[row_of], column].astype(np.float64)
        * idf[ids].astype(np.float64)
    )
    order = np.lexsort((-ids, -weights, row_of))
    shared: list[list[tuple[int, float]]] = [[] for _ in range(len(slots))]
    for row, term_id, weight in zip(row_of[order].tolist(), ids[order].tolist(), weights[order].tolist(), strict=True):
        if len(shared[row]) < pool:
            shared[row].append((term_id, weight))
    return shared


def test_shared_terms_are_the_heaviest_first_as_numpy_chose_them() -> None:
    rng = np.random.default_rng(17)
    vocabulary = 400
    term_ids = np.array([rng.permutation(np.arange(1, vocabulary))[:96] for _ in range(300)], dtype=np.int32)
    term_ids[:, 80:] = 0  # padding
    tf = rng.choice(np.array([1.0, 1.5, 2.0, 2.5], dtype=np.float16), term_ids.shape)  # many equal weights
    idf = rng.choice(np.array([0.5, 1.0, 2.0], dtype=np.float32), vocabulary)
    idf[0] = 0.0
    for pool in (16, 3, 96):
        query_weights = np.zeros(vocabulary, dtype=np.float32)
        query_weights[rng.choice(np.arange(1, vocabulary), 150, replace=False)] = rng.choice(
            np.array([1.0, 2.0, 3.0], dtype=np.float32), 150)
        slots = rng.permutation(300)[:40].astype(np.int64)
        counts, ids, weights = kernels.shared_terms(term_ids, tf, slots, idf, query_weights, pool)
        got = [list(zip(ids[row, :count].tolist(), weights[row, :count].tolist(), strict=True))
               for row, count in enumerate(counts.tolist())]
        assert got == numpy_shared_terms(term_ids, tf, slots, idf, query_weights, pool)


def test_kernels_refuse_what_numpy_would_refuse_instead_of_reading_past_an_array() -> None:
    sums = np.zeros(64, dtype=np.float64)
    touched = np.zeros(2, dtype=np.uint64)
    with pytest.raises(IndexError):
        summed([np.array([3, 64], dtype=np.int32)], [1.0], sums, touched)
    with pytest.raises(ValueError):
        kernels.sum_postings(np.array([3], dtype=np.int32), np.array([2], dtype=np.int64), np.array([1.0]), sums,
                             touched)
    term_ids = np.array([[1, 2], [3, 9]], dtype=np.int32)
    tf = np.ones((2, 2), dtype=np.float16)
    idf = np.ones(5, dtype=np.float32)
    with pytest.raises(IndexError):  # term 9 has no idf
        kernels.text_similarity(term_ids, tf, np.array([1], dtype=np.int64), idf, np.ones(10, dtype=np.float32), 1.0)
    with pytest.raises(IndexError):  # no slot 2
        kernels.shared_terms(term_ids, tf, np.array([2], dtype=np.int64), idf, np.ones(10, dtype=np.float32), 16)


def test_kernels_are_compiled_without_a_disk_cache_where_none_can_be_written(monkeypatch: pytest.MonkeyPatch) -> None:
    real_njit = numba.njit
    asked: list[dict[str, bool]] = []

    def njit(**options: bool) -> Any:
        asked.append(options)
        if options.get("cache"):  # what numba raises for a read-only package folder
            raise RuntimeError("cannot cache function 'add_one': no locator available for file 'kernels.py'")
        return real_njit(**options)

    monkeypatch.setattr(kernels.numba, "njit", njit)

    def add_one(value: int) -> int:
        return value + 1

    assert kernels._compiled(add_one)(1) == 2
    assert asked == [{"cache": True, "nogil": True}, {"nogil": True}]


def random_index(rng: np.random.Generator, size: int, vocabulary: int, today: int) -> KindIndex:
    """Every column of a KindIndex at random, edges included (padding, no codes, dead and expired slots,
    profiles updated after today, very old ones)."""
    index = KindIndex(Vocabulary(), capacity=size)
    index.term_ids[:] = rng.integers(0, vocabulary, index.term_ids.shape)
    index.term_ids[rng.random(index.term_ids.shape) < 0.3] = 0
    index.tf[:] = (1 + rng.random(index.tf.shape) * 4).astype(np.float16)
    index.groups[:] = rng.integers(0, 12, index.groups.shape) * (rng.random(index.groups.shape) < 0.4)
    index.subclasses[:] = rng.integers(0, 8, index.subclasses.shape) * (rng.random(index.subclasses.shape) < 0.4)
    index.fields[:] = rng.integers(0, 1 << 12, size)
    index.forms[:] = rng.integers(0, len(scoring.FORM_CREDIT), size)
    index.prefecture[:] = rng.integers(0, 48, size)
    index.block[:] = rng.integers(0, 9, size)
    index.size[:] = rng.integers(0, len(scoring.SIZES) + 1, size)
    index.updated_day[:] = today - rng.integers(-30, 5000, size)
    index.expires_day[:] = today + rng.integers(-20, 400, size)
    index.alive[:] = rng.random(size) < 0.9
    return index


def random_query(rng: np.random.Generator, vocabulary: int, today: int, query_is_need: bool) -> Signature:
    terms = rng.choice(np.arange(1, vocabulary), 60, replace=False).astype(np.int32)
    return Signature(
        term_ids=terms, tf=(1 + rng.random(60) * 3).astype(np.float32),
        fields=int(rng.integers(0, 1 << 12)) if rng.random() < 0.8 else 0,
        groups=rng.choice(np.arange(1, 12), rng.integers(0, 3), replace=False).tolist(),
        subclasses=rng.choice(np.arange(1, 8), rng.integers(0, 3), replace=False).tolist(),
        forms=int(rng.integers(0, len(scoring.FORM_CREDIT))),
        stage=int(rng.integers(0, 121)) if query_is_need else int(rng.integers(0, 10)),
        prefecture=int(rng.integers(0, 48)), block=int(rng.integers(0, 9)),
        size=int(rng.integers(1, len(scoring.SIZES) + 1)) if query_is_need else 0,
        updated_day=today - int(rng.integers(-30, 3000)), expires_day=today + 100,
    )


def assert_same_ranked(got: Any, expected: Any) -> None:
    assert got.slots is expected.slots
    assert got.scores.dtype == expected.scores.dtype == np.float32
    assert got.scores.tobytes() == expected.scores.tobytes()
    assert list(got.components) == list(expected.components)
    for name, values in expected.components.items():
        assert got.components[name].dtype == values.dtype == np.float32, name
        assert got.components[name].shape == values.shape, name
        assert got.components[name].tobytes() == values.tobytes(), name


def test_rescore_is_the_numpy_score_and_components_bit_for_bit() -> None:
    rng = np.random.default_rng(19)
    size, vocabulary, today = 3000, 1000, 739_000
    index = random_index(rng, size, vocabulary, today)
    idf = (rng.random(vocabulary) * 9).astype(np.float32)
    idf[0] = 0.0
    for round_number in range(60):
        query_is_need = round_number % 2 == 0
        # seeds (TRL) for a need, needs (timeline months) for a seed
        index.stage[:] = rng.integers(0, 10, size) if query_is_need else rng.integers(0, 121, size)
        query = random_query(rng, vocabulary, today, query_is_need)
        slots = rng.permutation(size)[: int(rng.integers(0, 700))].astype(np.int64)
        expected = index.score_numpy(query, query_is_need, slots, idf, today)
        got = index.score(query, query_is_need, slots, idf, today)
        assert_same_ranked(got, expected)
        assert not index.vocabulary.scratch.any()  # left zero for the next query


def test_rescore_reads_the_weights_and_tables_of_scoring_at_each_call() -> None:
    """bench/matcher_quality.py's ablations patch scoring's weights and tables: the kernel follows them."""
    rng = np.random.default_rng(23)
    size, vocabulary, today = 1000, 1000, 739_000
    index = random_index(rng, size, vocabulary, today)
    index.stage[:] = rng.integers(0, 10, size)
    idf = (rng.random(vocabulary) * 9).astype(np.float32)
    patches = {
        "CLASSIFICATION_WEIGHT": 0.0, "FIELD_WEIGHT": 0.0, "FORM_CREDIT": np.ones_like(scoring.FORM_CREDIT),
        "STAGE_CREDIT": np.ones_like(scoring.STAGE_CREDIT),
        "_REGION_WEIGHT_BY_SIZE": np.zeros_like(scoring._REGION_WEIGHT_BY_SIZE), "FRESHNESS_HALF_LIFE_DAYS": 30.0,
    }
    slots = rng.permutation(size)[:500].astype(np.int64)
    query = random_query(rng, vocabulary, today, True)
    unpatched = index.score(query, True, slots, idf, today)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in patches.items():
            patch.setattr(scoring, name, value)
        expected = index.score_numpy(query, True, slots, idf, today)
        got = index.score(query, True, slots, idf, today)
    assert_same_ranked(got, expected)
    assert got.scores.tobytes() != unpatched.scores.tobytes()


def test_rescore_leaves_profiles_older_than_its_freshness_table_to_numpy() -> None:
    rng = np.random.default_rng(29)
    size, vocabulary, today = 500, 1000, 739_000
    index = random_index(rng, size, vocabulary, today)
    index.stage[:] = rng.integers(0, 10, size)
    idf = (rng.random(vocabulary) * 9).astype(np.float32)
    slots = np.arange(size, dtype=np.int64)
    query = random_query(rng, vocabulary, today, True)
    for updated_day in (today - kernels.FRESHNESS_DAYS + 1, today - kernels.FRESHNESS_DAYS, np.iinfo(np.int32).min):
        index.updated_day[7] = updated_day
        if updated_day < today - kernels.FRESHNESS_DAYS + 1:
            assert kernels.rescore(
                index.term_ids, index.tf, slots, idf, np.zeros(vocabulary, dtype=np.float32), 1.0, index.groups,
                index.subclasses, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32), index.fields, 0,
                index.forms, index.stage, index.prefecture, index.block, index.size, index.updated_day,
                index.expires_day, index.alive, 0, 0, 0, 0, 1, today, True, today,
            ) is None
        expected = index.score_numpy(query, True, slots, idf, today)
        assert_same_ranked(index.score(query, True, slots, idf, today), expected)


def test_freshness_table_is_numpys_freshness_of_any_array_of_ages() -> None:
    rng = np.random.default_rng(31)
    table = kernels.freshness_table()
    assert table.dtype == np.float32 and len(table) == kernels.FRESHNESS_DAYS
    ages = rng.integers(-100, kernels.FRESHNESS_DAYS, 20_000).astype(np.int32)
    for start, length in ((0, 20_000), (1, 300), (3, 7), (5, 1), (11, 0)):  # SIMD bodies, tails, one age
        part = ages[start: start + length]
        assert table[np.maximum(part, 0)].tobytes() == scoring.freshness(part).tobytes()
    assert all(table[age] == scoring.freshness(age) for age in range(0, kernels.FRESHNESS_DAYS, 97))


def test_rescore_refuses_what_numpy_would_refuse() -> None:
    rng = np.random.default_rng(37)
    size, vocabulary, today = 50, 1000, 739_000
    index = random_index(rng, size, vocabulary, today)
    index.stage[:] = rng.integers(0, 10, size)
    idf = (rng.random(vocabulary) * 9).astype(np.float32)
    query = random_query(rng, vocabulary, today, True)
    with pytest.raises(IndexError):  # no slot 50
        index.score(query, True, np.array([3, 50], dtype=np.int64), idf, today)
    assert not index.vocabulary.scratch.any()
    index.stage[3] = 10  # a TRL beyond the stage table
    slots = np.array([3], dtype=np.int64)
    with pytest.raises(IndexError):
        index.score_numpy(query, True, slots, idf, today)
    with pytest.raises(IndexError):
        index.score(query, True, slots, idf, today)
    index.stage[3] = -1  # numpy reads a negative index from the end: so does the kernel
    assert_same_ranked(index.score(query, True, slots, idf, today), index.score_numpy(query, True, slots, idf, today))


def test_query_freshness_is_numpys_freshness_of_one_age() -> None:
    for age in (-5, 0, 1, 364, 365, 4000, kernels.FRESHNESS_DAYS + 10):
        assert kernels.query_freshness(age) == scoring.freshness(age)
        assert kernels.query_freshness(age).dtype == np.float32
        assert kernels.query_freshness(age).tobytes() == scoring.freshness(age).tobytes()  # remembered: the same


_PHRASE_WORDS = (
    "熱電", "変換", "排熱", "回収", "リチウムイオン", "電池", "センサー", "ガス", "Heat", "pump", "heat", "Pump",
    "LED", "ＬＥＤ", "照明", "sensor", "sensors", "モーター", "ヴァイオリン", "x", "熱", "a", "of", "劣化", "診断",
)
_PHRASE_GLUE = (" ", "-", " - ", "、", "\n", "--", "", "", "の", " / ", "  ", "-\n", "を")


def random_phrase_text(rng: np.random.Generator) -> str:
    """Words of both scripts glued by what phrases span (one space or hyphen) and what they do not."""
    parts = []
    for _ in range(rng.integers(1, 40)):
        parts.append(str(rng.choice(_PHRASE_WORDS)))
        parts.append(str(rng.choice(_PHRASE_GLUE)))
    return "".join(parts[: -1 if rng.random() < 0.5 else None])


def test_phrases_are_matched_phrases_of_each_row() -> None:
    rng = np.random.default_rng(29)
    weights_of = np.array([0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 1e-3, 7.25])  # many equal weights
    for _ in range(1500):
        text = random_phrase_text(rng)
        own = list(analysis.term_spans(text)[1])
        terms = ["", *own, "absent", "~nowhere"]
        pool = int(rng.integers(1, 20))
        rows = int(rng.integers(1, 12))
        term_ids = np.zeros((rows, pool), dtype=np.int32)
        counts = rng.integers(0, min(pool, len(terms) - 1) + 1, rows).astype(np.int64)
        weights = np.zeros((rows, pool), dtype=np.float64)
        for row in range(rows):
            term_ids[row, : counts[row]] = rng.choice(np.arange(1, len(terms)), counts[row], replace=False)
            weights[row, : counts[row]] = rng.choice(weights_of, counts[row])
        limit = int(rng.choice([6, 1, 3, 40]))
        got = analysis.matched_phrases_of_rows(text, term_ids, counts, weights, terms, limit)
        for row in range(rows):
            shared = {terms[term_id]: weight for term_id, weight in zip(
                term_ids[row, : counts[row]].tolist(), weights[row, : counts[row]].tolist(), strict=True)}
            assert got[row] == analysis.matched_phrases(text, shared, rank=shared)[:limit], (text, shared)


def test_phrases_refuse_spans_and_terms_beyond_their_arrays() -> None:
    text = np.array([97, 32, 98], dtype=np.uint32)
    starts, ends = np.array([0, 2], dtype=np.int64), np.array([1, 3], dtype=np.int64)
    rows, counts, weights = np.array([[0, 1]], dtype=np.int64), np.array([2], dtype=np.int64), np.ones((1, 2))
    offsets = np.array([0, 1, 2], dtype=np.int64)
    found, bounds = kernels.phrases(text, starts, ends, offsets, rows, counts, weights, 6)
    assert found.tolist() == [1] and bounds[0, 0].tolist() == [0, 3]  # "a b": one phrase across the space
    with pytest.raises(IndexError):  # a span beyond the text
        kernels.phrases(text, starts, ends + 1, offsets, rows, counts, weights, 6)
    with pytest.raises(IndexError):  # term 2 has no offsets
        kernels.phrases(text, starts, ends, offsets, rows + 1, counts, weights, 6)
    with pytest.raises(IndexError):  # more terms than the row holds
        kernels.phrases(text, starts, ends, offsets, rows, counts + 1, weights, 6)
    with pytest.raises(ValueError):
        kernels.phrases(text, starts, ends, offsets, rows, counts, weights[:, :1], 6)


def test_best_orders_as_lexsort_and_the_loop_of_top_did() -> None:
    rng = np.random.default_rng(31)
    for round_number in range(2000):
        size = int(rng.integers(0, 400))
        scores = rng.random(size).astype(np.float32)
        if round_number % 2:  # many equal scores
            scores = (np.round(scores * 7, 1) / 7).astype(np.float32)
        scores[rng.random(size) < 0.2] = 0.0
        slots = rng.permutation(100_000)[:size].astype(np.int64)
        min_score, count = float(rng.choice([0.0, 0.3, 0.31])), int(rng.integers(0, 30))
        order = np.lexsort((slots, -scores)).tolist()
        reference = [p for p in order if not (float(scores[p]) <= 0 or float(scores[p]) < min_score)]
        result = kernels.best(scores, slots, min_score, count)
        assert result is not None
        assert result[0].tolist() == reference[:count] and result[1] == (len(reference) > count)
    assert kernels.best(np.array([0.5, np.nan], dtype=np.float32), np.arange(2, dtype=np.int64), 0.0, 1) is None


def test_published_is_numpys_round_to_4_decimals() -> None:
    rng = np.random.default_rng(37)
    table = rng.random((9, 5000)).astype(np.float32)
    table[0, :100] = np.arange(100, dtype=np.float32) / 20000  # halves at the fifth decimal
    table[1, :100] = 0.0
    table[2, :10] = np.float32(1.0)
    table[3, :100] = (rng.random(100) * 1e-38).astype(np.float32)
    positions = rng.permutation(5000)[:300].astype(np.int64)
    positions[:100] = np.arange(100)
    reference = np.round(table[:, positions].astype(np.float64), 4)
    assert kernels.published(table, positions).tobytes() == reference.tobytes()


def test_count_terms_and_postings_are_numpys_fancy_increments() -> None:
    rng = np.random.default_rng(41)
    for round_number in range(500):
        size = int(rng.integers(1, 3000))
        df = rng.integers(0, 50, size).astype(np.int32)
        lengths = rng.integers(0, 50, size).astype(np.int32)
        count = int(rng.integers(0, min(size, 96) + 1))
        row = np.zeros(96, dtype=np.int32)  # a signature's row: distinct ids, then padding zeros
        row[:count] = rng.permutation(size)[:count]
        delta = 1 if round_number % 2 else -1
        reference = df.copy()
        reference[row[row > 0]] += delta
        kernels.count_terms(df, row, delta)
        assert df.tobytes() == reference.tobytes()
        term_ids = row[:count][row[:count] > 0]
        reference = lengths.copy()
        reference[term_ids] += 1
        assert kernels.count_postings(lengths, term_ids)
        assert lengths.tobytes() == reference.tobytes()
    lengths = np.zeros(5, dtype=np.int32)
    assert not kernels.count_postings(lengths, np.array([1, 5], dtype=np.int32))  # beyond: nothing counted
    assert not lengths.any()
    assert kernels.count_postings(lengths, np.array([-1], dtype=np.int32)) and lengths[4] == 1  # as numpy wraps
    with pytest.raises(IndexError):
        kernels.count_terms(np.zeros(5, dtype=np.int32), np.array([2, 5], dtype=np.int32), 1)


def test_remapped_postings_are_numpys_remap_and_filter_per_list() -> None:
    rng = np.random.default_rng(47)
    for _ in range(300):
        slots = int(rng.integers(1, 2000))
        remap = np.full(slots, -1, dtype=np.int32)
        live = np.flatnonzero(rng.random(slots) < rng.random())
        remap[live] = np.arange(len(live), dtype=np.int32)
        count = int(rng.integers(0, 60))
        lists = [rng.integers(0, slots, int(rng.integers(0, 40))).astype(np.int32) for _ in range(count)]
        entries = np.concatenate(lists) if lists else np.zeros(0, dtype=np.int32)
        lengths = np.array([len(entries_of_list) for entries_of_list in lists], dtype=np.int64)
        kept, kept_lengths = kernels.remapped_postings(np.frombuffer(entries.tobytes(), dtype=np.int32), lengths, remap)
        reference = [remap[entries_of_list] for entries_of_list in lists]
        reference = [remapped[remapped >= 0] for remapped in reference]
        assert kept_lengths.tolist() == [len(remapped) for remapped in reference]
        assert kept.tobytes() == b"".join(remapped.tobytes() for remapped in reference)
    with pytest.raises(IndexError):
        kernels.remapped_postings(np.array([5], dtype=np.int32), np.array([1], dtype=np.int64),
                                  np.zeros(5, dtype=np.int32))


def python_query_lists(
    term_ids: npt.NDArray[np.int32], weights: npt.NDArray[np.float32], order: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], posting_lengths: npt.NDArray[np.int32], longest: int, budget: int,
) -> tuple[list[int], list[int], list[float]]:
    """KindIndex._query_postings's loop over the terms as it was before the kernel."""
    ordered = term_ids[order]
    known = ordered < len(posting_lengths)
    lengths = np.zeros(len(ordered), dtype=np.int64)
    lengths[known] = posting_lengths[ordered[known]]
    chosen: list[int] = []
    chosen_lengths: list[int] = []
    chosen_weights: list[float] = []
    for term_id, length, weight in zip(
        ordered.tolist(), lengths.tolist(), (weights[order] * idf[ordered]).tolist(), strict=True
    ):
        if 0 < length <= min(longest, budget):
            chosen.append(term_id)
            chosen_lengths.append(length)
            chosen_weights.append(weight)
            budget -= length
    return chosen, chosen_lengths, chosen_weights


def test_query_lists_choose_as_the_python_loop_did() -> None:
    rng = np.random.default_rng(23)
    vocabulary = 3000
    idf = (rng.random(vocabulary) * 9).astype(np.float32)
    posting_lengths = rng.integers(0, 6000, 2500).astype(np.int32)  # ids beyond: no postings yet
    posting_lengths[rng.random(2500) < 0.2] = 0
    for _ in range(300):
        term_ids = rng.choice(np.arange(1, vocabulary), rng.integers(0, 97), replace=False).astype(np.int32)
        weights = (rng.random(len(term_ids)) * 4).astype(np.float32)
        order = np.argsort(-weights)[:48]
        longest, budget = int(rng.integers(500, 8000)), int(rng.integers(0, 30000))
        chosen, lengths, list_weights, count = kernels.query_lists(
            term_ids, weights, order, idf, posting_lengths, longest, budget, 2
        )
        reference = python_query_lists(term_ids, weights, order, idf, posting_lengths, longest, budget)
        assert count == len(chosen) == len(reference[0]) and len(lengths) == len(list_weights) == len(order) + 2
        assert chosen.tolist() == reference[0] and lengths[:count].tolist() == reference[1]
        assert list_weights[:count].tobytes() == np.array(reference[2], dtype=np.float64).tobytes()
        assert not lengths[count:].any() and not list_weights[count:].any()
    with pytest.raises(IndexError):
        kernels.query_lists(
            np.array([1, 2], dtype=np.int32), np.ones(2, dtype=np.float32), np.array([0, 2], dtype=np.int64), idf,
            posting_lengths, 1000, 1000, 0,
        )


def test_lowest_bit_is_the_index_of_the_lowest_set_bit() -> None:
    rng = np.random.default_rng(31)
    for index in range(64):
        for high in (0, *rng.integers(0, 1 << 62, 20).tolist(), (1 << 64) - 1):
            bits = ((int(high) << index) | (1 << index)) & ((1 << 64) - 1)
            assert kernels._lowest_bit(np.uint64(bits)) == index


def test_bit_count_counts_the_set_bits() -> None:
    rng = np.random.default_rng(37)
    for bits in (0, 1, (1 << 32) - 1, (1 << 63) - 1, -1, -(1 << 40), *rng.integers(-(1 << 62), 1 << 62, 200).tolist()):
        assert kernels._bit_count(int(bits)) == bin(int(bits) & ((1 << 64) - 1)).count("1")


def test_prefiltered_text_estimates_select_the_set_argpartition_selects_or_leave_a_tie_to_it() -> None:
    rng = np.random.default_rng(41)
    size = 20_000
    sums, touched = np.zeros(size, dtype=np.float64), np.zeros(size // 64 + 1, dtype=np.uint64)
    selected = 0
    for round_number in range(60):
        norm = (0.5 + rng.random(size) * 30).astype(np.float32)
        if round_number % 4 == 0:
            norm[:] = 2.0  # equal sums, equal estimates: ties
        lists = [np.sort(rng.choice(size, rng.integers(1, 3000), replace=False)).astype(np.int32)
                 for _ in range(rng.integers(1, 30))]
        weights = rng.random(len(lists)) * (50 if round_number % 3 else 1e-30)  # tiny: subnormal estimates
        if round_number % 5 == 0:
            weights[0] = 0.0  # estimates of 0
        entries = np.concatenate(lists)
        lengths = np.array([len(postings) for postings in lists], dtype=np.int64)
        depth = int(rng.choice([1, 300, 3000, 5000]))
        slots, text, hit, hit_text, chosen = kernels.prefiltered_text_estimates(
            entries, lengths, weights, sums, touched, norm, 7.5, depth
        )
        reference_slots, reference_text = kernels.text_estimates(entries, lengths, weights, sums, touched, norm, 7.5)
        assert np.array_equal(slots, reference_slots) and text.tobytes() == reference_text.tobytes()
        assert not sums.any() and not touched.any()
        if len(text) <= depth:
            assert not chosen
            continue
        threshold = np.sort(text)[::-1][depth - 1]
        if (text >= threshold).sum() > depth:
            assert not chosen
            continue
        assert chosen
        selected += 1
        best = np.sort(np.argpartition(-text, depth)[:depth])
        order = np.argsort(hit)
        assert np.array_equal(hit[order], slots[best]) and hit_text[order].tobytes() == text[best].tobytes()
    assert selected > 20
    values = np.frombuffer(np.array([3, 5, 7], dtype=np.int32).tobytes(), dtype=np.int32)
    for weight in (-1.0, np.nan, np.inf):  # negative, NaN, infinite estimates: no selection
        *_, chosen = kernels.prefiltered_text_estimates(
            values, np.array([3], dtype=np.int64), np.array([weight]), sums, touched, np.ones(size, dtype=np.float32),
            1.0, 1,
        )
        assert not chosen
