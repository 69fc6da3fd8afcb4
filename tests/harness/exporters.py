"""The data stores' exporters (postgresql.metrics, redis.metrics) as rendered: their values and containers."""

from __future__ import annotations

from harness.objects import container

ON = {"postgresql": {"metrics": {"enabled": True}}, "redis": {"metrics": {"enabled": True}}}


def exporter(objects, component: str) -> dict:
    return container(objects.get("StatefulSet", f"agentforge-{component}"), "metrics")
