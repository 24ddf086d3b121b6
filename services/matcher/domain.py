"""Ranking: an in-memory index of open seeds and needs, a first honest scorer.

No HTTP, no Kafka, no database: plain objects, easy to test.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal

from shared.events import (
    Explanation,
    NeedProfile,
    SeedProfile,
)
from shared.reference import ProfileStatus

from .analysis import normalise, shared_phrases, term_counts

# Every weight of the score, in one place.
TEXT_WEIGHT = 0.75
FIELD_WEIGHT = 0.25
TITLE_REPEAT = 2  # title and keywords count twice as much as the description
MAX_EXPLAINED_TERMS = 6

Kind = Literal["seed", "need"]


@dataclass
class Document:
    """One indexed profile: its term frequencies, fields and the profile itself."""

    id: str
    kind: Kind
    counts: Counter[str]
    fields: frozenset[str]
    keywords: tuple[str, ...]
    profile: SeedProfile | NeedProfile
    norm: float = 1.0


@dataclass(frozen=True)
class Candidate:
    seed_id: str
    need_id: str
    score: float
    explanation: Explanation


def _document_of(profile: SeedProfile | NeedProfile, kind: Kind) -> Document:
    keywords = " ".join(profile.keywords)
    counts = term_counts(
        (profile.title, TITLE_REPEAT), (keywords, TITLE_REPEAT), (profile.description, 1)
    )
    return Document(
        id=profile.id, kind=kind, counts=counts, fields=frozenset(profile.fields),
        keywords=tuple(profile.keywords), profile=profile,
    )


@dataclass
class ProfileIndex:
    """Open seeds and needs with an inverted index per kind; TF-IDF cosine plus field overlap."""

    documents: dict[str, Document] = field(default_factory=dict)
    postings: dict[Kind, dict[str, set[str]]] = field(
        default_factory=lambda: {"seed": defaultdict(set), "need": defaultdict(set)}
    )
    # Technology field -> ids per kind: documents sharing only a field are candidates too.
    field_postings: dict[Kind, dict[str, set[str]]] = field(
        default_factory=lambda: {"seed": defaultdict(set), "need": defaultdict(set)}
    )
    document_frequency: Counter[str] = field(default_factory=Counter)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __len__(self) -> int:
        return len(self.documents)

    def counts(self) -> dict[str, int]:
        with self._lock:
            seeds = sum(1 for d in self.documents.values() if d.kind == "seed")
            return {"seeds": seeds, "needs": len(self.documents) - seeds}

    def idf(self, term: str) -> float:
        return math.log(1 + (1 + len(self.documents)) / (1 + self.document_frequency[term]))

    def upsert(self, profile: SeedProfile | NeedProfile) -> None:
        """Add or replace a profile; a profile that is not open leaves the index."""
        kind: Kind = "seed" if isinstance(profile, SeedProfile) else "need"
        with self._lock:
            previous = self.documents.get(profile.id)
            if previous is not None and previous.profile.version > profile.version:
                return  # an older event arriving late
            self.remove(profile.id)
            if profile.status != ProfileStatus.open:
                return
            document = _document_of(profile, kind)
            self.documents[document.id] = document
            for term in document.counts:
                self.postings[kind][term].add(document.id)
                self.document_frequency[term] += 1
            for technology_field in document.fields:
                self.field_postings[kind][technology_field].add(document.id)
            document.norm = self._norm(document.counts)

    def remove(self, profile_id: str) -> None:
        with self._lock:
            document = self.documents.pop(profile_id, None)
            if document is None:
                return
            for term in document.counts:
                self.postings[document.kind][term].discard(profile_id)
                self.document_frequency[term] -= 1
            for technology_field in document.fields:
                self.field_postings[document.kind][technology_field].discard(profile_id)

    def _norm(self, counts: Counter[str]) -> float:
        return math.sqrt(sum((tf * self.idf(t)) ** 2 for t, tf in counts.items())) or 1.0

    def rank(
        self, profile_id: str, limit: int, min_score: float, *, exclude: frozenset[tuple[str, str]] = frozenset()
    ) -> list[Candidate]:
        """The best profiles of the other kind for ``profile_id``, best first; never an excluded
        ``(seed_id, need_id)`` pair."""
        with self._lock:
            query = self.documents.get(profile_id)
            if query is None:
                return []
            other: Kind = "need" if query.kind == "seed" else "seed"
            query_norm = self._norm(query.counts)
            dot: dict[str, float] = defaultdict(float)
            for term, tf in query.counts.items():
                idf = self.idf(term)
                for doc_id in self.postings[other].get(term, ()):
                    dot[doc_id] += tf * idf * self.documents[doc_id].counts[term] * idf
            for technology_field in query.fields:
                for doc_id in self.field_postings[other].get(technology_field, ()):
                    dot.setdefault(doc_id, 0.0)
            candidates = []
            for doc_id, product in dot.items():
                doc = self.documents[doc_id]
                text = product / (query_norm * doc.norm)
                union = query.fields | doc.fields
                fields = len(query.fields & doc.fields) / len(union) if union else 0.0
                score = TEXT_WEIGHT * text + FIELD_WEIGHT * fields
                if score < min_score:
                    continue
                seed, need = (query, doc) if query.kind == "seed" else (doc, query)
                if (seed.id, need.id) in exclude:
                    continue
                candidates.append(
                    Candidate(seed.id, need.id, round(score, 4), self._explain(seed, need))
                )
            candidates.sort(key=lambda c: (-c.score, c.seed_id if query.kind == "need" else c.need_id))
            return candidates[:limit]

    def _explain(self, seed: Document, need: Document) -> Explanation:
        """Shared keywords in their original script first, then the heaviest shared terms."""
        need_text = normalise(f"{need.profile.title} {' '.join(need.keywords)} {need.profile.description}")
        seed_text = normalise(f"{seed.profile.title} {' '.join(seed.keywords)} {seed.profile.description}")
        shared: list[str] = []
        for keyword in (*seed.keywords, *need.keywords):
            folded = normalise(keyword)
            if folded in need_text and folded in seed_text and keyword not in shared:
                shared.append(keyword)
        common = seed.counts.keys() & need.counts.keys()
        for phrase in shared_phrases(need_text, common):
            if len(shared) >= MAX_EXPLAINED_TERMS:
                break
            if not any(phrase in normalise(s) for s in shared):
                shared.append(phrase)
        return Explanation(
            shared_terms=shared[:MAX_EXPLAINED_TERMS], shared_fields=sorted(seed.fields & need.fields)
        )

    def profile(self, profile_id: str) -> SeedProfile | NeedProfile | None:
        document = self.documents.get(profile_id)
        return document.profile if document else None
