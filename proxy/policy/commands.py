"""The policy sub-commands of `sipguard`: check, numbers, audit, plan.

`register(subparsers)` adds them to the `sipguard` parser (proxy/cli.py); each handler takes the
parsed arguments and returns an exit code: 0 success (or "allowed"), 1 rejected / refused /
violations found, 2 usage or configuration error. `python -m proxy.policy.commands ...` runs
them without the rest of the CLI.

Configuration: `--config FILE` (default `$SIPGUARD_CONFIG`, else `configs/example.yaml`); when
the default file does not exist the built-in policy defaults are used, so the number-list
commands work before a full configuration is written. `--database` overrides the list database.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from proxy.policy.audit import format_report, read_report
from proxy.policy.engine import JudgedNumber, PolicyData, Verdict, evaluate
from proxy.policy.identity import CallerIdentity, identity_from_request, identity_from_values
from proxy.policy.numbering import NumberKind, normalise_number
from proxy.policy.numbers import (
    FlowHistory,
    NumberLists,
    NumberRange,
    NumberStore,
    NumberStoreError,
    day_bounds,
)
from proxy.policy.plan import NumberingPlan, PlanError
from proxy.policy.settings import PolicySettings, SourcePolicy
from proxy.policy.step import _open_allocation, reason_phrase
from proxy.sip.errors import SipParseError
from proxy.sip.message import Request
from proxy.sip.parser import parse_message

__all__ = ["CDR_COLUMNS", "main", "register"]

_DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "example.yaml"

CDR_COLUMNS = ("time", "source", "method", "From", "PAI", "Privacy", "To")
"""Columns `audit check-cdr` reads (rename with `--map column=their_name`)."""


class _UsageError(Exception):
    """A configuration or argument problem: exit code 2."""


# --- configuration -------------------------------------------------------------------------


def _config_path(args: argparse.Namespace) -> tuple[Path, bool]:
    given = getattr(args, "config", None)
    if given:
        return Path(given), True
    env = os.environ.get("SIPGUARD_CONFIG")
    if env:
        return Path(env), True
    return _DEFAULT_CONFIG, False


def _load(args: argparse.Namespace) -> tuple[PolicySettings, dict[str, SourcePolicy]]:
    """The policy settings and source policies; built-in defaults without a config file."""
    path, explicit = _config_path(args)
    if not explicit and not path.exists():
        settings, sources = PolicySettings(), {}
    else:
        from proxy.config import ConfigError, load_config

        try:
            config = load_config(path)
        except ConfigError as exc:
            raise _UsageError(str(exc)) from None
        settings = config.policy
        sources = {s.name: s.policy for s in config.sources}
    database = getattr(args, "database", None)
    if database:
        settings = settings.model_copy(update={"database": Path(database)})
    audit_db = getattr(args, "audit_database", None)
    if audit_db:
        audit = settings.audit.model_copy(update={"database": Path(audit_db)})
        settings = settings.model_copy(update={"audit": audit})
    allocation_db = getattr(args, "allocation_database", None)
    if allocation_db:
        settings = settings.model_copy(update={"allocation_database": Path(allocation_db)})
    return settings, sources


def _store(settings: PolicySettings) -> NumberStore:
    return NumberStore(
        settings.database,
        zone=settings.timezone,
        min_delegation_hours=settings.min_delegation_hours,
    )


def _policy_data(settings: PolicySettings, history: FlowHistory | None) -> PolicyData:
    try:
        plan = NumberingPlan.load(settings.plan_file, settings.plan_overrides)
    except PlanError as exc:
        raise _UsageError(str(exc)) from None
    return PolicyData(
        settings=settings,
        plan=plan,
        lists=NumberLists(settings.database, zone=settings.timezone).snapshot,
        allocation=_open_allocation(settings.allocation_database),
        history=history,
    )


def _moment(text: str | None, zone: str) -> float:
    """`now`, an epoch number, or an ISO date/time (naive ones in `zone`)."""
    if text is None or text == "now":
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _UsageError(f"{text!r} is not an ISO date/time or epoch seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed.timestamp()


def _e164(text: str) -> str:
    number = normalise_number(text)
    if number.kind is not NumberKind.E164 or number.e164 is None:
        raise NumberStoreError(f"{text!r} is not a number with an E.164 form ({number.reason})")
    return number.e164


def _period(args: argparse.Namespace, zone: str) -> tuple[float, float]:
    if not args.valid_from or not args.until:
        raise _UsageError("a delegation needs --from and --until (dates or ISO times)")
    return _bound(args.valid_from, zone, end=False), _bound(args.until, zone, end=True)


def _bound(text: str, zone: str, *, end: bool) -> float:
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise _UsageError(f"{text!r} is not an ISO date") from None
        first, last = day_bounds(day, day, zone)
        return last if end else first  # --until DATE includes that whole day
    return _moment(text, zone)


def _fmt(ts: float, zone: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).isoformat(timespec="minutes")


# --- check ---------------------------------------------------------------------------------


def _describe(item: JudgedNumber) -> list[str]:
    n = item.number
    head = f"{item.role:<9} {n.raw.strip()}"
    if n.kind is NumberKind.E164:
        head += f" -> {n.e164} ({n.region or '?'}"
        head += f", national {n.national})" if n.national else ")"
    else:
        head += f" -> {n.kind.value}" + (f" ({n.reason})" if n.reason else "")
    lines = [head]
    if item.row is not None:
        row = item.row
        lines.append(
            f"          category {row.category} ({row.territory}); automated {row.automated.value},"
            f" interpersonal {row.interpersonal.value}"
            + (f"; in force from {row.effective_from}" if row.effective_from else "")
        )
    if item.allocation_holder:
        lines.append(f"          range holder {item.allocation_holder}")
    if item.list_match is not None:
        m = item.list_match
        lines.append(f"          list: {m.status or 'not held'} ({m.reason})")
    return lines


def _print_verdict(
    out: TextIO,
    name: str,
    source: SourcePolicy,
    identity: CallerIdentity,
    verdict: Verdict,
    settings: PolicySettings,
    known: bool,
) -> None:
    known_text = "" if known else " [not configured: built-in defaults]"
    out.write(
        f"source    {name}{known_text}: customer {source.customer or '-'}, kind {verdict.kind}"
        f"{' (marker ' + repr(identity.marker_value) + ')' if identity.marker_value else ''},"
        f" principal {verdict.principal or '-'}, canvassing {'yes' if source.canvassing else 'no'},"
        f" country {source.country}{', gateway' if source.gateway else ''}\n"
    )
    out.write(f"method    {identity.method}\n")
    if identity.masked:
        out.write(f"masked    yes (privacy: {';'.join(sorted(identity.privacy)) or '-'})\n")
    if identity.diverted_from is not None:
        out.write("diverted  judged on the diverting number\n")
    for item in verdict.judged:
        for line in _describe(item):
            out.write(line + "\n")
    for note in verdict.notes:
        out.write(f"note      {note}\n")
    if verdict.firings:
        out.write("rules fired:\n")
        for f in verdict.firings:
            out.write(f"  {f.rule_id} [{f.action}] {f.reason}\n")
    else:
        out.write("rules fired: none\n")
    if verdict.rejecting is not None:
        status = source.reject_status or settings.reject_status
        phrase = reason_phrase(status, settings.reject_reason)
        out.write(
            f"verdict   REJECT {status} {phrase}\n"
            f'          Reason: SIP;cause={status};text="{verdict.rejecting.rule_id}:'
            f' {verdict.rejecting.reason}"\n'
        )
    else:
        out.write(f"verdict   {verdict.outcome.upper()} (number status {verdict.number_status})\n")


def cmd_check(args: argparse.Namespace) -> int:
    """`sipguard check`: explain the decision for one caller identity."""
    settings, sources = _load(args)
    known = args.source in sources
    source = sources.get(args.source, SourcePolicy())
    store = NumberStore(settings.database, zone=settings.timezone)
    history = FlowHistory(store, settings.flow_window_days * 86400.0)
    data = _policy_data(settings, history)
    if args.message is not None:
        identity = identity_from_request(_pasted_request(args.message), source)
    elif args.from_uri is None:
        raise _UsageError("give --from (and --pai ...) or --message FILE")
    else:
        identity = _identity_from_args(args, source)
    verdict = evaluate(identity, source, data, _moment(args.at, settings.timezone))
    _print_verdict(sys.stdout, args.source, source, identity, verdict, settings, known)
    store.close()
    return 1 if verdict.outcome == "reject" else 0


def _pasted_request(path: str) -> Request:
    """A request an engineer pasted from a trace: a file, or '-' for standard input.

    Traces and terminals lose the CRs, so line ends are made CRLF again before parsing.
    """
    text = sys.stdin.read() if path == "-" else Path(path).read_text(errors="surrogateescape")
    head, _, body = text.replace("\r\n", "\n").lstrip("\n").partition("\n\n")
    data = (head.replace("\n", "\r\n") + "\r\n\r\n" + body).encode(errors="surrogateescape")
    try:
        message = parse_message(data)
    except SipParseError as exc:
        raise _UsageError(f"{path}: not a SIP message: {exc.reason}") from None
    if not isinstance(message, Request):
        raise _UsageError(f"{path}: a SIP response, not a request")
    return message


def _identity_from_args(args: argparse.Namespace, source: SourcePolicy) -> CallerIdentity:
    return identity_from_values(
        method=args.method,
        from_value=args.from_uri,
        pai=args.pai or (),
        privacy=args.privacy,
        diversion=args.diversion or (),
        history_info=args.history_info or (),
        to_value=args.to,
        marker_value=args.marker,
        source=source,
    )


# --- numbers -------------------------------------------------------------------------------


def cmd_numbers_add(args: argparse.Namespace) -> int:
    """`sipguard numbers add`: a holding (--holder) or a delegation (--customer)."""
    settings, _ = _load(args)
    with _store(settings) as store:
        for text in args.numbers:
            rng = NumberRange.parse(text, _e164)
            if args.customer:
                if not args.principal:
                    raise _UsageError("a delegation needs --principal")
                start, until = _period(args, settings.timezone)
                d = store.add_delegation(
                    args.principal, args.customer, rng, start, until, spc=args.spc
                )
                print(
                    f"delegated {rng} by {d.principal} to {d.customer} from"
                    f" {_fmt(start, settings.timezone)} until {_fmt(until, settings.timezone)}"
                )
            elif args.holder:
                store.add_holding(args.holder, rng, args.note or "")
                print(f"{args.holder} holds {rng}")
            else:
                raise _UsageError("give --holder (a holding) or --customer (a delegation)")
    return 0


def cmd_numbers_remove(args: argparse.Namespace) -> int:
    """`sipguard numbers remove`: rows of exactly that number or range."""
    settings, _ = _load(args)
    total = 0
    with _store(settings) as store:
        for text in args.numbers:
            rng = NumberRange.parse(text, _e164)
            total += store.remove(
                rng, holder=args.holder, customer=args.customer, principal=args.principal
            )
    print(f"removed {total} row(s)")
    return 0 if total else 1


def cmd_numbers_list(args: argparse.Namespace) -> int:
    """`sipguard numbers list`: holdings and delegations, as a table or YAML."""
    settings, _ = _load(args)
    zone = settings.timezone
    with _store(settings) as store:
        if args.format == "yaml":
            sys.stdout.write(store.export_yaml(holder=args.holder, customer=args.customer))
            return 0
        now = time.time()
        if not args.customer:
            for h in store.holdings(args.holder):
                print(f"holding     {h.holder:<16} {h.range}" + (f"  # {h.note}" if h.note else ""))
        if not args.holder:
            for d in store.delegations(args.customer, args.principal):
                state = (
                    "active" if d.active(now) else ("expired" if now >= d.valid_until else "future")
                )
                print(
                    f"delegation  {d.principal} -> {d.customer:<10} {d.range}  "
                    f"{_fmt(d.valid_from, zone)} .. {_fmt(d.valid_until, zone)} [{state}]"
                    + (f" spc {d.spc}" if d.spc else "")
                )
    return 0


def _read_lines(path: str) -> Iterator[str]:
    if path == "-":
        yield from sys.stdin
        return
    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        yield from handle


def cmd_numbers_import(args: argparse.Namespace) -> int:
    """`sipguard numbers import FILE`: YAML, or BND lines with the period given."""
    settings, _ = _load(args)
    with _store(settings) as store:
        if args.format == "bnd":
            if not (args.customer and args.principal):
                raise _UsageError("BND lines name no customer or principal: give both")
            start, until = _period(args, settings.timezone)
            added, removed = store.import_bnd(
                _read_lines(args.file),
                principal=args.principal,
                customer=args.customer,
                valid_from=start,
                valid_until=until,
            )
            print(f"imported {added} delegation(s), removed {removed}")
        else:
            text = "".join(_read_lines(args.file))
            holdings, delegations = store.import_yaml(text, _e164)
            print(f"imported {holdings} holding(s), {delegations} delegation(s)")
    return 0


def cmd_numbers_export(args: argparse.Namespace) -> int:
    """`sipguard numbers export`: YAML, or BND `TN;SPC` / `start-end;SPC` lines."""
    settings, _ = _load(args)
    with _store(settings) as store:
        if args.format == "bnd":
            now = None if args.all else time.time()
            lines, skipped = store.export_bnd(
                customer=args.customer, principal=args.principal, spc=args.spc, now=now
            )
            text = "".join(line + "\n" for line in lines)
            for item in skipped:
                print(f"skipped {item}", file=sys.stderr)
        else:
            text = store.export_yaml(holder=args.holder, customer=args.customer)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


# --- audit ---------------------------------------------------------------------------------


def cmd_audit_report(args: argparse.Namespace) -> int:
    """`sipguard audit report`: counts per verdict, rule, source and number."""
    settings, _ = _load(args)
    since = _moment(args.since, settings.timezone) if args.since else None
    report = read_report(settings.audit.database, since, now=time.time())
    sys.stdout.write(format_report(report, args.format))
    return 0


def _cdr_rows(path: str, mapping: dict[str, str]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise _UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    wanted = {ours: mapping.get(ours, ours) for ours in CDR_COLUMNS}
    missing = [
        f"{ours} (as {theirs!r})" if theirs != ours else ours
        for ours, theirs in wanted.items()
        if theirs not in header and ours in ("time", "source", "From")
    ]
    if missing:
        raise _UsageError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header)}"
        )
    for lineno, row in enumerate(reader, 2):
        yield lineno, {ours: (row.get(theirs) or "").strip() for ours, theirs in wanted.items()}


def cmd_audit_check_cdr(args: argparse.Namespace) -> int:
    """`sipguard audit check-cdr FILE.csv`: the same rules over past call records."""
    settings, sources = _load(args)
    mapping: dict[str, str] = {}
    for item in args.map or ():
        ours, sep, theirs = item.partition("=")
        if not sep or ours not in CDR_COLUMNS:
            raise _UsageError(f"--map {item!r}: expected COLUMN=NAME, COLUMN one of {CDR_COLUMNS}")
        mapping[ours] = theirs
    history = FlowHistory(None, settings.flow_window_days * 86400.0)
    data = _policy_data(settings, history)
    rows = list(_cdr_rows(args.file, mapping))
    timed: list[tuple[float, int, dict[str, str]]] = []
    for lineno, row in rows:
        timed.append((_moment(row["time"], settings.timezone), lineno, row))
    timed.sort(key=lambda t: (t[0], t[1]))  # the flow history needs time order
    counts = {"allow": 0, "monitor": 0, "reject": 0}
    results: list[dict[str, Any]] = []
    for moment, lineno, row in timed:
        source = sources.get(row["source"], SourcePolicy())
        identity = identity_from_values(
            method=row["method"] or "INVITE",
            from_value=row["From"],
            pai=[row["PAI"]] if row["PAI"] else [],
            privacy=row["Privacy"] or None,
            to_value=row["To"] or None,
            source=source,
        )
        verdict = evaluate(identity, source, data, moment)
        counts[verdict.outcome] += 1
        if verdict.outcome != "reject" and identity.destination:
            for item in verdict.judged:
                if item.number.e164 and item.row is not None and item.row.automated == "cond":
                    history.observe(item.number.e164, identity.destination, moment)
        if verdict.outcome != "allow" or args.all:
            results.append({
                "line": lineno,
                "time": datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds"),
                "source": row["source"],
                "from": row["From"],
                "verdict": verdict.outcome,
                "rules": [
                    {"id": f.rule_id, "action": f.action, "reason": f.reason}
                    for f in verdict.firings
                ],
            })  # fmt: skip
    if args.format == "json":
        print(json.dumps({"counts": counts, "records": results}, indent=2, ensure_ascii=False))
    elif args.format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["line", "time", "source", "from", "verdict", "rules"])
        for r in results:
            ids = " ".join(f"{x['id']}:{x['action']}" for x in r["rules"])
            writer.writerow([r["line"], r["time"], r["source"], r["from"], r["verdict"], ids])
        sys.stdout.write(out.getvalue())
    else:
        for r in results:
            print(f"line {r['line']} {r['time']} {r['source']} {r['from']}: {r['verdict'].upper()}")
            for x in r["rules"]:
                print(f"    {x['id']} [{x['action']}] {x['reason']}")
        print(
            f"{len(timed)} record(s): {counts['allow']} allowed, {counts['monitor']} monitored,"
            f" {counts['reject']} rejected"
        )
    return 1 if counts["reject"] else 0


# --- plan ----------------------------------------------------------------------------------


def cmd_plan_import(args: argparse.Namespace) -> int:
    """`sipguard plan import FILE…`: load ARCEP allocation files into the allocation store."""
    from proxy.policy.allocation import AllocationImportError, AllocationStore

    settings, _ = _load(args)
    path = Path(settings.allocation_database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with AllocationStore(path) as store:
        try:
            report = store.import_files([Path(p) for p in args.files])
        except AllocationImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    for item in report.files:
        print(
            f"{item.path}: {item.dataset}, {item.rows} row(s)"
            + (f", {item.skipped} skipped" if item.skipped else "")
        )
    print(
        f"{report.blocks} allocated block(s), {report.frozen} frozen, "
        f"{report.operators} operator(s) in {path}"
    )
    return 0


# --- parser --------------------------------------------------------------------------------


def _with_errors(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = handler(args)
        except _UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except NumberStoreError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        return code

    run.__doc__ = handler.__doc__
    return run


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML configuration (default $SIPGUARD_CONFIG)")
    parser.add_argument("--database", help="number-list database (overrides policy.database)")


def _period_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--principal", help="principal (donneur d'ordre)")
    parser.add_argument("--customer", help="call centre the numbers are delegated to")
    parser.add_argument("--from", dest="valid_from", help="delegation start: DATE or ISO time")
    parser.add_argument("--until", help="delegation end: DATE (inclusive) or ISO time")
    parser.add_argument("--spc", help="operator SPC code (BND)")


def register(subparsers: Any) -> None:
    """Add `check`, `numbers`, `audit` and `plan` to the `sipguard` sub-command parsers."""
    check = subparsers.add_parser("check", help="explain the policy decision for a caller ID")
    _common(check)
    check.add_argument("--source", required=True, help="configured source name")
    check.add_argument("--from", dest="from_uri", help="From URI or number")
    check.add_argument(
        "--message", help="a whole request pasted from a trace (file, or - for stdin)"
    )
    check.add_argument("--pai", action="append", help="P-Asserted-Identity (repeatable)")
    check.add_argument("--privacy", help="Privacy header value (e.g. id)")
    check.add_argument("--diversion", action="append", help="Diversion header value")
    check.add_argument("--history-info", action="append", help="History-Info entry")
    check.add_argument("--to", help="To URI or number (flow history)")
    check.add_argument("--method", default="INVITE", choices=("INVITE", "MESSAGE"))
    check.add_argument("--marker", help="the source marker's value (trunk group or header)")
    check.add_argument("--at", help="judge at this time (ISO, default now)")
    check.add_argument("--allocation-database", help="allocation data (overrides the config)")
    check.set_defaults(handler=_with_errors(cmd_check))

    numbers = subparsers.add_parser("numbers", help="number lists and delegations")
    nsub = numbers.add_subparsers(dest="numbers_command", required=True)
    add = nsub.add_parser("add", help="add a holding (--holder) or a delegation (--customer)")
    _common(add)
    add.add_argument("numbers", nargs="+", help="number or START-END range, any notation")
    add.add_argument("--holder", help="who owns the numbers (principal or call centre)")
    add.add_argument("--note")
    _period_args(add)
    add.set_defaults(handler=_with_errors(cmd_numbers_add))
    remove = nsub.add_parser("remove", help="remove rows of exactly these numbers/ranges")
    _common(remove)
    remove.add_argument("numbers", nargs="+")
    remove.add_argument("--holder")
    remove.add_argument("--customer")
    remove.add_argument("--principal")
    remove.set_defaults(handler=_with_errors(cmd_numbers_remove))
    listing = nsub.add_parser("list", help="show holdings and delegations")
    _common(listing)
    listing.add_argument("--holder")
    listing.add_argument("--customer")
    listing.add_argument("--principal")
    listing.add_argument("--format", choices=("table", "yaml"), default="table")
    listing.set_defaults(handler=_with_errors(cmd_numbers_list))
    imp = nsub.add_parser("import", help="import YAML, or BND TN;SPC lines")
    _common(imp)
    imp.add_argument("file", help="file, .gz, or - for stdin")
    imp.add_argument("--format", choices=("yaml", "bnd"), default="yaml")
    _period_args(imp)
    imp.set_defaults(handler=_with_errors(cmd_numbers_import))
    exp = nsub.add_parser("export", help="export YAML, or BND TN;SPC lines")
    _common(exp)
    exp.add_argument("--output", "-o", help="file (default stdout)")
    exp.add_argument("--format", choices=("yaml", "bnd"), default="yaml")
    exp.add_argument("--holder")
    exp.add_argument("--customer")
    exp.add_argument("--principal")
    exp.add_argument("--spc", help="SPC for delegations that carry none")
    exp.add_argument("--all", action="store_true", help="BND: include inactive delegations")
    exp.set_defaults(handler=_with_errors(cmd_numbers_export))

    audit = subparsers.add_parser("audit", help="the decision audit trail")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    report = asub.add_parser("report", help="counts per verdict, rule, source and number")
    _common(report)
    report.add_argument("--audit-database", help="audit database (overrides the config)")
    report.add_argument("--since", help="ISO date/time or epoch seconds")
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")
    report.set_defaults(handler=_with_errors(cmd_audit_report))
    cdr = asub.add_parser(
        "check-cdr",
        help="run the rules over past call records (columns: " + ", ".join(CDR_COLUMNS) + ")",
    )
    _common(cdr)
    cdr.add_argument("file", help="CSV file with a header line, or - for stdin")
    cdr.add_argument("--map", action="append", help="COLUMN=THEIR_NAME, e.g. From=caller")
    cdr.add_argument("--format", choices=("table", "json", "csv"), default="table")
    cdr.add_argument("--all", action="store_true", help="list allowed records too")
    cdr.add_argument("--allocation-database", help="allocation data (overrides the config)")
    cdr.set_defaults(handler=_with_errors(cmd_audit_check_cdr))

    plan = subparsers.add_parser("plan", help="numbering plan and ARCEP allocation data")
    psub = plan.add_subparsers(dest="plan_command", required=True)
    pimp = psub.add_parser("import", help="import ARCEP MAJNUM/MAJNFB/GELNUM/operator CSV files")
    _common(pimp)
    pimp.add_argument("files", nargs="+")
    pimp.add_argument("--allocation-database", help="allocation database (overrides the config)")
    pimp.set_defaults(handler=_with_errors(cmd_plan_import))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one policy sub-command (`python -m proxy.policy.commands ...`)."""
    parser = argparse.ArgumentParser(prog="sipguard", description="sipguard policy commands")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
