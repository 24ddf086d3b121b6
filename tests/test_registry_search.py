"""Listing and searching the registries: free text in Japanese and English, filters, sorts, cursors.
On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from shared.search import document_terms, query_terms
from tests.api_harness import ADMIN, Api
from tests.registry_support import if_match, register


def found(api: Api, kind: str, **params: Any) -> list[str]:
    """The titles of every profile the admin finds with ``params`` (all pages)."""
    titles: list[str] = []
    cursor = None
    while True:
        page_params = {**params, **({"cursor": cursor} if cursor else {})}
        response = api.client.get(f"/v1/{kind}", headers=ADMIN, params=page_params)
        assert response.status_code == 200, response.text
        page = response.json()
        titles += [item["title"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return titles


# ---- the analyser ------------------------------------------------------------------------------------------


def test_japanese_text_gives_bigrams_and_single_characters_per_script() -> None:
    terms = document_terms(["排熱を有効利用", "ｻｰﾓｸﾞﾗﾌｨ"])
    assert {"排熱", "有効", "効利", "利用", "排", "熱", "を", "サー", "サ"} <= terms
    assert "熱を" not in terms  # no bigram across a change of script


def test_a_query_asks_for_bigrams_and_drops_particles_and_stop_words_when_it_has_more() -> None:
    assert query_terms("熱電変換") == {"熱電", "電変", "変換"}
    assert query_terms("排熱の利用") == {"排熱", "利用"}
    assert query_terms("waste heat for Power") == {"waste", "heat", "power"}
    assert query_terms("におい") == {"にお", "おい"}  # only hiragana: kept
    assert query_terms("鉄") == {"鉄"}
    assert query_terms("!!!") == set()


# ---- free text ------------------------------------------------------------------------------------------------


@pytest.fixture
def catalogue(seeds: Api) -> Api:
    register(seeds, "seeds", title="排熱を電気に変える熱電変換シート", summary="工場の排熱を有効利用する。",
             description="配管に巻き付けて発電する。", keywords=["エネルギーハーベスティング"],
             summary_translated="A thermoelectric sheet that turns waste heat into power.")
    register(seeds, "seeds", title="Few-shot visual anomaly detection", language="en",
             summary="Flags surface defects from a few good images.", description="Runs on an edge GPU.",
             keywords=["外観検査"], fields=["ai_data"], prefecture="26", owner_type="company", offers=["license"])
    register(seeds, "seeds", title="鉄鋼スラグの再資源化", summary="製鉄で出るスラグを路盤材にする。",
             description="高炉スラグの粒度を整える。", keywords=["スラグ"], fields=["environment"], prefecture="40",
             offers=["technical_consulting"], status="paused")
    return seeds


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ("熱電変換", ["排熱を電気に変える熱電変換シート"]),
        ("排熱の利用", ["排熱を電気に変える熱電変換シート"]),  # summary, with the particle dropped
        ("ハーベスティング", ["排熱を電気に変える熱電変換シート"]),  # a keyword
        ("ﾊｰﾍﾞｽﾃｨﾝｸﾞ", ["排熱を電気に変える熱電変換シート"]),  # half-width katakana, NFKC-folded
        ("鉄", ["鉄鋼スラグの再資源化"]),  # one character
        ("スラグ 路盤材", ["鉄鋼スラグの再資源化"]),
        ("外観検査", ["Few-shot visual anomaly detection"]),
        ("ANOMALY Detection", ["Few-shot visual anomaly detection"]),  # words, case-insensitive
        ("ＧＰＵ", ["Few-shot visual anomaly detection"]),  # full-width letters, description
        ("waste heat", ["排熱を電気に変える熱電変換シート"]),  # the English translation of a Japanese seed
        ("anomaly 熱電", []),  # every term must occur
        ("量子", []),
        ("!!!", []),
    ],
)
def test_free_text_search_in_japanese_and_english(catalogue: Api, query: str, titles: list[str]) -> None:
    assert found(catalogue, "seeds", q=query) == titles


def test_search_follows_edits(seeds: Api) -> None:
    seed = register(seeds, "seeds", title="超音波洗浄装置")
    seeds.client.patch(f"/v1/seeds/{seed['id']}", headers=if_match(1), json={"title": "レーザー洗浄装置"})

    assert found(seeds, "seeds", q="超音波") == []
    assert found(seeds, "seeds", q="レーザー") == ["レーザー洗浄装置"]


def test_a_query_longer_than_the_limit_is_refused(seeds: Api) -> None:
    response = seeds.client.get("/v1/seeds", headers=ADMIN, params={"q": "熱" * 201})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "q"


# ---- filters -----------------------------------------------------------------------------------------------------


def test_seed_filters_combine_with_and_and_repeat_as_any_of(catalogue: Api) -> None:
    heat, anomaly = "排熱を電気に変える熱電変換シート", "Few-shot visual anomaly detection"
    slag = "鉄鋼スラグの再資源化"

    assert found(catalogue, "seeds", status=["open", "paused"]) == [heat, anomaly, slag]
    assert found(catalogue, "seeds", status="paused") == [slag]
    assert found(catalogue, "seeds", fields=["ai_data", "environment"]) == [anomaly, slag]
    assert found(catalogue, "seeds", prefecture=["26", "40"]) == [anomaly, slag]
    assert found(catalogue, "seeds", block="kyushu") == [slag]
    assert found(catalogue, "seeds", block=["hokkaido", "kinki"]) == [heat, anomaly]
    assert found(catalogue, "seeds", owner_type="company") == [anomaly]
    assert found(catalogue, "seeds", offers="technical_consulting") == [slag]
    assert found(catalogue, "seeds", offers="license", fields="energy") == [heat]
    assert found(catalogue, "seeds", q="スラグ", status="open") == []


def test_need_filters_on_company_size_and_wanted_forms(needs: Api) -> None:
    register(needs, "needs", title="中小の共同研究", company_size="sme", wanted_forms=["joint_research"])
    register(needs, "needs", title="大企業のライセンス", company_size="large", wanted_forms=["license"])

    assert found(needs, "needs", company_size="large") == ["大企業のライセンス"]
    assert found(needs, "needs", wanted_forms=["joint_research", "assignment"]) == ["中小の共同研究"]
    assert found(needs, "needs", company_size=["sme", "large"], wanted_forms="license") == ["大企業のライセンス"]


def test_updated_since_finds_what_changed(seeds: Api) -> None:
    old = register(seeds, "seeds", title="古いシーズ")
    register(seeds, "seeds", title="別のシーズ")
    edited = seeds.client.patch(f"/v1/seeds/{old['id']}", headers=if_match(1), json={"trl": 8}).json()

    assert found(seeds, "seeds", updated_since=edited["updated_at"]) == ["古いシーズ"]
    assert found(seeds, "seeds", updated_since="2000-01-01T09:00:00+09:00") == ["古いシーズ", "別のシーズ"]


@pytest.mark.parametrize(("param", "value"), [("fields", "alchemy"), ("block", "atlantis"), ("status", "gone"),
                                              ("owner_type", "startup"), ("sort", "colour")])
def test_an_unknown_filter_value_is_a_problem_naming_the_parameter(seeds: Api, param: str, value: str) -> None:
    response = seeds.client.get("/v1/seeds", headers=ADMIN, params={param: value})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == param


# ---- sorts and cursors --------------------------------------------------------------------------------------------


def test_each_sort_walks_every_profile_once_across_pages(seeds: Api) -> None:
    ids = [register(seeds, "seeds", title=title)["id"] for title in ("ウ", "ア", "エ", "イ", "ア")]
    seeds.client.patch(f"/v1/seeds/{ids[2]}", headers=if_match(1), json={"trl": 2})  # "エ" updated last

    assert found(seeds, "seeds", limit=2) == ["ウ", "ア", "エ", "イ", "ア"]  # default: creation order
    assert found(seeds, "seeds", limit=2, sort="-created_at") == ["ア", "イ", "エ", "ア", "ウ"]
    assert found(seeds, "seeds", limit=2, sort="title") == ["ア", "ア", "イ", "ウ", "エ"]
    assert found(seeds, "seeds", limit=2, sort="-title") == ["エ", "ウ", "イ", "ア", "ア"]
    assert found(seeds, "seeds", limit=1, sort="-updated_at")[0] == "エ"
    assert sorted(found(seeds, "seeds", limit=2, sort="updated_at")) == sorted(["ウ", "ア", "エ", "イ", "ア"])


def test_a_cursor_is_valid_only_for_the_sort_that_made_it(seeds: Api) -> None:
    for title in ("ア", "イ", "ウ"):
        register(seeds, "seeds", title=title)
    cursor = seeds.client.get("/v1/seeds", headers=ADMIN, params={"limit": 1, "sort": "title"}).json()["next_cursor"]

    other_sort = seeds.client.get("/v1/seeds", headers=ADMIN, params={"cursor": cursor, "sort": "-updated_at"})
    forged = seeds.client.get("/v1/seeds", headers=ADMIN, params={"cursor": "WyJ0aXRsZSIsMSwieCJd", "sort": "title"})

    assert other_sort.status_code == 400 and other_sort.json()["errors"][0]["field"] == "cursor"
    assert forged.status_code == 400


def test_the_page_size_has_a_hard_limit(seeds: Api) -> None:
    assert seeds.client.get("/v1/seeds", headers=ADMIN, params={"limit": 201}).status_code == 422
    assert seeds.client.get("/v1/seeds", headers=ADMIN, params={"limit": 200}).status_code == 200
