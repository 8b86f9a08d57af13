"""The policy decision step: judges the caller identity of every call and message from a source.

`PolicyStep` implements `proxy.core.decision.RequestStep`. For each initial INVITE or MESSAGE
from a configured source it builds the caller identity, runs the rules engine, fills the shared
`Assessment` (signing reads it), queues an audit entry, and answers `Reject` (the configured
status, 403 by default, naming the first rejecting rule) or `Continue`. A `monitor` rule lets
the request through and is recorded. Other methods and requests from trunks pass untouched.

The step does no I/O on the hot path: lists are an in-memory snapshot, the audit and the flow
history are queues. `maintenance()` (the shell runs it in a thread every
`policy.reload_interval_s`) refreshes the lists, writes the queues and notices new allocation
data; `close()` flushes everything on shutdown.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.core.decision import Assessment, Continue, Decision, Origin, Reject
from proxy.policy.audit import AuditLog, decision_row
from proxy.policy.engine import (
    AllocationLike,
    AllocationView,
    JudgementMemo,
    PolicyData,
    Verdict,
    evaluate,
    local_day,
)
from proxy.policy.identity import (
    CallerIdentity,
    addr_spec,
    cached_number,
    identity_from_headers,
    identity_headers,
    marker_value,
)
from proxy.policy.numbers import FlowHistory, ListSnapshot, NumberLists, NumberStore
from proxy.policy.plan import NumberingPlan, Permission
from proxy.policy.settings import PolicySettings, SourcePolicy

if TYPE_CHECKING:
    from proxy.sip.message import Request

__all__ = [
    "CachedAllocation",
    "InboundMessageCounter",
    "PolicyStep",
    "RequestMemo",
    "reason_phrase",
]

# Calls and SMS over SIP are judged alike (issue 3 §5); other methods carry no caller ID to
# present to a consumer.
JUDGED_METHODS = frozenset({"INVITE", "MESSAGE"})

_PHRASES = {
    403: "Forbidden",
    404: "Not Found",
    433: "Anonymity Disallowed",
    480: "Temporarily Unavailable",
    488: "Not Acceptable Here",
    603: "Decline",
    607: "Unwanted",
    608: "Rejected",
}

# The text goes inside quoted strings of Reason and Warning (RFC 3326, RFC 3261 §20.43): numbers
# come from the caller's own headers, so quotes, backslashes and control characters are removed.
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')


def reason_phrase(status: int, configured: str | None = None) -> str:
    """The reason phrase for a rejection status."""
    return configured or _PHRASES.get(status, "Rejected")


_MISSING: Any = object()
_INFINITY = float("inf")

# `Continue` has no fields and is frozen: one shared instance answers every request.
_CONTINUE = Continue()


@lru_cache(maxsize=4096)
def _safe(text: str, limit: int = 200) -> str:
    """`text` fit for a quoted string (a pure function: reason texts repeat per number, so the
    answers are memoised, least recently used evicted)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        # No character `_UNSAFE` matches (isprintable() is False for every control
        # character): the substitution would give `text` back.
        cleaned = text
    else:
        cleaned = _UNSAFE.sub("'", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class CachedAllocation:
    """A bounded per-block cache in front of the allocation data (`AllocationIndex`, or an
    `AllocationStore`, whose lookup is a SQL query)."""

    def __init__(self, store: AllocationView, maxsize: int = 100_000) -> None:
        self.store = store
        self.maxsize = maxsize
        self._cache: OrderedDict[str, AllocationLike | None] = OrderedDict()

    def lookup(self, e164: str) -> AllocationLike | None:
        """The block of `e164` (cached per 1,000-number block, least recently used evicted)."""
        # ARCEP allocates ten-digit numbers in blocks of at least 1,000 (MAJNUM's EZABPQM is at
        # most 8 characters: 0 + 7 digits; allocations go in 1,000s since 1 Jul 2023), and
        # GELNUM freezes no finer: numbers equal but for their last three digits share a block.
        # Ten-digit national numbers are +33 + 9 or +262/+590/+594/+596 + 9 digits.
        key = e164[:-3] if len(e164) in (12, 13) else e164
        cache = self._cache
        found: AllocationLike | None = cache.get(key, _MISSING)
        if found is not _MISSING:
            cache.move_to_end(key)
            return found
        answer: AllocationLike | None = self.store.lookup(e164)
        if len(cache) >= self.maxsize:
            cache.popitem(last=False)
        cache[key] = answer
        return answer

    def clear(self) -> None:
        """Forget cached answers (after a new import)."""
        self._cache.clear()


# A remembered decision, one flat tuple of atoms (untracked by the garbage collector, as the
# judgement memo's entries): 0 lo, 1 hi ([lo, hi): times it holds), 2 the lists' change
# counter it was decided under, 3 the E.164 numbers looked up in the lists (space-separated),
# 4 caller E.164, 5 number status, 6 reject status (None: continue), 7 reject text,
# 8 rejecting rule id, 9 n = number of rules fired, 10 .. 10+n their ids, then the audit row
# (`decision_row`).
_Remembered = tuple[object, ...]
# (source name, method, From's URI, Privacy, marker value, *P-Asserted-Identity values)
_RequestKey = tuple[object, ...]


class RequestMemo:
    """Remembers the whole decision for a request shape, so a repeat caller skips the identity
    build, the engine and the audit row's assembly.

    A request without Diversion or History-Info is decided from: its method, From's URI (the
    display name and tag do not count), its P-Asserted-Identity values, its Privacy, the
    source's marker value, and the source (named: a reload builds a new step); with the engine's
    stamp (data, day, list snapshot: `JudgementMemo.generation`), the time inside the span over
    which each judged number's judgement holds (`evaluate`'s `held`), and no list change since
    it was made touching a row that covers one of its numbers (`ListSnapshot.untouched_since`).
    Only decisions whose every number's judgement may be reused (`engine._rememberable`) are
    kept: never a `cond` row, whose verdict reads the callee and the flow history. The To header
    and the Call-ID only go into the audit row's time and call-id, which are per request. A
    property test plays random requests, list changes and clock moves through a step with and
    without it.
    """

    __slots__ = ("_entries", "_generation", "hits", "maxsize", "misses")

    def __init__(self, maxsize: int = 65_536) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[_RequestKey, _Remembered] = OrderedDict()
        self._generation = -1
        # Lookups answered from memory and not (exported as sipguard_policy_memo_total).
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, key: _RequestKey, generation: int, now: float, token: tuple[ListSnapshot, int]
    ) -> _Remembered | None:
        """The decision remembered for `key`, if it holds at `now` under `generation` and the
        lists `token` names."""
        if self._stale(generation):
            self.misses += 1
            return None
        entries = self._entries
        entry = entries.get(key)
        if entry is None or not entry[0] <= now < entry[1]:  # type: ignore[operator]
            self.misses += 1
            return None
        if entry[2] != token[1]:
            since: int = entry[2]  # type: ignore[assignment]
            looked_up: str = entry[3]  # type: ignore[assignment]
            if not token[0].untouched_since(since, looked_up.split()):
                del entries[key]
                self.misses += 1
                return None
            # Still right under the new counter: stamped with it, so the next hit skips the
            # check.
            entry = entries[key] = (entry[0], entry[1], token[1], *entry[3:])
        entries.move_to_end(key)
        self.hits += 1
        return entry

    def _stale(self, generation: int) -> bool:
        """Empty the memory if it was filled under another generation; True if it was."""
        if generation == self._generation:
            return False
        self._entries.clear()
        self._generation = generation
        return True

    def put(self, key: _RequestKey, generation: int, entry: _Remembered) -> None:
        """Remember `entry` for `key` (least recently used evicted when full)."""
        self._stale(generation)
        entries = self._entries
        if key in entries:
            entries.move_to_end(key)
        elif len(entries) >= self.maxsize:
            entries.popitem(last=False)
        entries[key] = entry


def _file_stamp(path: Path) -> tuple[float, ...]:
    stamps: list[float] = []
    for suffix in ("", "-wal"):
        try:
            stamps.append(os.stat(f"{path}{suffix}").st_mtime)
        except OSError:
            stamps.append(0.0)
    return tuple(stamps)


class PolicyStep:
    """The `policy` RequestStep (docs/design.md, "Decision steps")."""

    name = "policy"

    def __init__(
        self,
        *,
        settings: PolicySettings,
        sources: Mapping[str, SourcePolicy],
        data: PolicyData,
        audit: AuditLog | None = None,
        history: FlowHistory | None = None,
        lists: NumberLists | None = None,
        allocation_path: Path | None = None,
        memo_size: int = 65_536,
    ) -> None:
        self.settings = settings
        self.sources = dict(sources)
        self.data = data
        self.audit = audit
        self.history = history
        self.lists = lists
        self._allocation_path = allocation_path
        self._allocation_stamp = _file_stamp(allocation_path) if allocation_path else ()
        self._default_source = SourcePolicy()
        self._maintenance_lock = threading.Lock()
        self._allocation_dirty = False
        self._new_allocation: CachedAllocation | None = None
        # Per-number judgements of repeat callers (engine.JudgementMemo). It empties itself
        # when `self.data` is replaced (new allocation data), the lists are reloaded in full
        # or the day turns, and forgets the numbers a list change covers; a reload builds a
        # new step, hence a new memo.
        self.memo = JudgementMemo(memo_size) if memo_size > 0 else None
        # Whole decisions of repeat request shapes, stamped by the memo's generation (used
        # only with the memo).
        self.requests = RequestMemo(memo_size)

    @classmethod
    def from_config(cls, config: Any) -> PolicyStep:
        """Build the step from a `proxy.config.Config` (stores opened, schema migrated)."""
        settings: PolicySettings = config.policy
        sources = {s.name: s.policy for s in config.sources}
        plan = NumberingPlan.load(settings.plan_file, settings.plan_overrides)
        lists = NumberLists(settings.database, zone=settings.timezone)
        store = NumberStore(
            settings.database,
            zone=settings.timezone,
            min_delegation_hours=settings.min_delegation_hours,
        )
        history = FlowHistory(store, settings.flow_window_days * 86400.0)
        audit = AuditLog(
            settings.audit.database,
            queue_max=settings.audit.queue_max,
            batch_size=settings.audit.batch_size,
        )
        data = PolicyData(
            settings=settings,
            plan=plan,
            lists=lists,
            allocation=_open_allocation(settings.allocation_database),
            history=history,
        )
        return cls(
            settings=settings,
            sources=sources,
            data=data,
            audit=audit,
            history=history,
            lists=lists,
            allocation_path=settings.allocation_database,
            memo_size=settings.memo_size,
        )

    # -- hot path -------------------------------------------------------------------------

    def decide(
        self, request: Request, origin: Origin, assessment: Assessment, now: float
    ) -> Decision:
        """Judge an initial INVITE/MESSAGE from a source; everything else continues."""
        if origin.kind != "source" or request.method not in JUDGED_METHODS:
            return _CONTINUE
        if self._allocation_dirty:
            # Built by maintenance() off the hot path; swapping it in is one assignment.
            self._allocation_dirty = False
            self.data = _replace_allocation(self.data, self._new_allocation)
        source = self.sources.get(origin.name or "", self._default_source)
        headers = identity_headers(request)
        marker = marker_value(request, source.marker) if source.marker is not None else None
        data = self.data
        memo = self.memo
        key: _RequestKey | None = None
        held: list[float] | None = None
        from_uri = addr_spec(headers.from_value or "")
        token = None
        day = local_day(now, data.settings.timezone)
        if memo is not None:
            token = memo.ready(data, day, source)
        if (
            memo is not None
            and token is not None
            and not headers.diversion
            and not headers.history_info
        ):
            key = (origin.name, request.method, from_uri, headers.privacy, marker, *headers.pai)
            # evaluate() below is handed the token, so it cannot start a new generation.
            generation = memo.generation
            remembered = self.requests.get(key, generation, now, token)
            if remembered is not None:
                return self._replay(remembered, request, source, assessment, now)
            held = [-_INFINITY, _INFINITY]
        identity = identity_from_headers(request, headers, source, marker, from_uri)
        verdict = evaluate(identity, source, data, now, memo, held, token=token, day=day)
        # Every judged number may be reused over a span that holds now: the decision is kept
        # whole (`RequestMemo`), and it has no `cond` row.
        keep = held is not None and held[0] <= now < held[1]

        assessment.customer = source.customer
        assessment.caller_e164 = verdict.caller_e164
        assessment.number_status = verdict.number_status
        assessment.gateway = source.gateway
        assessment.diverted_from = verdict.diverted_from
        fired = [f.rule_id for f in verdict.firings] if verdict.firings else []
        if fired:
            assessment.rules_fired.extend(fired)

        status: int | None = None
        decision: Decision = _CONTINUE
        text = rule_id = None
        if verdict.rejecting is not None:
            status = source.reject_status or self.settings.reject_status
            text = _safe(verdict.rejecting.reason)
            rule_id = verdict.rejecting.rule_id
            decision = Reject(
                status=status,
                reason_phrase=reason_phrase(status, self.settings.reject_reason),
                text=text,
                rule_id=rule_id,
            )
        elif self.history is not None and not keep:  # a kept verdict has nothing to observe
            _observe(self.history, verdict, identity, now)
        row = decision_row(identity, verdict, origin.name, source.customer, status)
        if self.audit is not None:
            self.audit.record_row(now, identity.call_id, row)
        if keep and key is not None and held is not None and token is not None:
            looked_up = " ".join([j.number.e164 for j in verdict.judged if j.number.e164])
            self.requests.put(
                key,
                generation,
                (
                    held[0], held[1], token[1], looked_up, verdict.caller_e164,
                    verdict.number_status, status, text, rule_id, len(fired), *fired, *row,
                ),
            )  # fmt: skip
        return decision

    def _replay(
        self,
        remembered: _Remembered,
        request: Request,
        source: SourcePolicy,
        assessment: Assessment,
        now: float,
    ) -> Decision:
        """What `decide` does with a remembered decision (`RequestMemo`)."""
        assessment.customer = source.customer
        assessment.caller_e164 = remembered[4]  # type: ignore[assignment]
        assessment.number_status = remembered[5]  # type: ignore[assignment]
        assessment.gateway = source.gateway
        assessment.diverted_from = None
        fired: int = remembered[9]  # type: ignore[assignment]
        if fired:
            assessment.rules_fired.extend(remembered[10 : 10 + fired])  # type: ignore[arg-type]
        if self.audit is not None:
            self.audit.record_row(now, request.call_id, remembered[10 + fired :])
        status = remembered[6]
        if status is None:
            # Nothing for the flow history: a remembered decision has no `cond` row.
            return _CONTINUE
        assert isinstance(status, int)
        return Reject(
            status=status,
            reason_phrase=reason_phrase(status, self.settings.reject_reason),
            text=remembered[7],  # type: ignore[arg-type]
            rule_id=remembered[8],  # type: ignore[arg-type]
        )

    # -- shell side -----------------------------------------------------------------------

    def maintenance(self) -> None:
        """Reload lists, write audit and history, notice new allocation data. Off the hot path."""
        with self._maintenance_lock:
            if self.lists is not None:
                self.lists.poll()
            if self.audit is not None:
                self.audit.flush()
            if self.history is not None:
                self.history.flush()
            if self._allocation_path is not None:
                stamp = _file_stamp(self._allocation_path)
                if stamp != self._allocation_stamp:
                    self._allocation_stamp = stamp
                    # The new data is read into memory here, in the maintenance thread; the
                    # hot path picks it up at its next request.
                    self._new_allocation = _open_allocation(self._allocation_path)
                    self._allocation_dirty = True

    def close(self) -> None:
        """Flush the audit and history and close the stores (clean shutdown loses nothing)."""
        with self._maintenance_lock:
            if self.audit is not None:
                self.audit.close()
            if self.history is not None:
                self.history.flush()
                if self.history.store is not None:
                    self.history.store.close()
            if self.lists is not None:
                self.lists.close()


def _observe(history: FlowHistory, verdict: Verdict, identity: CallerIdentity, now: float) -> None:
    """Note where numbers of `cond` plan cells called (the flow exception's history)."""
    for item in verdict.judged:
        row = item.row
        e164 = item.number.e164
        if (
            row is not None
            and e164 is not None
            and Permission.COND in (row.automated, row.interpersonal)
        ):
            destination = identity.destination
            if destination:
                history.observe(e164, destination, now)
            if identity.method == "MESSAGE":
                history.observe_message(e164, sent=True, now=now)


class InboundMessageCounter:
    """The trunk-side half of the conversational-messaging exception: counts the MESSAGEs a
    trunk brings to a number of a `cond` plan cell, as messages that number received. It
    never refuses anything (docs/design.md, "Decision steps")."""

    name = "message-counter"

    def __init__(self, policy: PolicyStep) -> None:
        self.policy = policy

    def decide(
        self, request: Request, origin: Origin, assessment: Assessment, now: float
    ) -> Decision:
        """Count a MESSAGE from a trunk to a conditional number; continue in every case."""
        history = self.policy.history
        if request.method != "MESSAGE" or origin.kind != "trunk" or history is None:
            return _CONTINUE
        to = request.get("To")
        number = cached_number(addr_spec(to)) if to else None
        if number is None or number.e164 is None:
            return _CONTINUE
        data = self.policy.data
        row = data.plan.classify(number, local_day(now, data.settings.timezone))
        if Permission.COND in (row.automated, row.interpersonal):
            history.observe_message(number.e164, sent=False, now=now)
        return _CONTINUE


def _replace_allocation(data: PolicyData, allocation: AllocationView | None) -> PolicyData:
    return PolicyData(
        settings=data.settings,
        plan=data.plan,
        lists=data.lists,
        allocation=allocation,
        history=data.history,
    )


def _open_allocation(path: Path) -> CachedAllocation | None:
    """The allocation data at `path`, read into memory behind a cache; None when nothing was
    imported. The hot path then never runs SQL (a lookup there cost ~55 µs)."""
    if not Path(path).exists():
        return None
    from proxy.policy.allocation import AllocationIndex, AllocationStore

    store = AllocationStore(path)
    try:
        if not store.loaded:
            return None
        return CachedAllocation(AllocationIndex.from_store(store))
    finally:
        store.close()
