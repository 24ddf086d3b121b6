"""OpenTelemetry for a service in one call, and W3C trace context carried in Kafka headers.

Export: OTLP/HTTP when an endpoint is configured; a JSON-lines file when ``MATCHNET_TRACE_FILE`` is
set; an exporter passed in (tests use the in-memory one); otherwise spans are made but not exported.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

log = logging.getLogger(__name__)

KafkaHeaders = Sequence[tuple[str, bytes]]
TRACE_HEADERS = ("traceparent", "tracestate")


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON object per line (readable by tests and `jq`).

    One ``write`` per batch on an O_APPEND descriptor, so several processes can share the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(json.dumps(span_to_dict(span), ensure_ascii=False) + "\n" for span in spans).encode()
        with self._lock:
            os.write(self._fd, data)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            os.close(self._fd)


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "service": span.resource.attributes.get("service.name"),
        "kind": span.kind.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": {k: v if isinstance(v, str | int | float | bool) else list(v)  # type: ignore[arg-type]
                       for k, v in (span.attributes or {}).items()},
        "links": [
            {"trace_id": format(link.context.trace_id, "032x"), "span_id": format(link.context.span_id, "016x")}
            for link in span.links
        ],
    }


_provider: TracerProvider | None = None
_instrumented_httpx = False


def setup_telemetry(
    service_name: str,
    otlp_endpoint: str | None = None,
    trace_file: Path | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider:
    """Create (once per process) the tracer provider for ``matchnet-<service_name>`` and instrument httpx."""
    global _provider, _instrumented_httpx
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": f"matchnet-{service_name}"}))
        trace.set_tracer_provider(_provider)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        _provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces"))
        )
    if trace_file:
        _provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(trace_file), schedule_delay_millis=200))
    if exporter is not None:
        _provider.add_span_processor(SimpleSpanProcessor(exporter))
    if not _instrumented_httpx:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument(tracer_provider=_provider)
        _instrumented_httpx = True
    return _provider


def instrument_fastapi(app: Any) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # The ASGI "receive"/"send" sub-spans say nothing an operator needs and cost three spans a request.
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_provider, excluded_urls="healthz,readyz", exclude_spans=["receive", "send"]
    )


def instrument_engine(engine: Any) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=_provider)


def shutdown_telemetry() -> None:
    if _provider is not None:
        _provider.force_flush()


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, to store beside an outbox row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> otel_context.Context | None:
    if not traceparent:
        return None
    return propagate.extract({"traceparent": traceparent})


def inject_kafka_headers(headers: list[tuple[str, bytes]]) -> None:
    """Add the active span's trace context to Kafka headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers.extend((name, value.encode()) for name, value in carrier.items() if name in TRACE_HEADERS)


def context_from_kafka_headers(headers: KafkaHeaders) -> otel_context.Context:
    carrier = {name: value.decode("latin-1") for name, value in headers if name in TRACE_HEADERS and value}
    return propagate.extract(carrier)


def meter(name: str) -> metrics.Meter:
    """A meter from the process's meter provider (a no-op until one is installed; instruments made
    before that are bound to it when it is)."""
    return metrics.get_meter(name)
