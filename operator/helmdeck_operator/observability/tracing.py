"""OpenTelemetry tracing: a span per reconcile pass, the gateway client's spans beneath it.

Exporting is configured by the standard environment (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_TRACES_EXPORTER, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER...); with none of it set, the
SDK provider is still installed, so spans are real (the gateway receives a sampled
`traceparent` and the trace id is written on the session) but exported nowhere. The
gateway client takes the current span's context for the `traceparent` it sends, so the
gateway's own spans join ours.

No span records an exception by itself: the SDK would write `str(exc)` and the formatted
traceback, chained causes included, into the exported event, and a library's exception can
hold what no trace backend should (a gRPC error's debug text, an HTTP client's headers).
`record_error` writes the same event and status scrubbed (gateway.errors.scrub); the
gateway client records its own errors, scrubbed and unchained before they are raised.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from helmdeck_operator import __version__
from helmdeck_operator.gateway.errors import scrub

__all__ = ["configure_tracing", "reconcile_span", "record_error", "trace_id"]

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
    with _tracer.start_as_current_span(
        f"reconcile {kind}",
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:  # cancellation is not a failure of the pass
            record_error(span, exc)
            raise


def record_error(span: trace.Span, exc: BaseException) -> None:
    """What the SDK records for an exception (an `exception` event, an ERROR status), with
    the message and the traceback scrubbed of anything credential-shaped."""
    message = scrub(str(exc))
    # The SDK's own event (its type naming and keys), its two texts replaced.
    scrubbed = {
        "exception.message": message,
        "exception.stacktrace": scrub("".join(traceback.format_exception(exc))),
    }
    span.record_exception(exc, attributes=scrubbed, escaped=True)
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {message}"))


def trace_id(span: trace.Span) -> str | None:
    """The 32-hex trace id of a recording span, for status and logs; None when not sampled."""
    context = span.get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return format(context.trace_id, "032x")
