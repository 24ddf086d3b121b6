"""Reading import files: encodings, CSV cells to JSON shapes, row numbers, per-row errors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field

from shared.bulk_import import (
    ImportFileError,
    ImportFormat,
    charset_of,
    decode_text,
    format_for,
    read_rows,
    validate_rows,
)

CSV_TEXT = (
    "external_id,title,keywords,trl,budget_max_jpy\n"
    "s-1,熱電変換シート,熱電変換; 排熱回収 ;,4,\"3,000,000\"\n"
    "\n"
    "s-2,\"改行を\n含むタイトル\",,x,\n"
    "s-3,too,many,cells,here,extra\n"
)


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: str
    title: str = Field(max_length=20)
    keywords: list[str] = Field(default_factory=list)
    trl: int | None = Field(default=None, ge=1, le=9)
    budget_max_jpy: int | None = None


def test_utf8_with_and_without_bom_and_shift_jis_read_the_same_text() -> None:
    text = "タイトル,キーワード\n排熱,熱電\n"
    assert decode_text(text.encode("utf-8")) == text
    assert decode_text(b"\xef\xbb\xbf" + text.encode("utf-8")) == text
    assert decode_text(text.encode("shift_jis")) == text
    assert decode_text(text.encode("cp932"), charset="Shift_JIS") == text


def test_a_named_charset_that_does_not_fit_is_a_clear_file_error() -> None:
    with pytest.raises(ImportFileError, match="not valid utf-8"):
        decode_text("排熱".encode("shift_jis"), charset="utf-8")
    with pytest.raises(ImportFileError):
        decode_text(b"\x81", charset="no-such-codec")


def test_format_comes_from_the_content_type_or_the_file_name() -> None:
    assert format_for("text/csv; charset=shift_jis") == ImportFormat.csv
    assert format_for("application/x-ndjson") == ImportFormat.jsonl
    assert format_for(None, "seeds.JSONL") == ImportFormat.jsonl
    assert format_for("application/octet-stream", "catalogue.csv") == ImportFormat.csv
    assert charset_of('text/csv; charset="Shift_JIS"') == "shift_jis"
    with pytest.raises(ImportFileError):
        format_for("application/json")


def test_csv_cells_become_lists_numbers_and_absent_values_with_spreadsheet_row_numbers() -> None:
    rows, errors = read_rows(CSV_TEXT, ImportFormat.csv, list_fields=["keywords"], int_fields=["trl", "budget_max_jpy"])
    assert [row.number for row in rows] == [2, 4]
    assert rows[0].values == {
        "external_id": "s-1", "title": "熱電変換シート", "keywords": ["熱電変換", "排熱回収"], "trl": 4,
        "budget_max_jpy": 3_000_000,
    }
    assert rows[1].values["title"] == "改行を\n含むタイトル"
    assert rows[1].values["keywords"] == []
    assert rows[1].values["trl"] == "x"  # left for the model to reject, naming the field
    assert [(e.row, e.field) for e in errors] == [(5, "row")]
    assert "6 cells but only 5 columns" in errors[0].message


def test_jsonl_reports_bad_lines_by_line_number_and_keeps_the_good_ones() -> None:
    text = '{"external_id": "a", "title": "ok"}\n\nnot json\n[1, 2]\n{"external_id": "b", "title": "ok"}\n'
    rows, errors = read_rows(text, ImportFormat.jsonl, list_fields=[])
    assert [row.number for row in rows] == [1, 5]
    assert [(e.row, e.field) for e in errors] == [(3, "row"), (4, "row")]
    assert "not valid JSON" in errors[0].message


def test_validation_names_each_field_of_each_invalid_row() -> None:
    rows, _ = read_rows(CSV_TEXT, ImportFormat.csv, list_fields=["keywords"], int_fields=["trl", "budget_max_jpy"])
    extra, _ = read_rows('{"external_id": "c", "title": "t", "colour": "red"}\n', ImportFormat.jsonl, [])
    valid, errors = validate_rows([*rows, *extra], Row)
    assert [number for number, _ in valid] == [2]
    assert {(e.row, e.field) for e in errors} == {(4, "trl"), (1, "colour")}
    assert any("unknown field" in e.message for e in errors)


def test_a_csv_without_a_header_or_with_a_column_twice_is_refused_as_a_whole() -> None:
    with pytest.raises(ImportFileError, match="named twice"):
        read_rows("title,title\na,b\n", ImportFormat.csv, [])
    with pytest.raises(ImportFileError, match="name the columns"):
        read_rows(",\na,b\n", ImportFormat.csv, [])
    assert read_rows("", ImportFormat.csv, []) == ([], [])
