"""Bulk import into the registries: CSV (UTF-8, BOM, Shift_JIS) and JSON Lines, per-row reports, re-import."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from matchnet.cli import build_parser
from matchnet.importer import cmd_import
from services.needs.models import NEED_EXAMPLE
from services.seeds.models import SEED_EXAMPLE
from shared.auth import Role
from shared.outbox import OutboxEvent
from tests.api_harness import ADMIN, ADMIN_KEY, Api

CSV_TYPE = {"Content-Type": "text/csv"}
JSONL_TYPE = {"Content-Type": "application/x-ndjson"}


def seed_row(number: int, **changes: Any) -> dict[str, Any]:
    return {**SEED_EXAMPLE, "external_id": f"HIT-{number:03d}", "title": f"熱電変換シート その{number}", **changes}


def as_csv(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(name for row in rows for name in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: ";".join(v) if isinstance(v, list) else ("" if v is None else v)
                         for name, v in row.items()})
    return buffer.getvalue()


def as_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def events(api: Api) -> list[str]:
    with api.db.session() as session:
        return [row.event_type for row in session.exec(select(OutboxEvent).order_by(col(OutboxEvent.seq))).all()]


def imported(api: Api, path: str, body: bytes, content_type: dict[str, str], headers: dict[str, str] = ADMIN
             ) -> dict[str, Any]:
    response = api.client.post(path, content=body, headers={**headers, **content_type})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


MIXED_ROWS = [
    seed_row(1),
    seed_row(2, prefecture="99"),  # no such prefecture
    seed_row(3, trl=12, fields=[]),  # two problems in one row
    seed_row(4, colour="red"),  # unknown column
    seed_row(5, owner_type="university"),
]


def test_a_utf8_csv_with_bom_imports_the_valid_rows_and_reports_each_invalid_one(seeds: Api) -> None:
    body = b"\xef\xbb\xbf" + as_csv(MIXED_ROWS).encode()
    result = imported(seeds, "/v1/seeds:import", body, CSV_TYPE)
    assert (result["received"], result["created"], result["rejected"]) == (5, 2, 3)
    problems = {(e["row"], e["field"]) for e in result["errors"]}
    # spreadsheet rows: the header is row 1
    assert problems == {(3, "prefecture"), (4, "trl"), (4, "fields"), (5, "colour")}
    listed = seeds.client.get("/v1/seeds", headers=ADMIN).json()["items"]
    assert sorted(item["external_id"] for item in listed) == ["HIT-001", "HIT-005"]
    assert listed[0]["keywords"] == SEED_EXAMPLE["keywords"] and listed[0]["trl"] == 4
    assert events(seeds).count("jp.matchnet.seed.created.v1") == 2


@pytest.mark.parametrize("encode", [
    lambda text: text.encode("utf-8"),
    lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),
    lambda text: text.encode("cp932"),
], ids=["utf-8", "utf-8-bom", "shift_jis"])
def test_mixed_valid_and_invalid_rows_in_each_encoding(seeds: Api, encode: Any) -> None:
    result = imported(seeds, "/v1/seeds:import", encode(as_csv(MIXED_ROWS)), CSV_TYPE)
    assert (result["created"], result["rejected"]) == (2, 3)
    titles = {item["title"] for item in seeds.client.get("/v1/seeds", headers=ADMIN).json()["items"]}
    assert titles == {"熱電変換シート その1", "熱電変換シート その5"}


def test_a_shift_jis_csv_reads_as_japanese_and_a_named_charset_is_honoured(seeds: Api) -> None:
    rows = [seed_row(1, title="高強度アルミ合金の摩擦攪拌接合")]
    body = as_csv(rows).encode("cp932")
    result = imported(seeds, "/v1/seeds:import", body, CSV_TYPE)
    assert result["created"] == 1, result
    again = as_csv([seed_row(2, title="においセンサーで鮮度を判定")]).encode("cp932")
    assert imported(seeds, "/v1/seeds:import", again, {"Content-Type": "text/csv; charset=Shift_JIS"})["created"] == 1
    titles = {item["title"] for item in seeds.client.get("/v1/seeds", headers=ADMIN).json()["items"]}
    assert titles == {"高強度アルミ合金の摩擦攪拌接合", "においセンサーで鮮度を判定"}


def test_json_lines_report_bad_lines_by_line_number(needs: Api) -> None:
    confidential_without_summary = {**NEED_EXAMPLE, "external_id": "N-2", "confidentiality": "confidential"}
    body = as_jsonl([NEED_EXAMPLE]) + b"{not json\n" + as_jsonl([confidential_without_summary])
    result = imported(needs, "/v1/needs:import", body, JSONL_TYPE)
    assert (result["created"], result["rejected"]) == (1, 2)
    assert (result["errors"][0]["row"], result["errors"][0]["field"]) == (2, "row")
    assert result["errors"][1]["row"] == 3 and "redacted_summary" in json.dumps(result["errors"][1])


def test_a_reimport_with_external_ids_updates_instead_of_duplicating(seeds: Api) -> None:
    rows = [seed_row(1), seed_row(2)]
    assert imported(seeds, "/v1/seeds:import", as_jsonl(rows), JSONL_TYPE)["created"] == 2
    same = imported(seeds, "/v1/seeds:import", as_jsonl(rows), JSONL_TYPE)
    assert (same["created"], same["updated"], same["unchanged"]) == (0, 0, 2)
    edited = [seed_row(1, summary="改訂した要約。曲面の配管に巻き付けて発電する。"), seed_row(2)]
    changed = imported(seeds, "/v1/seeds:import", as_csv(edited).encode(), CSV_TYPE)
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (0, 1, 1)
    listed = seeds.client.get("/v1/seeds", headers=ADMIN).json()["items"]
    assert len(listed) == 2
    first = next(item for item in listed if item["external_id"] == "HIT-001")
    assert first["version"] == 2 and first["summary"].startswith("改訂")
    assert events(seeds).count("jp.matchnet.seed.updated.v1") == 1
    audit = seeds.client.get("/v1/audit", headers=ADMIN).json()["items"]
    assert sum(1 for record in audit if record["action"] == "updated") == 1


def test_a_file_that_names_one_profile_twice_creates_it_then_updates_it(seeds: Api) -> None:
    rows = [seed_row(7), seed_row(8), seed_row(7, summary="同じファイルの後の行で改訂した要約。")]

    result = imported(seeds, "/v1/seeds:import", as_jsonl(rows), JSONL_TYPE)

    assert (result["created"], result["updated"], result["rejected"]) == (2, 1, 0)
    listed = seeds.client.get("/v1/seeds", headers=ADMIN).json()["items"]
    assert sorted(item["external_id"] for item in listed) == ["HIT-007", "HIT-008"]
    seventh = next(item for item in listed if item["external_id"] == "HIT-007")
    assert seventh["version"] == 2 and seventh["summary"].startswith("同じファイル")


def test_the_same_external_id_of_another_owner_is_another_profile(seeds: Api) -> None:
    rows = [seed_row(1), seed_row(1, owner_org="青葉理工大学")]
    assert imported(seeds, "/v1/seeds:import", as_jsonl(rows), JSONL_TYPE)["created"] == 2


def test_an_office_imports_only_its_own_prefecture_and_readers_may_not_import(seeds: Api) -> None:
    office = seeds.key(Role.office, office_id="office-01")
    rows = [seed_row(1), seed_row(2, prefecture="13")]
    result = imported(seeds, "/v1/seeds:import", as_jsonl(rows), JSONL_TYPE, headers=office)
    assert result["created"] == 1
    assert [(e["row"], e["field"]) for e in result["errors"]] == [(2, "prefecture")]
    for role, scope in ((Role.partner, {"partner_id": "tlo"}), (Role.operator, {})):
        response = seeds.client.post("/v1/seeds:import", content=as_jsonl(rows),
                                     headers={**seeds.key(role, **scope), **JSONL_TYPE})
        assert response.status_code == 403


def test_a_withdrawn_profile_is_not_revived_by_a_reimport(seeds: Api) -> None:
    imported(seeds, "/v1/seeds:import", as_jsonl([seed_row(1)]), JSONL_TYPE)
    seed = seeds.client.get("/v1/seeds", headers=ADMIN).json()["items"][0]
    assert seeds.client.delete(f"/v1/seeds/{seed['id']}", headers={**ADMIN, "If-Match": '"1"'}).status_code == 200
    result = imported(seeds, "/v1/seeds:import", as_jsonl([seed_row(1, summary="別の要約です。")]), JSONL_TYPE)
    assert [(e["row"], e["field"]) for e in result["errors"]] == [(1, "external_id")]


def test_files_that_cannot_be_read_get_a_problem_naming_why(seeds: Api) -> None:
    wrong_type = seeds.client.post("/v1/seeds:import", content=b"{}",
                                   headers={**ADMIN, "Content-Type": "application/json"})
    assert wrong_type.status_code == 415
    assert wrong_type.headers["content-type"].startswith("application/problem+json")
    bad_charset = seeds.client.post("/v1/seeds:import", content="排熱".encode("cp932"),
                                    headers={**ADMIN, "Content-Type": "text/csv; charset=utf-8"})
    assert bad_charset.status_code == 400 and "utf-8" in bad_charset.json()["detail"]
    twice = seeds.client.post("/v1/seeds:import", content=b"title,title\na,b\n", headers={**ADMIN, **CSV_TYPE})
    assert twice.status_code == 400 and "named twice" in twice.json()["detail"]
    assert events(seeds) == []


def test_an_import_may_be_larger_than_an_ordinary_request_but_not_unbounded(seeds: Api) -> None:
    rows = [seed_row(n, description="長い説明。" * 2000) for n in range(1, 80)]  # about 2.4 MB
    body = as_jsonl(rows)
    assert len(body) > 1_048_576
    assert imported(seeds, "/v1/seeds:import", body, JSONL_TYPE)["created"] == 79
    too_big = seeds.client.post("/v1/seeds:import", content=b" " * (20 * 1_048_576 + 1),
                                headers={**ADMIN, **JSONL_TYPE})
    assert too_big.status_code == 413
    ordinary = seeds.client.post("/v1/seeds", content=body, headers={**ADMIN, "Content-Type": "application/json"})
    assert ordinary.status_code == 413


def test_the_cli_imports_a_shift_jis_file_into_the_registry_and_reports_file_rows(
    seeds: Api, tmp_path: Path
) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_bytes(as_csv([seed_row(1), seed_row(2, trl=0), seed_row(3)]).encode("cp932"))
    args = build_parser().parse_args(["import", "seeds", str(path), "--api-key", ADMIN_KEY, "--url",
                                      "http://testserver", "--batch-rows", "2"])
    out = io.StringIO()
    assert cmd_import(args, out=out, transport=seeds.client._transport) == 1  # one row rejected
    assert "rows: 3  created: 2" in out.getvalue() and "row 3: trl:" in out.getvalue()
    assert cmd_import(args, out=(again := io.StringIO()), transport=seeds.client._transport) == 1
    assert "created: 0  updated: 0  unchanged: 2" in again.getvalue()
