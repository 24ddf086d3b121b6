"""Each component of the pair score (services/matcher/scoring.py), and how they combine in a ranking."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from services.matcher import scoring
from services.matcher.domain import ProfileIndex, classification_parts
from shared.reference import CollaborationForm as Form
from shared.reference import CompanySize
from tests.factories import need_profile, seed_profile

TODAY = date(2026, 11, 26)


def index_of(*profiles) -> ProfileIndex:
    index = ProfileIndex(today=lambda: TODAY)
    for profile in profiles:
        index.upsert(profile)
    return index


def ranked_seeds(index: ProfileIndex, need_id: str = "need_1") -> list[str]:
    return [c.seed_id for c in index.rank(need_id, limit=10, min_score=0.0)]


def test_field_overlap_is_the_dice_coefficient_of_the_field_sets() -> None:
    assert scoring.field_overlap(0b011, 0b011) == pytest.approx(1.0)
    assert scoring.field_overlap(0b011, 0b001) == pytest.approx(2 / 3)
    assert scoring.field_overlap(0b100, 0b001) == 0.0
    assert scoring.field_overlap(0, 0) == 0.0


def test_classification_codes_are_read_at_subclass_and_main_group_level() -> None:
    assert classification_parts("H10N 10/856") == ("H10N", "H10N 10")
    assert classification_parts("G06N") == ("G06N", None)


def test_a_shared_main_group_counts_fully_and_a_shared_subclass_half() -> None:
    groups = np.array([[11, 0], [12, 0], [0, 0]])
    subclasses = np.array([[21, 0], [21, 0], [22, 0]])
    overlap = scoring.classification_overlap(groups, subclasses, np.array([11]), np.array([21]))
    assert overlap.tolist() == [1.0, scoring.SAME_SUBCLASS_CREDIT, 0.0]


def form_credit(offered: list[Form], wanted: list[Form]) -> float:
    return float(scoring.form_credit(scoring.forms_mask(offered), scoring.forms_mask(wanted)))


def test_a_wanted_form_on_offer_fits_fully() -> None:
    assert form_credit([Form.license, Form.joint_research], [Form.license]) == 1.0


def test_a_licence_wanted_from_a_consulting_only_seed_is_a_hard_demotion() -> None:
    assert form_credit([Form.technical_consulting], [Form.license]) == scoring.FORM_MISMATCH
    assert scoring.FORM_MISMATCH <= 0.25


def test_a_neighbouring_form_fits_partly() -> None:
    assert scoring.FORM_MISMATCH < form_credit([Form.assignment], [Form.license]) < 1.0


def test_the_fitting_form_is_named() -> None:
    offered = scoring.forms_mask([Form.technical_consulting, Form.assignment])
    wanted = scoring.forms_mask([Form.license])
    assert scoring.FORMS[scoring.FITTING_FORM[offered, wanted]] == Form.assignment


def test_a_short_timeline_asks_for_a_high_trl() -> None:
    assert scoring.required_trl(3) == 7
    assert scoring.required_trl(12) == 6
    assert scoring.required_trl(60) == scoring.TRL_FOR_LONG_TIMELINES


def test_each_missing_readiness_level_costs_and_unknowns_are_neutral() -> None:
    assert scoring.stage_credit(7, 6) == 1.0
    assert scoring.stage_credit(6, 6) < 1.0
    assert scoring.stage_credit(3, 6) < scoring.stage_credit(6, 6)
    assert scoring.stage_credit(0, 6) == 1.0  # TRL unknown
    assert scoring.stage_credit(3, 0) == 1.0  # no timeline


def test_region_is_same_prefecture_then_same_block_then_elsewhere() -> None:
    relation = scoring.region_relation(np.array([13, 14, 27]), 13, np.array([3, 3, 5]), 3)
    assert relation.tolist() == [1.0, scoring.SAME_BLOCK_CREDIT, 0.0]


def test_region_favours_smes_only_a_little_and_large_companies_not_at_all() -> None:
    sme, large = scoring.SIZE_CODE[CompanySize.sme], scoring.SIZE_CODE[CompanySize.large]
    elsewhere = np.array([0.0], dtype=np.float32)
    assert float(scoring.region_factor(elsewhere, sme)[0]) == pytest.approx(1 - scoring.REGION_WEIGHT[CompanySize.sme])
    assert float(scoring.region_factor(elsewhere, large)[0]) == 1.0
    assert float(scoring.region_factor(np.array([1.0], dtype=np.float32), sme)[0]) == 1.0


def test_freshness_halves_every_half_life() -> None:
    assert float(scoring.freshness(0)) == 1.0
    assert float(scoring.freshness(int(scoring.FRESHNESS_HALF_LIFE_DAYS))) == pytest.approx(0.5, abs=0.01)


# ---- the components at work in a ranking ------------------------------------------------------------

HEAT = dict(
    title="排熱を電気に変える熱電変換シート", summary="工場の排熱から発電する。",
    description="排熱から発電する熱電変換材料", keywords=["熱電変換", "排熱"],
)


def test_a_consulting_only_seed_never_heads_a_list_for_a_need_wanting_a_licence() -> None:
    index = index_of(
        seed_profile("seed_consulting", offers=["technical_consulting"], **HEAT),
        seed_profile("seed_licence", offers=["license"], title="熱電変換モジュール", summary="排熱発電。",
                     description="熱電変換で発電する", keywords=["熱電変換"]),
        need_profile("need_1", wanted_forms=["license"], title="排熱を電気に変えたい"),
    )
    assert ranked_seeds(index) == ["seed_licence", "seed_consulting"]


def test_a_seed_too_early_for_the_timeline_goes_below_a_ready_one() -> None:
    index = index_of(
        seed_profile("seed_early", trl=2, **HEAT),
        seed_profile("seed_ready", trl=7, **HEAT),
        need_profile("need_1", timeline_months=6),
    )
    assert ranked_seeds(index) == ["seed_ready", "seed_early"]


def test_for_an_sme_a_local_seed_goes_before_an_equivalent_distant_one() -> None:
    index = index_of(
        seed_profile("seed_far", prefecture="47", **HEAT),
        seed_profile("seed_block", prefecture="14", **HEAT),
        seed_profile("seed_local", prefecture="13", **HEAT),
        need_profile("need_1", prefecture="13", company_size="sme"),
    )
    assert ranked_seeds(index) == ["seed_local", "seed_block", "seed_far"]


def test_a_weak_local_seed_stays_below_a_strong_distant_one() -> None:
    index = index_of(
        seed_profile("seed_far_strong", prefecture="47", **HEAT),
        seed_profile("seed_local_weak", prefecture="13", title="省エネ診断", summary="工場の省エネ。",
                     description="工場の電気の使い方を診断する", keywords=["省エネ"]),
        need_profile("need_1", prefecture="13", company_size="sme"),
    )
    assert ranked_seeds(index) == ["seed_far_strong", "seed_local_weak"]


def test_a_seed_sharing_only_classification_codes_is_found_across_languages() -> None:
    index = index_of(
        seed_profile("seed_en", language="en", title="Acoustic emission monitoring of rolling bearings",
                     summary="Detects early bearing damage.", description="Acoustic emission sensing.",
                     keywords=["acoustic emission"], fields=["mechanical"], classification_codes=["G01M 13/045"]),
        seed_profile("seed_other", language="en", title="Bridge paint", summary="Paint.", description="Paint.",
                     keywords=["paint"], fields=["construction"], classification_codes=["C09D 5/08"]),
        need_profile("need_1", title="工作機械の主軸が突然止まる", summary="止まる前に気づきたい。",
                     description="主軸の異常", keywords=["主軸"], fields=["manufacturing"],
                     classification_codes=["G01M 13/045"]),
    )
    [top] = index.rank("need_1", limit=10, min_score=0.0)
    assert top.seed_id == "seed_en"
    assert top.explanation.shared_classification_codes == ["G01M 13/045"]
    assert top.components is not None and top.components.classification == 1.0


def test_the_score_is_the_product_of_its_documented_parts() -> None:
    index = index_of(seed_profile("seed_1", **HEAT), need_profile("need_1", prefecture="27", company_size="sme"))
    [candidate] = index.rank("need_1", limit=10, min_score=0.0)
    parts = candidate.components
    assert parts is not None
    relevance = (scoring.TEXT_WEIGHT * parts.text + scoring.CLASSIFICATION_WEIGHT * parts.classification
                 + scoring.FIELD_WEIGHT * parts.fields)
    assert parts.relevance == pytest.approx(relevance, abs=1e-3)
    region = 1 - scoring.REGION_WEIGHT[CompanySize.sme] * (1 - parts.region)
    freshness = 1 - scoring.FRESHNESS_WEIGHT * (1 - parts.freshness)
    assert candidate.score == pytest.approx(relevance * parts.form * parts.stage * region * freshness, abs=1e-3)


def test_older_profiles_rank_slightly_lower_than_fresh_equivalents() -> None:
    old = datetime.now(UTC) - timedelta(days=900)
    index = index_of(
        seed_profile("seed_old", created_at=old, updated_at=old, **HEAT),
        seed_profile("seed_new", **HEAT),
        need_profile("need_1"),
    )
    assert ranked_seeds(index) == ["seed_new", "seed_old"]
