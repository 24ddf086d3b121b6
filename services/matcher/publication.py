"""Publication: the ranked lists the matcher keeps, and which events a change of them publishes.

Every open need has a top list (its best seeds) and every open seed one (its best needs), at most
``top_k`` long, best score first, stored as flags of the pairings (``in_need_list``, ``in_seed_list``).
When a seed or need arrives or changes (the *trigger*), the matcher ranks it, and:

- its own list is recomputed. An office sees a list through its *view*: the office of the list's
  owner sees the whole list, any other office only the pairs of its own profiles (a new need tells
  each matched seed's office that its seed was proposed; a new seed gives each office whose needs it
  fits its own ranked list). A confidential need is only ever in its own office's views.
- a seed also enters, moves in or leaves the lists of the needs it was ranked against and of those
  whose lists held it (refilled from the index when it leaves a full one): a need's ranking improves
  when a better seed arrives later. Such a change is published to the need's office.
- a need changes no seed's list (but by leaving it): a seed's list is the one it was last proposed
  with, recomputed when the seed itself changes, so that its offices are always told the difference
  from what they were told. The needs that arrive later tell the seed's office in their own lists.

A view that was empty and is not any more is ``pairings.proposed``; a view whose members or order
changed is ``pairings.updated`` (its whole new content, possibly empty); an unchanged view publishes
nothing, so a candidate that does not enter a top list causes no event. Scores drift a little as the
corpus grows (idf), so two pairs within ``ORDER_TOLERANCE`` of each other swapping places is not a
change worth telling an office: the same members in an order that differs only between such near
ties publish nothing. A trigger that is no longer
open (withdrawn, closed, paused, expired) has its pairings ``pairings.retracted`` to the offices of
their needs and seeds, and leaves every list; a list it leaves is refilled from the index.

Dismissed pairs stay stored (``verdict``), in no list, and are never ranked again.

Scores are taken as properties of the pair: the score of (seed, need) found by ranking the seed is the
one ranking the need would give, so a counterpart's list can take a new candidate in without being
ranked again. No HTTP, no Kafka, no database: the caller reads the stored pairs and writes back
what ``reconcile`` returns.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

from shared.events import (
    EventType,
    Explanation,
    NeedProfile,
    NeedSummary,
    Pairing,
    PairingsEvent,
    PairingsProposed,
    PairingsRetracted,
    PairingsUpdated,
    SeedProfile,
    SeedSummary,
)
from shared.reference import Confidentiality, office_id_for

from .domain import Candidate, ProfileIndex

Kind = Literal["seed", "need"]
DISMISSED = "dismissed"
ACCEPTED = "accepted"


def pairing_id(seed_id: str, need_id: str) -> str:
    """Stable per (seed, need): feedback and redeliveries refer to the same pairing."""
    return "pair_" + hashlib.sha256(f"{seed_id}|{need_id}".encode()).hexdigest()[:24]


def need_office(need: NeedProfile) -> str:
    return office_id_for(need.prefecture)


def seed_summary(seed: SeedProfile) -> SeedSummary:
    return SeedSummary.model_validate(seed, from_attributes=True)


def need_summary(need: NeedProfile) -> NeedSummary:
    """What may leave the matcher about a need: of a confidential need only its office's redacted summary."""
    title = need.title
    if need.confidentiality == Confidentiality.confidential:
        fields = ", ".join(need.fields) or "-"
        title = need.redacted_summary or f"非公開のニーズ / confidential need (fields: {fields})"
    return NeedSummary(
        id=need.id, title=title, prefecture=need.prefecture, office_id=need_office(need),
        company_size=need.company_size, confidentiality=need.confidentiality, fields=need.fields,
    )


def explanation_for(need: NeedProfile, explanation: Explanation) -> Explanation:
    """What may leave the matcher of an explanation: of a confidential need, no term that its
    redacted summary does not show (a shared term tells what its full text says)."""
    if need.confidentiality != Confidentiality.confidential:
        return explanation
    shown = unicodedata.normalize("NFKC", need.redacted_summary or "").lower()
    kept = [t for t in explanation.shared_terms if unicodedata.normalize("NFKC", t).lower() in shown]
    return explanation.model_copy(update={"shared_terms": kept})


def pairing_of(index: ProfileIndex, candidate: Candidate) -> Pairing:
    """A candidate as it leaves the matcher (its rank is given when an office's view is built)."""
    seed = index.profile(candidate.seed_id)
    need = index.profile(candidate.need_id)
    assert isinstance(seed, SeedProfile) and isinstance(need, NeedProfile)
    return Pairing(
        pairing_id=pairing_id(seed.id, need.id), rank=0, score=candidate.score,
        seed=seed_summary(seed), need=need_summary(need), explanation=explanation_for(need, candidate.explanation),
    )


def seed_office_of(pairing: Pairing) -> str:
    return pairing.seed.office_id or office_id_for(pairing.seed.prefecture)


def visible_to(pairing: Pairing, office_id: str) -> bool:
    """A confidential need is seen by its own office only."""
    return pairing.need.confidentiality != Confidentiality.confidential or pairing.need.office_id == office_id


def offices_of(pairing: Pairing) -> list[str]:
    """The offices a pairing concerns: its need's and its seed's (a confidential need's: its own only)."""
    offices = [pairing.need.office_id]
    seed_office = seed_office_of(pairing)
    if seed_office not in offices and visible_to(pairing, seed_office):
        offices.append(seed_office)
    return offices


def views(owner_kind: Kind, owner_office: str, members: list[Pairing]) -> dict[str, list[Pairing]]:
    """Each office's view of one ranked list: the owner's office sees all of it (but another office's
    confidential needs), any other office the pairs of its own profiles. The owner's office comes first."""
    out: dict[str, list[Pairing]] = {owner_office: [p for p in members if visible_to(p, owner_office)]}
    for pairing in members:
        office = pairing.need.office_id if owner_kind == "seed" else seed_office_of(pairing)
        if office != owner_office and visible_to(pairing, office):
            out.setdefault(office, []).append(pairing)
    return out


# Pairs whose scores are closer than this may swap places without an update (see the module docstring).
ORDER_TOLERANCE = 0.01


def only_near_ties_moved(before: list[Pairing], after: list[Pairing]) -> bool:
    """The same members, and every pair whose order changed is within ``ORDER_TOLERANCE`` (new scores)."""
    if not before or {p.pairing_id for p in before} != {p.pairing_id for p in after}:
        return False
    position = {p.pairing_id: i for i, p in enumerate(before)}
    for i, first in enumerate(after):
        for second in after[i + 1:]:
            swapped = position[first.pairing_id] > position[second.pairing_id]
            if swapped and first.score - second.score >= ORDER_TOLERANCE:
                return False
    return True


def ranked(view: list[Pairing]) -> list[Pairing]:
    """A view as published: ranks 1..n in its order."""
    return [p.model_copy(update={"rank": rank}) for rank, p in enumerate(view, start=1)]


@dataclass(frozen=True)
class StoredPair:
    """One stored pairing: whether it is in its need's and in its seed's top list, its verdict, and the
    pairing as last built (JSON, parsed only when an event needs it). A list is ordered by score."""

    id: str
    seed_id: str
    need_id: str
    score: float
    content: Mapping[str, Any]  # shared.events.Pairing as JSON
    in_need_list: bool = False
    in_seed_list: bool = False
    verdict: str | None = None

    @classmethod
    def of(cls, pairing: Pairing, **flags: Any) -> StoredPair:
        return cls(pairing.pairing_id, pairing.seed.id, pairing.need.id, pairing.score,
                   pairing.model_dump(mode="json"), **flags)

    @cached_property
    def pairing(self) -> Pairing:
        return Pairing.model_validate(self.content)

    @property
    def dismissed(self) -> bool:
        return self.verdict == DISMISSED

    def in_list_of(self, side: Kind) -> bool:
        """Whether it is in the list of its need (``side`` "need") or of its seed."""
        return self.in_need_list if side == "need" else self.in_seed_list

    def owner(self, side: Kind) -> str:
        return self.need_id if side == "need" else self.seed_id

    def member(self, side: Kind) -> str:
        return self.seed_id if side == "need" else self.need_id

    def in_a_list(self) -> bool:
        return self.in_need_list or self.in_seed_list


@dataclass(frozen=True)
class Trigger:
    """The seed or need whose event is applied; ``status`` is its status now (open or not)."""

    kind: Kind
    id: str
    office_id: str
    is_open: bool
    status: str

    @property
    def other(self) -> Kind:
        return "need" if self.kind == "seed" else "seed"

    def counterpart(self, candidate: Candidate) -> str:
        return candidate.need_id if self.kind == "seed" else candidate.seed_id

    def pair_with(self, counterpart: str) -> str:
        return pairing_id(self.id, counterpart) if self.kind == "seed" else pairing_id(counterpart, self.id)


@dataclass
class Publication:
    """What applying one trigger changes: events to publish, in order, and stored pairs to write or delete."""

    events: list[tuple[EventType, PairingsEvent]] = field(default_factory=list)
    writes: list[StoredPair] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)


# Ranks a counterpart again (best first; None when it is not open any more).
Rerank = Callable[[str], list[Candidate] | None]
# Reads stored pairs the first read did not bring (pairs a re-ranked list takes in).
LoadPairs = Callable[[list[str]], Mapping[str, StoredPair]]


def counterparts_to_read(trigger: Trigger, candidates: list[Candidate]) -> list[str]:
    """The needs whose stored lists a seed may enter: read them with the seed's own pairs. (A need enters
    no seed's list: it is read alone.)"""
    return sorted({trigger.counterpart(c) for c in candidates}) if trigger.kind == "seed" else []


def reconcile(
    trigger: Trigger,
    candidates: list[Candidate],
    stored: Mapping[str, StoredPair],
    *,
    top_k: int,
    pairing_for: Callable[[Candidate], Pairing],
    rerank: Rerank,
    load: LoadPairs,
) -> Publication:
    """Apply one trigger to the stored lists.

    ``candidates``: the trigger ranked against the index (best first; for a seed as deep as the needs'
    lists it may enter; empty when it is not open). ``stored``: every stored pair of the trigger and
    the stored lists of ``counterparts_to_read``.
    """
    return _Reconciliation(trigger, candidates, stored, top_k, pairing_for, rerank, load).run()


class _Reconciliation:
    def __init__(
        self, trigger: Trigger, candidates: list[Candidate], stored: Mapping[str, StoredPair], top_k: int,
        pairing_for: Callable[[Candidate], Pairing], rerank: Rerank, load: LoadPairs,
    ) -> None:
        self.trigger = trigger
        self.top_k = top_k
        self.pairing_for = pairing_for
        self.rerank = rerank
        self.load = load
        self.rows: dict[str, StoredPair] = dict(stored)
        self.fresh: dict[str, Candidate] = {}  # pairs ranked in this run: their new score and content
        self.content: dict[str, Pairing] = {}  # pairs built from ``fresh``
        for candidate in candidates:
            pid = pairing_id(candidate.seed_id, candidate.need_id)
            if pid not in self.fresh and not self._dismissed(pid):
                self.fresh[pid] = candidate
        self.old_lists = self._lists()
        self.new_lists: dict[tuple[Kind, str], list[str]] = {}
        self.retracted: set[str] = set()

    def run(self) -> Publication:
        trigger = self.trigger
        if not trigger.is_open:
            self.retracted = {row.id for row in self.rows.values() if self._involves_trigger(row) and row.in_a_list()}
        own = (trigger.kind, trigger.id)
        self.new_lists[own] = list(self.fresh)[: self.top_k] if trigger.is_open else []
        holding = {owner for (side, owner), pids in self.old_lists.items()
                   if side == trigger.other and trigger.pair_with(owner) in pids}
        if trigger.kind == "seed":  # the needs' lists take the seed in, move it, or let it go
            for need_id in sorted(holding | {trigger.counterpart(c) for c in self.fresh.values()}):
                self.new_lists[("need", need_id)] = self._counterpart_list(need_id)
        elif not trigger.is_open:  # a need that left leaves the seeds' lists (the retraction says so)
            for seed_id in holding:
                key: tuple[Kind, str] = ("seed", seed_id)
                self.new_lists[key] = [pid for pid in self.old_lists[key] if pid != trigger.pair_with(seed_id)]
        publication = Publication()
        self._retractions(publication)
        self._own_views(publication)
        self._counterpart_views(publication)
        self._rows(publication)
        return publication

    # ---- lists -------------------------------------------------------------------------------

    def _lists(self) -> dict[tuple[Kind, str], list[str]]:
        members: dict[tuple[Kind, str], list[str]] = {}
        for row in self.rows.values():
            for side in ("need", "seed"):
                if row.in_list_of(side):
                    members.setdefault((side, row.owner(side)), []).append(row.id)
        for (side, _), pids in members.items():  # as stored: the scores they were published with
            pids.sort(key=lambda pid: (-self.rows[pid].score, self.rows[pid].member(side)))
        return members

    def _order(self, pid: str, side: Kind) -> tuple[float, str]:
        """A list's order: best score first, then the member's id (as ``rank`` breaks ties)."""
        return -self._score(pid), self._member(pid, side)

    def _counterpart_list(self, counterpart: str) -> list[str]:
        """The counterpart's list with the trigger taken in, moved or dropped (refilled if it left)."""
        trigger = self.trigger
        old = self.old_lists.get((trigger.other, counterpart), [])
        own_pair = trigger.pair_with(counterpart)
        if own_pair in old and self._may_let_in_another(own_pair, len(old)):
            refilled = self._ranked_again(counterpart)
            if refilled is not None:
                return refilled
        entries = [pid for pid in old if pid != own_pair]
        if own_pair in self.fresh:
            entries.append(own_pair)
        entries.sort(key=lambda pid: self._order(pid, trigger.other))
        return entries[: self.top_k]

    def _may_let_in_another(self, own_pair: str, length: int) -> bool:
        """Whether a profile outside a list may now belong in it, which only ranking it again can tell:
        the trigger's score for it is unknown (it is out of the trigger's reach), or the trigger left a
        full list or fell in it."""
        if own_pair not in self.fresh:
            return self.trigger.is_open or length >= self.top_k
        return length >= self.top_k and self.fresh[own_pair].score < self.rows[own_pair].score

    def _ranked_again(self, counterpart: str) -> list[str] | None:
        candidates = self.rerank(counterpart)
        if candidates is None:
            return None
        pids = [pairing_id(c.seed_id, c.need_id) for c in candidates]
        unread = [pid for pid in pids if pid not in self.rows]
        if unread:
            self.rows.update(self.load(unread))
        kept: list[str] = []
        for pid, candidate in zip(pids, candidates, strict=True):
            if self._dismissed(pid):
                continue
            if pid not in self.fresh:
                self.fresh[pid] = candidate
            kept.append(pid)
        return kept[: self.top_k]

    def _dismissed(self, pid: str) -> bool:
        row = self.rows.get(pid)
        return row is not None and row.dismissed

    def _score(self, pid: str) -> float:
        if pid in self.fresh:
            return self.fresh[pid].score
        return self.rows[pid].score

    def _member(self, pid: str, side: Kind) -> str:
        if pid in self.fresh:
            candidate = self.fresh[pid]
            return candidate.seed_id if side == "need" else candidate.need_id
        return self.rows[pid].member(side)

    def _pairing(self, pid: str) -> Pairing:
        if pid in self.fresh:
            if pid not in self.content:
                self.content[pid] = self.pairing_for(self.fresh[pid])
            return self.content[pid]
        return self.rows[pid].pairing

    def _involves_trigger(self, row: StoredPair) -> bool:
        return (row.seed_id if self.trigger.kind == "seed" else row.need_id) == self.trigger.id

    # ---- events ------------------------------------------------------------------------------

    def _retractions(self, publication: Publication) -> None:
        by_office: dict[str, list[Pairing]] = {}
        for pid in sorted(self.retracted, key=lambda p: -self.rows[p].score):
            pairing = self.rows[pid].pairing
            for office in offices_of(pairing):
                by_office.setdefault(office, []).append(pairing)
        trigger = self.trigger
        for office in sorted(by_office, key=lambda o: (o != trigger.office_id, o)):
            publication.events.append((EventType.pairings_retracted, PairingsRetracted(
                office_id=office, trigger_kind=trigger.kind, trigger_id=trigger.id, pairings=by_office[office],
                reason=trigger.status,
            )))

    def _before(self, key: tuple[Kind, str]) -> list[Pairing]:
        """A list as its offices last saw it, less what the retraction just withdrew."""
        return [self._old_pairing(pid) for pid in self.old_lists.get(key, []) if pid not in self.retracted]

    def _old_pairing(self, pid: str) -> Pairing:
        row = self.rows.get(pid)
        return row.pairing if row is not None else self._pairing(pid)

    def _own_views(self, publication: Publication) -> None:
        trigger = self.trigger
        key = (trigger.kind, trigger.id)
        old = views(trigger.kind, trigger.office_id, self._before(key))
        new = views(trigger.kind, trigger.office_id, [self._pairing(pid) for pid in self.new_lists[key]])
        for office in dict.fromkeys([*new, *old]):
            self._publish_change(publication, office, key, old.get(office, []), new.get(office, []))

    def _counterpart_views(self, publication: Publication) -> None:
        trigger = self.trigger
        if trigger.kind != "seed":
            return  # a need changes no seed's list but by leaving it, which its retraction tells
        for key, pids in self.new_lists.items():
            if key[0] != "need" or key[1] == trigger.id:
                continue
            before = self._before(key)
            after = [self._pairing(pid) for pid in pids]
            office = next((p.need.office_id for p in (*after, *before)), None)
            if office is not None:
                self._publish_change(publication, office, key, before, after)

    def _publish_change(
        self, publication: Publication, office: str, key: tuple[Kind, str], before: list[Pairing],
        after: list[Pairing],
    ) -> None:
        if [p.pairing_id for p in before] == [p.pairing_id for p in after] or only_near_ties_moved(before, after):
            return
        kind, owner = key
        if before:
            publication.events.append((EventType.pairings_updated, PairingsUpdated(
                office_id=office, trigger_kind=kind, trigger_id=owner, pairings=ranked(after),
                cause_kind=self.trigger.kind, cause_id=self.trigger.id,
            )))
        else:
            publication.events.append((EventType.pairings_proposed, PairingsProposed(
                office_id=office, trigger_kind=kind, trigger_id=owner, pairings=ranked(after),
            )))

    # ---- stored pairs ------------------------------------------------------------------------

    def _rows(self, publication: Publication) -> None:
        membership: dict[str, dict[Kind, bool]] = {}
        for (side, owner), pids in self.new_lists.items():
            for pid in self.old_lists.get((side, owner), []):
                membership.setdefault(pid, {})[side] = False
            for pid in pids:
                membership.setdefault(pid, {})[side] = True
        for pid, changes in membership.items():
            stored = self.rows.get(pid)
            # A pair ranked now gets its score and content as they are now.
            current = stored if stored is not None and pid not in self.fresh else StoredPair.of(self._pairing(pid))
            after = replace(
                current,
                in_need_list=changes.get("need", stored is not None and stored.in_need_list),
                in_seed_list=changes.get("seed", stored is not None and stored.in_seed_list),
                verdict=stored.verdict if stored is not None else None,
            )
            if not after.in_a_list() and not after.dismissed:
                if stored is not None:
                    publication.deletes.append(pid)
            elif after != stored:
                publication.writes.append(after)
