from __future__ import annotations

from services.matcher.analysis import normalise, shared_phrases, terms
from services.matcher.domain import ProfileIndex
from tests.factories import need_profile, seed_profile


def test_normalisation_folds_full_width_and_half_width_forms() -> None:
    assert normalise("ＡＢＣ１２３ ｶﾀｶﾅ") == "abc123 カタカナ"


def test_japanese_is_cut_into_bigrams_per_script_and_grammar_is_dropped() -> None:
    assert terms("排熱を活用したい") == ["排熱", "活用"]
    assert terms("熱電変換") == ["熱電", "電変", "変換"]
    assert terms("モーター") == ["モー", "ータ", "ター"]


def test_english_is_cut_into_lowercase_words_without_stopwords() -> None:
    assert terms("The Thermoelectric conversion of waste heat") == ["thermoelectric", "conversion", "waste", "heat"]


def test_consecutive_shared_bigrams_read_as_one_phrase() -> None:
    assert shared_phrases("熱電変換と排熱", {"熱電", "電変", "変換", "排熱"}) == ["熱電変換", "排熱"]


def index_of(*profiles) -> ProfileIndex:
    index = ProfileIndex()
    for profile in profiles:
        index.upsert(profile)
    return index


def test_a_need_in_business_words_finds_the_technical_seed_first() -> None:
    index = index_of(
        seed_profile("seed_heat", title="排熱を電気に変える熱電変換シート", keywords=["熱電変換", "排熱回収"]),
        seed_profile("seed_food", title="食品の鮮度センサー", description="においで鮮度を判定する",
                     keywords=["鮮度"], fields=["agriculture_food"]),
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
    assert shared_phrases("電気に変える 使う 排熱", {"変", "使", "排熱"}) == ["排熱"]
