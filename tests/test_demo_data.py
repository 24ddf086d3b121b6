"""The bilingual demo data set (matchnet/demo/data/*.jsonl) keeps to the profile schema and covers the domain.

Plain Python checks against the agreed profile schema and shared/reference.py, so the data can be reviewed
without a running service: every field present with the right shape, closed vocabularies respected,
confidential needs redacted, and enough spread (fields, prefectures, owner types, TRL, ...) for a demo.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from shared.reference import (
    PREFECTURES,
    REGIONAL_BLOCKS,
    TECHNOLOGY_FIELDS,
    CollaborationForm,
    CompanySize,
    Confidentiality,
    Language,
    OwnerType,
    ProfileStatus,
)

DATA_DIR = Path(__file__).resolve().parents[1] / "matchnet" / "demo" / "data"
DEMO_TODAY = date(2026, 11, 26)  # the demo's "now": profiles expiring before it show the expiry flow

Row = dict[str, Any]

COMMON_FIELDS = {
    "external_id", "language", "title", "summary", "title_translated", "summary_translated", "description",
    "keywords", "fields", "classification_codes", "prefecture", "status", "expires_on",
}
SEED_FIELDS = COMMON_FIELDS | {
    "owner_org", "owner_type", "ip_status", "patent_numbers", "offers", "trl", "contact_name", "contact_email",
}
NEED_FIELDS = COMMON_FIELDS | {
    "company_name", "company_size", "industry", "wanted_forms", "budget_min_jpy", "budget_max_jpy",
    "timeline_months", "confidentiality", "redacted_summary",
}

IP_STATUSES = {"granted_patent", "patent_application", "know_how", "software", "none"}
JSIC_MAJOR_GROUPS = {chr(c) for c in range(ord("A"), ord("T") + 1)}
# IPC/CPC: class level ("G06N") or a group ("H10N 10/856", "C09J 2301/502").
CLASSIFICATION_CODE = re.compile(r"^[A-H]\d{2}[A-Z]( \d{1,4}/\d{2,6})?$")
PATENT_NUMBER = re.compile(
    r"^(特許第\d{7}号|特願\d{4}-\d{6}|JP\d{4}-\d{6}A|US\d{8}B2|PCT/JP\d{4}/\d{6})$"
)
DEMO_MAIL_DOMAINS = ("example.ac.jp", "example.jp", "example.com")
EMAIL = re.compile(r"^[a-z0-9][a-z0-9._-]*@([a-z0-9-]+\.)*[a-z0-9-]+\.[a-z]+$")
JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")
SENTENCE_END = re.compile(r"[。．！？]|[.!?](?=\s|$)")


def read_rows(name: str) -> list[Row]:
    path = DATA_DIR / f"{name}.jsonl"
    rows: list[Row] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        assert line.strip(), f"{path.name}:{number} is blank"
        row = json.loads(line)
        assert isinstance(row, dict), f"{path.name}:{number} is not a JSON object"
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def seeds() -> list[Row]:
    return read_rows("seeds")


@pytest.fixture(scope="module")
def needs() -> list[Row]:
    return read_rows("needs")


def problems_in(rows: Iterable[Row], check: Callable[[Row], Iterable[str]]) -> list[str]:
    """Every problem of every row, each prefixed with the row's external_id, so one failure lists them all."""
    return [f"{row.get('external_id')}: {problem}" for row in rows for problem in check(row)]


def is_text(value: Any, longest: int) -> bool:
    return isinstance(value, str) and value.strip() != "" and len(value) <= longest


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def common_problems(row: Row) -> Iterable[str]:
    if not (row["external_id"] is None or is_text(row["external_id"], 200)):
        yield "external_id must be a non-empty string or null"
    if row["language"] not in set(Language):
        yield f"language {row['language']!r}"
    if not is_text(row["title"], 300):
        yield "title must have 1..300 characters"
    if not is_text(row["summary"], 2000):
        yield "summary must have 1..2000 characters"
    if not is_text(row["description"], 20000):
        yield "description must have 1..20000 characters"
    yield from translation_problems(row)
    keywords = row["keywords"]
    if not (isinstance(keywords, list) and len(keywords) <= 30 and all(is_text(k, 60) for k in keywords)):
        yield "keywords must be 0..30 strings of 1..60 characters"
    fields = row["fields"]
    if not (isinstance(fields, list) and 1 <= len(fields) <= 8 and len(set(fields)) == len(fields)):
        yield "fields must be 1..8 distinct codes"
    elif unknown := [f for f in fields if f not in TECHNOLOGY_FIELDS]:
        yield f"unknown technology fields {unknown}"
    codes = row["classification_codes"]
    if not (isinstance(codes, list) and all(isinstance(c, str) and CLASSIFICATION_CODE.match(c) for c in codes)):
        yield f"classification codes not in IPC/CPC shape: {codes}"
    if row["prefecture"] not in PREFECTURES:
        yield f"prefecture {row['prefecture']!r} is not a JIS X 0401 code"
    if row["status"] not in set(ProfileStatus):
        yield f"status {row['status']!r}"
    if row["expires_on"] is not None:
        try:
            date.fromisoformat(row["expires_on"])
        except (TypeError, ValueError):
            yield f"expires_on {row['expires_on']!r} is not YYYY-MM-DD"


def translation_problems(row: Row) -> Iterable[str]:
    title_t, summary_t = row["title_translated"], row["summary_translated"]
    if (title_t is None) != (summary_t is None):
        yield "title and summary are translated together or not at all"
        return
    if title_t is None:
        return
    if not (is_text(title_t, 300) and is_text(summary_t, 2000)):
        yield "translated title/summary exceed the limits of title/summary"
    authored_in_japanese = row["language"] == Language.ja
    if bool(JAPANESE.search(row["title"])) != authored_in_japanese:
        yield "title is not written in the declared language"
    if bool(JAPANESE.search(title_t)) == authored_in_japanese:
        yield "title_translated is not in the other language"


def seed_problems(row: Row) -> Iterable[str]:
    if set(row) != SEED_FIELDS:
        yield f"fields differ from the seed schema: missing {SEED_FIELDS - set(row)}, extra {set(row) - SEED_FIELDS}"
        return
    yield from common_problems(row)
    if not is_text(row["owner_org"], 300):
        yield "owner_org is required"
    if row["owner_type"] not in set(OwnerType):
        yield f"owner_type {row['owner_type']!r}"
    if row["ip_status"] not in IP_STATUSES:
        yield f"ip_status {row['ip_status']!r}"
    numbers = row["patent_numbers"]
    if not (isinstance(numbers, list) and all(isinstance(n, str) and PATENT_NUMBER.match(n) for n in numbers)):
        yield f"patent numbers not in a Japanese/US/PCT shape: {numbers}"
    elif row["ip_status"] in ("granted_patent", "patent_application") and not numbers:
        yield f"{row['ip_status']} without a patent number"
    elif row["ip_status"] in ("know_how", "none") and numbers:
        yield f"{row['ip_status']} with patent numbers"
    offers = row["offers"]
    if not (isinstance(offers, list) and 1 <= len(offers) <= 6 and len(set(offers)) == len(offers)
            and set(offers) <= set(CollaborationForm)):
        yield f"offers must be 1..6 distinct collaboration forms: {offers}"
    if not (is_int(row["trl"]) and 1 <= row["trl"] <= 9):
        yield f"trl {row['trl']!r} is not 1..9"
    if not is_text(row["contact_name"], 200):
        yield "contact_name is required"
    yield from demo_email_problems(row["contact_email"])


def demo_email_problems(email: Any) -> Iterable[str]:
    if not (isinstance(email, str) and EMAIL.match(email)):
        yield f"contact_email {email!r} is not an address"
        return
    host = email.rsplit("@", 1)[1]
    if not any(host == domain or host.endswith("." + domain) for domain in DEMO_MAIL_DOMAINS):
        yield f"contact_email {email!r} is not on a reserved example domain"


def need_problems(row: Row) -> Iterable[str]:
    if set(row) != NEED_FIELDS:
        yield f"fields differ from the need schema: missing {NEED_FIELDS - set(row)}, extra {set(row) - NEED_FIELDS}"
        return
    yield from common_problems(row)
    if not is_text(row["company_name"], 300):
        yield "company_name is required"
    if row["company_size"] not in set(CompanySize):
        yield f"company_size {row['company_size']!r}"
    if row["industry"] not in JSIC_MAJOR_GROUPS:
        yield f"industry {row['industry']!r} is not a JSIC major group A..T"
    forms = row["wanted_forms"]
    if not (isinstance(forms, list) and 1 <= len(forms) <= 6 and len(set(forms)) == len(forms)
            and set(forms) <= set(CollaborationForm)):
        yield f"wanted_forms must be 1..6 distinct collaboration forms: {forms}"
    low, high = row["budget_min_jpy"], row["budget_max_jpy"]
    for name, value in (("budget_min_jpy", low), ("budget_max_jpy", high)):
        if value is not None and not (is_int(value) and value >= 0):
            yield f"{name} must be a non-negative integer or null"
    if is_int(low) and is_int(high) and low > high:
        yield "budget_min_jpy is above budget_max_jpy"
    timeline = row["timeline_months"]
    if timeline is not None and not (is_int(timeline) and 1 <= timeline <= 120):
        yield f"timeline_months {timeline!r} is not 1..120"
    if row["confidentiality"] not in set(Confidentiality):
        yield f"confidentiality {row['confidentiality']!r}"
    yield from redaction_problems(row)


def redaction_problems(row: Row) -> Iterable[str]:
    redacted = row["redacted_summary"]
    if row["confidentiality"] != Confidentiality.confidential:
        if redacted is not None:
            yield "only a confidential need carries a redacted_summary"
        return
    if not is_text(redacted, 2000):
        yield "a confidential need must have a redacted_summary"
        return
    if row["company_name"] in redacted or core_name(row["company_name"]) in redacted:
        yield "redacted_summary names the company"
    if redacted in (row["summary"], row["description"]):
        yield "redacted_summary repeats the confidential summary"


LEGAL_FORMS = re.compile(
    r"株式会社|有限会社|合同会社|協業組合|農事組合法人|社会福祉法人|医療法人|学校法人"
    r"|K\.K\.|Inc\.|Co\., Ltd\.|Ltd\.|LLC"
)


def core_name(company_name: str) -> str:
    """The distinctive part of a company name, without its legal form."""
    return LEGAL_FORMS.sub("", company_name).strip(" ,")


def sentence_count(text: str) -> int:
    return len(SENTENCE_END.findall(text.strip()))


# --- row-by-row schema ---


def test_every_seed_row_follows_the_seed_schema(seeds: list[Row]) -> None:
    assert problems_in(seeds, seed_problems) == []


def test_every_need_row_follows_the_need_schema(needs: list[Row]) -> None:
    assert problems_in(needs, need_problems) == []


def test_the_checks_report_a_broken_row(seeds: list[Row], needs: list[Row]) -> None:
    confidential = next(row for row in needs if row["confidentiality"] == Confidentiality.confidential)
    unredacted = {**confidential, "redacted_summary": None}
    assert problems_in([unredacted], need_problems) == [
        f"{unredacted['external_id']}: a confidential need must have a redacted_summary"
    ]
    misfiled = {**seeds[0], "fields": ["quantum_cooking"], "prefecture": "48", "trl": 10}
    assert len(problems_in([misfiled], seed_problems)) == 3


def test_seeds_outside_design_and_social_science_name_a_patent_class(seeds: list[Row]) -> None:
    unclassified = [row["title"] for row in seeds if not row["classification_codes"]]
    assert all(row["fields"][0] == "social_design" for row in seeds if row["title"] in unclassified)


def test_external_ids_are_present_and_unique_per_kind(seeds: list[Row], needs: list[Row]) -> None:
    for rows in (seeds, needs):
        ids = [row["external_id"] for row in rows]
        assert None not in ids, "the demo loader re-imports by external_id, so every demo row has one"
        assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_titles_are_unique_per_kind(seeds: list[Row], needs: list[Row]) -> None:
    for rows in (seeds, needs):
        titles = [row["title"] for row in rows]
        assert len(titles) == len(set(titles)), sorted({t for t in titles if titles.count(t) > 1})


def test_summaries_and_descriptions_have_the_agreed_length(seeds: list[Row], needs: list[Row]) -> None:
    def check(row: Row) -> Iterable[str]:
        if not 2 <= sentence_count(row["summary"]) <= 4:
            yield f"summary has {sentence_count(row['summary'])} sentences, not 2..4"
        if not 3 <= sentence_count(row["description"]) <= 8:
            yield f"description has {sentence_count(row['description'])} sentences, not 3..8"
        if not 3 <= len(row["keywords"]) <= 8:
            yield f"{len(row['keywords'])} keywords, not 3..8"

    assert problems_in([*seeds, *needs], check) == []


# --- volume and spread ---


def test_the_set_has_at_least_300_seeds_and_150_needs(seeds: list[Row], needs: list[Row]) -> None:
    assert len(seeds) >= 300
    assert len(needs) >= 150


def test_seeds_cover_every_technology_field(seeds: list[Row]) -> None:
    covered = {f for row in seeds for f in row["fields"]}
    assert covered == set(TECHNOLOGY_FIELDS)
    primary = {row["fields"][0] for row in seeds}
    assert primary == set(TECHNOLOGY_FIELDS), "each field is the main field of some seed"


def test_needs_span_most_technology_fields(needs: list[Row]) -> None:
    assert len({f for row in needs for f in row["fields"]}) >= 18


def test_profiles_come_from_every_regional_block_and_at_least_30_prefectures(
    seeds: list[Row], needs: list[Row]
) -> None:
    for rows in (seeds, needs):
        prefectures = {row["prefecture"] for row in rows}
        assert len(prefectures) >= 30
        assert {PREFECTURES[code].block for code in prefectures} == set(REGIONAL_BLOCKS)


def test_tokyo_is_not_the_bulk_of_the_network(seeds: list[Row], needs: list[Row]) -> None:
    for rows in (seeds, needs):
        assert sum(row["prefecture"] == "13" for row in rows) <= 0.1 * len(rows)


def test_seeds_use_every_owner_type_ip_status_offer_and_trl(seeds: list[Row]) -> None:
    assert {row["owner_type"] for row in seeds} == set(OwnerType)
    assert {row["ip_status"] for row in seeds} == IP_STATUSES
    assert {form for row in seeds for form in row["offers"]} == set(CollaborationForm)
    assert {row["trl"] for row in seeds} == set(range(1, 10))


def test_needs_use_every_company_size_wanted_form_and_many_industries(needs: list[Row]) -> None:
    assert {row["company_size"] for row in needs} == set(CompanySize)
    assert {form for row in needs for form in row["wanted_forms"]} == set(CollaborationForm)
    assert len({row["industry"] for row in needs}) >= 10


def test_need_confidentiality_is_mostly_members_then_public_then_confidential(needs: list[Row]) -> None:
    share = {level: sum(row["confidentiality"] == level for row in needs) / len(needs) for level in Confidentiality}
    assert 0.40 <= share[Confidentiality.members] <= 0.60
    assert 0.20 <= share[Confidentiality.public] <= 0.40
    assert 0.15 <= share[Confidentiality.confidential] <= 0.25


def test_about_a_third_is_written_in_english_and_about_half_is_translated(
    seeds: list[Row], needs: list[Row]
) -> None:
    for rows in (seeds, needs):
        english = sum(row["language"] == Language.en for row in rows) / len(rows)
        translated = sum(row["title_translated"] is not None for row in rows) / len(rows)
        assert 0.20 <= english <= 0.40
        assert 0.35 <= translated <= 0.65


def test_a_few_profiles_are_draft_or_paused_and_most_are_open(seeds: list[Row], needs: list[Row]) -> None:
    for rows in (seeds, needs):
        statuses = [row["status"] for row in rows]
        assert ProfileStatus.draft in statuses
        assert ProfileStatus.paused in statuses
        assert statuses.count(ProfileStatus.open) >= 0.85 * len(rows)


def test_expiry_dates_lie_in_2027_and_2028_except_a_handful_already_past(
    seeds: list[Row], needs: list[Row]
) -> None:
    for rows in (seeds, needs):
        dates = [date.fromisoformat(row["expires_on"]) for row in rows if row["expires_on"] is not None]
        past = [d for d in dates if d < DEMO_TODAY]
        assert 2 <= len(past) <= 0.05 * len(rows), "a handful of expired profiles for the expiry demo"
        future = [d for d in dates if d >= DEMO_TODAY]
        assert all(date(2027, 1, 1) <= d <= date(2028, 12, 31) for d in future)
