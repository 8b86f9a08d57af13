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

from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import chain
from typing import Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from proxy.policy.identity import CallerIdentity
from proxy.policy.numbering import CallerNumber, NumberKind
from proxy.policy.numbers import ListMatch, ListSnapshot
from proxy.policy.plan import NumberingPlan, Permission, PlanRow
from proxy.policy.rules import RULE_ORDER, RULES, RuleAction
from proxy.policy.settings import PolicySettings, SourcePolicy

__all__ = [
    "AllocationView",
    "Firing",
    "FlowView",
    "JudgedNumber",
    "JudgementMemo",
    "ListView",
    "PolicyData",
    "Verdict",
    "evaluate",
    "local_day",
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

    def messages(self, number: str, since: float) -> tuple[int, int]:
        """(sent, received) MESSAGEs of `number` since `since` (whole days)."""
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


def local_day(now: float, zone: str) -> date:
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
        for fired in self.firings:  # a loop, not any(): most runs hold 0 or 1 firing
            if fired.rule_id == rule_id and fired.reason == reason:
                return
        self.firings.append(_new_tuple(Firing, (rule_id, action, reason)))

    def replay(self, firings: Sequence[Firing]) -> None:
        """Add remembered firings as `fire()` would have added them (same de-duplication)."""
        for firing in firings:
            rule_id, _, reason = firing
            if any(f.rule_id == rule_id and f.reason == reason for f in self.firings):
                continue
            self.firings.append(firing)


# A remembered judgement is one flat tuple of atoms (str, int, float, bool, None): CPython
# untracks such a tuple in the cyclic garbage collector at the first collection that sees it,
# so a full memo adds no object to the full collections' walk. Flat, because a collection
# untracks one level of nesting at a time (a tuple of tuples would reach the old generation
# first), and no NamedTuple inside, because only exact tuples are ever untracked. Objects the
# judgement points at (the plan row, a delegation) are named by `id` and held alive in
# `JudgementMemo._refs`, so an id cannot be reused. Layout:
#   0 plan row id, 1 allocation holder, 2 lo, 3 hi ([lo, hi): times the list answer holds),
#   4 list match: 0 none, 1 without delegation, else the delegation's id,
#   5 status, 6 principal, 7 reason, 8 principal_mismatch, 9 the lists' change counter the
#   judgement was made under, 10 n = number of holders, 11 .. 11+n the holders, then (rule id,
#   action, reason) of each firing, flattened.
_Memoised = tuple[object, ...]
_NO_MATCH = 0
_PLAIN_MATCH = 1
# tuple.__new__(cls, values): builds a NamedTuple from a tuple without its Python-level __new__.
_new_tuple = tuple.__new__
# (role, E.164 or short-code national form, id of the source, traffic kind, marker principal)
_MemoKey = tuple[str, str, int, str, str | None]

# Numbers `_judge` settles without the plan, the allocation data or the lists: cheap, and
# their answer depends on the method (alphanumeric senders), which the memo key leaves out.
_UNJUDGED_KINDS = frozenset({NumberKind.ALPHANUMERIC, NumberKind.ANONYMOUS, NumberKind.INVALID})


class JudgementMemo:
    """Remembers the judgement of one number (`_judge`), so a repeat caller skips the plan,
    allocation and list lookups and the reason texts.

    For a number in a role, judged for a source (its action table, customer, principals),
    traffic kind and marker principal, `_judge` reads only: the number's E.164 form (its
    national form for a short code), the policy data (settings, plan, allocation), the local
    day (plan rows' effective dates), the number lists, and `now` through the list answer's
    delegation bounds. So an entry is keyed on (role, number, source, kind, principal) and the
    whole memo is stamped with (data object, day, list snapshot): when any of them changes (new
    allocation data, midnight, a full reload of the lists) the memo is emptied. Each entry
    also keeps the snapshot's change counter it was judged under: after changes to the lists
    (a poll, a direct edit) it is reused only if none of them touched a row covering its
    number (`ListSnapshot.untouched_since`), so a change to one customer's numbers does not
    send every other caller back to first sight. Within a day, an entry is only reused while
    `now` is inside the span over which its list answer holds (`ListSnapshot.match_span`): a
    delegation starting or ending mid-day is seen. The `JudgedNumber` handed back carries the
    request's own `CallerNumber`.

    Never remembered: numbers of plan rows with a `cond` cell (the flow exception reads the
    per-number history and the callee, public-interest rows the marker; kept out wholesale
    rather than reasoning per branch), and any answer computed while the lists were being
    changed (odd or moved change counter).

    Garbage collector: keys and entries hold only atoms (see `_Memoised`), so neither is
    tracked once a collection has seen it; a full memo costs a full collection one dict walk,
    not one object per entry (a test checks it).

    One memo per `PolicyStep` (a reload builds a new step and so a new memo); not shared
    between threads: the hot path is the only user.
    """

    __slots__ = (
        "_data", "_day", "_entries", "_refs", "_snap", "generation", "hits", "maxsize", "misses",
    )  # fmt: skip

    def __init__(self, maxsize: int = 65_536) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[_MemoKey, _Memoised] = OrderedDict()
        self._data: PolicyData | None = None
        self._day: date | None = None
        self._snap: ListSnapshot | None = None
        # id -> object, for the plan rows, delegations and sources entries name by id: held
        # here so an id cannot be reused by another object while an entry names it (frozen
        # pydantic sources hash every field, several µs; an id is one machine word).
        self._refs: dict[int, object] = {}
        self.hits = 0
        self.misses = 0
        # Moves on every `clear()`: a cache built on these judgements (the policy step's
        # per-request memo) empties itself when it sees a new generation.
        self.generation = 0

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._refs.clear()
        self.generation += 1

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[tuple[_MemoKey, _Memoised]]:
        """The remembered (key, entry) pairs, least recently used first (tests, benchmark)."""
        return list(self._entries.items())

    def ready(
        self, data: PolicyData, day: date, source: SourcePolicy
    ) -> tuple[ListSnapshot, int] | None:
        """The list token to judge under, after emptying the memo if its stamp is stale; None
        when the memo cannot be used for this request."""
        token_of = getattr(data.lists, "memo_token", None)
        if token_of is None:
            return None  # a list view that cannot say when it changed: never memoise
        token: tuple[ListSnapshot, int] = token_of()
        if token[1] & 1:
            return None  # a change is being applied right now
        if data is not self._data or day != self._day or token[0] is not self._snap:
            self.clear()
            self._data = data
            self._day = day
            self._snap = token[0]
        refs = self._refs
        if refs.get(id(source)) is not source:
            if len(refs) >= 2 * self.maxsize + 4096:
                self.clear()
            refs[id(source)] = source
        return token

    def judge(
        self,
        token: tuple[ListSnapshot, int],
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
        """`_judge(run, ...)`, from memory when possible."""
        number = item.e164 if item.e164 is not None else item.national
        if number is None:
            return _judge(run, identity, source, data, role, item, kind, day, now)
        key: _MemoKey = (role, number, id(source), kind, identity.principal)
        entries = self._entries
        entry = entries.get(key)
        refs = self._refs
        if entry is not None and entry[9] != token[1]:
            entry = self._restamped(key, entry, token, item.e164)
        if entry is not None and entry[2] <= now < entry[3]:  # type: ignore[operator]
            entries.move_to_end(key)
            self.hits += 1
            held_by: int = entry[10]  # type: ignore[assignment]
            start = 11 + held_by
            if len(entry) > start:
                firings = [
                    _new_tuple(Firing, entry[i : i + 3]) for i in range(start, len(entry), 3)
                ]
                if run.firings:
                    run.replay(firings)
                else:  # nothing to de-duplicate against: the remembered firings as they are
                    run.firings.extend(firings)
            match: ListMatch | None = None
            how = entry[4]
            if how != _NO_MATCH:
                delegation = None if how == _PLAIN_MATCH else refs[how]  # type: ignore[index]
                match = _new_tuple(
                    ListMatch,
                    (entry[5], entry[6], delegation, entry[7], entry[8], entry[11:start]),
                )
            row = refs[entry[0]]  # type: ignore[index]
            return _new_tuple(JudgedNumber, (role, item, row, entry[1], match))
        self.misses += 1
        snap = token[0]
        # Judged on a run of its own: `_Run.fire` drops a firing equal to one already made
        # for an earlier number of this request, and the memo must hold what this number
        # fires by itself. Replaying into `run` applies the same de-duplication. When `run`
        # has fired nothing yet, it is that run of its own.
        own = _Run(run.actions) if run.firings else run
        span = [-_INFINITY, _INFINITY]
        judged = _judge(own, identity, source, data, role, item, kind, day, now, snap, span)
        own_firings = own.firings
        if own is not run:
            run.replay(own_firings)
        row = judged.row
        if row is not None and _rememberable(row, snap, token):
            if entry is None and len(entries) >= self.maxsize:
                entries.popitem(last=False)
            match = judged.list_match
            refs[id(row)] = row
            # One tuple display per shape (no list grown piece by piece): see `_Memoised`.
            fired = _chain(own_firings) if own_firings else ()
            if match is None:
                entries[key] = (
                    id(row), judged.allocation_holder, span[0], span[1],
                    _NO_MATCH, None, None, None, None, token[1], 0, *fired,
                )  # fmt: skip
            else:
                delegation = match[2]
                how = _PLAIN_MATCH
                if delegation is not None:
                    how = id(delegation)
                    refs[how] = delegation
                holders = match[5]
                entries[key] = (
                    id(row), judged.allocation_holder, span[0], span[1],
                    how, match[0], match[1], match[3], match[4], token[1], len(holders), *holders,
                    *fired,
                )  # fmt: skip
            if entry is not None:  # a new key goes in last already; an old one stays put
                entries.move_to_end(key)
            if len(refs) >= 2 * self.maxsize + 4096:
                # Rows and delegations of evicted or outdated entries pile up while the
                # lists change under a memo that keeps its snapshot: start afresh.
                entries.clear()
                refs.clear()
                refs[id(source)] = source
        return judged

    def _restamped(
        self,
        key: _MemoKey,
        entry: _Memoised,
        token: tuple[ListSnapshot, int],
        e164: str | None,
    ) -> _Memoised | None:
        """`entry`, judged under an earlier change counter: stamped with `token`'s if no
        change since touched a row covering its number (a number without E.164 form is never
        looked up in the lists), else forgotten (None)."""
        if e164 is None or token[0].untouched_since(entry[9], (e164,)):  # type: ignore[arg-type]
            entry = (*entry[:9], token[1], *entry[10:])
            self._entries[key] = entry
            return entry
        del self._entries[key]
        return None


def _narrow(held: list[float], lo: float, hi: float) -> None:
    """Narrow the span `held` ([lo, hi]) to its intersection with [lo, hi)."""
    if lo > held[0]:
        held[0] = lo
    if hi < held[1]:
        held[1] = hi


def _judge_held(
    token: tuple[ListSnapshot, int],
    run: _Run,
    identity: CallerIdentity,
    source: SourcePolicy,
    data: PolicyData,
    role: Role,
    item: CallerNumber,
    kind: str,
    day: date,
    now: float,
    held: list[float],
) -> JudgedNumber:
    """`_judge(run, ...)` for a request the policy step remembers whole (`evaluate`'s `held`):
    `held` is narrowed to the span [lo, hi) of times over which this judgement holds under
    `token`, or emptied when it cannot be remembered. The judgement memo is neither read nor
    filled: the request's memo keeps the whole decision, and a per-number entry would be a
    second copy (per-number entries come from diverted calls only, so a lookup here would
    almost always miss)."""
    if item.e164 is None and item.national is None:
        held[0] = _INFINITY
        return _judge(run, identity, source, data, role, item, kind, day, now)
    snap = token[0]
    span = [-_INFINITY, _INFINITY]
    judged = _judge(run, identity, source, data, role, item, kind, day, now, snap, span)
    if _rememberable(judged.row, snap, token):
        _narrow(held, span[0], span[1])
    else:
        held[0] = _INFINITY
    return judged


def _rememberable(row: PlanRow | None, snap: ListSnapshot, token: tuple[ListSnapshot, int]) -> bool:
    """Whether a judgement made under `token` may be reused: not for a `cond` row (the flow
    exception reads the history and the callee, public-interest rows the marker), nor when
    the lists changed while it was made."""
    return (
        row is not None
        and row.automated is not Permission.COND
        and row.interpersonal is not Permission.COND
        and snap.changes == token[1]
    )


_INFINITY = float("inf")
_chain = chain.from_iterable


def _rule_rank(firing: Firing) -> int:
    return RULE_ORDER[firing.rule_id]


def _judged_numbers(identity: CallerIdentity) -> list[tuple[Role, CallerNumber]]:
    """The numbers to judge, with their roles (see the module docstring)."""
    from_number = identity.from_number
    pai = identity.pai
    e164 = from_number.e164
    if (
        identity.diverted_from is None
        and e164
        and from_number.kind is not NumberKind.ANONYMOUS
        and (not pai or (len(pai) == 1 and pai[0].e164 == e164))
    ):
        # The usual request: a numbered From and no PAI, or one PAI with the same E.164
        # number, which the general walk below skips as a duplicate. A test compares this
        # shortcut with `_judged_numbers_general` over arbitrary identities.
        return [("from", from_number)]
    return _judged_numbers_general(identity)


def _judged_numbers_general(identity: CallerIdentity) -> list[tuple[Role, CallerNumber]]:
    """`_judged_numbers`, without the shortcut for the usual request."""
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
    identity: CallerIdentity,
    source: SourcePolicy,
    data: PolicyData,
    now: float,
    memo: JudgementMemo | None = None,
    held: list[float] | None = None,
    *,
    token: tuple[ListSnapshot, int] | None = None,
    day: date | None = None,
) -> Verdict:
    """Judge one request: every rule that fires, and the outcome.

    `memo`: remembered per-number judgements (`JudgementMemo`); the verdict is the same with
    or without it (a property test checks it over list changes, days and delegation bounds).

    `held` ([lo, hi], given with `memo`): narrowed to the span of times over which this
    verdict stays the verdict of the same identity and source while `memo` keeps its
    generation, or emptied (lo = inf) when a judged number was not remembered (a `cond` row, a
    number without E.164 form, lists changing). Besides the per-number judgements the verdict
    reads only the identity (masking, From/PAI equality, the marker's notes) and the source;
    the day, the policy data and the lists are the memo's stamp.

    `token`: what `memo.ready()` answered for this request, when the caller has just asked it
    (the policy step does, before looking for a remembered decision); else evaluate asks.
    `day`: `local_day(now, settings.timezone)`, when the caller has it.
    """
    settings = data.settings
    run = _Run(_action_table(settings, source))
    if day is None:
        day = local_day(now, settings.timezone)
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

    if token is None and memo is not None:
        token = memo.ready(data, day, source)
    if token is None and held is not None:
        held[0] = _INFINITY
    for role, item in numbers:
        if token is None or memo is None or item.kind in _UNJUDGED_KINDS:
            judged.append(_judge(run, identity, source, data, role, item, kind, day, now))
        elif held is not None:
            judged.append(
                _judge_held(token, run, identity, source, data, role, item, kind, day, now, held)
            )
        else:
            judged.append(
                memo.judge(token, run, identity, source, data, role, item, kind, day, now)
            )

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
        fired = run.firings
        firings = tuple(sorted(fired, key=_rule_rank)) if len(fired) > 1 else tuple(fired)
        for firing in firings:  # one pass: the first rejecting firing, else any monitor
            if firing.action == "reject":
                rejecting = firing
                outcome = "reject"
                break
            if firing.action == "monitor":
                outcome = "monitor"
    caller: CallerNumber | None = identity.from_number  # `identity.caller`, inlined
    if identity.from_number.kind is NumberKind.ANONYMOUS:
        caller = identity.pai[0] if identity.pai else None
    primary = judged[0].list_match if judged else None
    # Not found on the lists and not rejected: the list rule is off or in monitor.
    status: Literal["own", "delegated", "unverified"] = (
        primary.status if primary is not None and primary.status is not None else "unverified"
    )
    return _new_tuple(
        Verdict,
        (
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
        ),
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
    snap: ListSnapshot | None = None,
    span: list[float] | None = None,
) -> JudgedNumber:
    # `snap`/`span` (memoised path only): ask `snap` for the list answer and write into
    # `span` the [lo, hi) times over which it holds.
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
        if snap is not None and span is not None:
            match, span[0], span[1] = snap.match_span(
                e164,
                source.customer,
                now,
                principals=source.principals,
                principal=identity.principal,
            )
        else:
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
    return _new_tuple(JudgedNumber, (role, item, row, holder, match))


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
    # SAAEM flow exceptions (ARCEP 2022-1583, regulation.md §1): the ban does not catch (a) a
    # flow reaching at most 5 distinct numbers over 30 days, nor (b) a message flow sending
    # about as many messages as it receives (±20 %) or fewer. The figures are settings.
    settings = data.settings
    if data.history is None:
        run.fire("plan-conditional", f"{label} is {category}: no flow history to check")
        return
    since = now - settings.flow_window_days * 86400.0
    seen = set(data.history.destinations(number, since))
    if identity.destination:
        seen.add(identity.destination)
    if len(seen) <= settings.flow_max_destinations:
        return
    text = (
        f"{label} is {category} and reached {len(seen)} destinations in"
        f" {settings.flow_window_days} days (flow exception allows"
        f" {settings.flow_max_destinations})"
    )
    if identity.method == "MESSAGE":
        sent, received = data.history.messages(number, since)
        sent += 1  # this one
        if sent <= (1 + settings.flow_message_tolerance) * received:
            return
        text += (
            f"; it sent {sent} messages for {received} received (conversational exception"
            f" allows {round(100 * settings.flow_message_tolerance)} % more)"
        )
    run.fire("plan-conditional", text)
