"""Where a need's time goes: per-stage medians from a span file written by the services.

    .venv/bin/python bench/e2e_latency.py --rate 5 --duration 10 --trace-file /tmp/spans.jsonl
    .venv/bin/python bench/trace_stages.py /tmp/spans.jsonl

Stages run from the needs service's POST to the end of the webhook POST, by span start and end
times (a negative gap means the next stage started before the previous span ended).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

Span = dict[str, Any]


def _is(service: str, kind: str) -> Callable[[Span], bool]:
    return lambda s: s["service"] == f"matchnet-{service}" and s["kind"] == kind


# (stage name, span predicate, which end of the span marks the stage's end)
MARKS: list[tuple[str, Callable[[Span], bool], str]] = [
    ("needs POST handled", _is("needs", "SERVER"), "end_ns"),
    ("needs relay: send started", _is("needs", "PRODUCER"), "start_ns"),
    ("needs relay: broker acknowledged", _is("needs", "PRODUCER"), "end_ns"),
    ("matcher: consumed", _is("matcher", "CONSUMER"), "start_ns"),
    ("matcher: applied and committed", _is("matcher", "CONSUMER"), "end_ns"),
    ("matcher relay: send started", _is("matcher", "PRODUCER"), "start_ns"),
    ("matcher relay: broker acknowledged", _is("matcher", "PRODUCER"), "end_ns"),
    ("notifications: consumed", _is("notifications", "CONSUMER"), "start_ns"),
    ("notifications: applied and committed", _is("notifications", "CONSUMER"), "end_ns"),
    ("webhook: attempt started", lambda s: s["name"] == "webhook deliver", "start_ns"),
    ("webhook: answered", lambda s: s["name"] == "webhook deliver", "end_ns"),
]


def stage_durations(spans: list[Span]) -> dict[str, list[float]]:
    traces: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        traces[span["trace_id"]].append(span)
    durations: dict[str, list[float]] = defaultdict(list)
    for trace_spans in traces.values():
        start = [s["start_ns"] for s in trace_spans if _is("needs", "SERVER")(s)]
        marks = []
        for _, predicate, end in MARKS:
            times = [s[end] for s in trace_spans if predicate(s)]
            marks.append(min(times) if times else None)
        if not start or None in marks:
            continue  # not a need's full trace
        previous = min(start)
        for (name, _, _), mark in zip(MARKS, marks, strict=True):
            assert mark is not None
            durations[name].append((mark - previous) / 1e6)
            previous = mark
        durations["total"].append((previous - min(start)) / 1e6)
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace_file", type=Path)
    args = parser.parse_args()
    spans = [json.loads(line) for line in args.trace_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    durations = stage_durations(spans)
    if not durations:
        raise SystemExit("no complete need trace in that file")
    print(f"{len(durations['total'])} traces; milliseconds from the previous mark")
    for name in [m[0] for m in MARKS] + ["total"]:
        values = sorted(durations[name])
        p90 = values[int(0.9 * (len(values) - 1))]
        print(f"  {name:<40} p50 {statistics.median(values):6.2f}   p90 {p90:6.2f}")


if __name__ == "__main__":
    main()
