"""Telemetry: Prometheus metrics of every long-running jetwork process.

``metrics`` defines the families (one registry per process, prometheus-client's default);
``endpoint`` serves them on ``--metrics HOST:PORT`` / ``JETWORK_METRICS``; ``sampler`` measures
what no single event tells (queue depth per label set, the projector's lag) on an interval.
"""
