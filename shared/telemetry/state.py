"""Whether tracing is on in this process: a real SDK tracer provider is in place (ours, or the one
the Python worker configured), checked once per provider change, not per span."""

from __future__ import annotations

from opentelemetry import trace

_checked: list[object] = [None, False]


def tracing_on() -> bool:
    provider = trace.get_tracer_provider()
    if provider is not _checked[0]:
        _checked[:] = [provider, not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))]
    return bool(_checked[1])
