"""The registry's rules as plain functions: reference data, code shapes, transitions, If-Match."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.errors import Problem
from shared.reference import (
    INDUSTRIES,
    PREFECTURES,
    TECHNOLOGY_FIELDS,
    ClassificationCode,
    IndustryCode,
    ProfileStatus,
)
from shared.registry import LEGAL_TRANSITIONS, expected_versions, transition_refusal


def test_reference_data_holds_the_jsic_major_groups_fields_and_prefectures() -> None:
    assert list(INDUSTRIES) == [chr(code) for code in range(ord("A"), ord("T") + 1)]
    assert [c.value for c in IndustryCode] == list(INDUSTRIES)
    assert INDUSTRIES["E"].name_ja == "製造業" and INDUSTRIES["E"].name_en == "Manufacturing"
    assert all(i.name_ja and i.name_en for i in INDUSTRIES.values())
    assert len(TECHNOLOGY_FIELDS) == 21 and len(PREFECTURES) == 47


@pytest.mark.parametrize(
    ("written", "stored"),
    [("H10N 10/856", "H10N 10/856"), ("g06t7/00", "G06T 7/00"), ("Ａ２３Ｌ　３／３６", "A23L 3/36"),
     ("B23K  20/12", "B23K 20/12"), ("G06N", "G06N"), ("Y02E 10/50", "Y02E 10/50")],
)
def test_classification_codes_are_stored_in_one_shape(written: str, stored: str) -> None:
    assert TypeAdapter(ClassificationCode).validate_python(written) == stored


@pytest.mark.parametrize("code", ["X01A", "G06", "G06N 7", "G06N7/0", "熱電", ""])
def test_codes_that_are_not_ipc_or_cpc_are_refused(code: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(ClassificationCode).validate_python(code)


def test_expired_is_entered_only_by_the_registry_and_withdrawn_is_final() -> None:
    assert set(LEGAL_TRANSITIONS) == set(ProfileStatus)
    assert all(ProfileStatus.expired not in targets for targets in LEGAL_TRANSITIONS.values())
    assert LEGAL_TRANSITIONS[ProfileStatus.withdrawn] == frozenset()
    assert all(ProfileStatus.withdrawn in LEGAL_TRANSITIONS[s] for s in ProfileStatus if s != ProfileStatus.withdrawn)


def test_opening_needs_an_expiry_that_has_not_passed() -> None:
    today = date(2026, 11, 26)
    assert transition_refusal("seed", ProfileStatus.paused, ProfileStatus.open, date(2026, 11, 26), today) is None
    assert "has passed" in (transition_refusal("seed", ProfileStatus.paused, ProfileStatus.open,
                                               date(2026, 11, 25), today) or "")
    assert transition_refusal("seed", ProfileStatus.paused, ProfileStatus.closed, date(2020, 1, 1), today) is None


@pytest.mark.parametrize(
    ("header", "versions"),
    [('"3"', {3}), ("3", {3}), ('"1", "2"', {1, 2}), ('W/"3"', set()), ("*", None), ('"abc"', set())],
)
def test_if_match_is_read_with_strong_comparison(header: str, versions: set[int] | None) -> None:
    assert expected_versions(header) == versions


@pytest.mark.parametrize("header", [None, "", "  "])
def test_a_missing_if_match_is_428(header: str | None) -> None:
    with pytest.raises(Problem) as raised:
        expected_versions(header)
    assert raised.value.status == 428
