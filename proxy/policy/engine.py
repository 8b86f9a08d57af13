"""The caller-ID decision: a pure function of identity, source, plan, allocation, lists and time.

`evaluate()` reads only what it is given: the caller identity, the source's policy, the
numbering plan, the allocation data (when loaded), the number lists, the per-number flow
history and `now`. Same inputs, same `Verdict` (a property test checks it). It runs every rule
whose action is not `off` and reports every rule that fired with its reason; the request is
rejected when any fired rule's action is `reject` (the first in catalogue order is named in the
answer), monitored when only `monitor` rules fired, allowed otherwise.

Which numbers are judged (regulation.md §8 "Decision hints", issue 3 §3 and §5):
* the From number and every PAI number (From is what the callee sees and the MAN signs, PAI the
  line); duplicates are judged once;
* a masked From is set aside: the identity is PAI's number;
* a diverted call is judged on the diverting number only: the original caller is someone else's
  customer, the diverting number must be ours.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from proxy.policy.identity import CallerIdentity
from proxy.policy.numbering import CallerNumber, NumberKind
from proxy.policy.numbers import ListMatch
from proxy.policy.plan import NumberingPlan, Permission, PlanRow
from proxy.policy.rules import RULE_ORDER, RULES, RuleAction
from proxy.policy.settings import PolicySettings, SourcePolicy

__all__ = [
    "AllocationView",
    "Firing",
    "FlowView",
    "JudgedNumber",
    "ListView",
    "PolicyData",
    "Verdict",
    "evaluate",
]

Outcome = Literal["allow", "monitor", "reject"]
Role = Literal["from", "pai", "diversion"]

# The ARCEP plan's country codes: the allocation data (MAJNUM) covers these only.
_FRENCH_PLAN_CCS = ("+33", "+262", "+590", "+594", "+596", "+508")


class ListView(Protocol):
    """What the engine asks the number lists (`NumberLists` / `ListSnapshot`)."""

    def match(
        self,
        e164: str,
        customer: str | None,
        now: float,
        *,
        principals: Collection[str] = (),
        principal: str | None = None,
    ) -> ListMatch:
        """How `customer` may present `e164` at `now`."""
        ...


class AllocationLike(Protocol):
    """The parts of `proxy.policy.allocation.Allocation` the engine reads."""

    @property
    def holder_code(self) -> str:
        """ARCEP operator code of the block."""
        ...

    @property
    def holder_name(self) -> str | None:
        """Operator name, when known."""
        ...

    @property
    def frozen(self) -> bool:
        """True for a GELNUM (frozen, not allocated) block."""
        ...


class AllocationView(Protocol):
    """What the engine asks the allocation data (`AllocationStore`, or a cache of it)."""

    def lookup(self, e164: str) -> AllocationLike | None:
        """The block holding the number, or None."""
        ...


class FlowView(Protocol):
    """What the engine asks the per-number flow history (`FlowHistory`)."""

    def destinations(self, number: str, since: float) -> frozenset[str]:
        """Distinct destinations `number` reached at or after `since`."""
        ...


@dataclass(frozen=True, slots=True)
class PolicyData:
    """Everything the engine reads besides the identity, the source and the time."""

    settings: PolicySettings
    plan: NumberingPlan
    lists: ListView
    allocation: AllocationView | None = None
    """None when no allocation data is loaded: the unallocated rule then does not run."""
    history: FlowView | None = None


class Firing(NamedTuple):
    """One rule that fired, with the action it takes for this source and why it fired."""

    rule_id: str
    action: RuleAction
    reason: str


class JudgedNumber(NamedTuple):
    """The facts gathered about one judged number (shown by `check`, kept in the audit)."""

    role: Role
    number: CallerNumber
    row: PlanRow | None = None
    allocation_holder: str | None = None
    list_match: ListMatch | None = None


class Verdict(NamedTuple):
    """The decision for one request."""

    outcome: Outcome
    firings: tuple[Firing, ...]
    judged: tuple[JudgedNumber, ...]
    caller_e164: str | None
    number_status: Literal["own", "delegated", "unverified"] | None
    diverted_from: str | None
    kind: str
    principal: str | None
    rejecting: Firing | None = None
    notes: tuple[str, ...] = ()

    @property
    def rules_fired(self) -> list[str]:
        """The ids of every rule that fired, in catalogue order."""
        return [f.rule_id for f in self.firings]

    @property
    def category(self) -> str | None:
        """The plan category of the first judged number."""
        for item in self.judged:
            if item.row is not None:
                return item.row.category
        return None


@lru_cache(maxsize=16)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _day(now: float, zone: str) -> date:
    """The local date of `now` in `zone`.

    A zone-aware `fromtimestamp` costs several µs and the answer changes once a day: the last
    day is kept with the [start, end) span of epoch seconds it covers, computed from the zone
    itself (so DST days of 23 or 25 hours are handled by zoneinfo, not by arithmetic here).
    """
    cached = _DAY_CACHE.get(zone)
    if cached is not None and cached[0] <= now < cached[1]:
        return cached[2]
    tz = _zone(zone)
    day = datetime.fromtimestamp(now, tz).date()
    start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=tz).timestamp()
    # Only trust the span if both ends really map back to `day` (a zone whose midnight falls
    # in a DST gap would otherwise give a span that starts early); else skip the cache.
    if (
        start <= now < end
        and datetime.fromtimestamp(start, tz).date() == day
        and datetime.fromtimestamp(end, tz).date() == following
    ):
        _DAY_CACHE[zone] = (start, end, day)
    return day


_DAY_CACHE: dict[str, tuple[float, float, date]] = {}


def _label(item: CallerNumber, role: Role) -> str:
    shown = item.e164 or item.national or item.raw
    return f"{shown} ({_ROLE_NAMES[role]})"


_ROLE_NAMES: dict[str, str] = {"from": "From", "pai": "PAI", "diversion": "Diversion"}


def _action_table(settings: PolicySettings, source: SourcePolicy) -> dict[str, RuleAction]:
    """The effective action of every rule for `source`, worked out once.

    `PolicySettings.action` walks three mappings per call and the engine asks it for several
    rules per request; settings and sources are frozen models, so the answer cannot change
    for a given pair and is memoised per (settings, source) object pair.
    """
    key = (id(settings), id(source))
    cached = _ACTION_TABLES.get(key)
    # The objects are kept in the entry: an id is only unique while its object lives.
    if cached is not None and cached[0] is settings and cached[1] is source:
        return cached[2]
    table = {rule.id: settings.action(rule.id, source) for rule in RULES}
    if len(_ACTION_TABLES) >= 256:
        _ACTION_TABLES.clear()
    _ACTION_TABLES[key] = (settings, source, table)
    return table


_ACTION_TABLES: dict[
    tuple[int, int], tuple[PolicySettings, SourcePolicy, dict[str, RuleAction]]
] = {}


class _Run:
    """Accumulates firings for one evaluation (rules with action `off` are skipped)."""

    __slots__ = ("actions", "firings")

    def __init__(self, actions: dict[str, RuleAction]) -> None:
        self.actions = actions
        self.firings: list[Firing] = []

    def on(self, rule_id: str) -> bool:
        return self.actions[rule_id] != "off"

    def fire(self, rule_id: str, reason: str) -> None:
        action = self.actions[rule_id]
        if action == "off":
            return
        if any(f.rule_id == rule_id and f.reason == reason for f in self.firings):
            return
        self.firings.append(Firing(rule_id, action, reason))


def _rule_rank(firing: Firing) -> int:
    return RULE_ORDER[firing.rule_id]


def _judged_numbers(identity: CallerIdentity) -> list[tuple[Role, CallerNumber]]:
    if identity.diverted_from is not None:
        return [("diversion", identity.diverted_from)]
    numbers: list[tuple[Role, CallerNumber]] = []
    seen: set[str] = set()
    # Privacy: id with a numbered From still presents (and the MAN signs) From's number.
    if identity.from_number.kind is not NumberKind.ANONYMOUS:
        numbers.append(("from", identity.from_number))
        if identity.from_number.e164:
            seen.add(identity.from_number.e164)
    for item in identity.pai:
        key = item.e164 or item.raw
        if key in seen:
            continue
        seen.add(key)
        numbers.append(("pai", item))
    return numbers


def evaluate(
    identity: CallerIdentity, source: SourcePolicy, data: PolicyData, now: float
) -> Verdict:
    """Judge one request: every rule that fires, and the outcome."""
    settings = data.settings
    run = _Run(_action_table(settings, source))
    day = _day(now, settings.timezone)
    kind = identity.kind
    judged: list[JudgedNumber] = []

    if identity.masked and identity.diverted_from is None and not source.allow_masked:
        # Code de la consommation L.221-17: a professional calling a consumer may not mask.
        how = (
            "From is anonymous"
            if identity.from_number.kind is NumberKind.ANONYMOUS
            else ("Privacy: " + ";".join(sorted(identity.privacy)))
        )
        run.fire("masked-number", f"masked caller number ({how})")

    numbers = _judged_numbers(identity)
    if not numbers:
        run.fire("invalid-number", "no caller number: From is masked and there is no PAI")

    for role, item in numbers:
        judged.append(_judge(run, identity, source, data, role, item, kind, day, now))

    if (
        source.require_from_pai_equal
        and identity.diverted_from is None
        and identity.from_number.e164
        and identity.pai
        and identity.from_number.e164 not in {p.e164 for p in identity.pai}
    ):
        pai_text = ", ".join(p.e164 or p.raw for p in identity.pai)
        run.fire(
            "from-pai-mismatch",
            f"From {identity.from_number.e164} differs from PAI {pai_text}"
            " (source requires equality)",
        )

    firings: tuple[Firing, ...] = ()
    rejecting: Firing | None = None
    outcome: Outcome = "allow"
    if run.firings:  # most requests fire nothing: no sort, no scans
        firings = tuple(sorted(run.firings, key=_rule_rank))
        rejecting = next((f for f in firings if f.action == "reject"), None)
        outcome = (
            "reject"
            if rejecting
            else "monitor"
            if any(f.action == "monitor" for f in firings)
            else "allow"
        )
    caller = identity.caller
    primary = judged[0].list_match if judged else None
    # Not found on the lists and not rejected: the list rule is off or in monitor.
    status: Literal["own", "delegated", "unverified"] = (
        primary.status if primary is not None and primary.status is not None else "unverified"
    )
    return Verdict(
        outcome,
        firings,
        tuple(judged),
        caller.e164 if caller is not None else None,
        status,
        identity.diverted_from.e164 if identity.diverted_from else None,
        kind,
        identity.principal,
        rejecting,
        identity.notes,
    )


def _judge(
    run: _Run,
    identity: CallerIdentity,
    source: SourcePolicy,
    data: PolicyData,
    role: Role,
    item: CallerNumber,
    kind: str,
    day: date,
    now: float,
) -> JudgedNumber:
    # The label ("+33162000001 (From)") only goes into reasons: built when a rule fires.
    if item.kind is NumberKind.ALPHANUMERIC:
        # A name cannot be called back (plan §2.2.2); SMS platforms may send from one.
        if not (identity.method == "MESSAGE" and source.sms_platform):
            where = "on a call" if identity.method != "MESSAGE" else "from a non-SMS source"
            run.fire("alphanumeric-sender", f"alphanumeric sender {item.raw!r} {where}")
        return JudgedNumber(role, item)
    if item.kind is NumberKind.ANONYMOUS:
        run.fire("invalid-number", f"{role.upper()} is anonymous: no number to judge")
        return JudgedNumber(role, item)
    if item.kind is NumberKind.INVALID:
        run.fire("invalid-number", f"{item.raw.strip()} ({role}): {item.reason or 'not a number'}")
        return JudgedNumber(role, item)

    row = data.plan.classify(item, day)
    category = row.category
    holder: str | None = None

    if category == "invalid":
        if run.on("invalid-number"):
            run.fire("invalid-number", f"{_label(item, role)}: not a number of any plan")
        return JudgedNumber(role, item, row)

    e164 = item.e164
    french = e164 is not None and e164.startswith(_FRENCH_PLAN_CCS)
    if category == "unallocated":
        if run.on("unallocated-number"):
            run.fire(
                "unallocated-number",
                f"{_label(item, role)} is in no range of the French numbering plan",
            )
    elif (
        data.allocation is not None and french and e164 is not None and run.on("unallocated-number")
    ):
        block = data.allocation.lookup(e164)
        if block is None:
            run.fire(
                "unallocated-number",
                f"{_label(item, role)} is in no block ARCEP allocated (MAJNUM)",
            )
        elif block.frozen:
            run.fire("unallocated-number", f"{_label(item, role)} is in a frozen block (GELNUM)")
        else:
            holder = block.holder_name or block.holder_code

    match: ListMatch | None = None
    if e164 is not None:
        match = data.lists.match(
            e164,
            source.customer,
            now,
            principals=source.principals,
            principal=identity.principal,
        )

    if category != "foreign" and category != "unallocated":
        _plan_rules(run, identity, source, data, row, item, role, kind, match, now)

    if match is not None and match.status is None:
        # ARCEP 2025-2215 contractual list; plan §2.2.2 assignee authorisation; L.221-17.
        rule_id = "principal-mismatch" if match.principal_mismatch else "not-on-list"
        if run.on(rule_id):
            run.fire(rule_id, match.reason or f"{_label(item, role)} is not on the list")
    return JudgedNumber(role, item, row, holder, match)


def _plan_rules(
    run: _Run,
    identity: CallerIdentity,
    source: SourcePolicy,
    data: PolicyData,
    row: PlanRow,
    item: CallerNumber,
    role: Role,
    kind: str,
    match: ListMatch | None,
    now: float,
) -> None:
    # Every branch below ends in at most one rule; a rule whose action is `off` for this
    # source is not run at all (no label, no reason text, no history lookup).
    category = row.category
    if category == "mobile":
        # ARCEP FAQ / plan §2.3.4: a call centre never presents a mobile, manual or automated.
        if run.on("mobile-number"):
            run.fire(
                "mobile-number",
                f"{_label(item, role)} is a mobile number: never from a call centre",
            )
        return
    permission = row.automated if kind == "automated" else row.interpersonal
    if permission is Permission.ALLOW:
        return
    if permission is Permission.DENY:
        if row.interpersonal is Permission.DENY:
            if run.on("plan-deny"):
                run.fire(
                    "plan-deny",
                    f"{_label(item, role)} is {category}: never presentable as caller ID",
                )
        elif run.on("automated-category"):
            # CPCE L.44 VI / ARCEP 2022-1583: SAAEM may not present territorialised numbers.
            run.fire(
                "automated-category",
                f"{_label(item, role)} is {category}: not allowed to automated systems"
                " (use NPV, 08, 30/31)",
            )
        return
    label = _label(item, role)
    # `cond` cells.
    if category == "public_interest":
        if not run.on("public-interest-entitlement"):
            return
        principal = identity.principal or (match.principal if match else None)
        entitled = data.settings.principal(principal)
        if entitled is None or not entitled.public_interest:
            who = principal or "no principal"
            run.fire(
                "public-interest-entitlement",
                f"{label} is a public-interest number and {who} is not entitled to it"
                " (loi 2025-594 art. 16 ministerial list)",
            )
        return
    if run.on("plan-conditional"):
        _flow_rule(run, identity, data, label, category, item.e164 or item.raw, now)


def _flow_rule(
    run: _Run,
    identity: CallerIdentity,
    data: PolicyData,
    label: str,
    category: str,
    number: str,
    now: float,
) -> None:
    # SAAEM flow exception (ARCEP 2022-1583, regulation.md §1): a flow reaching at most 5
    # distinct numbers over 30 days is not caught by the ban. Both figures are settings.
    settings = data.settings
    if data.history is None:
        run.fire("plan-conditional", f"{label} is {category}: no flow history to check")
        return
    since = now - settings.flow_window_days * 86400.0
    seen = set(data.history.destinations(number, since))
    if identity.destination:
        seen.add(identity.destination)
    if len(seen) > settings.flow_max_destinations:
        run.fire(
            "plan-conditional",
            f"{label} is {category} and reached {len(seen)} destinations in"
            f" {settings.flow_window_days} days (flow exception allows"
            f" {settings.flow_max_destinations})",
        )
