from __future__ import annotations

from datetime import date, timedelta
from unittest.mock import patch

import pytest

from services.matcher import index as index_module
from services.matcher.analysis import matched_phrases, normalise, terms
from services.matcher.domain import ProfileIndex
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


def test_single_shared_characters_are_not_offered_as_explanations() -> None:
    assert matched_phrases("電気に変える 使う 排熱", {"変", "使", "排熱"}) == ["排熱"]


# ---- issue 4: what is never proposed, dismissed pairs, explanations ---------------------------------

TODAY = date(2026, 11, 26)


def dated_index_of(*profiles) -> ProfileIndex:
    index = ProfileIndex(today=lambda: TODAY)
    for profile in profiles:
        index.upsert(profile)
    return index


@pytest.mark.parametrize("status", ["draft", "paused", "closed", "withdrawn"])
def test_a_seed_that_is_not_open_never_appears(status: str) -> None:
    index = dated_index_of(seed_profile("seed_1", status=status), seed_profile("seed_2"), need_profile("need_1"))
    assert [c.seed_id for c in index.rank("need_1", 10, 0.0)] == ["seed_2"]


def test_a_need_that_is_not_open_gets_no_list_and_is_never_proposed_to_a_seed() -> None:
    index = dated_index_of(seed_profile("seed_1"), need_profile("need_1", status="paused"))
    assert index.rank("need_1", 10, 0.0) == []
    assert index.rank("seed_1", 10, 0.0) == []


def test_an_expired_seed_never_appears_even_before_its_expiry_event() -> None:
    index = dated_index_of(
        seed_profile("seed_expired", expires_on=TODAY - timedelta(days=1)),
        seed_profile("seed_last_day", expires_on=TODAY),
        need_profile("need_1"),
    )
    assert [c.seed_id for c in index.rank("need_1", 10, 0.0)] == ["seed_last_day"]


def test_a_seed_that_expires_while_indexed_leaves_the_rankings_the_next_day() -> None:
    today = [TODAY]
    index = ProfileIndex(today=lambda: today[0])
    index.upsert(seed_profile("seed_1", expires_on=TODAY))
    index.upsert(need_profile("need_1"))
    assert len(index.rank("need_1", 10, 0.0)) == 1
    today[0] = TODAY + timedelta(days=1)
    assert index.rank("need_1", 10, 0.0) == []


def test_an_expired_need_gets_no_list() -> None:
    index = dated_index_of(seed_profile("seed_1"), need_profile("need_1", expires_on=TODAY - timedelta(days=3)))
    assert index.rank("need_1", 10, 0.0) == []


def test_a_dismissed_pair_is_never_returned_and_the_next_candidate_moves_up() -> None:
    index = dated_index_of(
        seed_profile("seed_1"), seed_profile("seed_2", title="熱電変換モジュール"), need_profile("need_1")
    )
    everything = [c.seed_id for c in index.rank("need_1", 1, 0.0)]
    dismissed = {(everything[0], "need_1")}
    remaining = [c.seed_id for c in index.rank("need_1", 1, 0.0, exclude=dismissed)]
    assert remaining and remaining[0] != everything[0]
    by_seed = index.rank(everything[0], 10, 0.0, exclude=dismissed)
    assert by_seed == []


def test_the_explanation_names_terms_fields_codes_form_region_and_stage() -> None:
    index = dated_index_of(
        seed_profile("seed_1", title="排熱を電気に変える熱電変換シート", keywords=["熱電変換"],
                     classification_codes=["H10N 10/856"], offers=["technical_consulting", "license"], trl=6,
                     prefecture="14", fields=["energy", "materials"]),
        need_profile("need_1", title="熱電変換で排熱を電気にしたい", classification_codes=["H10N 10/17"],
                     wanted_forms=["license"], timeline_months=12, prefecture="13", fields=["energy"]),
    )
    [candidate] = index.rank("need_1", 10, 0.0)
    explanation = candidate.explanation
    assert "熱電変換" in explanation.shared_terms
    assert explanation.shared_fields == ["energy"]
    assert explanation.shared_classification_codes == ["H10N 10/856"]
    assert explanation.collaboration_form == "license"
    assert explanation.region == "same_block"
    assert (explanation.trl, explanation.required_trl) == (6, 6)
    assert explanation.components == candidate.components


def test_matched_terms_are_quoted_in_the_needs_own_script_across_languages() -> None:
    index = dated_index_of(
        seed_profile("seed_en", language="en", title="Drone imaging for bridge inspection", summary="A drone.",
                     description="Close-range drone imaging of bridge undersides.", keywords=["drone"],
                     fields=["construction"]),
        need_profile("need_1", title="ドローンで橋の裏側を点検したい", summary="橋梁点検。",
                     description="ドローンを使う", keywords=["ドローン"], fields=["construction"]),
    )
    [candidate] = index.rank("need_1", 10, 0.0)
    assert "ドローン" in candidate.explanation.shared_terms


def test_a_confidential_need_is_matched_on_its_text_but_explained_only_in_the_seeds_words() -> None:
    secret = "極秘の新型溶解炉"
    index = dated_index_of(
        seed_profile("seed_1", title="排熱を電気に変える熱電変換シート", summary="低温の排熱から発電する。",
                     description="配管に巻いて排熱で発電する", keywords=["熱電変換", "排熱回収"]),
        need_profile("need_1", confidentiality="confidential", redacted_summary="製造業の排熱活用",
                     title=f"{secret}の排熱で発電したい", summary=f"{secret}から出る排熱を熱電変換したい。",
                     description=f"{secret}は秘密工業の計画。排熱を回収して発電したい。", keywords=["排熱回収"]),
    )
    [candidate] = index.rank("need_1", 10, 0.0)
    seed_text = "排熱を電気に変える熱電変換シート 低温の排熱から発電する。 配管に巻いて排熱で発電する 熱電変換 排熱回収"
    assert candidate.explanation.shared_terms
    assert all(term in seed_text for term in candidate.explanation.shared_terms)
    dumped = candidate.explanation.model_dump_json()
    assert "極秘" not in dumped and "溶解炉" not in dumped and "秘密工業" not in dumped


def test_a_seed_ranking_needs_explains_a_confidential_need_in_the_seeds_words_too() -> None:
    index = dated_index_of(
        seed_profile("seed_1", title="熱電変換シート", summary="排熱で発電。", description="排熱発電"),
        need_profile("need_1", confidentiality="confidential", redacted_summary="製造業の排熱活用",
                     title="極秘炉の排熱発電", summary="極秘炉の排熱。", description="極秘炉"),
    )
    [candidate] = index.rank("seed_1", 10, 0.0)
    assert "極秘" not in candidate.explanation.model_dump_json()


def test_the_fast_path_finds_what_exact_scoring_finds_on_a_clear_case() -> None:
    filler = [
        seed_profile(f"seed_{i:03d}", title=f"部品{i}の検査装置", summary="外観を検査する。",
                     description=f"画像で部品{i}のきずを見つける", keywords=["外観検査"], fields=["manufacturing"])
        for i in range(40)
    ]
    index = dated_index_of(*filler, seed_profile("seed_heat", **{"title": "熱電変換シート"}), need_profile("need_1"))
    with patch.object(index_module, "FAST_PATH_FROM", 0), patch.object(index_module, "RESCORE_DEPTH", 5):
        fast = [c.seed_id for c in index.rank("need_1", 3, 0.0)]
    exact = [c.seed_id for c in index.rank("need_1", 3, 0.0, exact=True)]
    assert fast[0] == exact[0] == "seed_heat"


def test_the_index_compacts_dead_slots_and_still_finds_the_living() -> None:
    index = dated_index_of(*(seed_profile(f"seed_{i}") for i in range(30)), need_profile("need_1"))
    for i in range(25):
        index.remove(f"seed_{i}")
    index.kinds["seed"].compact()
    assert sorted(c.seed_id for c in index.rank("need_1", 10, 0.0)) == [f"seed_{i}" for i in range(25, 30)]
    assert index.counts() == {"seeds": 5, "needs": 1}


def test_a_replaced_profile_is_ranked_on_its_new_text() -> None:
    index = dated_index_of(seed_profile("seed_1"), need_profile("need_1"))
    index.upsert(seed_profile(
        "seed_1", version=2, title="果実の糖度計", summary="糖度を測る。", description="近赤外で糖度",
        keywords=["糖度"], fields=["agriculture_food"],
    ))
    assert index.rank("need_1", 10, 0.0) == []
