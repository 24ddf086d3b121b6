"""Ranking: an in-memory index of open seeds and needs, the pair score, explanations, pairing lists.

No HTTP, no Kafka, no database: plain objects, easy to test. The search structures live in
services/matcher/index.py, the score and its weights in services/matcher/scoring.py, the analyser
in services/matcher/analysis.py.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from itertools import repeat
from typing import Literal

import numpy as np
import numpy.typing as npt

from shared.events import (
    Explanation,
    NeedProfile,
    ScoreComponents,
    SeedProfile,
)
from shared.reference import (
    PREFECTURES,
    TECHNOLOGY_FIELDS,
    Confidentiality,
    ProfileStatus,
    today_in_japan,
)

from . import kernels, scoring
from .analysis import matched_phrases, matched_phrases_of_rows, weighted_counts_of_parts
from .index import MAX_DOC_TERMS, NO_EXPIRY, Floats, KindIndex, Ranked, Signature, Slots, Vocabulary

# How much each part of a profile counts towards its terms (the title says most about it).
TITLE_WEIGHT = 3.0
KEYWORD_WEIGHT = 2.0
SUMMARY_WEIGHT = 2.0
DESCRIPTION_WEIGHT = 1.0
TRANSLATED_TITLE_WEIGHT = 2.0
TRANSLATED_SUMMARY_WEIGHT = 1.0
CONCEPT_WEIGHT = 1.0  # a lexicon concept term against a word of the text
MAX_EXPLAINED_TERMS = 6
EXPLAINED_TERM_POOL = 16  # the heaviest shared terms an explanation's phrases are built from

Kind = Literal["seed", "need"]
# scoring.FITTING_FORM as plain lists of forms (None: nothing fits): read once per explanation.
_FITTING_FORM = [[scoring.FORMS[f] if f >= 0 else None for f in row] for row in scoring.FITTING_FORM.tolist()]
# scoring.forms_mask of a seed's offers, by the offers themselves (a few combinations of 7 forms).
_OFFERED_MASKS: dict[tuple[str, ...], int] = {}
FIELD_BIT = {code: 1 << i for i, code in enumerate(TECHNOLOGY_FIELDS)}
_CODE = re.compile(r"^([A-HY][0-9]{2}[A-Z])(?: ?([0-9]{1,4})(?:/[0-9]+)?)?")


@dataclass
class Document:
    """One profile analysed: weighted term counts and the attributes the score reads."""

    id: str
    kind: Kind
    counts: Counter[str]
    fields: frozenset[str]
    classification: tuple[tuple[str, str | None], ...]  # (subclass, main group or None)
    profile: SeedProfile | NeedProfile


@dataclass(frozen=True)
class Candidate:
    """One ranked pair: its score in [0, 1], the score's components, and the explanation."""

    seed_id: str
    need_id: str
    score: float
    explanation: Explanation
    components: ScoreComponents | None = None


@lru_cache(maxsize=65_536)
def classification_parts(code: str) -> tuple[str, str | None]:
    """("H10N", "H10N 10") of "H10N 10/856"; ("G06N", None) of a subclass alone."""
    match = _CODE.match(code.strip().upper())
    if match is None:
        return code.strip().upper(), None
    subclass, group = match.groups()
    return subclass, (f"{subclass} {group}" if group else None)


def profile_texts(profile: SeedProfile | NeedProfile) -> list[tuple[str, float]]:
    """The texts of a profile with their weights; the translated title and summary count too."""
    parts = [
        (profile.title, TITLE_WEIGHT),
        (" / ".join(profile.keywords), KEYWORD_WEIGHT),
        (profile.summary or "", SUMMARY_WEIGHT),
        (profile.description, DESCRIPTION_WEIGHT),
        (profile.title_translated or "", TRANSLATED_TITLE_WEIGHT),
        (profile.summary_translated or "", TRANSLATED_SUMMARY_WEIGHT),
    ]
    return [(text, weight) for text, weight in parts if text and weight > 0]


def display_text(profile: SeedProfile | NeedProfile) -> str:
    """The text matched terms are quoted from, in the profile's own words (its parts, one per line)."""
    return "\n".join(text for text, _ in profile_texts(profile))


def _document_of(profile: SeedProfile | NeedProfile, kind: Kind) -> Document:
    _, counts = weighted_counts_of_parts(profile_texts(profile), CONCEPT_WEIGHT)
    return Document(
        id=profile.id, kind=kind, counts=counts, fields=frozenset(profile.fields),
        classification=tuple(classification_parts(code) for code in profile.classification_codes),
        profile=profile,
    )


def _sublinear(tf: Floats) -> Floats:
    """``np.where(tf >= 1, 1.0 + np.log(np.maximum(tf, 1e-9)), tf).astype(np.float32)``, in two
    passes when every count is at least 1 (as they come: the weights of the parts are)."""
    if len(tf) and tf.min() >= 1:
        sublinear = np.log(tf)
        sublinear += 1.0
        return sublinear
    return np.where(tf >= 1, 1.0 + np.log(np.maximum(tf, 1e-9)), tf).astype(np.float32)


def _heaviest(lightness: Floats, count: int) -> npt.NDArray[np.intp]:
    """The positions of the ``count`` lowest values (-weights), lowest first, ties by position:
    ``kept[np.lexsort((kept, lightness[kept]))]`` of ``np.argpartition``'s ``kept`` (or of every
    position), the stable sort lexsort makes of its last key once its first is in order."""
    if len(lightness) > count:
        kept = np.argpartition(lightness, count)[:count]
        kept.sort()
        return kept[np.argsort(lightness[kept], kind="stable")]
    return np.argsort(lightness, kind="stable")


def _day(value: date | None) -> int:
    return value.toordinal() if value is not None else NO_EXPIRY


@dataclass
class ProfileIndex:
    """Open seeds and needs: their profiles, and per kind the compact search structures.

    ``today`` gives the Japanese calendar date: a profile whose ``expires_on`` has passed is never
    ranked nor returned, even before its expiry event arrives.
    """

    today: Callable[[], date] = today_in_japan
    profiles: dict[str, SeedProfile | NeedProfile] = field(default_factory=dict)
    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.kinds: dict[Kind, KindIndex] = {
            "seed": KindIndex(self.vocabulary), "need": KindIndex(self.vocabulary),
        }

    def __len__(self) -> int:
        return len(self.profiles)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"seeds": len(self.kinds["seed"]), "needs": len(self.kinds["need"])}

    def upsert(self, profile: SeedProfile | NeedProfile) -> None:
        """Add or replace a profile; a profile that is not open (or has expired) leaves the index."""
        kind: Kind = "seed" if isinstance(profile, SeedProfile) else "need"
        document = _document_of(profile, kind) if profile.status == ProfileStatus.open else None
        with self._lock:
            previous = self.profiles.get(profile.id)
            if previous is not None and previous.version > profile.version:
                return  # an older event arriving late
            self.remove(profile.id)
            if document is None or _day(profile.expires_on) < self.today().toordinal():
                return
            self.profiles[profile.id] = profile
            signature, weights, plain = self._signature_and_weights(document)
            self.kinds[kind].add(profile.id, signature, weights=weights, remember=plain)

    def remove(self, profile_id: str) -> None:
        with self._lock:
            profile = self.profiles.pop(profile_id, None)
            if profile is not None:
                self.kinds["seed" if isinstance(profile, SeedProfile) else "need"].remove(profile_id)

    def signature_of(self, document: Document) -> Signature:
        """The document's heaviest terms (sublinear tf × idf now) and its attributes as codes."""
        return self._signature_and_weights(document)[0]

    def _signature_and_weights(self, document: Document) -> tuple[Signature, Floats, bool]:
        """``signature_of``, with the kept terms' tf × idf (what ``KindIndex.add`` computes the norm
        of, while the vocabulary has not changed) and whether every kept term id is above 0 (then
        the signature is what ``KindIndex.signature`` reads back, its tf rounded as stored aside)."""
        vocabulary = self.vocabulary
        terms = list(document.counts)
        ids = list(map(vocabulary.ids.get, terms, repeat(0, len(terms))))  # 0: a term new to the vocabulary
        id_array = np.array(ids, dtype=np.int64)
        df = vocabulary.df[id_array]
        tf = np.fromiter(document.counts.values(), dtype=np.float32, count=len(terms))
        tf = _sublinear(tf)
        weights = tf * np.log1p((vocabulary.documents + 1) / (df + 1.0)).astype(np.float32)
        lightness = -weights
        kept = _heaviest(lightness, MAX_DOC_TERMS)
        kept_ids = id_array[kept]
        profile = document.profile
        groups = [vocabulary.id_of("ipc:" + group) for _, group in document.classification if group]
        subclasses = [vocabulary.id_of("ipc:" + subclass) for subclass, _ in document.classification]
        prefecture = PREFECTURES.get(profile.prefecture)
        if isinstance(profile, SeedProfile):
            forms, stage, size = scoring.forms_mask(profile.offers), profile.trl or 0, 0
        else:
            forms = scoring.forms_mask(profile.wanted_forms)
            stage, size = min(profile.timeline_months or 0, 120), scoring.SIZE_CODE[profile.company_size]
        plain = bool(kept_ids.all())
        if plain:  # every kept term known to the vocabulary already
            term_ids = kept_ids.astype(np.int32)
        else:  # new terms get their ids in the order they are kept (after the codes')
            id_list = [ids[i] or vocabulary.id_of(terms[i]) for i in kept.tolist()]
            plain = all(id_list)  # (the empty term has id 0)
            term_ids = np.array(id_list, dtype=np.int32)
        signature = Signature(
            term_ids=term_ids,
            tf=tf[kept],
            fields=sum(FIELD_BIT.get(code, 0) for code in document.fields),
            groups=list(dict.fromkeys(groups)), subclasses=list(dict.fromkeys(subclasses)),
            forms=forms, stage=stage,
            prefecture=int(profile.prefecture) if prefecture else 0,
            block=scoring.BLOCK_CODE[prefecture.block] if prefecture else 0,
            size=size, updated_day=profile.updated_at.date().toordinal(), expires_day=_day(profile.expires_on),
        )
        return signature, weights[kept], plain

    def rank(
        self, profile_id: str, limit: int, min_score: float, *,
        exclude: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(), exact: bool = False,
    ) -> list[Candidate]:
        """The best open profiles of the other kind for ``profile_id``, best first.

        Only pairs scoring above 0 and at least ``min_score`` come back; a (seed id, need id) pair in
        ``exclude`` (dismissed by a coordinator) never does. ``exact`` scores every profile instead
        of the fast path's candidates (for measurement).
        """
        with self._lock:
            query_profile = self.profiles.get(profile_id)
            if query_profile is None:
                return []
            query_is_need = isinstance(query_profile, NeedProfile)
            query_kind: Kind = "need" if query_is_need else "seed"
            query = self.kinds[query_kind].signature(profile_id)
            today = self.today().toordinal()
            if query is None or query.expires_day < today:
                return []
            other = self.kinds["seed" if query_is_need else "need"]
            idf = self.vocabulary.idf()
            if exact:
                slots = np.flatnonzero(other.alive[: len(other.ids)])
            else:
                slots = other.candidates(query, query_is_need, idf)
            if not len(slots):
                return []
            ranked = other.score(query, query_is_need, slots, idf, today)
            return self._top(query_profile, query, other, ranked, limit, min_score, exclude)

    def _top(
        self, query_profile: SeedProfile | NeedProfile, query: Signature, other: KindIndex, ranked: Ranked,
        limit: int, min_score: float, exclude: frozenset[tuple[str, str]] | set[tuple[str, str]],
    ) -> list[Candidate]:
        query_is_need = isinstance(query_profile, NeedProfile)
        chosen: list[tuple[int, str, str]] = []
        best = kernels.best(ranked.scores, ranked.slots, min_score, limit)
        if best is not None and best[1] and exclude:  # pairs left out: perhaps more are needed
            best = kernels.best(ranked.scores, ranked.slots, min_score, len(ranked.scores))
        # Positions by (-score, slot), of scores above 0 and at least min_score only (NaN: numpy sorts).
        order = best[0] if best is not None else np.lexsort((ranked.slots, -ranked.scores))
        slots = ranked.slots[order].tolist()
        for position, slot, score in zip(order.tolist(), slots, ranked.scores[order].tolist(), strict=True):
            if score <= 0 or score < min_score or len(chosen) >= limit:
                break
            other_id = other.ids[slot]
            assert other_id is not None
            seed_id, need_id = (other_id, query_profile.id) if query_is_need else (query_profile.id, other_id)
            if (seed_id, need_id) not in exclude:
                chosen.append((position, seed_id, need_id))
        if not chosen:
            return []
        positions = np.array([position for position, _, _ in chosen], dtype=np.int64)
        # The score and its components rounded as published, in one array: a row each.
        rounded: np.ndarray
        if ranked.table is not None:
            rounded = kernels.published(ranked.table, positions)
        else:
            rounded = np.round(
                np.stack([ranked.scores, *ranked.components.values()])[:, positions].astype(np.float64), 4
            )
        scores, *component_rows = rounded.tolist()
        names = list(ranked.components)
        component_values = list(zip(*component_rows, strict=True))  # a tuple per candidate
        query_side = NeedSide.of(query_profile) if isinstance(query_profile, NeedProfile) else None
        pairs: list[tuple[SeedProfile, NeedSide]] = []
        for _, seed_id, need_id in chosen:
            seed, need = self.profiles[seed_id], self.profiles[need_id]
            assert isinstance(seed, SeedProfile) and isinstance(need, NeedProfile)
            pairs.append((seed, query_side or NeedSide.of(need)))
        terms_of = self._explained_terms(query, other, ranked.slots[positions], pairs)
        top: list[Candidate] = []
        for i, (_, seed_id, need_id) in enumerate(chosen):
            # Plain floats from our own arrays: validating them (in pydantic's core) costs less than
            # model_construct's Python loop, and gives the same model.
            components = ScoreComponents(**dict(zip(names, component_values[i], strict=True)))
            seed, side = pairs[i]
            top.append(Candidate(
                seed_id=seed_id, need_id=need_id, score=scores[i],
                explanation=_explanation(seed, side, terms_of[i], components), components=components,
            ))
        return top

    def _explained_terms(
        self, query: Signature, other: KindIndex, slots: Slots, pairs: list[tuple[SeedProfile, NeedSide]],
    ) -> list[list[str]]:
        """Per slot, the phrases its explanation quotes (``explain``'s, exactly): the shared terms of
        ``_shared_term_rows`` found in the quoted text (the need's, or the seed's for a confidential
        need), all the slots quoting one text at once (one need's text for all its seeds)."""
        counts, term_ids, weights = self._shared_term_rows(query, other, slots)
        texts = [side.quoted_text if side.quoted_text is not None else display_text(seed) for seed, side in pairs]
        terms = self.vocabulary.terms
        if all(text is texts[0] for text in texts):  # one need quoted with all its seeds
            return matched_phrases_of_rows(texts[0], term_ids, counts, weights, terms, MAX_EXPLAINED_TERMS)
        rows_of: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            rows_of.setdefault(text, []).append(i)
        terms_of: list[list[str]] = [[] for _ in texts]
        for text, rows in rows_of.items():
            for i, row_terms in zip(rows, matched_phrases_of_rows(
                text, term_ids[rows], counts[rows], weights[rows], terms, MAX_EXPLAINED_TERMS,
            ), strict=True):
                terms_of[i] = row_terms
        return terms_of

    def _shared_term_rows(
        self, query: Signature, other: KindIndex, slots: Slots,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
        """Per slot, the terms its signature shares with the query's, the heaviest first (at most
        ``EXPLAINED_TERM_POOL``), each with its weight in the text score: query weight × the
        profile's tf × idf, in double precision as the explanation ranks them. One pass over the
        returned slots' rows at once: how many, their ids and weights, a row per slot.
        """
        idf = self.vocabulary.idf()
        scratch = self.vocabulary.scratch
        scratch[query.term_ids] = query.tf * idf[query.term_ids]
        # Every query term weighs more than 0 (tf and idf do): a zero is a term the query lacks.
        counts, term_ids, weights = kernels.shared_terms(other.term_ids, other.tf, slots, idf, scratch,
                                                         EXPLAINED_TERM_POOL)
        scratch[query.term_ids] = 0.0
        return counts, term_ids, weights

    def profile(self, profile_id: str) -> SeedProfile | NeedProfile | None:
        return self.profiles.get(profile_id)

    @property
    def documents(self) -> Mapping[str, Document]:
        """The indexed profiles as analysed documents (analysed again on reading: for tests and tools)."""
        return _Documents(self.profiles)


class _Documents(Mapping[str, Document]):
    def __init__(self, profiles: dict[str, SeedProfile | NeedProfile]) -> None:
        self._profiles = profiles

    def __getitem__(self, profile_id: str) -> Document:
        profile = self._profiles[profile_id]
        return _document_of(profile, "seed" if isinstance(profile, SeedProfile) else "need")

    def __iter__(self) -> Iterator[str]:
        return iter(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)


def region_relation(seed: SeedProfile, need: NeedProfile) -> Literal["same_prefecture", "same_block", "other"]:
    if seed.prefecture == need.prefecture:
        return "same_prefecture"
    seed_prefecture, need_prefecture = PREFECTURES.get(seed.prefecture), PREFECTURES.get(need.prefecture)
    if seed_prefecture and need_prefecture and seed_prefecture.block == need_prefecture.block:
        return "same_block"
    return "other"


@dataclass(frozen=True)
class NeedSide:
    """What every explanation of one need reads of it, worked out once for all its pairs."""

    need: NeedProfile
    groups: frozenset[str]
    subclasses: frozenset[str]
    wanted_forms: int
    required_trl: int | None
    fields: frozenset[str]
    quoted_text: str | None  # the need's own text when it may be quoted (not confidential)

    @classmethod
    def of(cls, need: NeedProfile) -> NeedSide:
        codes = [classification_parts(code) for code in need.classification_codes]
        return cls(
            need=need, groups=frozenset(group for _, group in codes if group),
            subclasses=frozenset(subclass for subclass, _ in codes),
            wanted_forms=scoring.forms_mask(need.wanted_forms),
            required_trl=scoring.required_trl(need.timeline_months) if need.timeline_months else None,
            fields=frozenset(need.fields),
            quoted_text=None if need.confidentiality == Confidentiality.confidential else display_text(need),
        )


def explain(
    seed: SeedProfile, need: NeedProfile | NeedSide, shared: dict[str, float],
    components: ScoreComponents | None = None,
) -> Explanation:
    """What a coordinator reads next to a pairing.

    Matched terms are quoted in the original script from the need's text; for a confidential need
    only from the seed's text (a term the two share, in the seed's words), so no word of the need
    leaves the matcher. ``need`` may come as its ``NeedSide``, when one need is explained with many
    seeds.
    """
    side = need if isinstance(need, NeedSide) else NeedSide.of(need)
    quoted_text = side.quoted_text if side.quoted_text is not None else display_text(seed)
    terms = matched_phrases(quoted_text, shared, rank=shared)[:MAX_EXPLAINED_TERMS]
    return _explanation(seed, side, terms, components)


def _explanation(
    seed: SeedProfile, side: NeedSide, terms: list[str], components: ScoreComponents | None,
) -> Explanation:
    """``explain``'s explanation once its phrases are known (ProfileIndex finds those of all its
    candidates at once)."""
    # (A need without codes shares none: most needs, no code of the seed looked at.)
    shared_codes = [
        code for code in seed.classification_codes
        if (parts := classification_parts(code))[1] in side.groups or parts[0] in side.subclasses
    ] if seed.classification_codes and (side.groups or side.subclasses) else []
    offers = tuple(seed.offers)
    offered = _OFFERED_MASKS.get(offers)
    if offered is None:
        if len(_OFFERED_MASKS) >= 4096:
            _OFFERED_MASKS.clear()
        offered = _OFFERED_MASKS[offers] = scoring.forms_mask(seed.offers)
    return Explanation(
        shared_terms=terms,
        shared_fields=sorted(side.fields.intersection(seed.fields)),
        shared_classification_codes=shared_codes,
        collaboration_form=_FITTING_FORM[offered][side.wanted_forms],
        region=region_relation(seed, side.need),
        trl=seed.trl, required_trl=side.required_trl,
        components=components,
    )
