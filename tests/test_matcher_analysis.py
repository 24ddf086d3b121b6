"""The matcher's analyser: normalisation, scripts, katakana words, lexicon concepts, readable phrases."""

from __future__ import annotations

from services.matcher.analysis import fold_katakana, matched_phrases, normalise, terms


def shared(a: str, b: str) -> set[str]:
    return set(terms(a)) & set(terms(b))


def test_nfkc_folds_full_width_latin_and_half_width_katakana() -> None:
    assert normalise("ＡＢＣ１２３ ｶﾀｶﾅ") == "abc123 カタカナ"
    assert shared("ｾﾝｻｰ", "センサー") >= {"センサ", "~sensor"}


def test_lower_casing_keeps_every_position_for_spans() -> None:
    text = "İstanbul LED照明"
    assert len(normalise(text)) == len(text)


def test_a_trailing_long_vowel_mark_is_optional_in_katakana_words() -> None:
    assert fold_katakana("モーター") == fold_katakana("モータ") == "モータ"
    assert "モータ" in shared("排水ポンプのモータ", "モーター電流の解析")
    assert "レーザ" in shared("レーザ加工", "レーザー加工")


def test_katakana_variants_with_vu_are_read_as_bu() -> None:
    assert fold_katakana("サーヴァー") == fold_katakana("サーバー")


def test_katakana_words_are_whole_so_juice_does_not_match_module() -> None:
    assert shared("みかんジュース", "電源モジュール") == set()


def test_a_katakana_compound_is_split_into_its_known_words() -> None:
    assert {"センサ", "~sensor"} <= set(terms("ガスセンサーで香気成分を測る"))
    assert {"ロボット", "~robot"} <= set(terms("収穫ロボットアーム"))


def test_the_middle_dot_separates_katakana_words() -> None:
    words = [t for t in terms("イノシシ・シカ") if not t.startswith("~")]
    assert words == ["イノシシ", "シカ"]


def test_kanji_runs_are_cut_into_bigrams_and_hiragana_grammar_is_dropped() -> None:
    assert [t for t in terms("熱電変換をしている") if not t.startswith("~")] == ["熱電", "電変", "変換"]


def test_katakana_and_english_technical_terms_meet_as_concepts() -> None:
    assert "~drone" in shared("ドローンで橋を点検", "Drone imaging of bridges")
    assert "~sensor" in shared("溶存酸素センサー", "dissolved oxygen sensor")
    assert "~motor" in shared("モータが壊れる", "motor current analysis")
    assert "~lithium_ion" in shared("リチウムイオン電池", "lithium-ion batteries")


def test_kanji_technical_terms_meet_their_english_words() -> None:
    assert "~battery" in shared("蓄電池の劣化", "battery degradation")
    assert "~vibration" in shared("振動解析", "vibration analysis")


def test_a_hiragana_spelling_meets_the_katakana_one_where_the_lexicon_knows_the_word() -> None:
    assert "~mould" in shared("梅干しがかびる", "カビの発生")


def test_a_single_kanji_form_matches_only_a_run_of_its_own() -> None:
    assert "~rice" in terms("米を精米する")
    assert "~rice" not in terms("米国の規格")


def test_english_words_are_stemmed_and_spellings_folded() -> None:
    assert "battery" in shared("batteries", "a battery")
    assert "color" in shared("colour", "color")
    assert "~optimisation" in shared("route optimisation", "route optimization")


def test_english_stopwords_and_bare_numbers_are_not_terms() -> None:
    assert [t for t in terms("The 150 sensors of the plant") if not t.startswith("~")] == ["sensor", "plant"]


def test_consecutive_shared_spans_read_as_one_phrase_in_the_original_script() -> None:
    phrases = matched_phrases("リチウムイオン電池の劣化を診断する", {"~lithium_ion", "~battery", "劣化"})
    assert phrases == ["リチウムイオン電池", "劣化"]
    assert matched_phrases("A Heat Pump for steam", {"heat", "pump"}) == ["Heat Pump"]


def test_phrases_come_back_heaviest_first_when_weights_are_given() -> None:
    phrases = matched_phrases("排熱と熱電変換", {"排熱", "熱電", "電変", "変換"}, rank={"排熱": 1.0, "熱電": 5.0})
    assert phrases == ["熱電変換", "排熱"]


def test_full_width_text_is_quoted_after_nfkc() -> None:
    assert matched_phrases("ＬＥＤ照明の調光", {"led", "照明"}) == ["LED照明"]
