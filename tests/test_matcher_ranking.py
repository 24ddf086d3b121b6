from __future__ import annotations

from services.matcher.analysis import matched_phrases, normalise, terms
from services.matcher.domain import (
    ProfileIndex,
    need_summary,
    pairing_id,
    proposals_for_need,
    proposals_for_seed,
)
from tests.factories import need_profile, seed_profile


def test_normalisation_folds_full_width_and_half_width_forms() -> None:
    assert normalise("ＡＢＣ１２３ ｶﾀｶﾅ") == "abc123 カタカナ"


def test_kanji_is_cut_into_bigrams_katakana_kept_as_words_and_grammar_dropped() -> None:
    assert [t for t in terms("排熱を活用したい") if not t.startswith("~")] == ["排熱", "活用"]
    assert [t for t in terms("熱電変換") if not t.startswith("~")] == ["熱電", "電変", "変換"]
    assert [t for t in terms("モーター") if not t.startswith("~")] == ["モータ"]


def test_english_is_cut_into_lowercase_words_without_stopwords() -> None:
    words = [t for t in terms("The Thermoelectric conversion of waste heat") if not t.startswith("~")]
    assert words == ["thermoelectric", "conversion", "waste", "heat"]


def test_consecutive_shared_bigrams_read_as_one_phrase() -> None:
    assert matched_phrases("熱電変換と排熱", {"熱電", "電変", "変換", "排熱"}) == ["熱電変換", "排熱"]


def index_of(*profiles) -> ProfileIndex:
    index = ProfileIndex()
    for profile in profiles:
        index.upsert(profile)
    return index


def test_a_need_in_business_words_finds_the_technical_seed_first() -> None:
    index = index_of(
        seed_profile("seed_heat", title="排熱を電気に変える熱電変換シート", keywords=["熱電変換", "排熱回収"]),
        seed_profile("seed_food", title="食品の鮮度センサー", summary="においで鮮度を判定する。",
                     description="においで鮮度を判定する", keywords=["鮮度"], fields=["agriculture_food"]),
        need_profile("need_1", title="工場の排熱を有効活用したい", description="鋳造の排熱を電気にしたい"),
    )
    ranked = index.rank("need_1", limit=10, min_score=0.0)
    assert [c.seed_id for c in ranked] == ["seed_heat"]
    assert "排熱" in ranked[0].explanation.shared_terms
    assert ranked[0].explanation.shared_fields == ["energy"]
    assert 0 < ranked[0].score <= 1


def test_shared_fields_alone_make_a_candidate_with_a_lower_score() -> None:
    index = index_of(
        seed_profile("seed_text", title="排熱発電"),
        seed_profile("seed_field", title="風力タービン", description="洋上風車の翼", keywords=[]),
        need_profile("need_1", title="排熱発電を導入したい", description="工場"),
    )
    ranked = index.rank("need_1", limit=10, min_score=0.0)
    assert [c.seed_id for c in ranked] == ["seed_text", "seed_field"]
    assert ranked[1].score < ranked[0].score


def test_profiles_that_are_not_open_are_never_ranked() -> None:
    index = index_of(seed_profile("seed_closed", status="closed"), need_profile("need_1"))
    assert index.rank("need_1", limit=10, min_score=0.0) == []
    index.upsert(seed_profile("seed_open"))
    assert [c.seed_id for c in index.rank("need_1", 10, 0.0)] == ["seed_open"]
    index.upsert(seed_profile("seed_open", version=2, status="withdrawn"))
    assert index.rank("need_1", 10, 0.0) == []


def test_an_older_version_arriving_late_does_not_replace_a_newer_one() -> None:
    index = index_of(seed_profile("seed_1", version=3, title="新しい題"))
    index.upsert(seed_profile("seed_1", version=2, title="古い題"))
    assert index.profile("seed_1").title == "新しい題"


def test_min_score_and_limit_cut_the_list() -> None:
    seeds = [seed_profile(f"seed_{i}", title=f"熱電変換 {i}") for i in range(5)]
    index = index_of(*seeds, need_profile("need_1"))
    assert len(index.rank("need_1", limit=3, min_score=0.0)) == 3
    assert index.rank("need_1", limit=10, min_score=0.99) == []


def test_a_new_need_is_proposed_to_its_own_office_with_ranks() -> None:
    index = index_of(seed_profile("seed_1"), seed_profile("seed_2", title="熱電"), need_profile("need_1"))
    [proposal] = proposals_for_need(index, "need_1", limit=10, min_score=0.0)
    assert proposal.office_id == "office-13"
    assert proposal.trigger_kind == "need"
    assert [p.rank for p in proposal.pairings] == [1, 2]
    assert proposal.pairings[0].pairing_id == pairing_id(proposal.pairings[0].seed.id, "need_1")


def test_a_new_seed_gives_each_office_its_own_list() -> None:
    index = index_of(
        need_profile("need_tokyo", prefecture="13"),
        need_profile("need_osaka", prefecture="27"),
        need_profile("need_osaka2", prefecture="27", title="排熱の電気利用"),
        seed_profile("seed_1"),
    )
    proposals = proposals_for_seed(index, "seed_1", limit=10, min_score=0.0)
    by_office = {p.office_id: [x.need.id for x in p.pairings] for p in proposals}
    assert set(by_office) == {"office-13", "office-27"}
    assert by_office["office-13"] == ["need_tokyo"]
    assert sorted(by_office["office-27"]) == ["need_osaka", "need_osaka2"]


def test_nothing_is_proposed_when_no_seed_qualifies() -> None:
    index = index_of(need_profile("need_1"))
    assert proposals_for_need(index, "need_1", limit=10, min_score=0.0) == []


def test_a_confidential_need_leaves_the_matcher_without_its_text() -> None:
    need = need_profile(confidentiality="confidential", title="極秘の新製品向け排熱回収", company_name="秘密工業")
    summary = need_summary(need)
    dumped = summary.model_dump_json()
    assert "極秘" not in dumped and "秘密工業" not in dumped
    assert summary.confidentiality == "confidential"


def test_single_shared_characters_are_not_offered_as_explanations() -> None:
    assert matched_phrases("電気に変える 使う 排熱", {"変", "使", "排熱"}) == ["排熱"]
