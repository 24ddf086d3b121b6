"""The quality harness (bench/matcher_quality.py) on the shipped labelled set: no services, in-process."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SHIPPED = BENCH / "quality"


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    """bench/ is a folder of scripts, not a package: import the script as its own top-level module."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("matcher_quality")
    finally:
        sys.path.remove(str(BENCH))


def run(harness: ModuleType, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = harness.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def shipped_figures(harness: ModuleType) -> dict[str, Any]:
    code, out, _ = run(harness, "--json")
    assert code == 0
    return json.loads(out)


def copy_of_shipped_set(tmp_path: Path) -> Path:
    data = tmp_path / "quality"
    shutil.copytree(SHIPPED, data)
    return data


def test_the_shipped_set_is_large_enough(shipped_figures: dict[str, Any]) -> None:
    assert shipped_figures["needs"] >= 50
    assert shipped_figures["pool"] >= 150


def test_both_systems_get_ndcg_and_recall_overall_and_for_every_hard_case(
    harness: ModuleType, shipped_figures: dict[str, Any]
) -> None:
    assert set(shipped_figures["systems"]) == {"matcher", "tfidf"}
    for system in shipped_figures["systems"].values():
        assert set(system["groups"]) == {"all", *harness.TAGS}
        overall = system["groups"]["all"]
        assert overall["needs"] == shipped_figures["needs"]
        assert 0 < overall["ndcg@10"] <= 1
        assert 0 < overall["recall@20"] <= 1
        assert system["timing"]["rank_mean_ms"] > 0


def test_the_table_shows_both_systems_per_tag_and_their_timing(harness: ModuleType) -> None:
    code, out, _ = run(harness)
    assert code == 0
    assert "matcher nDCG@10" in out and "tfidf nDCG@10" in out
    assert any(line.startswith("vocabulary_mismatch") for line in out.splitlines())
    assert "timing matcher:" in out and "timing tfidf:" in out


def test_per_need_lists_each_need_with_its_top_seeds(harness: ModuleType) -> None:
    code, out, _ = run(harness, "--per-need")
    assert code == 0
    assert "QN-001 [" in out
    assert "top5 QS-" in out


def test_the_pool_is_the_open_seeds_expired_ones_included(harness: ModuleType) -> None:
    pool = {seed["external_id"] for seed in harness.load_set(SHIPPED).pool}
    assert "QS-129" in pool  # open, expired in 2024: the ranker must leave it out, the pool does not
    assert "QS-021" not in pool  # withdrawn
    assert "QS-125" not in pool  # closed


def test_a_record_missing_a_schema_field_is_refused_naming_it(harness: ModuleType, tmp_path: Path) -> None:
    data = copy_of_shipped_set(tmp_path)
    seeds = (data / "seeds.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(seeds[0])
    del first["trl"]
    seeds[0] = json.dumps(first, ensure_ascii=False)
    (data / "seeds.jsonl").write_text("\n".join(seeds) + "\n", encoding="utf-8")

    code, _, err = run(harness, "--data", str(data))

    assert code == 2
    assert "QS-001: missing trl" in err


def test_a_grade_for_a_withdrawn_seed_is_refused(harness: ModuleType, tmp_path: Path) -> None:
    data = copy_of_shipped_set(tmp_path)
    with (data / "qrels.tsv").open("a", encoding="utf-8") as qrels:
        qrels.write("QN-001\tQS-021\t2\n")

    code, _, err = run(harness, "--data", str(data))

    assert code == 2
    assert "QS-021 2 but that seed may not be proposed" in err


def test_a_need_without_a_row_in_the_tags_table_is_refused(harness: ModuleType, tmp_path: Path) -> None:
    data = copy_of_shipped_set(tmp_path)
    readme = (data / "README.md").read_text(encoding="utf-8")
    (data / "README.md").write_text(
        "\n".join(line for line in readme.splitlines() if not line.startswith("| QN-059 |")), encoding="utf-8"
    )

    code, _, err = run(harness, "--data", str(data))

    assert code == 2
    assert "QN-059 has no row in the tags table" in err


def test_the_baseline_cuts_bigrams_inside_runs_after_nfkc(harness: ModuleType) -> None:
    assert harness.char_bigrams("熱電変換、ＡＢＣ") == {"熱電": 1, "電変": 1, "変換": 1, "ab": 1, "bc": 1}


def test_the_baseline_ranks_by_shared_bigrams_and_leaves_out_seeds_sharing_none(harness: ModuleType) -> None:
    def seed(seed_id: str, text: str) -> dict[str, str]:
        return {"external_id": seed_id, "title": text, "summary": "", "description": ""}

    ranker = harness.TfidfRanker(
        [seed("far", "排熱の回収と暖房への利用"), seed("near", "工場の排熱で発電する装置"), seed("none", "果実の糖度")]
    )
    need = {"external_id": "n", "title": "工場の排熱で発電したい", "summary": "", "description": ""}

    assert ranker.rank(need, depth=10) == ["near", "far"]
