"""Prometheus metrics: one registry per application (tests stay independent of each other)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    """Everything the service counts. The REST client reports through `rest_call`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_received = Counter(
            "bot_events_received", "Bitrix24 events received, by event", ["event"], registry=r
        )
        self.events_rejected = Counter(
            "bot_events_rejected", "Events refused, by reason", ["reason"], registry=r
        )
        self.jobs_unfinished = Gauge(
            "bot_jobs_unfinished", "Commands accepted and not finished yet", registry=r
        )
        self.jobs_in_flight = Gauge("bot_jobs_in_flight", "Commands being run now", registry=r)
        self.jobs_postponed = Counter(
            "bot_jobs_postponed", "Commands put back while the portal is down", registry=r
        )
        self.jobs_failed = Counter(
            "bot_jobs_failed", "Commands given up on or crashed", ["reason"], registry=r
        )
        self.rest_calls = Counter(
            "bot_rest_calls",
            "Bitrix24 REST requests, by method and outcome",
            ["method", "outcome"],
            registry=r,
        )
        self.rest_rate_limited = Counter(
            "bot_rest_rate_limited", "Bitrix24 answers of 503 QUERY_LIMIT_EXCEEDED", registry=r
        )
        self.limiter_wait = Histogram(
            "bot_limiter_wait_seconds",
            "Time REST requests waited for the leaky bucket",
            registry=r,
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
        )
        self.command_latency = Histogram(
            "bot_command_latency_seconds",
            "From the event's arrival to the reply sent",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        # Fetch mode (bot/bitrix/fetch.py).
        self.events_fetched = Counter(
            "bot_events_fetched",
            "Chatbots 2.0 events fetched with imbot.v2.Event.get, by type",
            ["type"],
            registry=r,
        )
        self.fetch_lag = Histogram(
            "bot_fetch_lag_seconds",
            "Age of the oldest event of a fetched page when it was fetched",
            registry=r,
            buckets=(0.5, 1, 2, 3, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
        )
        self.poll_interval = Gauge(
            "bot_poll_interval_seconds", "The current pause between two Event.get", registry=r
        )
        self.fetch_active = Gauge(
            "bot_fetch_active", "1 while this instance is the bot's consumer, else 0", registry=r
        )
        self.fetch_last_success = Gauge(
            "bot_fetch_last_success_timestamp_seconds",
            "Unix time of the last successful Event.get",
            registry=r,
        )

        # The last REST request reached a working portal (for /readyz); a business error or a
        # rate limit still means it answered.
        self.portal_reachable = True

    def rest_call(self, method: str, outcome: str, waited: float) -> None:
        """Called by the REST client for each HTTP request."""
        self.portal_reachable = not (
            outcome in ("TIMEOUT", "BAD_RESPONSE")
            or outcome.startswith("HTTP_5")
            or outcome.endswith(("Error", "Exception"))
        )
        self.rest_calls.labels(method=method, outcome=outcome).inc()
        if outcome == "QUERY_LIMIT_EXCEEDED":
            self.rest_rate_limited.inc()
        self.limiter_wait.observe(waited)
