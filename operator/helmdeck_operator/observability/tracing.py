"""OpenTelemetry tracing: a span per reconcile pass, the gateway client's spans beneath it.

Exporting is configured by the standard environment (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_TRACES_EXPORTER, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER...); with none of it set, the
SDK provider is still installed, so spans are real (the gateway receives a sampled
`traceparent` and the trace id is written on the session) but exported nowhere. The
gateway client takes the current span's context for the `traceparent` it sends, so the
gateway's own spans join ours.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from helmdeck_operator import __version__

__all__ = ["configure_tracing", "reconcile_span", "trace_id"]

_tracer = trace.get_tracer("helmdeck_operator")


def configure_tracing() -> TracerProvider:
    """Install the SDK provider: always (real trace ids for traceparent and status), with an
    OTLP exporter when the OTEL_* environment asks for one."""
    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", "helmdeck-operator"),
            "service.version": __version__,
        }
    )
    provider = TracerProvider(resource=resource)
    wanted = os.environ.get("OTEL_TRACES_EXPORTER", "otlp" if _otlp_configured() else "none")
    if wanted != "none":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def _otlp_configured() -> bool:
    return any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


@contextmanager
def reconcile_span(kind: str, namespace: str, name: str, uid: str) -> Iterator[trace.Span]:
    """The span of one reconcile pass of one object."""
    attributes = {
        "k8s.namespace.name": namespace,
        f"helmdeck.{kind}.name": name,
        f"helmdeck.{kind}.uid": uid,
    }
    with _tracer.start_as_current_span(f"reconcile {kind}", attributes=attributes) as span:
        yield span


def trace_id(span: trace.Span) -> str | None:
    """The 32-hex trace id of a recording span, for status and logs; None when not sampled."""
    context = span.get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return format(context.trace_id, "032x")
