"""OpenTelemetry for a service in one call: traces, metrics, JSON logs; W3C trace context in Kafka headers.

Traces: OTLP/HTTP when an endpoint is configured; a JSON-lines file when ``MATCHNET_TRACE_FILE`` is
set; an exporter passed in (tests use the in-memory one); otherwise spans are made but not exported.
HTTP spans and metrics follow the stable HTTP semantic conventions (``http.request.method``,
``http.route``, ``http.response.status_code``).

Metrics: every service exposes Prometheus text at ``/metrics`` (``metrics_text()``) and, with an
OTLP endpoint, pushes the same instruments over OTLP/HTTP every ``METRICS_EXPORT_INTERVAL_MS`` (or
``OTEL_METRIC_EXPORT_INTERVAL`` milliseconds).
To add instruments anywhere, ask for a meter by the module's name, at import time if you like::

    from shared.telemetry import meter

    _deliveries = meter(__name__).create_counter(
        "matchnet.deliveries.succeeded", unit="{delivery}", description="Webhook deliveries that succeeded"
    )
    _deliveries.add(1, {"matchnet.subscription.kind": "office"})

``meter(name)`` works whether or not ``setup_telemetry`` has run yet: before it, the API hands out
proxy instruments that start recording once the provider is set; in a process that never sets it
up (unit tests), they record nothing. Name instruments ``matchnet.<area>.<what>`` with a unit
(``s`` for durations, ``{event}``-style annotations for counts); Prometheus shows
``matchnet.deliveries.succeeded`` as ``matchnet_deliveries_succeeded_total``. Keep attribute values
few (a topic, a status), never an id.

Logs: ``configure_logging`` writes JSON lines (time, level, service, logger, message, trace_id,
span_id, event_id when an event is being handled) through ``RedactingFilter``, which removes API
keys, ``whsec_`` secrets, Authorization headers and the values pydantic and SQLAlchemy quote in
their errors, so neither secrets nor confidential text reach a log.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status, StatusCode

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
_meter_provider: MeterProvider | None = None
_instrumented_httpx = False
METRICS_EXPORT_INTERVAL_MS = 15_000
# The stable HTTP conventions (http.request.method, http.route, …) for spans and metrics alike.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")


def setup_telemetry(
    service_name: str,
    otlp_endpoint: str | None = None,
    trace_file: Path | None = None,
    exporter: SpanExporter | None = None,
    metric_readers: Sequence[MetricReader] = (),
    otlp_metrics: bool = True,
) -> TracerProvider:
    """Create (once per process) the tracer and meter providers for ``matchnet-<service_name>``.

    Traces go to OTLP, the trace file and ``exporter`` (each when given); metrics to the Prometheus
    registry (``/metrics``), to OTLP when an endpoint is given, and to ``metric_readers`` (tests).
    The meter provider is made by the first call: later calls add span exporters only.
    """
    global _provider, _meter_provider, _instrumented_httpx
    resource = Resource.create({"service.name": f"matchnet-{service_name}"})
    if _provider is None:
        _provider = TracerProvider(resource=resource)
        trace.set_tracer_provider(_provider)
    if _meter_provider is None:
        _meter_provider = _make_meter_provider(resource, otlp_endpoint if otlp_metrics else None, metric_readers)
        metrics.set_meter_provider(_meter_provider)
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


def _make_meter_provider(
    resource: Resource, otlp_endpoint: str | None, extra_readers: Sequence[MetricReader]
) -> MeterProvider:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    readers: list[MetricReader] = [PrometheusMetricReader(), *extra_readers]
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/metrics"),
            export_interval_millis=float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", METRICS_EXPORT_INTERVAL_MS)),
        ))
    return MeterProvider(resource=resource, metric_readers=readers)


def meter(name: str) -> metrics.Meter:
    """The meter for ``name`` (a module's ``__name__``); usable before or without ``setup_telemetry``."""
    return metrics.get_meter(name)


def metrics_text() -> tuple[bytes, str]:
    """The Prometheus exposition of this process's metrics, and its content type (for ``/metrics``).

    Reading it runs the observable instruments' callbacks (which may query the database): call it
    off the event loop.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    with suppress_tracing():  # a scrape's own database reads are not part of any trace
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


@contextmanager
def suppress_tracing() -> Iterator[None]:
    """No spans from instrumented libraries inside (metrics collection, housekeeping reads)."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


def instrument_fastapi(app: Any) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # The ASGI "receive"/"send" sub-spans say nothing an operator needs and cost three spans a request.
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_provider, meter_provider=_meter_provider,
        excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"],
    )


def instrument_engine(engine: Any) -> None:
    """A CLIENT span per SQL statement the engine executes (``db.system``, ``db.name``, ``db.statement``).

    Our own two event hooks rather than opentelemetry-instrumentation-sqlalchemy: that one parses the
    URL and runs a regular expression over the statement on every execute, attaches each span as the
    current one and makes a span of every pool checkout. Here the attributes are worked out once per
    engine and a statement's span name once per statement text: the same spans cost each service
    1–1.5 ms less CPU per need on the 2-core bench machine (bench/e2e_latency.py).
    """
    from sqlalchemy import event

    spans = _StatementSpans(engine, (_provider or trace.get_tracer_provider()).get_tracer(__name__))
    event.listen(engine, "before_cursor_execute", spans.before)
    event.listen(engine, "after_cursor_execute", spans.after)
    event.listen(engine, "handle_error", spans.failed)


class _StatementSpans:
    _MAX_NAMES = 4096  # statement texts remembered; services issue a few hundred distinct ones

    def __init__(self, engine: Any, tracer: trace.Tracer) -> None:
        url = engine.url
        self._tracer = tracer
        self._system = engine.dialect.name  # "sqlite", "postgresql": the semantic conventions' names
        self._suffix = f" {url.database}" if url.database else ""
        self._attributes: dict[str, Any] = {"db.system": self._system}
        if url.database:
            self._attributes["db.name"] = url.database
        if url.host:
            self._attributes["server.address"] = url.host
        if url.port:
            self._attributes["server.port"] = url.port
        if url.username:
            self._attributes["db.user"] = url.username
        self._names: dict[str, str] = {}

    def _name(self, statement: str) -> str:
        name = self._names.get(statement)
        if name is None:
            words = statement.split(None, 1)  # the operation: the first word, never a parse of the SQL
            name = (words[0] if words else self._system) + self._suffix
            if len(self._names) < self._MAX_NAMES:
                self._names[statement] = name
        return name

    def before(self, _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        if not is_instrumentation_enabled():  # suppress_tracing()
            return
        context._matchnet_span = self._tracer.start_span(
            self._name(statement), kind=trace.SpanKind.CLIENT,
            attributes={**self._attributes, "db.statement": statement},
        )

    def after(self, _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool) -> None:
        if (span := _taken_span(context)) is not None:
            span.end()

    def failed(self, exception_context: Any) -> None:
        if (span := _taken_span(exception_context.execution_context)) is not None:
            # The exception's type only: its text may quote the statement's (confidential) values.
            span.set_status(Status(StatusCode.ERROR, type(exception_context.original_exception).__name__))
            span.end()


def _taken_span(execution_context: Any) -> trace.Span | None:
    """The statement's span, taken off its execution context (None: none, or not traced)."""
    span: trace.Span | None = getattr(execution_context, "_matchnet_span", None)
    if span is not None:
        execution_context._matchnet_span = None
    return span


def shutdown_telemetry() -> None:
    """Flush what is buffered: the last spans and, over OTLP, the last metric values."""
    if _provider is not None:
        _provider.force_flush()
    if _meter_provider is not None:
        _meter_provider.force_flush(timeout_millis=5_000)


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


# ---- logs ------------------------------------------------------------------------------------

# The CloudEvents id of the event this task (or the thread it handed work to) is handling.
current_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("matchnet_event_id", default=None)

REDACTED = "[redacted]"
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization headers in any spelling a log may show them: a dict, a header line, a repr.
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:bearer\s+|basic\s+)?[^\s'\",}]+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)\bbearer\s+[^\s'\",}]+"), f"Bearer {REDACTED}"),
    (re.compile(r"\bmnk_[A-Za-z0-9_\-]+"), f"mnk_{REDACTED}"),  # API keys
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_\-]+"), f"whsec_{REDACTED}"),  # webhook signing secrets
    (re.compile(r"\bmn_admin_[A-Za-z0-9_\-]+"), f"mn_admin_{REDACTED}"),  # bootstrap keys LocalNetwork makes
    # Values quoted by pydantic and SQLAlchemy errors: they may be a need's confidential text.
    (re.compile(r"input_value=.*?(?=, input_type=)", re.S), f"input_value={REDACTED}"),
    (re.compile(r"\[parameters: .*?\]$", re.S | re.M), f"[parameters: {REDACTED}]"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without API keys, webhook secrets, Authorization values, quoted input values, or ``secrets``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message and exception text with ``redact`` (attach to a handler).

    ``secrets`` are literal values to remove wherever they appear (the configured admin keys).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 8)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        record.exc_info = None  # the formatter shows exc_text, the redacted one
        return True


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time, level, service, logger, message, trace_id, span_id, event_id."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        event_id = current_event_id.get()
        if event_id:
            entry["event_id"] = event_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


_LOG_HANDLER_NAME = "matchnet-json"


def configure_logging(service: str, level: str, secrets: Iterable[str] = ()) -> None:
    """JSON lines on stderr for every logger of the process (uvicorn's too), secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLinesFormatter(f"matchnet-{service}"))
    handler.addFilter(RedactingFilter(secrets))
    handler.set_name(_LOG_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):  # ours from an earlier call; others (a test runner's) stay
        if old.get_name() == _LOG_HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # requests are traced, not logged
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
