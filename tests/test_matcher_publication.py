"""What the matcher publishes as seeds and needs come, change and go (services/matcher/publication.py).

The ranking is scripted (a fixed score per seed-need pair), so these tests are about publication
only: which office gets which list, when, and never twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.matcher.domain import Candidate, ProfileIndex
from services.matcher.events import Profile
from services.matcher.publication import (
    StoredPair,
    Trigger,
    need_summary,
    only_near_ties_moved,
    pairing_id,
    pairing_of,
    reconcile,
    seed_summary,
)
from shared.events import Explanation, NeedProfile, Pairing, PairingsEvent, PairingsRetracted, PairingsUpdated
from shared.reference import ProfileStatus
from tests.factories import need_profile, seed_profile


@dataclass
class Published:
    kind: str  # proposed | updated | retracted
    event: PairingsEvent

    @property
    def office(self) -> str:
        return self.event.office_id

    @property
    def members(self) -> list[str]:
        """The other side of each pairing, in rank order."""
        own = self.event.trigger_id
        return [p.need.id if p.seed.id == own else p.seed.id for p in self.event.pairings]


@dataclass
class ScriptedMatcher:
    """Open profiles, a score per (seed, need), and the stored pairs: the matcher without ranker or database."""

    top_k: int = 3
    reach: int = 10
    min_score: float = 0.1
    profiles: dict[str, Profile] = field(default_factory=dict)
    scores: dict[tuple[str, str], float] = field(default_factory=dict)
    rows: dict[str, StoredPair] = field(default_factory=dict)

    def score(self, seed_id: str, need_id: str, value: float) -> None:
        self.scores[(seed_id, need_id)] = value

    def rank(self, profile_id: str, limit: int) -> list[Candidate]:
        profile = self.profiles.get(profile_id)
        if profile is None:
            return []
        is_need = isinstance(profile, NeedProfile)
        dismissed = {(r.seed_id, r.need_id) for r in self.rows.values() if r.dismissed}
        found = []
        for other in self.profiles.values():
            if isinstance(other, NeedProfile) == is_need:
                continue
            pair = (other.id, profile_id) if is_need else (profile_id, other.id)
            value = self.scores.get(pair, 0.0)
            if value >= self.min_score and pair not in dismissed:
                found.append(Candidate(*pair, value, Explanation(shared_terms=["排熱"])))
        found.sort(key=lambda c: (-c.score, c.seed_id if is_need else c.need_id))
        return found[:limit]

    def pairing_for(self, candidate: Candidate) -> Pairing:
        seed, need = self.profiles[candidate.seed_id], self.profiles[candidate.need_id]
        assert isinstance(need, NeedProfile) and not isinstance(seed, NeedProfile)
        return Pairing(pairing_id=pairing_id(seed.id, need.id), rank=0, score=candidate.score,
                       seed=seed_summary(seed), need=need_summary(need), explanation=candidate.explanation)

    def apply(self, profile: Profile) -> list[Published]:
        """The profile's event: what Matcher.handle does, against ``rows`` instead of the database."""
        is_open = profile.status == ProfileStatus.open
        if is_open:
            self.profiles[profile.id] = profile
        else:
            self.profiles.pop(profile.id, None)
        kind = "need" if isinstance(profile, NeedProfile) else "seed"
        trigger = Trigger(kind, profile.id, profile.office_id, is_open, profile.status.value)
        candidates = self.rank(profile.id, max(self.top_k, self.reach))
        publication = reconcile(
            trigger, candidates, dict(self.rows), top_k=self.top_k, pairing_for=self.pairing_for,
            rerank=lambda q: self.rank(q, self.top_k + 5) if q in self.profiles else None,
            load=lambda ids: {},
        )
        for pair in publication.writes:
            self.rows[pair.id] = pair
        for pid in publication.deletes:
            del self.rows[pid]
        return [Published(t.value.split(".")[3], e) for t, e in publication.events]

    def need_list(self, need_id: str) -> list[str]:
        rows = [r for r in self.rows.values() if r.need_id == need_id and r.in_need_list]
        return [r.seed_id for r in sorted(rows, key=lambda r: (-r.score, r.seed_id))]

    def seed_list(self, seed_id: str) -> list[str]:
        rows = [r for r in self.rows.values() if r.seed_id == seed_id and r.in_seed_list]
        return [r.need_id for r in sorted(rows, key=lambda r: (-r.score, r.need_id))]

    def dismiss(self, seed_id: str, need_id: str) -> None:
        """As POST /v1/pairings/{id}/feedback does: the pair leaves both lists and stays, dismissed."""
        from dataclasses import replace

        pid = pairing_id(seed_id, need_id)
        self.rows[pid] = replace(self.rows[pid], in_need_list=False, in_seed_list=False, verdict="dismissed")


def seed(id: str, prefecture: str = "01", **overrides: Any) -> Profile:
    return seed_profile(id, prefecture=prefecture, **overrides)


def need(id: str, prefecture: str = "13", **overrides: Any) -> Profile:
    return need_profile(id, prefecture=prefecture, **overrides)


def by_office(published: list[Published]) -> dict[tuple[str, str], list[str]]:
    return {(p.kind, p.office): p.members for p in published}


# ---- a new need, a new seed ----------------------------------------------------------------------


def test_a_new_need_goes_whole_to_its_office_and_each_seed_office_hears_of_its_own_seeds() -> None:
    m = ScriptedMatcher()
    for profile in (seed("seed_a", "01"), seed("seed_b", "27"), seed("seed_c", "01")):
        m.apply(profile)
    m.score("seed_a", "need_1", 0.9)
    m.score("seed_b", "need_1", 0.7)
    m.score("seed_c", "need_1", 0.5)

    published = m.apply(need("need_1", "13"))

    assert by_office(published) == {
        ("proposed", "office-13"): ["seed_a", "seed_b", "seed_c"],
        ("proposed", "office-01"): ["seed_a", "seed_c"],
        ("proposed", "office-27"): ["seed_b"],
    }
    assert published[0].office == "office-13", "the need's own office first: it is the latency path"
    assert all(p.event.trigger_kind == "need" and p.event.trigger_id == "need_1" for p in published)
    assert [p.rank for p in published[1].event.pairings] == [1, 2]
    assert m.need_list("need_1") == ["seed_a", "seed_b", "seed_c"]
    assert m.seed_list("seed_a") == [], "a seed's own list changes when the seed does"


def test_a_new_seed_gives_each_office_whose_needs_it_fits_its_own_list_and_its_office_the_whole() -> None:
    m = ScriptedMatcher()
    for profile in (need("need_tokyo", "13"), need("need_osaka", "27"), need("need_osaka2", "27")):
        m.apply(profile)
    m.score("seed_1", "need_tokyo", 0.8)
    m.score("seed_1", "need_osaka", 0.6)
    m.score("seed_1", "need_osaka2", 0.9)

    published = m.apply(seed("seed_1", "01"))

    own_list = [p for p in published if p.event.trigger_id == "seed_1"]
    assert by_office(own_list) == {
        ("proposed", "office-01"): ["need_osaka2", "need_tokyo", "need_osaka"],
        ("proposed", "office-13"): ["need_tokyo"],
        ("proposed", "office-27"): ["need_osaka2", "need_osaka"],
    }
    # Each need's list was empty: the seed is the first of it, published to the need's office.
    needs_lists = {(p.kind, p.event.trigger_id): p.members for p in published if p.event.trigger_kind == "need"}
    assert needs_lists == {("proposed", "need_tokyo"): ["seed_1"], ("proposed", "need_osaka"): ["seed_1"],
                           ("proposed", "need_osaka2"): ["seed_1"]}


def test_nothing_is_published_for_a_profile_nothing_qualifies_for() -> None:
    m = ScriptedMatcher()
    m.apply(seed("seed_a"))
    m.score("seed_a", "need_1", 0.05)  # below min_score
    assert m.apply(need("need_1")) == []
    assert m.rows == {}


def test_a_confidential_need_is_only_ever_in_its_own_offices_lists_and_only_as_its_redacted_summary() -> None:
    m = ScriptedMatcher()
    m.apply(seed("seed_a", "01"))
    m.score("seed_a", "need_secret", 0.9)
    secret = need("need_secret", "13", confidentiality="confidential", title="極秘の新製品の排熱",
                  company_name="秘密工業", redacted_summary="関東の製造業者が排熱の活用技術を探している。")

    published = m.apply(secret)
    assert by_office(published) == {("proposed", "office-13"): ["seed_a"]}

    published = m.apply(seed("seed_b", "27"))
    m.score("seed_b", "need_secret", 0.95)
    published = m.apply(seed("seed_b", "27", version=2, title="別の題"))
    offices = {p.office for p in published}
    assert offices == {"office-13"}, "the seed's own office never sees another office's confidential need"
    for p in published:
        dumped = p.event.model_dump_json()
        assert "極秘" not in dumped and "秘密工業" not in dumped
        assert "関東の製造業者" in dumped


def test_only_the_redacted_summary_of_a_confidential_need_and_never_its_company_leaves_the_matcher() -> None:
    secret = need_profile(confidentiality="confidential", title="極秘の新製品向け排熱回収", company_name="秘密工業")
    summary = need_summary(secret)
    dumped = summary.model_dump_json()
    assert "極秘" not in dumped and "秘密工業" not in dumped
    assert summary.confidentiality == "confidential"


def test_a_confidential_needs_explanation_names_no_term_its_redacted_summary_does_not_show() -> None:
    index = ProfileIndex()
    index.upsert(seed_profile("seed_1"))
    index.upsert(need_profile("need_1", confidentiality="confidential", title="極秘の排熱回収",
                              redacted_summary="関東の製造業者が排熱の活用技術を探している。"))
    candidate = Candidate("seed_1", "need_1", 0.5, Explanation(shared_terms=["極秘", "排熱"], shared_fields=["energy"]))

    pairing = pairing_of(index, candidate)

    assert pairing.explanation.shared_terms == ["排熱"]
    assert pairing.explanation.shared_fields == ["energy"]
    assert "極秘" not in pairing.model_dump_json()


def test_a_pairing_keeps_one_id_per_seed_and_need() -> None:
    assert pairing_id("seed_1", "need_1") == pairing_id("seed_1", "need_1") != pairing_id("seed_1", "need_2")


def test_a_seed_enters_the_list_of_a_need_it_ranks_below_its_own_top_list() -> None:
    m = ScriptedMatcher(top_k=2, reach=5)
    for name in ("need_x", "need_y", "need_z"):
        m.apply(need(name, "13"))
    m.score("seed_1", "need_x", 0.9)
    m.score("seed_1", "need_y", 0.8)
    m.score("seed_1", "need_z", 0.3)  # the seed's third need, but need_z's only seed

    published = m.apply(seed("seed_1", "01"))

    assert m.seed_list("seed_1") == ["need_x", "need_y"]
    assert m.need_list("need_z") == ["seed_1"]
    assert ("proposed", "need_z") in {(p.kind, p.event.trigger_id) for p in published}


# ---- lists that change --------------------------------------------------------------------------


def full_need_list() -> ScriptedMatcher:
    """need_1 (office-13) with a full list of three seeds from office-01."""
    m = ScriptedMatcher(top_k=3)
    for name, value in (("seed_a", 0.9), ("seed_b", 0.8), ("seed_c", 0.7)):
        m.apply(seed(name, "01"))
        m.score(name, "need_1", value)
    m.apply(need("need_1", "13"))
    return m


def test_a_better_seed_arriving_later_updates_the_needs_list_for_its_office() -> None:
    m = full_need_list()
    m.score("seed_best", "need_1", 0.95)

    published = m.apply(seed("seed_best", "27"))

    [update] = [p for p in published if p.kind == "updated"]
    assert update.office == "office-13"
    assert (update.event.trigger_kind, update.event.trigger_id) == ("need", "need_1")
    assert isinstance(update.event, PairingsUpdated)
    assert (update.event.cause_kind, update.event.cause_id) == ("seed", "seed_best")
    assert update.members == ["seed_best", "seed_a", "seed_b"]
    assert [p.rank for p in update.event.pairings] == [1, 2, 3]
    assert m.need_list("need_1") == ["seed_best", "seed_a", "seed_b"]


def test_a_seed_that_does_not_enter_a_full_list_updates_nothing() -> None:
    m = full_need_list()
    m.score("seed_weak", "need_1", 0.3)

    published = m.apply(seed("seed_weak", "27"))

    assert [p for p in published if p.kind == "updated"] == []
    assert m.need_list("need_1") == ["seed_a", "seed_b", "seed_c"]
    # The weak seed's own list still names the need to its office (a new seed's list, per office).
    assert by_office(published) == {("proposed", "office-27"): ["need_1"], ("proposed", "office-13"): ["need_1"]}


def test_the_same_members_in_the_same_order_publish_nothing() -> None:
    m = full_need_list()
    m.score("seed_a", "need_1", 0.91)  # the score moves, the order does not

    assert m.apply(need("need_1", "13", version=2, title="工場の排熱を活かしたい")) == []
    assert m.apply(need("need_1", "13", version=2, title="工場の排熱を活かしたい")) == [], "applied twice"
    assert m.apply(seed("seed_b", "01", version=2)) != [], "its own list, published for the first time"
    assert m.apply(seed("seed_b", "01", version=3, title="熱電変換シート(改)")) == []


def test_a_need_update_that_reorders_its_list_publishes_the_new_order_to_each_office_whose_view_changed() -> None:
    m = full_need_list()
    m.score("seed_c", "need_1", 0.95)

    published = m.apply(need("need_1", "13", version=2))

    assert by_office(published) == {
        ("updated", "office-13"): ["seed_c", "seed_a", "seed_b"],
        ("updated", "office-01"): ["seed_c", "seed_a", "seed_b"],
    }


def test_a_seed_update_that_drops_it_below_the_list_refills_the_list_from_the_index() -> None:
    m = full_need_list()
    m.score("seed_d", "need_1", 0.6)
    m.apply(seed("seed_d", "01"))  # fourth: not in the list
    m.score("seed_a", "need_1", 0.2)

    published = m.apply(seed("seed_a", "01", version=2))

    [update] = [p for p in published if p.kind == "updated" and p.event.trigger_id == "need_1"]
    assert update.members == ["seed_b", "seed_c", "seed_d"]
    assert m.need_list("need_1") == ["seed_b", "seed_c", "seed_d"]


# ---- retraction ----------------------------------------------------------------------------------


def test_a_withdrawn_seed_is_retracted_to_every_office_that_had_it_and_its_place_refilled() -> None:
    m = full_need_list()
    m.score("seed_d", "need_1", 0.6)
    m.apply(seed("seed_d", "27"))
    m.apply(need("need_2", "27"))  # in no list with seed_a
    m.score("seed_a", "need_3", 0.5)
    m.apply(need("need_3", "27"))

    published = m.apply(seed("seed_a", "01", version=2, status="withdrawn"))

    retracted = {p.office: sorted(p.members) for p in published if p.kind == "retracted"}
    assert retracted == {"office-01": ["need_1", "need_3"], "office-13": ["need_1"], "office-27": ["need_3"]}
    assert all(isinstance(p.event, PairingsRetracted) and p.event.reason == "withdrawn"
               for p in published if p.kind == "retracted")
    # need_1's list had a free place: seed_d takes it (need_3's list just shrinks: nothing to add).
    updates = {p.event.trigger_id: p.members for p in published if p.kind == "updated"}
    assert updates == {"need_1": ["seed_b", "seed_c", "seed_d"]}
    assert not any(r.seed_id == "seed_a" for r in m.rows.values()), "its pairs are no longer stored"


def test_a_closed_need_is_retracted_and_proposed_afresh_when_it_reopens() -> None:
    m = full_need_list()
    published = m.apply(need("need_1", "13", version=2, status="closed"))
    assert {(p.kind, p.office): sorted(p.members) for p in published} == {
        ("retracted", "office-13"): ["seed_a", "seed_b", "seed_c"],
        ("retracted", "office-01"): ["seed_a", "seed_b", "seed_c"],
    }
    assert m.rows == {}
    assert m.apply(need("need_1", "13", version=3, status="closed")) == [], "nothing left to retract"

    published = m.apply(need("need_1", "13", version=4))
    assert by_office(published)[("proposed", "office-13")] == ["seed_a", "seed_b", "seed_c"]


def test_a_paused_or_expired_profile_is_retracted_like_a_withdrawn_one() -> None:
    for status in ("paused", "expired"):
        m = full_need_list()
        published = m.apply(seed("seed_b", "01", version=2, status=status))
        assert {p.kind for p in published} == {"retracted"}, "no other seed to take its place"
        assert {p.event.reason for p in published if isinstance(p.event, PairingsRetracted)} == {status}
        assert m.need_list("need_1") == ["seed_a", "seed_c"]


# ---- dismissal -----------------------------------------------------------------------------------


def test_a_dismissed_pair_is_never_proposed_again() -> None:
    m = full_need_list()
    m.dismiss("seed_a", "need_1")

    assert m.need_list("need_1") == ["seed_b", "seed_c"]
    assert m.apply(need("need_1", "13", version=2)) == [], "the coordinator who dismissed it knows"
    assert m.apply(seed("seed_a", "01", version=2)) == []
    m.apply(need("need_1", "13", version=3, status="paused"))
    published = m.apply(need("need_1", "13", version=4))
    assert "seed_a" not in m.need_list("need_1")
    assert all("seed_a" not in p.members for p in published)
    assert m.rows[pairing_id("seed_a", "need_1")].dismissed, "kept, so that it stays excluded"


def test_near_ties_swapping_places_are_not_an_update_but_a_real_reorder_is() -> None:
    from shared.events import Explanation, NeedSummary, Pairing, SeedSummary

    def pairing(pid: str, score: float) -> Pairing:
        return Pairing(
            pairing_id=pid, rank=1, score=score,
            seed=SeedSummary(id=f"seed_{pid}", title="t", owner_org="o", owner_type="university", prefecture="01",
                             offers=["license"]),
            need=NeedSummary(id="need_1", title="t", prefecture="13", office_id="office-13", company_size="sme",
                             confidentiality="public"),
            explanation=Explanation(),
        )

    before = [pairing("a", 0.500), pairing("b", 0.498), pairing("c", 0.300)]
    assert only_near_ties_moved(before, [pairing("b", 0.502), pairing("a", 0.497), pairing("c", 0.3)])
    assert not only_near_ties_moved(before, [pairing("b", 0.60), pairing("a", 0.50), pairing("c", 0.3)])
    assert not only_near_ties_moved(before, [pairing("a", 0.5), pairing("b", 0.49), pairing("d", 0.3)])
