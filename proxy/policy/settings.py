"""Configuration models of the caller-ID policy (owned by proxy.policy).

`PolicySettings` is the top-level `policy:` section; `SourcePolicy` is each source's `policy:`
block. proxy.config composes them; every model forbids unknown keys so a misspelt key is an
error that names it. Facts the fact sheet marks as uncertain (U) are settings here, not
hard-coded answers (issue 3 §5).
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proxy.policy.rules import RULES_BY_ID, RuleAction, validate_rule_actions

SourceKind = Literal["automated", "interpersonal"]
"""`automated`: SAAEM (predictive/progressive dialers, voice robots, SMS platforms);
`interpersonal`: manual/preview agents. ARCEP 2022-1583 (regulation.md §1)."""

Permission = Literal["allow", "deny", "cond"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarkerValue(_Model):
    """What one marker value means: the traffic's kind and/or the principal it is made for."""

    kind: SourceKind | None = None
    principal: str | None = None


class Marker(_Model):
    """How a source splits its traffic by kind and principal.

    Exactly one of `param` (an RFC 4904 trunk-group style URI parameter, looked for in the
    Contact, From and Request-URI, user-part parameters included) or `header` (a header name).
    Values not in `values` count as unmarked: the source's default kind, no principal.
    """

    param: str | None = None
    header: str | None = None
    values: dict[str, MarkerValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_place(self) -> Marker:
        if (self.param is None) == (self.header is None):
            raise ValueError("a marker names exactly one of `param` or `header`")
        return self


class SourcePolicy(_Model):
    """What the policy needs to know about one source (PBX, dialer, SMS platform)."""

    customer: str | None = None
    """The call centre the source belongs to; its list and delegations are checked."""
    kind: SourceKind = "automated"
    """Default kind of unmarked traffic. The safe default is `automated` (stricter rules)."""
    canvassing: bool = True
    """Whether the source canvasses consumers (recorded in the audit and shown by `check`)."""
    country: str = "FR"
    """ISO 3166 alpha-2 of where the call centre sits (foreign call centres, Naegelen law)."""
    principals: list[str] = Field(default_factory=list)
    """Principals the call centre works for; when set, only their delegations count."""
    gateway: bool = False
    """Traffic passed on for another network: signing attests C."""
    sms_platform: bool = False
    """An SMS platform: alphanumeric senders are allowed on MESSAGE."""
    marker: Marker | None = None
    allow_masked: bool = False
    """Allow masked numbers (anonymous From, Privacy: id) from this source (L.221-17)."""
    require_from_pai_equal: bool = False
    """Demand that the From number equal a PAI number (rule `from-pai-mismatch`)."""
    rules: dict[str, RuleAction] = Field(default_factory=dict)
    """Per-rule action overrides for this source, over `policy.rules`."""
    reject_status: int | None = Field(default=None, ge=400, le=699)
    """Final status for rejections from this source; `policy.reject_status` when unset."""

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, RuleAction]) -> dict[str, RuleAction]:
        return validate_rule_actions(value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        if len(value) != 2 or not value.isalpha():
            raise ValueError("country is an ISO 3166 alpha-2 code such as FR or MA")
        return value.upper()


class PrincipalSettings(_Model):
    """A principal (donneur d'ordre) and its entitlements."""

    name: str
    public_interest: bool = False
    """Listed by the ministerial order of loi 2025-594 art. 16: may present public-interest
    numbers from automated sources."""
    description: str = ""


class AuditSettings(_Model):
    """Batching of the audit writer (see proxy/policy/audit.py for the crash-loss window)."""

    database: Path = Path("var/audit.sqlite3")
    batch_size: int = Field(default=500, ge=1)
    flush_interval_s: float = Field(default=0.5, gt=0)
    queue_max: int = Field(default=100_000, ge=1)
    """Entries held in memory at most; beyond it the oldest are dropped and counted."""


class AlphanumericSettings(_Model):
    """Alphanumeric sender names (SMS): what counts as one."""

    max_length: int = Field(default=11, ge=1)
    """GSM alphanumeric originators hold at most 11 characters (3GPP TS 23.040 §9.1.2.5)."""


class PolicySettings(_Model):
    """The `policy:` section of the configuration."""

    database: Path = Path("var/sipguard.sqlite3")
    """SQLite file holding number lists, delegations and per-number history."""
    timezone: str = "Europe/Paris"
    """Zone in which delegation dates and plan effective dates are judged."""
    reject_status: int = Field(default=403, ge=400, le=699)
    reject_reason: str | None = None
    """Reason phrase of rejections; the standard phrase of the status when unset."""
    rules: dict[str, RuleAction] = Field(default_factory=dict)
    """Default action overrides for every source."""
    min_delegation_hours: float = Field(default=72, ge=0)
    """Delegations shorter than this are refused (plan's 72 h anti-rotation minimum)."""
    plan_file: Path | None = None
    """Numbering-plan file; the shipped `configs/` plan when unset."""
    plan_overrides: list[dict[str, Any]] = Field(default_factory=list)
    """Rows in the plan file's own format (see configs/numbering_plan.yaml); a row with the
    key of a shipped row replaces it. Validated with the plan file at start."""
    allocation_database: Path = Path("var/allocation.sqlite3")
    """SQLite file of ARCEP allocation data (`sipguard plan import`)."""
    principals: list[PrincipalSettings] = Field(default_factory=list)
    audit: AuditSettings = AuditSettings()
    alphanumeric: AlphanumericSettings = AlphanumericSettings()
    flow_window_days: int = Field(default=30, ge=1)
    """Window of the SAAEM flow exception (≤ 5 destinations over 30 days, regulation.md §1)."""
    flow_max_destinations: int = Field(default=5, ge=1)
    flow_message_tolerance: float = Field(default=0.2, ge=0, le=10)
    """Conversational-messaging exception of the SAAEM flow rule (regulation.md §1 (b)): a
    MESSAGE from a conditional number passes while the messages it sent over the window stay
    within (1 + this) x the messages it received (0.2: ±20 %)."""
    reload_interval_s: float = Field(default=2.0, gt=0)
    """How often each worker polls the store's change counter."""
    memo_size: int = Field(default=65_536, ge=0)
    """Request shapes each worker remembers decisions for (and, for diverted calls, numbers it
    remembers judgements of), least recently used evicted: about 1.2 KB each with the
    caller-number cache. 0 judges every request afresh."""

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, RuleAction]) -> dict[str, RuleAction]:
        return validate_rule_actions(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as Europe/Paris)"
            ) from None
        return value

    @model_validator(mode="after")
    def _plan_loads(self) -> PolicySettings:
        if self.plan_file is None and not self.plan_overrides:
            return self  # the shipped plan is validated by its own tests
        from proxy.policy.plan import NumberingPlan, PlanError

        try:
            NumberingPlan.load(self.plan_file, self.plan_overrides)
        except PlanError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _unique_principals(self) -> PolicySettings:
        names = [p.name for p in self.principals]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"principal(s) listed twice: {', '.join(dupes)}")
        return self

    def principal(self, name: str | None) -> PrincipalSettings | None:
        """The settings of principal `name`, if configured."""
        for item in self.principals:
            if item.name == name:
                return item
        return None

    def action(self, rule_id: str, source: SourcePolicy) -> RuleAction:
        """The effective action of `rule_id` for `source`: source override, global, default."""
        if rule_id in source.rules:
            return source.rules[rule_id]
        if rule_id in self.rules:
            return self.rules[rule_id]
        return RULES_BY_ID[rule_id].default_action
