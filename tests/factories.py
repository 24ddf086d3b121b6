"""Profiles for tests: valid by default, override what the test is about."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.events import NeedProfile, SeedProfile


def seed_profile(id: str = "seed_1", **overrides: Any) -> SeedProfile:
    now = datetime.now(UTC)
    values: dict[str, Any] = dict(
        id=id, version=1, title="熱電変換シート", summary="排熱から発電するシート。",
        description="排熱から発電する熱電変換材料",
        keywords=["熱電変換"], fields=["energy"], owner_org="北海道大学", owner_type="university",
        prefecture="01", offers=["license"], language="ja", status="open", created_at=now, updated_at=now,
        ip_status="patent_application", trl=4, contact_name="産学連携本部", contact_email="sangaku@example.ac.jp",
    )
    values.update(overrides)
    return SeedProfile(**values)


def need_profile(id: str = "need_1", **overrides: Any) -> NeedProfile:
    now = datetime.now(UTC)
    values: dict[str, Any] = dict(
        id=id, version=1, title="工場の排熱を有効活用したい", summary="鋳造の排熱を使いたい。",
        description="鋳造の排熱を電気に変えたい", industry="E",
        keywords=["排熱"], fields=["energy"], company_name="札幌鋳造", company_size="sme", prefecture="13",
        wanted_forms=["license"], confidentiality="public", language="ja", status="open",
        created_at=now, updated_at=now,
    )
    values.update(overrides)
    return NeedProfile(**values)


SEED_BODY: dict[str, Any] = {
    "title": "排熱を電気に変える柔軟な熱電変換シート",
    "summary": "低温排熱から発電できる有機熱電シート。配管に巻き付けて使える。",
    "description": "80〜150℃の低温排熱から発電できる有機熱電材料。工場の配管に巻き付けて使える。",
    "keywords": ["熱電変換", "排熱回収", "thermoelectric"],
    "fields": ["energy", "materials"],
    "owner_org": "北海道工業大学",
    "owner_type": "university",
    "prefecture": "01",
    "offers": ["license", "joint_research"],
    "language": "ja",
    "ip_status": "patent_application",
    "patent_numbers": ["特願2024-012345"],
    "trl": 4,
    "contact_name": "産学連携推進本部",
    "contact_email": "sangaku@example.ac.jp",
}

NEED_BODY: dict[str, Any] = {
    "title": "工場の排熱を有効活用したい",
    "summary": "鋳造工程の排熱を捨てている。電気に変えて使いたい。",
    "description": "鋳造工程で出る100℃前後の排熱を捨てている。電気に変えて工場で使えないか。",
    "keywords": ["排熱", "省エネ"],
    "fields": ["energy"],
    "company_name": "東京精密鋳造株式会社",
    "company_size": "sme",
    "industry": "E",
    "prefecture": "13",
    "wanted_forms": ["license"],
    "confidentiality": "members",
    # Valid at every confidentiality level: a confidential need must carry one.
    "redacted_summary": "関東の製造業者が、工程の排熱を電力に変える技術を探している。",
    "language": "ja",
}
