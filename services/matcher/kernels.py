"""The matcher's compiled loops (numba): what ten numpy passes did, in one pass over the entries.

Each kernel adds in the order its numpy reference does (see the tests, which compare them bit for
bit), so scores do not move in their last bits. Compiled on first call and cached on disk
(``cache=True``) where the package's folder is writable; elsewhere (a read-only image) compiled
once per process: ``warm_up`` does it before the first event (about a second, see README).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from . import scoring

F = TypeVar("F", bound=Callable[..., Any])


def _compiled(function: F) -> F:
    """``numba.njit`` with the on-disk cache when a cache folder can be written, without it if not."""
    try:
        return numba.njit(cache=True, nogil=True)(function)  # type: ignore[return-value]
    except RuntimeError:  # "cannot cache function ...: no locator available": a read-only install
        return numba.njit(nogil=True)(function)  # type: ignore[return-value]


@intrinsic
def _trailing_zeros(typingctx: Any, bits: Any) -> Any:
    """LLVM's ``cttz``: one instruction (tzcnt/bsf), where a binary search over the bits mispredicts
    its branches on scattered slots (about a quarter of the fast path's summing)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))  # defined for 0 too (the width)

    return bits(bits), codegen


@_compiled
def _lowest_bit(bits: np.uint64) -> int:
    """The index of the lowest set bit of ``bits`` (not 0)."""
    return int(_trailing_zeros(bits))  # type: ignore[call-arg]  # (the typing context is numba's)


@_compiled
def _sum_postings(
    entries: npt.NDArray[np.int32], lengths: npt.NDArray[np.int64], weights: npt.NDArray[np.float64],
    sums: npt.NDArray[np.float64], touched: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    position = 0
    for number in range(len(lengths)):
        weight = weights[number]
        end = position + lengths[number]
        for entry in range(position, end):
            slot = entries[entry]
            if slot < 0 or slot >= len(sums):  # numba does not check bounds: fail as numpy would
                raise IndexError("postings entry beyond the slots")
            sums[slot] += weight
            touched[slot >> 6] |= np.uint64(1) << np.uint64(slot & 63)
        position = end
    slots = np.empty(len(entries), dtype=np.int64)
    slot_sums = np.empty(len(entries), dtype=np.float64)
    hits = 0
    # One word per 64 slots (16k words at 1M slots: microseconds), each set bit in slot order.
    for word in range(len(touched)):
        bits = touched[word]
        if bits == 0:
            continue
        touched[word] = 0
        while bits:
            slot = (word << 6) + _lowest_bit(bits)
            slots[hits] = slot
            slot_sums[hits] = sums[slot]
            sums[slot] = 0.0
            hits += 1
            bits &= bits - np.uint64(1)
    return slots[:hits], slot_sums[:hits]


def sum_postings(
    entries: npt.NDArray[np.int32], lengths: npt.NDArray[np.int64], weights: npt.NDArray[np.float64],
    sums: npt.NDArray[np.float64], touched: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The slots the postings hold (each once, ascending) and per slot the sum of the weights of the
    lists holding it, added list by list in list order (as a running sum over the lists would).

    ``entries`` are the lists one after the other (``lengths`` entries each, ``weights[i]`` per
    entry of list ``i``); ``sums`` (one float64 per slot) and ``touched`` (one bit per slot) are
    scratch, all zero before and after: the time follows the entries, not the slots.
    """
    _check_postings(entries, lengths, weights, sums, touched)
    return _sum_postings(entries, lengths, weights, sums, touched)


@_compiled
def _text_estimates(
    entries: npt.NDArray[np.int32], lengths: npt.NDArray[np.int64], weights: npt.NDArray[np.float64],
    sums: npt.NDArray[np.float64], touched: npt.NDArray[np.uint64], norm: npt.NDArray[np.float32],
    query_norm: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    slots, slot_sums = _sum_postings(entries, lengths, weights, sums, touched)
    query_norm32 = np.float32(query_norm)
    text = np.empty(len(slots), dtype=np.float32)
    for i in range(len(slots)):
        text[i] = np.float32(slot_sums[i] / np.float64(norm[slots[i]] * query_norm32))
    return slots, text


def text_estimates(
    entries: npt.NDArray[np.int32], lengths: npt.NDArray[np.int64], weights: npt.NDArray[np.float64],
    sums: npt.NDArray[np.float64], touched: npt.NDArray[np.uint64], norm: npt.NDArray[np.float32],
    query_norm: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """``sum_postings``, and each slot's sum over (its ``norm`` × ``query_norm``) as float32: the
    fast path's text estimate, computed as numpy did (float32 product, float64 quotient, rounded)."""
    _check_postings(entries, lengths, weights, sums, touched)
    if len(norm) < len(sums):
        raise IndexError("a norm per slot")
    return _text_estimates(entries, lengths, weights, sums, touched, norm, query_norm)


def _check_postings(
    entries: npt.NDArray[np.int32], lengths: npt.NDArray[np.int64], weights: npt.NDArray[np.float64],
    sums: npt.NDArray[np.float64], touched: npt.NDArray[np.uint64],
) -> None:
    """What the kernel's loops assume and numba does not check."""
    if len(lengths) != len(weights) or int(lengths.sum()) != len(entries) or len(touched) * 64 < len(sums):
        raise ValueError("postings: lengths, weights and entries disagree")


@intrinsic
def _population(typingctx: Any, bits: Any) -> Any:
    """LLVM's ``ctpop``: one instruction (popcnt) where a loop over the set bits mispredicts its exit."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return bits(bits), codegen


@_compiled
def _bit_count(bits: int) -> int:
    """The set bits of ``bits`` (of its 64 bits, two's complement, when negative)."""
    return int(_population(np.int64(bits)))  # type: ignore[call-arg]  # (the typing context is numba's)


@_compiled
def _estimates(
    slots: npt.NDArray[np.int64], text: npt.NDArray[np.float32], groups: npt.NDArray[np.int32],
    subclasses: npt.NDArray[np.int32], query_groups: npt.NDArray[np.int32], query_subclasses: npt.NDArray[np.int32],
    fields: npt.NDArray[np.uint32], query_fields: int,
    forms: npt.NDArray[np.uint8], stage: npt.NDArray[np.int16], alive: npt.NDArray[np.bool_],
    query_forms: int, query_stage: int, query_is_need: bool, relevance_weights: npt.NDArray[np.float32],
    subclass_credit: float, form_credit: npt.NDArray[np.float32], stage_credit: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], int]:
    text_weight, classification_weight, field_weight = relevance_weights[0], relevance_weights[1], relevance_weights[2]
    query_field_count = _bit_count(query_fields)
    one, zero = np.float32(1.0), np.float32(0.0)
    estimates = np.empty(len(slots), dtype=np.float32)
    with_codes = len(query_groups) + len(query_subclasses) > 0
    # The slots are scattered and their columns cold: read them in a tight loop first (many reads in
    # flight at once), not one by one behind the branches below.
    touched = 0
    for i in range(len(slots)):
        slot = slots[i]
        if slot < 0 or slot >= len(fields):
            raise IndexError("slot beyond the index")
        touched += fields[slot] + forms[slot] + stage[slot] + alive[slot]
        if with_codes:
            touched += groups[slot, 0] + subclasses[slot, 0]
    for i in range(len(slots)):
        slot = slots[i]
        group_hit, subclass_hit = False, False
        for column in range(groups.shape[1] if with_codes else 0):
            group, subclass = groups[slot, column], subclasses[slot, column]
            if group > 0:
                for query_group in query_groups:
                    group_hit |= group == query_group
            if subclass > 0:
                for query_subclass in query_subclasses:
                    subclass_hit |= subclass == query_subclass
        classification = one if group_hit else (np.float32(subclass_credit) if subclass_hit else zero)
        shared = np.float32(_bit_count(int(fields[slot]) & query_fields))
        total = np.float32(_bit_count(int(fields[slot])) + query_field_count)
        field = (np.float32(2.0) * shared) / max(total, one) if total > 0 else zero
        estimate = text_weight * min(text[i], one) + classification_weight * classification + field_weight * field
        if query_is_need:
            estimate *= form_credit[forms[slot], query_forms]
            estimate *= stage_credit[stage[slot], query_stage]
        else:
            estimate *= form_credit[query_forms, forms[slot]]
            estimate *= stage_credit[query_stage, stage[slot]]
        estimates[i] = estimate * (one if alive[slot] else zero)
    return estimates, touched


def estimates(
    slots: npt.NDArray[np.int64], text: npt.NDArray[np.float32], groups: npt.NDArray[np.int32],
    subclasses: npt.NDArray[np.int32], query_groups: npt.NDArray[np.int32], query_subclasses: npt.NDArray[np.int32],
    fields: npt.NDArray[np.uint32], query_fields: int, forms: npt.NDArray[np.uint8], stage: npt.NDArray[np.int16],
    alive: npt.NDArray[np.bool_], query_forms: int, query_stage: int, query_is_need: bool,
) -> npt.NDArray[np.float32]:
    """The fast path's estimate of each slot (``text`` its text estimate): the exact score's
    relevance (classification and fields overlaps of scoring.py) × form × stage, 0 for a dead slot;
    the same float32 operations in the same order as scoring.py's numpy functions."""
    if not len(groups) == len(subclasses) == len(fields) == len(forms) == len(stage) == len(alive):
        raise ValueError("estimates: one row per slot in every column")
    slot_estimates, _ = _estimates(
        slots, text, groups, subclasses, query_groups, query_subclasses, fields, query_fields, forms, stage, alive,
        query_forms, query_stage, query_is_need, _RELEVANCE_WEIGHTS, scoring.SAME_SUBCLASS_CREDIT,
        scoring.FORM_CREDIT, scoring.STAGE_CREDIT,
    )
    return slot_estimates


# Passed to the kernels, not read by them as globals: numba's cache would keep old values of another module.
_RELEVANCE_WEIGHTS = np.array(
    [scoring.TEXT_WEIGHT, scoring.CLASSIFICATION_WEIGHT, scoring.FIELD_WEIGHT], dtype=np.float32
)


# float16 -> float32 of every bit pattern: exact, and numba reads float16 arrays as their bits.
HALF_TO_FLOAT = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


@_compiled
def _row_sum(values: npt.NDArray[np.float32]) -> np.float32:
    """numpy's pairwise sum of up to 128 float32 (what ``.sum(axis=1)`` does per row): eight running
    sums, joined pairwise, then the rest one by one."""
    n = len(values)
    if n < 8:
        total = np.float32(0.0)
        for i in range(n):
            total += values[i]
        return total
    r0, r1, r2, r3 = values[0], values[1], values[2], values[3]
    r4, r5, r6, r7 = values[4], values[5], values[6], values[7]
    i = 8
    while i < n - n % 8:
        r0 += values[i]
        r1 += values[i + 1]
        r2 += values[i + 2]
        r3 += values[i + 3]
        r4 += values[i + 4]
        r5 += values[i + 5]
        r6 += values[i + 6]
        r7 += values[i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += values[i]
        i += 1
    return total


@_compiled
def _text_similarity(
    term_ids: npt.NDArray[np.int32], tf_bits: npt.NDArray[np.uint16], slots: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], query_weights: npt.NDArray[np.float32], half_to_float: npt.NDArray[np.float32],
    query_norm: float,
) -> tuple[npt.NDArray[np.float32], int]:
    width = term_ids.shape[1]
    products = np.empty(width, dtype=np.float32)
    squares = np.empty(width, dtype=np.float32)
    text = np.empty(len(slots), dtype=np.float32)
    query_norm32 = np.float32(query_norm)
    smallest = np.float32(1e-9)
    # The rows are scattered and cold: read one value per cache line of every row first, in a loop
    # short enough for the processor to have many of those reads in flight at once.
    touched = 0
    for row in range(len(slots)):
        slot = slots[row]
        if slot < 0 or slot >= term_ids.shape[0]:
            raise IndexError("slot beyond the index")
        for column in range(0, width, 16):
            touched += term_ids[slot, column]
        for column in range(0, width, 32):
            touched += tf_bits[slot, column]
    for row in range(len(slots)):
        slot = slots[row]
        for column in range(width):
            term_id = term_ids[slot, column]
            if term_id < 0 or term_id >= len(idf):
                raise IndexError("term id beyond the vocabulary")
            weight = half_to_float[tf_bits[slot, column]] * idf[term_id]
            products[column] = query_weights[term_id] * weight
            squares[column] = weight * weight
        dot = _row_sum(products)
        norm = np.float32(np.sqrt(_row_sum(squares))) * query_norm32
        text[row] = dot / max(norm, smallest) if norm > 0 else np.float32(0.0)
    return text, touched


def text_similarity(
    term_ids: npt.NDArray[np.int32], tf: npt.NDArray[np.float16], slots: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], query_weights: npt.NDArray[np.float32], query_norm: float,
) -> npt.NDArray[np.float32]:
    """Cosine of each slot's signature (``tf`` × ``idf`` of its ``term_ids`` row) with the query's:
    ``query_weights`` holds the query's weight at each of its term ids (0 elsewhere), ``query_norm``
    its length. In float32 and in numpy's order of additions (``.sum(axis=1)``), as the numpy it
    replaces computed it; no (slots × terms) temporaries.
    """
    _check_rows(term_ids, tf, idf, query_weights)
    text, _ = _text_similarity(term_ids, tf.view(np.uint16), slots, idf, query_weights, HALF_TO_FLOAT, query_norm)
    return text


@_compiled
def _shared_terms(
    term_ids: npt.NDArray[np.int32], tf_bits: npt.NDArray[np.uint16], slots: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], query_weights: npt.NDArray[np.float32], half_to_float: npt.NDArray[np.float32],
    pool: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    width = term_ids.shape[1]
    counts = np.zeros(len(slots), dtype=np.int64)
    shared_ids = np.zeros((len(slots), width), dtype=np.int32)
    shared_weights = np.zeros((len(slots), width), dtype=np.float64)
    for row in range(len(slots)):
        slot = slots[row]
        if slot < 0 or slot >= term_ids.shape[0]:
            raise IndexError("slot beyond the index")
        count = 0
        for column in range(width):
            term_id = term_ids[slot, column]
            if term_id < 0 or term_id >= len(idf):
                raise IndexError("term id beyond the vocabulary")
            if query_weights[term_id] == 0:
                continue
            weight = (np.float64(query_weights[term_id]) * np.float64(half_to_float[tf_bits[slot, column]])
                      * np.float64(idf[term_id]))
            # insertion in order: heaviest first, among equal weights the larger term id first
            position = count
            while position > 0 and (
                shared_weights[row, position - 1] < weight
                or (shared_weights[row, position - 1] == weight and shared_ids[row, position - 1] < term_id)
            ):
                shared_weights[row, position] = shared_weights[row, position - 1]
                shared_ids[row, position] = shared_ids[row, position - 1]
                position -= 1
            shared_weights[row, position] = weight
            shared_ids[row, position] = term_id
            count += 1
        counts[row] = min(count, pool)
    return counts, shared_ids[:, :pool].copy(), shared_weights[:, :pool].copy()


def shared_terms(
    term_ids: npt.NDArray[np.int32], tf: npt.NDArray[np.float16], slots: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], query_weights: npt.NDArray[np.float32], pool: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """Per slot, the terms of its signature the query holds (``query_weights`` not 0), the heaviest
    first by query weight × tf × idf in float64 (among equal weights the larger term id first):
    how many (at most ``pool``), their ids and their weights, one row of ``pool`` per slot."""
    _check_rows(term_ids, tf, idf, query_weights)
    return _shared_terms(term_ids, tf.view(np.uint16), slots, idf, query_weights, HALF_TO_FLOAT, pool)


def _check_rows(
    term_ids: npt.NDArray[np.int32], tf: npt.NDArray[np.float16], idf: npt.NDArray[np.float32],
    query_weights: npt.NDArray[np.float32],
) -> None:
    if term_ids.shape != tf.shape or len(query_weights) < len(idf):
        raise ValueError("signature rows: term ids, tf and weights disagree")



_SPACE = 32  # " " and "-": a phrase goes on across one of them, and is stripped of them
_HYPHEN = 45


@_compiled
def _phrases(
    text: npt.NDArray[np.uint32], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64], rows: npt.NDArray[np.int64], counts: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float64], limit: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    n_rows, pool = rows.shape
    found = np.zeros(n_rows, dtype=np.int64)
    bounds = np.zeros((n_rows, max(limit, 0), 2), dtype=np.int64)
    most = 0  # the spans of the longest row, for the scratch
    for row in range(n_rows):
        if counts[row] < 0 or counts[row] > pool:
            raise IndexError("row count beyond the row")
        spans = 0
        for column in range(counts[row]):
            term = rows[row, column]
            if term < 0 or term + 1 >= len(offsets):
                raise IndexError("term beyond the offsets")
            spans += offsets[term + 1] - offsets[term]
        most = max(most, spans)
    span_start = np.empty(most, dtype=np.int64)
    span_end = np.empty(most, dtype=np.int64)
    span_weight = np.empty(most, dtype=np.float64)
    phrase_start = np.empty(most, dtype=np.int64)
    phrase_end = np.empty(most, dtype=np.int64)
    phrase_weight = np.empty(most, dtype=np.float64)
    chosen = np.empty(max(limit, 0), dtype=np.int64)
    size = len(text)
    for row in range(n_rows):
        # The row's terms' spans in row order, each term's in its order; a stable sort by start.
        n = 0
        for column in range(counts[row]):
            term = rows[row, column]
            weight = weights[row, column]
            for j in range(offsets[term], offsets[term + 1]):
                if j < 0 or j >= len(starts) or j >= len(ends):
                    raise IndexError("offset beyond the spans")
                start, end = starts[j], ends[j]
                if start < 0 or end > size or start > end:
                    raise IndexError("span beyond the text")
                position = n
                while position > 0 and span_start[position - 1] > start:
                    span_start[position] = span_start[position - 1]
                    span_end[position] = span_end[position - 1]
                    span_weight[position] = span_weight[position - 1]
                    position -= 1
                span_start[position] = start
                span_end[position] = end
                span_weight[position] = weight
                n += 1
        if n == 0:
            continue
        # Spans overlapping, touching or one space or hyphen apart merge into one phrase, of the
        # weight of its heaviest span; phrases of the same text are one, of the larger weight, in
        # the place of its first time (with a weight of at least 0).
        phrases = 0
        current_start, current_end, weight = span_start[0], span_end[0], span_weight[0]
        for i in range(n + 1):
            if i < n:
                start = span_start[i]
                if start <= current_end or (
                    start == current_end + 1 and (text[current_end] == _SPACE or text[current_end] == _HYPHEN)
                ):
                    if span_end[i] > current_end:
                        current_end = span_end[i]
                    if span_weight[i] > weight:
                        weight = span_weight[i]
                    continue
            first, last = current_start, current_end  # stripped of spaces and hyphens at both ends
            while first < last and (text[first] == _SPACE or text[first] == _HYPHEN):
                first += 1
            while last > first and (text[last - 1] == _SPACE or text[last - 1] == _HYPHEN):
                last -= 1
            length = last - first
            if length > 1:
                same = -1
                for k in range(phrases):
                    if phrase_end[k] - phrase_start[k] == length:
                        equal = True
                        for c in range(length):
                            if text[phrase_start[k] + c] != text[first + c]:
                                equal = False
                                break
                        if equal:
                            same = k
                            break
                known = phrase_weight[same] if same >= 0 else 0.0
                if weight >= known:
                    if same >= 0:
                        phrase_weight[same] = weight
                    else:
                        phrase_start[phrases] = first
                        phrase_end[phrases] = last
                        phrase_weight[phrases] = weight
                        phrases += 1
            if i < n:
                current_start, current_end, weight = span_start[i], span_end[i], span_weight[i]
        # The first ``limit`` phrases, the heaviest first, then the longest, then the first met.
        kept = 0
        for k in range(phrases):
            weight = phrase_weight[k]
            length = phrase_end[k] - phrase_start[k]
            position = kept
            while position > 0:
                other = chosen[position - 1]
                other_weight = phrase_weight[other]
                if other_weight < weight or (
                    other_weight == weight and phrase_end[other] - phrase_start[other] < length
                ):
                    position -= 1
                else:
                    break
            if position >= limit:
                continue
            for moved in range(min(kept, limit - 1), position, -1):
                chosen[moved] = chosen[moved - 1]
            chosen[position] = k
            kept = min(kept + 1, limit)
        found[row] = kept
        for k in range(kept):
            bounds[row, k, 0] = phrase_start[chosen[k]]
            bounds[row, k, 1] = phrase_end[chosen[k]]
    return found, bounds


def phrases(
    text: npt.NDArray[np.uint32], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64], rows: npt.NDArray[np.int64], counts: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float64], limit: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """analysis.matched_phrases(text, shared, rank=shared)[:limit] of several rows of shared terms
    at once, as (start, end) of each phrase in ``text`` (code points): per row, how many phrases
    and their bounds, ``limit`` pairs a row.

    Term ``t``'s spans are ``starts[offsets[t]:offsets[t + 1]]`` (and ``ends``); row ``r`` shares
    its first ``counts[r]`` terms of ``rows[r]``, of ``weights[r]``. The same comparisons in the
    same order as matched_phrases: spans sorted by start (stably), merged across one space or
    hyphen, stripped of spaces and hyphens, one code point dropped, one phrase per text (of its
    heaviest weight, where it first came), the heaviest first, then the longest, then the first.
    """
    if rows.shape != weights.shape or len(counts) != len(rows) or not len(offsets):
        raise ValueError("phrases: rows, weights, counts and offsets disagree")
    return _phrases(text, starts, ends, offsets, rows, counts, weights, limit)

# The rows of ``rescore``'s result: the score, then the components in the order Ranked.components holds them.
RESCORE_ROWS = ("score", "text", "classification", "fields", "relevance", "form", "stage", "region", "freshness")
# Ages (days) the freshness table holds: 0 .. FRESHNESS_DAYS - 1 (about 90 years); an older profile
# takes the numpy path (``rescore`` returns None).
FRESHNESS_DAYS = 1 << 15
_freshness_tables: dict[tuple[float, float], npt.NDArray[np.float32]] = {}
# A query's own freshness, as numpy computes it for one age (a scalar, perhaps not the table's exp):
# per half-life, per age. Emptied when it holds too many ages.
_query_freshness: dict[tuple[float, float], dict[int, np.float32]] = {}
_QUERY_FRESHNESS_AGES = 1 << 16


def freshness_table() -> npt.NDArray[np.float32]:
    """``scoring.freshness`` of every age 0 .. FRESHNESS_DAYS - 1, computed by that very numpy function:
    numba's exp may differ from numpy's in the last bit, a lookup cannot. One per half-life."""
    key = (scoring._LN2, scoring.FRESHNESS_HALF_LIFE_DAYS)
    table = _freshness_tables.get(key)
    if table is None:
        table = _freshness_tables[key] = scoring.freshness(np.arange(FRESHNESS_DAYS, dtype=np.int32))
    return table


def query_freshness(age_days: int) -> np.float32:
    """``scoring.freshness(age_days)`` of one age (numpy's scalar path), remembered: 4 µs a call."""
    by_age = _query_freshness.setdefault((scoring._LN2, scoring.FRESHNESS_HALF_LIFE_DAYS), {})
    value = by_age.get(age_days)
    if value is None:
        if len(by_age) >= _QUERY_FRESHNESS_AGES:
            by_age.clear()
        value = by_age[age_days] = np.float32(scoring.freshness(age_days))
    return value


@_compiled
def _wrapped(index: int, length: int) -> int:
    """``index`` into ``length`` entries as numpy reads it (a negative index from the end), or IndexError."""
    if index < 0:
        index += length
    if index < 0 or index >= length:
        raise IndexError("index beyond the table")
    return index


@_compiled
def _rescore(
    term_ids: npt.NDArray[np.int32], tf_bits: npt.NDArray[np.uint16], slots: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], query_weights: npt.NDArray[np.float32], half_to_float: npt.NDArray[np.float32],
    query_norm: float, groups: npt.NDArray[np.int32], subclasses: npt.NDArray[np.int32],
    query_groups: npt.NDArray[np.int32], query_subclasses: npt.NDArray[np.int32],
    fields: npt.NDArray[np.uint32], query_fields: int, forms: npt.NDArray[np.uint8], stage: npt.NDArray[np.int16],
    prefecture: npt.NDArray[np.int8], block: npt.NDArray[np.int8], size: npt.NDArray[np.int8],
    updated_day: npt.NDArray[np.int32], expires_day: npt.NDArray[np.int32], alive: npt.NDArray[np.bool_],
    query_forms: int, query_stage: int, query_prefecture: int, query_block: int, query_size: int,
    query_is_need: bool, query_fresh: np.float32, today: int, weights: npt.NDArray[np.float32],
    form_credit: npt.NDArray[np.float32], stage_credit: npt.NDArray[np.float32],
    region_weight_by_size: npt.NDArray[np.float32], freshness_by_age: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], int, int]:
    text_weight, classification_weight, field_weight = weights[0], weights[1], weights[2]
    subclass_credit, block_credit, freshness_weight = weights[3], weights[4], weights[5]
    one, zero = np.float32(1.0), np.float32(0.0)
    query_field_count = _bit_count(query_fields)
    with_codes = len(query_groups) + len(query_subclasses) > 0
    out = np.empty((9, len(slots)), dtype=np.float32)
    # The slots are scattered and their columns cold: read them in a tight loop first (many reads in
    # flight at once), then the text (its own such loop over the signature rows), then the rest.
    touched = 0
    for i in range(len(slots)):
        slot = slots[i]
        if slot < 0 or slot >= len(alive):
            raise IndexError("slot beyond the index")
        touched += fields[slot] + forms[slot] + stage[slot] + prefecture[slot] + block[slot] + size[slot]
        touched += updated_day[slot] + expires_day[slot] + alive[slot]
        if with_codes:
            touched += groups[slot, 0] + subclasses[slot, 0]
    text, text_touched = _text_similarity(term_ids, tf_bits, slots, idf, query_weights, half_to_float, query_norm)
    beyond = 0
    for i in range(len(slots)):
        slot = slots[i]
        # scoring.classification_overlap
        group_hit, subclass_hit = False, False
        for column in range(groups.shape[1] if with_codes else 0):
            group, subclass = groups[slot, column], subclasses[slot, column]
            if group > 0:
                for query_group in query_groups:
                    group_hit |= group == query_group
            if subclass > 0:
                for query_subclass in query_subclasses:
                    subclass_hit |= subclass == query_subclass
        classification = one if group_hit else (subclass_credit if subclass_hit else zero)
        # scoring.field_overlap
        shared = np.float32(_bit_count(int(fields[slot]) & query_fields))
        total = np.float32(_bit_count(int(fields[slot])) + query_field_count)
        field = (np.float32(2.0) * shared) / max(total, one) if total > 0 else zero
        # scoring.form_credit, scoring.stage_credit (offered × wanted, TRL × timeline) and the need's size
        if query_is_need:  # the slots are seeds
            offered, wanted, size_code = int(forms[slot]), query_forms, query_size
            trl, timeline = int(stage[slot]), query_stage
        else:
            offered, wanted, size_code = query_forms, int(forms[slot]), int(size[slot])
            trl, timeline = query_stage, int(stage[slot])
        form = form_credit[_wrapped(offered, form_credit.shape[0]), _wrapped(wanted, form_credit.shape[1])]
        stage_value = stage_credit[_wrapped(trl, stage_credit.shape[0]), _wrapped(timeline, stage_credit.shape[1])]
        # scoring.region_relation, scoring.region_factor
        if int(prefecture[slot]) == query_prefecture:
            region = one
        elif int(block[slot]) == query_block:
            region = block_credit
        else:
            region = zero
        region_factor = one - region_weight_by_size[_wrapped(size_code, len(region_weight_by_size))] * (one - region)
        # scoring.freshness (the table: numpy's exp), its square root with the query's, scoring.freshness_factor
        age = max(today - int(updated_day[slot]), 0)
        if age >= len(freshness_by_age):
            beyond += 1
            age = 0
        fresh = np.float32(np.sqrt(freshness_by_age[age] * query_fresh))
        freshness_factor = one - freshness_weight * (one - fresh)
        # scoring.relevance, then the score as KindIndex.score multiplied it, 0 for a dead or expired slot
        relevance = text_weight * text[i] + classification_weight * classification + field_weight * field
        score = relevance * form * stage_value * region_factor * freshness_factor
        live = alive[slot] and int(expires_day[slot]) >= today
        out[0, i] = score if live else zero
        out[1, i] = text[i]
        out[2, i] = classification
        out[3, i] = field
        out[4, i] = relevance
        out[5, i] = form
        out[6, i] = stage_value
        out[7, i] = region
        out[8, i] = fresh
    return out, beyond, touched + text_touched


def rescore(
    term_ids: npt.NDArray[np.int32], tf: npt.NDArray[np.float16], slots: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], query_weights: npt.NDArray[np.float32], query_norm: float,
    groups: npt.NDArray[np.int32], subclasses: npt.NDArray[np.int32], query_groups: npt.NDArray[np.int32],
    query_subclasses: npt.NDArray[np.int32], fields: npt.NDArray[np.uint32], query_fields: int,
    forms: npt.NDArray[np.uint8], stage: npt.NDArray[np.int16], prefecture: npt.NDArray[np.int8],
    block: npt.NDArray[np.int8], size: npt.NDArray[np.int8], updated_day: npt.NDArray[np.int32],
    expires_day: npt.NDArray[np.int32], alive: npt.NDArray[np.bool_], query_forms: int, query_stage: int,
    query_prefecture: int, query_block: int, query_size: int, query_updated_day: int, query_is_need: bool, today: int,
) -> npt.NDArray[np.float32] | None:
    """KindIndex.score's exact rescoring of ``slots`` in one pass: a row per name of ``RESCORE_ROWS``
    (the score, 0 for a dead or expired slot, then each component), float32, the same operations in
    the same order as scoring.py's numpy functions and ``text_similarity``. The weights and tables
    are read from scoring.py at each call (bench/matcher_quality.py's ablations patch them).

    None when a slot's profile is older than the freshness table (``FRESHNESS_DAYS``): the caller
    then scores with numpy.
    """
    _check_rows(term_ids, tf, idf, query_weights)
    if not (len(term_ids) == len(groups) == len(subclasses) == len(fields) == len(forms) == len(stage)
            == len(prefecture) == len(block) == len(size) == len(updated_day) == len(expires_day) == len(alive)):
        raise ValueError("rescore: one row per slot in every column")
    weights = np.array(
        [scoring.TEXT_WEIGHT, scoring.CLASSIFICATION_WEIGHT, scoring.FIELD_WEIGHT, scoring.SAME_SUBCLASS_CREDIT,
         scoring.SAME_BLOCK_CREDIT, scoring.FRESHNESS_WEIGHT], dtype=np.float32,
    )
    out, beyond, _ = _rescore(
        term_ids, tf.view(np.uint16), slots, idf, query_weights, HALF_TO_FLOAT, query_norm, groups, subclasses,
        query_groups, query_subclasses, fields, query_fields, forms, stage, prefecture, block, size, updated_day,
        expires_day, alive, query_forms, query_stage, query_prefecture, query_block, query_size, query_is_need,
        query_freshness(today - query_updated_day), today, weights, scoring.FORM_CREDIT, scoring.STAGE_CREDIT,
        scoring._REGION_WEIGHT_BY_SIZE, freshness_table(),
    )
    return None if beyond else out


@_compiled
def _best(
    scores: npt.NDArray[np.float32], slots: npt.NDArray[np.int64], min_score: float, count: int
) -> tuple[npt.NDArray[np.int64], bool, bool]:
    positions = np.empty(max(min(count, len(scores)), 0), dtype=np.int64)
    size = 0
    more = False
    for i in range(len(scores)):
        score = scores[i]
        if score != score:  # NaN: lexsort puts it last, where the caller's loop would still take it
            return positions[:0], False, False
        if not (score > 0 and np.float64(score) >= min_score):
            continue
        slot = slots[i]
        # insertion among the best so far: the higher score first, among equal scores the lower slot
        place = size
        while place > 0 and (
            scores[positions[place - 1]] < score
            or (scores[positions[place - 1]] == score and slots[positions[place - 1]] > slot)
        ):
            place -= 1
        if place >= len(positions):
            more = True
            continue
        if size == len(positions):
            more = True
        else:
            size += 1
        for j in range(size - 1, place, -1):
            positions[j] = positions[j - 1]
        positions[place] = i
    return positions[:size], more, True


def best(
    scores: npt.NDArray[np.float32], slots: npt.NDArray[np.int64], min_score: float, count: int
) -> tuple[npt.NDArray[np.int64], bool] | None:
    """The positions of the ``count`` best ``scores`` above 0 and at least ``min_score``, ordered by
    (-score, slot) as ``np.lexsort((slots, -scores))`` orders them, and whether more such scores
    were left out; None when a score is NaN (the caller then sorts with numpy)."""
    if len(scores) != len(slots):
        raise ValueError("a slot per score")
    positions, more, ordered = _best(scores, slots, min_score, count)
    return (positions, more) if ordered else None


@_compiled
def _published(table: npt.NDArray[np.float32], positions: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    rounded = np.empty((table.shape[0], len(positions)), dtype=np.float64)
    for column in range(len(positions)):
        position = positions[column]
        if position < 0 or position >= table.shape[1]:
            raise IndexError("position beyond the table")
        for row in range(table.shape[0]):
            rounded[row, column] = np.rint(np.float64(table[row, position]) * 10000.0) / 10000.0
    return rounded


def published(table: npt.NDArray[np.float32], positions: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """``np.round(table[:, positions].astype(np.float64), 4)``: the score and components as published
    (numpy rounds to 4 decimals by multiplying by 10⁴, rounding half to even and dividing)."""
    return _published(table, positions)


@_compiled
def _count_terms(df: npt.NDArray[np.int32], term_ids: npt.NDArray[np.int32], delta: int) -> None:
    for i in range(len(term_ids)):
        term_id = term_ids[i]
        if term_id > 0:
            if term_id >= len(df):  # numba does not check bounds: fail as numpy would
                raise IndexError("term id beyond the document frequencies")
            df[term_id] += delta


def count_terms(df: npt.NDArray[np.int32], term_ids: npt.NDArray[np.int32], delta: int) -> None:
    """``df[term_ids[term_ids > 0]] += delta`` for term ids each held once (a signature's row, padding
    zeros included): a document frequency per term id, changed in place."""
    _count_terms(df, term_ids, delta)


@_compiled
def _count_postings(lengths: npt.NDArray[np.int32], term_ids: npt.NDArray[np.int32]) -> bool:
    size = len(lengths)
    for i in range(len(term_ids)):
        term_id = term_ids[i]
        if term_id >= size or term_id < -size:
            return False
    for i in range(len(term_ids)):
        term_id = term_ids[i]
        lengths[term_id + size if term_id < 0 else term_id] += 1
    return True


def count_postings(lengths: npt.NDArray[np.int32], term_ids: npt.NDArray[np.int32]) -> bool:
    """``lengths[term_ids] += 1`` for term ids each held once, when every one is within ``lengths``
    (True); nothing changed and False when one is not (the caller grows ``lengths`` first)."""
    return bool(_count_postings(lengths, term_ids))


@_compiled
def _remapped_postings(
    entries: npt.NDArray[np.int32], lengths: npt.NDArray[np.int64], remap: npt.NDArray[np.int32],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    size = len(remap)
    kept = np.empty(len(entries), dtype=np.int32)
    kept_lengths = np.empty(len(lengths), dtype=np.int64)
    position = 0
    out = 0
    for number in range(len(lengths)):
        start = out
        for entry in range(position, position + lengths[number]):
            slot = entries[entry]
            if slot < -size or slot >= size:  # numba does not check bounds: fail as numpy would
                raise IndexError("postings entry beyond the slots")
            new_slot = remap[slot + size if slot < 0 else slot]
            if new_slot >= 0:
                kept[out] = new_slot
                out += 1
        kept_lengths[number] = out - start
        position += lengths[number]
    return kept[:out], kept_lengths


def remapped_postings(
    entries: npt.NDArray[np.int32], lengths: npt.NDArray[np.int64], remap: npt.NDArray[np.int32],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Postings lists (``entries``, ``lengths[i]`` of list ``i`` one after the other) renumbered by
    ``remap`` (slot -> new slot, -1: dropped), the dropped left out: per list what
    ``slots = remap[entries_of_list]; slots[slots >= 0]`` gives, one after the other, and the lengths."""
    if int(lengths.sum()) != len(entries):
        raise ValueError("postings: lengths and entries disagree")
    return _remapped_postings(entries, lengths, remap)


@_compiled
def _query_lists(
    term_ids: npt.NDArray[np.int32], weights: npt.NDArray[np.float32], order: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], posting_lengths: npt.NDArray[np.int32], longest: int, budget: int, extra: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64], int]:
    count = 0
    chosen = np.empty(len(order), dtype=np.int64)
    lengths = np.zeros(len(order) + extra, dtype=np.int64)
    list_weights = np.zeros(len(order) + extra, dtype=np.float64)
    for i in range(len(order)):
        position = order[i]
        if position < 0 or position >= len(term_ids) or position >= len(weights):
            raise IndexError("order beyond the query's terms")
        term_id = term_ids[position]
        if term_id < 0 or term_id >= len(idf):
            raise IndexError("term id beyond the vocabulary")
        length = int(posting_lengths[term_id]) if term_id < len(posting_lengths) else 0
        if length > 0 and length <= min(longest, budget):
            chosen[count] = term_id
            lengths[count] = length
            list_weights[count] = np.float64(np.float32(weights[position] * idf[term_id]))
            budget -= length
            count += 1
    return chosen[:count], lengths, list_weights, count


def query_lists(
    term_ids: npt.NDArray[np.int32], weights: npt.NDArray[np.float32], order: npt.NDArray[np.int64],
    idf: npt.NDArray[np.float32], posting_lengths: npt.NDArray[np.int32], longest: int, budget: int, extra: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64], int]:
    """The fast path's choice of postings lists: the query's terms in ``order`` (``term_ids`` their
    ids, ``weights`` their weights), each one whose list (``posting_lengths``) is not empty, at most
    ``longest`` long and fits in what is left of ``budget``. Returns the chosen term ids; their lengths
    and weights per entry (weight × idf, a float32 product), the first ``count`` items of zeroed
    arrays with room for ``extra`` more (the caller's code lists); and ``count``."""
    return _query_lists(term_ids, weights, order, idf, posting_lengths, longest, budget, extra)


@_compiled
def _prefiltered_text_estimates(
    entries: npt.NDArray[np.int32], lengths: npt.NDArray[np.int64], weights: npt.NDArray[np.float64],
    sums: npt.NDArray[np.float64], touched: npt.NDArray[np.uint64], norm: npt.NDArray[np.float32],
    query_norm: float, depth: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32], bool]:
    slots, text = _text_estimates(entries, lengths, weights, sums, touched, norm, query_norm)
    n = len(slots)
    keys = text.view(np.uint32)
    unusual = np.uint32(0)  # a sign bit: negative or -0.0; an exponent of all ones: infinite or NaN
    for i in range(n):
        key = keys[i]
        unusual |= key & np.uint32(0x80000000) | (key + np.uint32(0x00800000)) & np.uint32(0x80000000)
    if n <= depth or depth <= 0 or unusual:
        return slots, text, slots, text, False
    # The bucket (top 12 bits of an estimate's bits, which order non-negative floats as their values)
    # holding the depth-th largest, guessed from a histogram of every 8th estimate; then the
    # positions of the estimates in it or above, written unconditionally (a branch would mispredict
    # on every other one) and counted exactly: the next bucket down or up when the guess was wrong.
    counts = np.zeros(4096, dtype=np.int64)
    for i in range(0, n, 8):
        counts[keys[i] >> np.uint32(20)] += 1
    top = 4095
    seen = counts[top]
    while seen * 8 < depth and top > 0:
        top -= 1
        seen += counts[top]
    pool = np.empty(n + 1, dtype=np.int64)
    while True:
        size, above = 0, 0
        bucket = np.uint32(top)
        for i in range(n):
            high = keys[i] >> np.uint32(20)
            pool[size] = i
            size += high >= bucket
            above += high > bucket
        if size < depth:
            top -= 1
        elif above >= depth:
            top += 1
        else:
            break
    # Within the bucket: by the next 12 bits, then the last 8.
    level = np.zeros(4097, dtype=np.int64)
    for j in range(size):
        key = keys[pool[j]]
        level[np.int64((key >> np.uint32(8)) & np.uint32(4095)) if key >> np.uint32(20) == bucket else 4096] += 1
    wanted = depth - above
    middle = 4095
    while level[middle] < wanted:
        wanted -= level[middle]
        middle -= 1
    prefix = (bucket << np.uint32(12)) | np.uint32(middle)
    last = np.zeros(256, dtype=np.int64)
    for j in range(size):
        key = keys[pool[j]]
        if key >> np.uint32(8) == prefix:
            last[key & np.uint32(255)] += 1
    low = 255
    while last[low] < wanted:
        wanted -= last[low]
        low -= 1
    if last[low] != wanted:  # the depth-th largest ties with one left out
        return slots, text, slots, text, False
    threshold = (prefix << np.uint32(8)) | np.uint32(low)
    hit = np.empty(depth + 1, dtype=np.int64)
    hit_text = np.empty(depth + 1, dtype=np.float32)
    chosen = 0
    for j in range(size):
        position = pool[j]
        hit[chosen] = slots[position]
        hit_text[chosen] = text[position]
        chosen += keys[position] >= threshold
    if chosen != depth:
        raise AssertionError("prefilter: the selection lost count")
    return slots, text, hit[:depth], hit_text[:depth], True


def prefiltered_text_estimates(
    entries: npt.NDArray[np.int32], lengths: npt.NDArray[np.int64], weights: npt.NDArray[np.float64],
    sums: npt.NDArray[np.float64], touched: npt.NDArray[np.uint64], norm: npt.NDArray[np.float32],
    query_norm: float, depth: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32], bool]:
    """``text_estimates`` (``slots``, ``text``), then the ``depth`` slots of the highest estimates with
    theirs (in slot order): the set ``np.argpartition(-text, depth)[:depth]`` selects, when it is the
    only such set. Found from a histogram of the estimates' bits taken while they are produced, then
    over the few in the boundary's bucket; no sort. The last item is False and no selection made
    (``slots``, ``text`` given twice) when there are at most ``depth`` slots, when the depth-th
    largest estimate ties with one left out (``np.argpartition`` breaks such a tie its own way: the
    caller selects with it) or when an estimate is negative, -0.0, infinite or NaN."""
    _check_postings(entries, lengths, weights, sums, touched)
    if len(norm) < len(sums):
        raise IndexError("a norm per slot")
    return _prefiltered_text_estimates(entries, lengths, weights, sums, touched, norm, query_norm, depth)


def warm_up() -> None:
    """Compile (or load from the cache) every kernel, so that no event pays for it."""
    sums = np.zeros(130, dtype=np.float64)
    touched = np.zeros(3, dtype=np.uint64)
    # read-only, as np.frombuffer gives them to the fast path (another type for numba)
    entries = np.frombuffer(np.array([3, 129, 3], dtype=np.int32).tobytes(), dtype=np.int32)
    lengths = np.array([2, 1], dtype=np.int64)
    weights = np.array([0.5, 0.25], dtype=np.float64)
    slots, text = text_estimates(entries, lengths, weights, sums, touched, np.ones(130, dtype=np.float32), 1.0)
    prefiltered_text_estimates(entries, lengths, weights, sums, touched, np.ones(130, dtype=np.float32), 1.0, 1)
    codes = np.ones((130, 6), dtype=np.int32)
    estimates(slots, text, codes, codes, codes[0], codes[0], np.ones(130, dtype=np.uint32), 1,
              np.ones(130, dtype=np.uint8), np.ones(130, dtype=np.int16), np.ones(130, dtype=np.bool_), 1, 1, True)
    term_ids = np.ones((2, 3), dtype=np.int32)
    ones = np.ones(2, dtype=np.float32)
    text_similarity(term_ids, np.ones((2, 3), dtype=np.float16), np.array([1], dtype=np.int64), ones, ones, 1.0)
    shared_terms(term_ids, np.ones((2, 3), dtype=np.float16), np.array([1], dtype=np.int64), ones, ones, 16)
    spans = np.array([0, 2], dtype=np.int64)
    phrases(np.array([97, 32, 98], dtype=np.uint32), spans, spans + 1, spans, np.zeros((2, 3), dtype=np.int64),
            np.ones(2, dtype=np.int64), np.ones((2, 3), dtype=np.float64), 6)
    small = np.ones(2, dtype=np.int8)
    days = np.ones(2, dtype=np.int32)
    rescore(term_ids, np.ones((2, 3), dtype=np.float16), np.array([1], dtype=np.int64), ones, ones, 1.0, codes[:2],
            codes[:2], codes[0], codes[0], np.ones(2, dtype=np.uint32), 1, np.ones(2, dtype=np.uint8),
            np.ones(2, dtype=np.int16), small, small, small, days, days, np.ones(2, dtype=np.bool_), 1, 1, 1, 1, 1, 1,
            True, 2)
    best(ones, np.array([1, 0], dtype=np.int64), 0.0, 1)
    published(np.ones((2, 3), dtype=np.float32), np.array([1], dtype=np.int64))
    frequencies = np.zeros(3, dtype=np.int32)
    count_terms(frequencies, term_ids[0], 1)
    count_postings(frequencies, term_ids[0])
    remapped_postings(entries, lengths, np.array([0, -1, 1, 2] * 40, dtype=np.int32))
    query_lists(term_ids[0], np.ones(3, dtype=np.float32), np.arange(3, dtype=np.int64), np.ones(3, dtype=np.float32),
                frequencies, 1000, 1000, 1)
    warm_up_explanations()


@_compiled
def _row_terms(
    term_ids: npt.NDArray[np.int32], counts: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    n_rows, pool = term_ids.shape
    if len(counts) != n_rows:
        raise ValueError("row_terms: counts and rows disagree")
    total = 0
    for row in range(n_rows):
        if counts[row] < 0 or counts[row] > pool:
            raise IndexError("row count beyond the row")
        total += counts[row]
    flat = np.empty(total, dtype=np.int64)
    k = 0
    for row in range(n_rows):
        for column in range(counts[row]):
            flat[k] = term_ids[row, column]
            k += 1
    order = np.argsort(flat, kind="mergesort")
    ids = np.empty(total, dtype=np.int64)
    position = np.empty(total, dtype=np.int64)
    n = 0
    for i in range(total):
        j = order[i]
        if n == 0 or flat[j] != ids[n - 1]:
            ids[n] = flat[j]
            n += 1
        position[j] = n - 1
    local = np.zeros((n_rows, pool), dtype=np.int64)
    k = 0
    for row in range(n_rows):
        for column in range(counts[row]):
            local[row, column] = position[k]
            k += 1
    return ids[:n], local


def row_terms(
    term_ids: npt.NDArray[np.int32], counts: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The distinct ids of the rows' first ``counts[r]`` entries, ascending, and each entry's
    place among them (0 past a row's count): ``np.unique(term_ids[shared], return_inverse=True)``
    scattered back into the rows, in one compiled pass over ~30-160 entries."""
    return _row_terms(term_ids, counts)


@_compiled
def _phrase_spans(
    text: npt.NDArray[np.uint32], bounds: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64], counts: npt.NDArray[np.int64], weights: npt.NDArray[np.float64], limit: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    if len(bounds) % 2:
        raise ValueError("phrase_spans: bounds come in (start, end) pairs")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    for t in range(len(lengths)):
        offsets[t + 1] = offsets[t] + lengths[t]
    spans = len(bounds) // 2
    if offsets[len(lengths)] != spans:
        raise ValueError("phrase_spans: lengths and spans disagree")
    starts = np.empty(spans, dtype=np.int64)
    ends = np.empty(spans, dtype=np.int64)
    for j in range(spans):
        starts[j] = bounds[2 * j]
        ends[j] = bounds[2 * j + 1]
    found, per_row = _phrases(text, starts, ends, offsets, rows, counts, weights, limit)
    total = 0
    for row in range(len(found)):
        total += found[row]
    flat = np.empty(2 * total, dtype=np.int64)
    k = 0
    for row in range(len(found)):
        for p in range(found[row]):
            flat[k] = per_row[row, p, 0]
            flat[k + 1] = per_row[row, p, 1]
            k += 2
    return found, flat


def phrase_spans(
    text: npt.NDArray[np.uint32], bounds: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64], counts: npt.NDArray[np.int64], weights: npt.NDArray[np.float64], limit: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``phrases`` with term ``t``'s spans the next ``lengths[t]`` (start, end) pairs of ``bounds``
    (flat: start, end, start, end...), and its result packed: per row how many phrases, and their
    (start, end) pairs one row after the other in one flat array."""
    if rows.shape != weights.shape or len(counts) != len(rows):
        raise ValueError("phrase_spans: rows, weights and counts disagree")
    return _phrase_spans(text, bounds, lengths, rows, counts, weights, limit)


def warm_up_explanations() -> None:
    """Compile (or load) the explanation kernels appended after ``warm_up``."""
    term_ids = np.ones((2, 3), dtype=np.int32)
    counts = np.ones(2, dtype=np.int64)
    ids, local = row_terms(term_ids, counts)
    phrase_spans(np.array([97, 32, 98], dtype=np.uint32), np.array([0, 1], dtype=np.int64),
                 np.ones(len(ids), dtype=np.int64), local, counts, np.ones((2, 3), dtype=np.float64), 6)
