"""``matchnet import seeds|needs FILE``: a catalogue file into the registry, in batches, with a progress bar.

The file is read here (CSV in UTF-8, with or without BOM, or Shift_JIS; JSON Lines), sent as JSON
Lines batches to ``POST /v1/{kind}:import``, and the per-row report is printed with the row numbers
of the original file. Rows with an ``external_id`` already imported are updated, not duplicated.
Exit status: 0 every row imported, 1 some rows rejected (listed), 2 the file or the call failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import httpx
from pydantic import BaseModel

from matchnet.network import ADMIN_KEY_ENV
from matchnet.service_calls import ServiceCallError, call_service
from shared.bulk_import import (
    ImportFileError,
    ImportReport,
    RowError,
    cell_shapes,
    decode_text,
    format_for,
    read_rows,
)
from shared.events import NeedProfile, SeedProfile
from shared.settings import DEFAULT_PORTS

PROFILE_MODELS: dict[str, type[BaseModel]] = {"seeds": SeedProfile, "needs": NeedProfile}
DEFAULT_BATCH_ROWS = 200
BAR_WIDTH = 30


def add_import_parser(commands: Any) -> None:
    parser = commands.add_parser("import", help="import a CSV or JSON Lines catalogue of seeds or needs")
    parser.add_argument("kind", choices=sorted(PROFILE_MODELS))
    parser.add_argument("file", type=Path, help="a .csv (UTF-8 or Shift_JIS) or .jsonl file")
    parser.add_argument("--url", help="the seeds or needs service (default http://127.0.0.1:8001 or :8002)")
    parser.add_argument("--api-key", default=os.environ.get(ADMIN_KEY_ENV),
                        help=f"an admin or office key; default ${ADMIN_KEY_ENV}")
    parser.add_argument("--charset", help="the file's encoding if not UTF-8 or Shift_JIS (detected)")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help="rows per request (default 200)")


def cmd_import(
    args: argparse.Namespace, out: TextIO | None = None, transport: httpx.BaseTransport | None = None
) -> int:
    out = out or sys.stdout
    if not args.api_key:
        print(f"matchnet import needs --api-key or ${ADMIN_KEY_ENV}", file=sys.stderr)
        return 2
    try:
        file_format = format_for(None, args.file.name)
        text = decode_text(args.file.read_bytes(), args.charset)
        list_fields, int_fields = cell_shapes(PROFILE_MODELS[args.kind])
        rows, unreadable = read_rows(text, file_format, list_fields, int_fields)
    except (ImportFileError, OSError) as error:
        print(f"matchnet import: {args.file}: {error}", file=sys.stderr)
        return 2
    report = ImportReport(received=len(rows) + len(unreadable), errors=list(unreadable))
    url = args.url or f"http://127.0.0.1:{DEFAULT_PORTS[args.kind]}"
    batch_rows = max(1, args.batch_rows)
    progress = Progress(len(rows), sys.stderr)
    try:
        with httpx.Client(base_url=url, timeout=60.0, trust_env=False, transport=transport,
                          headers={"Authorization": f"Bearer {args.api_key}"}) as client:
            for start in range(0, len(rows), batch_rows):
                batch = rows[start:start + batch_rows]
                body = "".join(json.dumps(row.values, ensure_ascii=False) + "\n" for row in batch).encode()
                answer = _send_batch(client, args.kind, body)
                numbers = [row.number for row in batch]  # batch line n is file row numbers[n - 1]
                report.created += answer["created"]
                report.updated += answer["updated"]
                report.unchanged += answer.get("unchanged", 0)
                report.errors.extend(
                    RowError(numbers[error["row"] - 1], error["field"], error["message"]) for error in answer["errors"]
                )
                progress.advance(len(batch))
    except ServiceCallError as error:
        progress.finish()
        print(f"matchnet import: {error}", file=sys.stderr)
        _print_report(report, out)
        return 2
    progress.finish()
    _print_report(report, out)
    return 1 if report.errors else 0


def _send_batch(client: httpx.Client, kind: str, body: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = call_service(
        client, f"the {kind} service", "POST", f"/v1/{kind}:import", content=body,
        headers={"Content-Type": "application/x-ndjson; charset=utf-8"},
    )
    return answer


def _print_report(report: ImportReport, out: TextIO) -> None:
    print(f"rows: {report.received}  created: {report.created}  updated: {report.updated}  "
          f"unchanged: {report.unchanged}  rejected: {report.rejected}", file=out)
    for error in sorted(report.errors, key=lambda e: e.row):
        print(f"  row {error.row}: {error.field}: {error.message}", file=out)


class Progress:
    """A one-line bar on a terminal; a line per update elsewhere (logs stay readable)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.interactive = stream.isatty()

    def advance(self, rows: int) -> None:
        self.done += rows
        filled = BAR_WIDTH * self.done // max(self.total, 1)
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total} rows"
        if self.interactive:
            print(f"\r{line}", end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def finish(self) -> None:
        if self.interactive and self.done:
            print(file=self.stream, flush=True)
