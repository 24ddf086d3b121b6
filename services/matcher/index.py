"""Compact search structures for one kind of profile (seeds or needs): arrays, not objects.

Each profile is stored as a *signature*: its ``MAX_DOC_TERMS`` heaviest terms (tf × idf when it
arrives) with their sublinear term frequencies, in fixed-width numpy rows, plus its attributes
(fields, classification codes, forms, TRL or timeline, region, dates) in columns. Postings map a
term to the slots holding it (``array('i')``, appended in place). Ranking one query:

1. fast path ("more like this"): the query's ``QUERY_TERMS`` most distinctive terms, heaviest first,
   as long as their postings fit in ``POSTINGS_BUDGET`` entries, summed by idf (plus the query's
   classification codes) over the slots they touch only; the best ``RESCORE_DEPTH`` slots by that
   estimate become candidates. No step of a query walks every slot (one bit per slot is read, 64
   at a time), so its cost follows the budget, not the size of the index;
2. exact rescoring of the candidates with every component of services/matcher/scoring.py (one
   compiled pass, kernels.rescore; ``KindIndex.score_numpy`` is its numpy reference);
3. the top ``limit`` leave as (slot, score, components).

The loops over postings entries and signature rows are compiled (services/matcher/kernels.py) and
add in the order the numpy they replace did: the scores are the same to the last bit.

An index with at most ``RESCORE_DEPTH`` live profiles skips step 1 and scores every profile: exact.
``exact=True`` does the same at any size (the brute-force baseline of bench/matcher_scale.py).

A removed or replaced profile leaves a dead slot behind (postings are not searched for it); the
index compacts itself when a quarter of its slots are dead.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from . import kernels, scoring

# Measured on bench/quality: 96 terms rank exactly as 128 or 256 (64: -0.004 nDCG@10, 48: -0.013),
# and at 1M seeds the signatures and postings stay near 1 GB.
MAX_DOC_TERMS = 96  # at most 128: kernels.text_similarity adds a row as numpy does up to 128
QUERY_TERMS = 48
RESCORE_DEPTH = 300
PREFILTER_DEPTH = 3000  # by the text estimate alone, before fields, codes, form and stage join it
# Up to this many live profiles every one is scored exactly (the fast path would gain nothing).
FAST_PATH_FROM = RESCORE_DEPTH
MAX_CODES = 6
SMALL_VOCABULARY = 20_000  # terms: below this, idf is exact after every change
# A posting list longer than this share of the index is skipped by the fast path (its terms have
# the lowest idf; exact rescoring still counts them).
MAX_POSTING_SHARE = 0.05
# Postings entries one query sums at most: the query's terms are taken heaviest first and a list
# that no longer fits is skipped. The fast path's cost follows it (about 4 ns an entry here, compiled),
# and at 1M seeds a query's lists hold millions of entries. Measured at 100k synthetic seeds (a
# query's lists hold about 40k entries there) against exact scoring over 300 needs: recall@20
# 0.9947 with 40k, 0.9938 with 30k, 0.9895 with 20k; the top 10 (what a list publishes) the same as
# exact for 299 of 300 needs with each, nDCG@10 1.0000. 20k saves about 0.1 ms of a need's 1.3.
POSTINGS_BUDGET = 20_000
NO_EXPIRY = np.iinfo(np.int32).max
COMPACTED_LISTS = 4096  # postings lists renumbered in one pass by compact

Floats = npt.NDArray[np.float32]
Slots = npt.NDArray[np.int64]


class Vocabulary:
    """Term and classification-code ids with document frequencies over every stored signature."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {"": 0}  # id 0 pads short signatures
        self.terms: list[str] = [""]
        self.df = np.zeros(1024, dtype=np.int32)
        self.scratch = np.zeros(1024, dtype=np.float32)  # a dense query vector, zero between queries
        self.documents = 0
        self._idf = np.zeros(0, dtype=np.float32)
        self._idf_documents = -1
        self._idf_dirty = True

    def id_of(self, term: str) -> int:
        term_id = self.ids.get(term)
        if term_id is None:
            term_id = self.ids[term] = len(self.terms)
            self.terms.append(term)
            if term_id >= len(self.df):
                self.df = np.concatenate([self.df, np.zeros(len(self.df), dtype=np.int32)])
                self.scratch = np.zeros(len(self.df), dtype=np.float32)
        return term_id

    def count(self, term_ids: npt.NDArray[np.int32], delta: int) -> None:
        """``df`` of each term id (above 0, each held once) moved by ``delta``, and the documents."""
        kernels.count_terms(self.df, term_ids, delta)
        self.documents += delta
        self._idf_dirty = True

    def idf(self) -> Floats:
        """idf of every term id (0 for the padding id).

        A small vocabulary is recomputed whenever a document came or went; a large one only when the
        number of documents moved by 1% (idf moves slowly there), new terms getting theirs on the way.
        """
        size = len(self.terms)
        if not self._idf_dirty:
            return self._idf
        n = max(self.documents, 1)
        if size < SMALL_VOCABULARY or abs(n - self._idf_documents) > 0.01 * max(self._idf_documents, 1):
            self._idf = self._idf_of(0, size, n)
            self._idf_documents = n
            self._idf_dirty = False
        elif size > len(self._idf):
            self._idf = np.concatenate([self._idf, self._idf_of(len(self._idf), size, n)])
        return self._idf

    def _idf_of(self, start: int, end: int, documents: int) -> Floats:
        idf = np.log1p((documents + 1) / (self.df[start:end].astype(np.float32) + 1)).astype(np.float32)
        if start == 0:
            idf[0] = 0.0
        return idf


@dataclass
class Signature:
    """What the index keeps of one profile (and what a query brings)."""

    term_ids: npt.NDArray[np.int32]
    tf: Floats
    fields: int
    groups: list[int]
    subclasses: list[int]
    forms: int  # offered (seed) or wanted (need) forms, bit mask
    stage: int  # seed: TRL 1..9; need: timeline in months 1..120; 0: unknown
    prefecture: int
    block: int
    size: int  # need: scoring.SIZE_CODE; seed: 0
    updated_day: int
    expires_day: int


@dataclass
class Ranked:
    slots: Slots
    scores: Floats
    components: dict[str, Floats]
    # The score and the components as rows of one array (kernels.RESCORE_ROWS), when they came so.
    table: npt.NDArray[np.float32] | None = None


def _grown(column: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.zeros((capacity, *column.shape[1:]), dtype=column.dtype)
    grown[: len(column)] = column
    return grown


@dataclass
class KindIndex:
    """The signatures of one kind of profile in slots, with postings per term and per code."""

    vocabulary: Vocabulary
    capacity: int = 1024
    ids: list[str | None] = field(default_factory=list)
    slot_of: dict[str, int] = field(default_factory=dict)
    postings: dict[int, array] = field(default_factory=dict)
    code_postings: dict[int, array] = field(default_factory=dict)
    dead: int = 0
    # (profile id, slot, signature) of the last profile added with ``remember``: ``signature`` answers
    # from it until the slot is removed or moved (the query of the ranking that follows an upsert).
    _recent: tuple[str, int, Signature] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        c = self.capacity
        # Per term id: the length of its postings (dead slots included), for the budget without
        # touching the lists. Grown with the vocabulary.
        self.posting_lengths = np.zeros(1024, dtype=np.int32)
        self.term_ids = np.zeros((c, MAX_DOC_TERMS), dtype=np.int32)
        self.tf = np.zeros((c, MAX_DOC_TERMS), dtype=np.float16)
        self.alive = np.zeros(c, dtype=bool)
        self.fields = np.zeros(c, dtype=np.uint32)
        self.groups = np.zeros((c, MAX_CODES), dtype=np.int32)
        self.subclasses = np.zeros((c, MAX_CODES), dtype=np.int32)
        self.forms = np.zeros(c, dtype=np.uint8)
        self.stage = np.zeros(c, dtype=np.int16)
        self.prefecture = np.zeros(c, dtype=np.int8)
        self.block = np.zeros(c, dtype=np.int8)
        self.size = np.zeros(c, dtype=np.int8)
        self.updated_day = np.zeros(c, dtype=np.int32)
        self.expires_day = np.zeros(c, dtype=np.int32)
        self.norm = np.ones(c, dtype=np.float32)  # of the signature's tf × idf when it arrived
        self._new_scratch(c)

    _COLUMNS = ("term_ids", "tf", "alive", "fields", "groups", "subclasses", "forms", "stage", "prefecture",
                "block", "size", "updated_day", "expires_day", "norm")

    def _new_scratch(self, capacity: int) -> None:
        # The fast path's per-slot sums and a bit per slot touched: zero between queries.
        self.slot_sums = np.zeros(capacity, dtype=np.float64)
        self.slot_touched = np.zeros(capacity // 64 + 1, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.slot_of)

    def nbytes(self) -> int:
        """Bytes held by the arrays and postings (not the id strings or dict overhead)."""
        columns = sum(getattr(self, name).nbytes for name in self._COLUMNS)
        columns += self.slot_sums.nbytes + self.slot_touched.nbytes
        postings = sum(p.buffer_info()[1] * p.itemsize + 64 for p in self.postings.values())
        postings += sum(p.buffer_info()[1] * p.itemsize + 64 for p in self.code_postings.values())
        return columns + postings

    def add(
        self, profile_id: str, signature: Signature, *, weights: Floats | None = None, remember: bool = False,
    ) -> None:
        """Store ``signature`` in a new slot (replacing the profile's previous one).

        ``weights``: its tf × idf as ``ProfileIndex.signature_of`` computed them, the vocabulary unchanged
        since (the norm's weights, not computed again). ``remember``: the signature holds term ids above 0
        and plain ints that its columns hold as they are, so ``signature(profile_id)`` can be built from it.
        """
        if profile_id in self.slot_of:
            self.remove(profile_id)
            weights = None  # the vocabulary has just changed
        slot = len(self.ids)
        if slot >= self.capacity:
            self._grow(self.capacity * 2)
        self.ids.append(profile_id)
        self.slot_of[profile_id] = slot
        k = len(signature.term_ids)
        self.term_ids[slot, :k] = signature.term_ids
        self.tf[slot, :k] = signature.tf
        self.alive[slot] = True
        self.fields[slot] = signature.fields
        self.groups[slot, : len(signature.groups)] = signature.groups[:MAX_CODES]
        self.subclasses[slot, : len(signature.subclasses)] = signature.subclasses[:MAX_CODES]
        self.forms[slot] = signature.forms
        self.stage[slot] = signature.stage
        self.prefecture[slot] = signature.prefecture
        self.block[slot] = signature.block
        self.size[slot] = signature.size
        self.updated_day[slot] = signature.updated_day
        self.expires_day[slot] = signature.expires_day
        vocabulary = self.vocabulary
        if weights is None:
            idf = np.log1p((vocabulary.documents + 1) / (vocabulary.df[signature.term_ids] + 1.0)).astype(np.float32)
            weights = signature.tf * idf
        self.norm[slot] = max(float(np.sqrt(weights @ weights)), 1e-3)
        vocabulary.count(self.term_ids[slot], +1)
        # a signature holds each term once
        if not kernels.count_postings(self.posting_lengths, signature.term_ids):
            if len(signature.term_ids) and int(signature.term_ids.max()) >= len(self.posting_lengths):
                self.posting_lengths = _grown(self.posting_lengths, 2 * int(signature.term_ids.max()) + 1)
            self.posting_lengths[signature.term_ids] += 1
        term_ids = signature.term_ids.tolist()
        postings_of = self.postings
        try:  # (a tuple from 2 ids on)
            lists = itemgetter(*term_ids)(postings_of) if len(term_ids) > 1 else ()
        except KeyError:  # terms new to these postings
            lists = ()
        if len(lists) != len(term_ids):
            lists = tuple(postings_of.setdefault(term_id, array("i")) for term_id in term_ids)
        deque(map(array.append, lists, repeat(slot)), maxlen=0)  # the slot appended to each, in C
        for code in {*signature.groups[:MAX_CODES], *signature.subclasses[:MAX_CODES]}:
            postings = self.code_postings.get(code)
            if postings is None:
                postings = self.code_postings[code] = array("i")
            postings.append(slot)
        self._recent = (profile_id, slot, signature) if remember and k <= MAX_DOC_TERMS else None

    def remove(self, profile_id: str) -> None:
        slot = self.slot_of.pop(profile_id, None)
        if slot is None:
            return
        self._recent = None
        self.vocabulary.count(self.term_ids[slot], -1)
        self.alive[slot] = False
        self.ids[slot] = None
        self.dead += 1
        if self.dead > 1024 and self.dead * 4 > len(self.ids):
            self.compact()

    def signature(self, profile_id: str) -> Signature | None:
        slot = self.slot_of.get(profile_id)
        if slot is None:
            return None
        recent = self._recent
        if recent is not None and recent[0] == profile_id and recent[1] == slot:
            stored = recent[2]
            return Signature(  # the same values as read from the row below
                term_ids=stored.term_ids.copy(), tf=self.tf[slot, : len(stored.term_ids)].astype(np.float32),
                fields=stored.fields, groups=[g for g in stored.groups[:MAX_CODES] if g],
                subclasses=[s for s in stored.subclasses[:MAX_CODES] if s], forms=stored.forms, stage=stored.stage,
                prefecture=stored.prefecture, block=stored.block, size=stored.size,
                updated_day=stored.updated_day, expires_day=stored.expires_day,
            )
        used = self.term_ids[slot] > 0
        return Signature(
            term_ids=self.term_ids[slot][used].copy(), tf=self.tf[slot][used].astype(np.float32),
            fields=int(self.fields[slot]), groups=[g for g in self.groups[slot].tolist() if g],
            subclasses=[s for s in self.subclasses[slot].tolist() if s], forms=int(self.forms[slot]),
            stage=int(self.stage[slot]), prefecture=int(self.prefecture[slot]), block=int(self.block[slot]),
            size=int(self.size[slot]), updated_day=int(self.updated_day[slot]),
            expires_day=int(self.expires_day[slot]),
        )

    def _grow(self, capacity: int) -> None:
        for name in self._COLUMNS:
            setattr(self, name, _grown(getattr(self, name), capacity))
        self.capacity = capacity
        self._new_scratch(capacity)

    def compact(self) -> None:
        """Drop dead slots: renumber the live ones and rebuild the postings."""
        live = np.flatnonzero(self.alive[: len(self.ids)])
        remap = np.full(len(self.ids), -1, dtype=np.int32)
        remap[live] = np.arange(len(live), dtype=np.int32)
        for name in self._COLUMNS:
            column = getattr(self, name)
            kept = np.zeros_like(column)
            kept[: len(live)] = column[live]
            setattr(self, name, kept)
        self.ids = [self.ids[int(slot)] for slot in live]
        self._recent = None
        self.slot_of = {profile_id: slot for slot, profile_id in enumerate(self.ids) if profile_id is not None}
        for table in (self.postings, self.code_postings):
            keys = list(table)
            for first in range(0, len(keys), COMPACTED_LISTS):  # a few MB of entries at a time
                chunk = keys[first : first + COMPACTED_LISTS]
                lists = [table[key] for key in chunk]
                slots, lengths = kernels.remapped_postings(
                    np.frombuffer(b"".join(lists), dtype=np.int32),
                    np.fromiter(map(len, lists), dtype=np.int64, count=len(lists)), remap,
                )
                data = slots.tobytes()
                end = 0
                for key, length in zip(chunk, lengths.tolist(), strict=True):
                    if length:
                        start, end = end, end + 4 * length
                        table[key] = array("i", data[start:end])
                    else:
                        del table[key]
        self.posting_lengths[:] = 0
        self.posting_lengths[np.fromiter(self.postings, dtype=np.int64, count=len(self.postings))] = np.fromiter(
            map(len, self.postings.values()), dtype=np.int32, count=len(self.postings)
        )
        self.dead = 0

    # ---- ranking -------------------------------------------------------------------------------

    def candidates(self, query: Signature, query_is_need: bool, idf: Floats) -> Slots:
        """Slots worth scoring exactly: every live one when few, else the fast path's best estimates.

        The estimate is the exact score with one shortcut: the text part counts, for each of the
        query's most distinctive terms the profile holds (as many as ``POSTINGS_BUDGET`` allows),
        the term's query weight × idf (the profile's own term frequency left out), over the
        profile's norm.
        """
        used = len(self.ids)
        if len(self.slot_of) <= FAST_PATH_FROM:
            return np.flatnonzero(self.alive[:used])
        weights = query.tf * idf[query.term_ids]
        order = np.argsort(-weights)[:QUERY_TERMS]
        lists, lengths, list_weights = self._query_postings(query, weights, order, idf)
        if not lists:
            return np.zeros(0, dtype=np.int64)
        # The rest of the estimate only for the best PREFILTER_DEPTH text estimates: the kernel selects
        # them unless a tie at the boundary leaves np.argpartition to break it (as it always did).
        slots, text, hit, hit_text, selected = kernels.prefiltered_text_estimates(
            np.frombuffer(b"".join(lists), dtype=np.int32), lengths, list_weights, self.slot_sums,
            self.slot_touched, self.norm, max(float(np.sqrt(weights @ weights)), 1e-6), PREFILTER_DEPTH,
        )
        if not selected and len(slots) > PREFILTER_DEPTH:
            best = np.argpartition(-text, PREFILTER_DEPTH)[:PREFILTER_DEPTH]
            hit, hit_text = slots[best], text[best]
        estimates = self._estimates(hit, hit_text, query, query_is_need)
        if len(hit) > RESCORE_DEPTH:
            best = np.argpartition(-estimates, RESCORE_DEPTH)[:RESCORE_DEPTH]
            cut = estimates[best].min()
            if selected and cut > 0 and np.count_nonzero(estimates >= cut) > RESCORE_DEPTH:
                # A tie at this boundary, which np.argpartition breaks by the order of its input:
                # the order the prefilter's np.argpartition gave, not the kernel's.
                best = np.argpartition(-text, PREFILTER_DEPTH)[:PREFILTER_DEPTH]
                hit = slots[best]
                estimates = self._estimates(hit, text[best], query, query_is_need)
                best = np.argpartition(-estimates, RESCORE_DEPTH)[:RESCORE_DEPTH]
            hit, estimates = hit[best], estimates[best]
        return hit[estimates > 0].astype(np.int64)

    def _estimates(self, hit: Slots, text: Floats, query: Signature, query_is_need: bool) -> Floats:
        return kernels.estimates(
            hit, text, self.groups, self.subclasses, np.array(query.groups, dtype=np.int32),
            np.array(query.subclasses, dtype=np.int32), self.fields, query.fields, self.forms, self.stage,
            self.alive, query.forms, query.stage, query_is_need,
        )

    def _query_postings(
        self, query: Signature, weights: Floats, order: npt.NDArray[np.intp], idf: Floats
    ) -> tuple[list[array], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The postings the fast path sums for ``query``, their lengths and each one's weight per entry.

        Terms heaviest first; a list longer than ``MAX_POSTING_SHARE`` of the index, or one that no
        longer fits in what is left of ``POSTINGS_BUDGET``, is skipped (shorter lists of lighter
        terms after it may still fit). The query's classification codes always count.
        """
        longest = max(1000, int(MAX_POSTING_SHARE * len(self.slot_of)))
        code_postings = self.code_postings
        codes = [
            postings for postings in map(code_postings.get, {*query.groups, *query.subclasses})
            if postings is not None and len(postings) <= longest
        ]
        chosen, lengths, list_weights, count = kernels.query_lists(
            query.term_ids, weights, order, idf, self.posting_lengths, longest, POSTINGS_BUDGET, len(codes)
        )
        lists: list[array] = [self.postings[term_id] for term_id in chosen.tolist()] if count < 2 else list(
            itemgetter(*chosen.tolist())(self.postings)
        )
        for postings in codes:
            lists.append(postings)
            lengths[count] = len(postings)
            list_weights[count] = 1e-6  # a candidate even without a shared term
            count += 1
        return lists, lengths[:count], list_weights[:count]

    def score(self, query: Signature, query_is_need: bool, slots: Slots, idf: Floats, today: int) -> Ranked:
        """Exact scores of ``slots`` against ``query``, with every component (see scoring.py): one
        compiled pass (kernels.rescore), the same float32 values as ``score_numpy`` to the last bit."""
        query_weights = query.tf * idf[query.term_ids]
        scratch = self.vocabulary.scratch
        scratch[query.term_ids] = query_weights
        try:
            rows = kernels.rescore(
                self.term_ids, self.tf, slots, idf, scratch, math.sqrt(float(query_weights @ query_weights)),
                self.groups, self.subclasses, np.array(query.groups, dtype=np.int32),
                np.array(query.subclasses, dtype=np.int32), self.fields, query.fields, self.forms, self.stage,
                self.prefecture, self.block, self.size, self.updated_day, self.expires_day, self.alive, query.forms,
                query.stage, query.prefecture, query.block, query.size, query.updated_day, query_is_need, today,
            )
        finally:
            scratch[query.term_ids] = 0.0
        if rows is None:  # a profile older than the kernel's freshness table
            return self.score_numpy(query, query_is_need, slots, idf, today)
        scores, *components = rows
        return Ranked(
            slots=slots, scores=scores, components=dict(zip(kernels.RESCORE_ROWS[1:], components, strict=True)),
            table=rows,
        )

    def score_numpy(self, query: Signature, query_is_need: bool, slots: Slots, idf: Floats, today: int) -> Ranked:
        """``score`` with scoring.py's numpy functions: the reference the kernel is tested against."""
        query_weights = query.tf * idf[query.term_ids]
        scratch = self.vocabulary.scratch
        scratch[query.term_ids] = query_weights
        text = kernels.text_similarity(
            self.term_ids, self.tf, slots, idf, scratch, math.sqrt(float(query_weights @ query_weights))
        )
        scratch[query.term_ids] = 0.0

        classification = (
            scoring.classification_overlap(
                self.groups[slots], self.subclasses[slots],
                np.array(query.groups, dtype=np.int32), np.array(query.subclasses, dtype=np.int32),
            ) if query.groups or query.subclasses else np.zeros(len(slots), dtype=np.float32)
        )
        fields = scoring.field_overlap(self.fields[slots], query.fields)
        offered: npt.NDArray[np.integer] | int
        wanted: npt.NDArray[np.integer] | int
        trl: npt.NDArray[np.integer] | int
        timeline: npt.NDArray[np.integer] | int
        size: npt.NDArray[np.integer] | int
        if query_is_need:  # candidates are seeds
            offered, wanted = self.forms[slots], query.forms
            trl, timeline = self.stage[slots], query.stage
            size = query.size
        else:
            offered, wanted = query.forms, self.forms[slots]
            trl, timeline = query.stage, self.stage[slots]
            size = self.size[slots]
        form = scoring.form_credit(offered, wanted)
        stage = scoring.stage_credit(trl, timeline)
        region = scoring.region_relation(self.prefecture[slots], query.prefecture, self.block[slots], query.block)
        fresh = np.sqrt(
            scoring.freshness(today - self.updated_day[slots]) * scoring.freshness(today - query.updated_day)
        )
        relevance = scoring.relevance(text, classification, fields)
        scores = (
            relevance * form * stage * scoring.region_factor(region, size) * scoring.freshness_factor(fresh)
        ).astype(np.float32)
        live = self.alive[slots] & (self.expires_day[slots] >= today)
        scores = np.where(live, scores, 0.0).astype(np.float32)
        return Ranked(
            slots=slots, scores=scores,
            components={
                "text": text, "classification": classification, "fields": fields, "relevance": relevance,
                "form": np.broadcast_to(form, scores.shape), "stage": np.broadcast_to(stage, scores.shape),
                "region": region, "freshness": fresh,
            },
        )
