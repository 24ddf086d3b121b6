"""``matchnet import``: reads the file, sends JSON Lines batches, reports with the file's row numbers."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from matchnet.cli import build_parser
from matchnet.importer import cmd_import
from shared.bulk_import import cell_shapes
from shared.events import SeedProfile

SEEDS_CSV = (
    "external_id,title,keywords,fields\n"
    "s-1,熱電変換シート,熱電変換;排熱回収,energy\n"
    "\n"
    "s-2,外観検査AI,外観検査,ai_data;manufacturing\n"
    "s-3,,,\n"
)


def run_import(tmp_path: Path, name: str, data: bytes, answer: Any, *extra: str) -> tuple[int, str, list[Any]]:
    path = tmp_path / name
    path.write_bytes(data)
    requests: list[Any] = []

    def handle(request: httpx.Request) -> httpx.Response:
        lines = [json.loads(line) for line in request.content.decode().splitlines()]
        requests.append((request.url.path, request.headers["content-type"], request.headers["authorization"], lines))
        return answer(lines)

    args = build_parser().parse_args(["import", "seeds", str(path), "--api-key", "k", *extra])
    out = io.StringIO()
    code = cmd_import(args, out=out, transport=httpx.MockTransport(handle))
    return code, out.getvalue(), requests


def rejecting_titleless(lines: list[dict[str, Any]]) -> httpx.Response:
    errors = [{"row": n, "field": "title", "message": "Field required"} for n, line in enumerate(lines, 1)
              if "title" not in line]
    return httpx.Response(200, json={"received": len(lines), "created": len(lines) - len(errors), "updated": 0,
                                     "unchanged": 0, "rejected": len(errors), "errors": errors})


def test_a_shift_jis_csv_goes_in_batches_and_errors_carry_the_file_row_numbers(tmp_path: Path) -> None:
    code, out, requests = run_import(
        tmp_path, "catalogue.csv", SEEDS_CSV.encode("shift_jis"), rejecting_titleless, "--batch-rows", "2"
    )
    assert code == 1  # some rows were rejected
    assert [len(lines) for *_, lines in requests] == [2, 1]
    path, content_type, authorization, lines = requests[0]
    assert path == "/v1/seeds:import" and content_type.startswith("application/x-ndjson")
    assert authorization == "Bearer k"
    assert lines[0] == {"external_id": "s-1", "title": "熱電変換シート", "keywords": ["熱電変換", "排熱回収"],
                        "fields": ["energy"]}
    assert lines[1]["fields"] == ["ai_data", "manufacturing"]
    assert "rows: 3  created: 2  updated: 0  unchanged: 0  rejected: 1" in out
    assert "row 5: title: Field required" in out  # the spreadsheet row of s-3, not the batch line


def test_unreadable_jsonl_lines_are_reported_without_being_sent(tmp_path: Path) -> None:
    data = b'{"external_id": "s-1", "title": "ok"}\nnot json\n'
    code, out, requests = run_import(tmp_path, "seeds.jsonl", data, rejecting_titleless)
    assert code == 1
    assert [lines for *_, lines in requests] == [[{"external_id": "s-1", "title": "ok"}]]
    assert "row 2: row: not valid JSON" in out


def test_every_row_imported_exits_zero_and_a_refused_batch_exits_two(tmp_path: Path) -> None:
    code, out, _ = run_import(tmp_path, "seeds.jsonl", b'{"title": "ok"}\n', rejecting_titleless)
    assert code == 0 and "rejected: 0" in out
    refused = lambda _lines: httpx.Response(  # noqa: E731
        403, json={"title": "Forbidden", "status": 403, "detail": "only an admin or an office may import"}
    )
    code, _, _ = run_import(tmp_path, "seeds.jsonl", b'{"title": "ok"}\n', refused)
    assert code == 2


def test_a_file_that_is_neither_csv_nor_jsonl_is_refused_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, requests = run_import(tmp_path, "seeds.xlsx", b"PK", rejecting_titleless)
    assert code == 2 and requests == []
    assert "CSV" in capsys.readouterr().err


def test_csv_cell_shapes_come_from_the_profile_schema() -> None:
    list_fields, _ = cell_shapes(SeedProfile)
    assert {"keywords", "fields", "offers"} <= list_fields
