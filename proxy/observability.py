"""Logs (structlog) and metrics (Prometheus) for the shell.

Label sets are fixed and bounded: methods and status classes come from short whitelists, and
sources and trunks from the configuration; numbers and call-ids never become labels. With
several workers, prometheus-client's multiprocess mode sums them on one endpoint: the
supervisor sets PROMETHEUS_MULTIPROC_DIR before the workers import the client.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from proxy.config import Logging
    from proxy.core.actions import TransactionEnded

KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "MESSAGE",
        "UPDATE",
        "INFO",
        "PRACK",
        "REFER",
        "SUBSCRIBE",
        "NOTIFY",
        "REGISTER",
        "PUBLISH",
    }
)


def method_label(method: str) -> str:
    """A method name as a label: unknown methods share one label so the set stays bounded."""
    return method if method in KNOWN_METHODS else "other"


# The logger of the per-transaction line, set by configure_logging (None: not configured).
_transaction_logger: Any = None


def configure_logging(settings: Logging) -> None:
    """JSON or console lines on stderr; no per-packet line unless the level is debug."""
    global _transaction_logger
    level = getattr(logging, settings.level.upper())
    renderer: structlog.types.Processor
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    wrapper_class = structlog.make_filtering_bound_logger(level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=wrapper_class,
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # The transaction line (one per transaction, the hot path's only info line) gets the
    # same output through a shorter chain: it never carries an exception, and nothing in
    # sipguard binds context variables, so those two processors would only cost time.
    _transaction_logger = structlog.wrap_logger(
        structlog.PrintLogger(file=sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=wrapper_class,
    )


def transaction_logger() -> Any:
    """The logger for the per-transaction line: a ready bound logger once
    `configure_logging` ran, else structlog's default (resolved at each call)."""
    if _transaction_logger is not None:
        return _transaction_logger
    return structlog.get_logger("sipguard")


class Metrics:
    """Every metric one worker updates; see README, "Operating sipguard"."""

    def __init__(self, worker: int = 0, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY

        self.registry = registry or REGISTRY
        registry = self.registry
        self._transaction_children: dict[
            tuple[str, int, str, str | None], tuple[Counter, Histogram]
        ] = {}
        self.transactions = Counter(
            "sipguard_transactions_total",
            "Transactions ended, by method, final status and origin/trunk",
            ["method", "status", "origin", "trunk"],
            registry=registry,
        )
        self.transaction_seconds = Histogram(
            "sipguard_transaction_seconds",
            "Request to final response, by method",
            ["method"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 32, 64, 180),
            registry=registry,
        )
        self.policy_verdicts = Counter(
            "sipguard_policy_verdicts_total",
            "Policy decisions, by verdict, rule and source",
            ["verdict", "rule", "source"],
            registry=registry,
        )
        self.identity_results = Counter(
            "sipguard_identity_total",
            "Signatures and verifications, by operation and code",
            ["operation", "code"],
            registry=registry,
        )
        self.x5u_fetches = Counter(
            "sipguard_x5u_fetches_total",
            "Certificate fetches by result",
            ["result"],
            registry=registry,
        )
        self.policy_memo = Counter(
            "sipguard_policy_memo_total",
            "Policy decisions looked up in the worker's memory of repeat request shapes, by"
            " outcome (hit: decided from memory; a list change forgets the numbers it covers)",
            ["outcome"],
            registry=registry,
        )
        self.x5u_cache = Counter(
            "sipguard_x5u_cache_total",
            "Certificate cache lookups by outcome",
            ["outcome"],
            registry=registry,
        )
        self.x5u_fetch_seconds = Histogram(
            "sipguard_x5u_fetch_seconds",
            "Certificate fetch latency",
            registry=registry,
        )
        self.trunk_up = Gauge(
            "sipguard_trunk_up",
            "1 when the trunk answers its OPTIONS pings",
            ["trunk"],
            multiprocess_mode="max",
            registry=registry,
        )
        self.parse_errors = Counter(
            "sipguard_parse_errors_total",
            "Messages that could not be parsed or framed",
            ["kind"],
            registry=registry,
        )
        self.dropped = Counter(
            "sipguard_dropped_total",
            "Messages dropped without an answer, by reason",
            ["reason"],
            registry=registry,
        )
        self.internal_errors = Counter(
            "sipguard_internal_errors_total",
            "Exceptions caught at the shell boundary (bugs)",
            registry=registry,
        )
        self.audit_queue = Gauge(
            "sipguard_audit_queue_depth",
            "Audit records waiting to be written",
            multiprocess_mode="sum",
            registry=registry,
        )
        self.reloads = Counter(
            "sipguard_reloads_total",
            "Configuration reloads by result",
            ["result"],
            registry=registry,
        )
        self.listeners_bound = Gauge(
            "sipguard_listeners_bound",
            "Listening sockets bound",
            multiprocess_mode="max",
            registry=registry,
        )

    def transaction_ended(self, ended: TransactionEnded) -> None:
        """Count one transaction outcome."""
        key = (ended.method, ended.status, ended.origin, ended.trunk)
        children = self._transaction_children.get(key)
        if children is None:
            # labels() hashes and locks on every call; the label sets are few and fixed, so
            # the children are looked up once per combination (hot path: one per transaction).
            method = method_label(ended.method)
            children = (
                self.transactions.labels(
                    method=method, status=str(ended.status), origin=ended.origin,
                    trunk=ended.trunk or "none",
                ),
                self.transaction_seconds.labels(method=method),
            )
            if len(self._transaction_children) < 4096:
                self._transaction_children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(ended.duration)
