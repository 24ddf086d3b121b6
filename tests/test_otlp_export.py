"""`matchnet up --otlp URL`: the services export their traces and metrics over OTLP/HTTP to URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from matchnet.cli import build_parser, network_from_args
from tests.e2e_support import http_post_server, wait_for

pytestmark = pytest.mark.e2e


@dataclass
class OtlpReceiver:
    """What an OTLP/HTTP collector received: (service name, span name) and metric names."""

    url: str = ""
    spans: set[tuple[str, str]] = field(default_factory=set)
    metrics: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, path: str, body: bytes) -> None:
        with self.lock:
            if path == "/v1/traces":
                traces = ExportTraceServiceRequest.FromString(body)
                for resource_spans in traces.resource_spans:
                    service = _service_name(resource_spans.resource.attributes)
                    self.spans |= {(service, span.name) for scope in resource_spans.scope_spans
                                   for span in scope.spans}
            elif path == "/v1/metrics":
                exported = ExportMetricsServiceRequest.FromString(body)
                self.metrics |= {metric.name for resource in exported.resource_metrics
                                 for scope in resource.scope_metrics for metric in scope.metrics}


def _service_name(attributes: Any) -> str:
    return next((a.value.string_value for a in attributes if a.key == "service.name"), "")


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    with http_post_server(lambda path, _headers, body: receiver.take(path, body),
                          content_type="application/x-protobuf") as base_url:
        receiver.url = base_url
        yield receiver


def test_matchnet_up_with_otlp_exports_traces_and_metrics_of_the_services(tmp_path: Path) -> None:
    with otlp_receiver() as collector:
        args = build_parser().parse_args([
            "up", "--otlp", collector.url, "--free-ports", "--no-trace-file", "--data-dir", str(tmp_path / "data"),
            "--services", "notifications",
        ])
        network = network_from_args(args)
        network.extra_env["OTEL_METRIC_EXPORT_INTERVAL"] = "300"  # not 15 s: the test waits for one export
        with network:
            response = httpx.post(
                network.urls["notifications"] + "/v1/subscriptions",
                headers={"Authorization": f"Bearer {network.admin_key}"},
                json={"kind": "office", "prefecture": "13", "url": "http://127.0.0.1:9/hooks"},
            )
            assert response.status_code == 201, response.text

            wait_for(lambda: ("matchnet-notifications", "POST /v1/subscriptions") in collector.spans, 15,
                     "the request's span at the OTLP receiver")
            wait_for(lambda: "http.server.request.duration" in collector.metrics, 15,
                     "the request duration histogram at the OTLP receiver")
