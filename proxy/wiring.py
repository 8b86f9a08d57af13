"""Builds the decision steps and the stores behind them from a configuration.

One place, used at start and on reload: requests from sources go through [policy, signing],
requests from trunks through [verification] (docs/design.md, "Decision steps").
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.config import Config
from proxy.core.decision import Assessment, Decision, Defer, Origin, Reject, RequestStep
from proxy.observability import Metrics
from proxy.policy.step import InboundMessageCounter, PolicyStep
from stir_shaken.fetch import X5uFetcher
from stir_shaken.settings import TrunkVerification
from stir_shaken.steps import SigningStep, VerificationStep

if TYPE_CHECKING:
    from proxy.sip.message import Request

_FAILED_PREFIX = "verification.failed:"


class CountedStep:
    """Counts a step's outcomes in the metrics; the step itself stays free of Prometheus."""

    def __init__(self, step: RequestStep, metrics: Metrics) -> None:
        self.step = step
        self.name = step.name
        self.metrics = metrics
        # Bound once: the wrapper runs on every initial request.
        self._decide = step.decide
        self._kind = step.name if step.name in ("policy", "signing", "verification") else ""
        # labels() hashes and locks on every call; the label sets are few and bounded
        # (verdict x rule x source, operation x code), so each child is looked up once.
        self._verdicts: dict[tuple[str, str, str], Any] = {}
        self._identity: dict[tuple[str, str], Any] = {}

    def decide(
        self, request: Request, origin: Origin, assessment: Assessment, now: float
    ) -> Decision:
        """Run the step, then count what it decided."""
        kind = self._kind
        if not kind:
            return self._decide(request, origin, assessment, now)
        fired_before = len(assessment.rules_fired)
        decision = self._decide(request, origin, assessment, now)
        if kind == "policy":
            if request.method in ("INVITE", "MESSAGE"):
                source = origin.name or "unknown"
                if isinstance(decision, Reject):
                    self._verdict("reject", decision.rule_id, source)
                elif len(assessment.rules_fired) > fired_before:
                    for rule in assessment.rules_fired[fired_before:]:
                        self._verdict("monitor", rule, source)
                else:
                    self._verdict("allow", "none", source)
        elif kind == "signing":
            if request.get("Identity") is not None:
                code = str(decision.status) if isinstance(decision, Reject) else "signed"
                self._identity_result("sign", code)
        elif request.get("Identity") is not None:
            fired = assessment.rules_fired[fired_before:]
            failures = [
                r.removeprefix(_FAILED_PREFIX) for r in fired if r.startswith(_FAILED_PREFIX)
            ]
            if isinstance(decision, Reject):
                code = str(decision.status)
            elif failures:
                code = failures[0]
            else:
                code = "passed" if not isinstance(decision, Defer) else ""
            if code:
                self._identity_result("verify", code)
        return decision

    def _verdict(self, verdict: str, rule: str, source: str) -> None:
        key = (verdict, rule, source)
        child = self._verdicts.get(key)
        if child is None:
            child = self.metrics.policy_verdicts.labels(verdict=verdict, rule=rule, source=source)
            if len(self._verdicts) < 4096:
                self._verdicts[key] = child
        child.inc()

    def _identity_result(self, operation: str, code: str) -> None:
        key = (operation, code)
        child = self._identity.get(key)
        if child is None:
            child = self.metrics.identity_results.labels(operation=operation, code=code)
            if len(self._identity) < 4096:
                self._identity[key] = child
        child.inc()


@dataclass
class Components:
    """What a worker runs besides the core: the steps and the stores behind them."""

    policy: PolicyStep
    signing: SigningStep
    verification: VerificationStep
    fetcher: X5uFetcher | None = None
    source_steps: list[RequestStep] = field(default_factory=list)
    trunk_steps: list[RequestStep] = field(default_factory=list)
    audit_ok: bool = True

    async def fetch_certificate(self, url: str) -> None:
        """Fetch `url` into the verification cache (failures are cached and give 436)."""
        if self.fetcher is None:
            raise LookupError(f"no trunk verifies identities; cannot fetch {url}")
        await self.fetcher.fetch(url)

    def flush_audit(self) -> None:
        """Write queued audit records and pick up list changes (blocking; run in a thread)."""
        try:
            self.policy.maintenance()
        except sqlite3.Error:
            # The records stay queued (AuditLog puts a failed batch back); readiness says so.
            self.audit_ok = False
            raise
        self.audit_ok = True

    def audit_backlog(self) -> int:
        """Audit records not yet written."""
        audit = self.policy.audit
        return audit.pending if audit is not None else 0

    def refresh_lists(self) -> None:
        """Pick up number-list changes made by the CLI or another worker (blocking)."""
        self.flush_audit()

    def certificate_cache_counts(self) -> tuple[int, int]:
        """(hits, misses) of the x5u certificate cache since these components were built."""
        cache = self.verification.cache
        return cache.hits, cache.misses

    def policy_memo_counts(self) -> tuple[int, int]:
        """(hits, misses) of the policy step's remembered decisions since it was built."""
        memo = self.policy.requests
        return memo.hits, memo.misses

    def signing_ready(self) -> bool:
        """True when signing is off, or on with its key loaded."""
        return not self.signing.settings.enabled or self.signing.outage_reason is None

    def audit_writable(self) -> bool:
        """True when the last audit flush succeeded."""
        return self.audit_ok

    async def aclose(self) -> None:
        """Close the certificate fetcher's HTTP session."""
        if self.fetcher is not None:
            await self.fetcher.close()

    def close(self) -> None:
        """Flush and close the stores; a clean shutdown loses no audit record."""
        self.policy.close()


def _fetch_settings(config: Config) -> TrunkVerification | None:
    """The fetch limits of the first trunk that verifies (x5u URLs do not say which trunk)."""
    for trunk in config.trunks:
        if trunk.verification.enabled:
            return trunk.verification
    return None


def build_components(
    config: Config, config_path: Path | None, worker: int = 0, metrics: Metrics | None = None
) -> Components:
    """The steps for requests from sources and from trunks, per the configuration."""
    policy = PolicyStep.from_config(config)
    signing = SigningStep.from_settings(config.signing)
    verification = VerificationStep({t.name: t.verification for t in config.trunks})
    fetch_settings = _fetch_settings(config)
    fetcher = (
        X5uFetcher.from_settings(fetch_settings, verification.cache)
        if fetch_settings is not None
        else None
    )
    components = Components(policy, signing, verification, fetcher)
    source_steps: list[RequestStep] = [policy, signing]
    # The trunk side counts the MESSAGEs conditional numbers receive (plan-conditional rule).
    trunk_steps: list[RequestStep] = [verification, InboundMessageCounter(policy)]
    if metrics is not None:
        source_steps = [CountedStep(step, metrics) for step in source_steps]
        trunk_steps = [CountedStep(step, metrics) for step in trunk_steps]
    components.source_steps = source_steps
    components.trunk_steps = trunk_steps
    return components
