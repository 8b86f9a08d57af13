"""SIPp load harness: full calls UAC -> proxy -> UAS on loopback (issue 2 §8, issue 4 §7).

Run::

    python bench/sipp_load.py                      # the default run (< 5 minutes)
    python bench/sipp_load.py --quick              # a small version (< 60 s)
    python bench/sipp_load.py --json               # the same figures as JSON
    python bench/sipp_load.py --proxy 127.0.0.1:5060 --uas-port 5070 [--pid PID]
                                                   # load another proxy (Kamailio, ...)

With ``--start`` (the default when ``--proxy`` is not given) the harness starts sipguard itself
(``python -m proxy run --config FILE --workers N``) on generated configs:

* ``pure``: policy rules all off, signing off -- the pure-proxy figure;
* ``policy``: policy rules on, the caller number on the customer's own list, signing off;
* ``signing``: the same plus signing on a lab PKI (``python -m proxy pki init DIR``).

What it measures, with SIPp 3.6 as both UAC and UAS (``bench/scenarios/``: INVITE/100/180/200/
ACK, pause, BYE/200):

* max calls/s: the highest rate at which >= 99.9 % of the calls of a bounded step succeed and
  SIPp actually reached the rate (rate stepped up by doubling, then bisected);
* CPU ms per call at a fixed rate: utime+stime from /proc/<pid>/stat of the proxy process and
  its worker children, before and after, divided by the successful calls -- the figure that
  stays stable on a noisy machine. SIPp's own CPU per call is shown beside it;
* added latency: the UAC's INVITE->200 response time (SIPp -trace_rtt) through the proxy minus
  the same run straight UAC->UAS at the same rate. SIPp's clock ticks in jiffies (4 ms here), so
  when the harness may open an AF_PACKET socket (root) it also timestamps every datagram on
  ``lo`` in the kernel and reports the proxy's own transit time per message (in -> out);
* worker scaling (CPU ms per call per worker, 2 workers against 1 at max rate) and signing on
  against off (max calls/s and CPU ms per call, as ratios).

Every SIPp run has -timeout and every call -recv_timeout, so every step is bounded. Nothing is
asserted on timings: this prints figures.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SCENARIOS = BENCH / "scenarios"
HOST = "127.0.0.1"
CALLER = "+33162000001"
CUSTOMER = "acme-contact"
PRINCIPAL = "acme-energy"
SUCCESS_RATIO = 0.999
RATE_REACHED = 0.95
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- small helpers ------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port free for both UDP and TCP (the proxy listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as check:
                check.bind((HOST, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def sip_options(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something answers one OPTIONS over UDP (mirrors tests/integration/harness)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        local = sock.getsockname()[1]
        message = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
            f"From: <sip:probe@{HOST}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{host}:{port}>\r\nCall-ID: {uuid.uuid4().hex}@bench\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sock.settimeout(timeout)
        sock.sendto(message, (host, port))
        try:
            sock.recvfrom(65535)
        except TimeoutError:
            return False
        return True


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass (bounded, no fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (the supervisor and its workers)."""
    found = [pid]
    index = 0
    while index < len(found):
        current = found[index]
        index += 1
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")" field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each pid."""
    return {pid: cpu_seconds(pid) for pid in pids}


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio (no uvloop)"
    sipp_version = "not installed"
    sipp = shutil.which("sipp")
    if sipp:
        out = subprocess.run([sipp, "-v"], capture_output=True, text=True, timeout=10)
        for line in (out.stdout + out.stderr).splitlines():
            if "SIPp" in line:
                sipp_version = line.strip()
                break
    return {
        "date": dt.date.today().isoformat(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "event_loop": loop,
        "kernel": platform.release(),
        "sipp": sipp_version,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- SIPp -----------------------------------------------------------------------------------


@dataclass
class SippRun:
    """What one bounded UAC run did (from its -trace_stat CSV and -trace_rtt file)."""

    rate: int
    calls: int
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    achieved_cps: float = 0.0
    wall_s: float = 0.0
    rc: int = -1
    rtt_ms: list[float] = field(default_factory=list)
    uac_cpu_s: float = 0.0

    @property
    def success_ratio(self) -> float:
        """Successful calls over calls asked for (calls never started count as failed)."""
        return self.successful / self.calls if self.calls else 0.0

    @property
    def passed(self) -> bool:
        """>= 99.9 % successful, and SIPp really offered the rate."""
        return (
            self.success_ratio >= SUCCESS_RATIO
            and self.achieved_cps >= RATE_REACHED * self.rate
        )


def _sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise SystemExit("sipp is not installed (Debian package sip-tester)")
    return path


class Uas:
    """A long-lived SIPp UAS (the trunk) answering every call of the session."""

    def __init__(self, workdir: Path, port: int, lifetime: float) -> None:
        self.port = port
        self.workdir = workdir
        args = [
            _sipp(), "-sf", str(SCENARIOS / "uas_load.xml"), "-i", HOST, "-p", str(port),
            "-t", "u1", "-nostdin", "-timeout", f"{int(lifetime)}s", "-max_recv_loops", "5000",
            "-max_sched_loops", "5000", "-trace_err", "-error_file", str(workdir / "uas_err.log"),
        ]
        self.process = subprocess.Popen(
            args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        if not wait_until(lambda: self._listening() or self.process.poll() is not None, 10):
            raise RuntimeError("SIPp UAS did not start")

    def _listening(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((HOST, self.port))
            except OSError:
                return True
        return False

    def cpu(self) -> float:
        """CPU seconds the UAS used so far."""
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        """Stop the UAS (bounded)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def run_uac(
    workdir: Path,
    target: tuple[str, int],
    rate: int,
    calls: int,
    *,
    transport: str = "u1",
    rtt: bool = False,
    pause_ms: int = 20,
) -> SippRun:
    """One bounded UAC run: `calls` calls at `rate` calls/s towards `target`."""
    tag = uuid.uuid4().hex[:8]
    stat = workdir / f"stat_{tag}.csv"
    limit = max(200, rate * 2)
    timeout = int(calls / rate + 15)
    args = [
        _sipp(), "-sf", str(SCENARIOS / "uac_load.xml"), "-i", HOST, "-p", str(free_port()),
        "-t", transport, "-r", str(rate), "-m", str(calls), "-l", str(limit),
        "-d", str(pause_ms), "-timeout", f"{timeout}s", "-timeout_error",
        "-recv_timeout", "5000", "-nostdin", "-max_recv_loops", "5000",
        "-max_sched_loops", "5000", "-max_socket", "4000",
        "-trace_stat", "-stf", str(stat), "-fd", "3600",
        "-trace_err", "-error_file", str(workdir / f"uac_err_{tag}.log"),
        "-key", "from_user", CALLER, "-key", "pai_user", CALLER,
    ]
    if rtt:
        args += ["-trace_rtt", "-rtt_freq", "100"]
    args.append(f"{target[0]}:{target[1]}")
    result = SippRun(rate=rate, calls=calls)
    _reaped_children_cpu()  # forget earlier children (pki init, numbers add)
    start = time.monotonic()
    process = subprocess.Popen(
        args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        result.rc = process.wait(timeout + 10)
    except subprocess.TimeoutExpired:
        process.kill()
        result.rc = process.wait(5)
    result.wall_s = time.monotonic() - start
    # The children's CPU of a reaped process shows in our own rusage.
    result.uac_cpu_s = _reaped_children_cpu()
    _read_stat(stat, result)
    if rtt:
        for path in workdir.glob(f"uac_load_{process.pid}_rtt.csv"):
            result.rtt_ms = _read_rtt(path)
            path.unlink()
    return result


_children_cpu_seen = 0.0


def _reaped_children_cpu() -> float:
    """CPU seconds of the children reaped since the last call (the SIPp UAC just finished)."""
    global _children_cpu_seen
    usage = os.times()
    total = usage.children_user + usage.children_system
    delta, _children_cpu_seen = total - _children_cpu_seen, total
    return delta


def _read_stat(path: Path, result: SippRun) -> None:
    if not path.exists():
        return
    with path.open(newline="", errors="replace") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    if not rows:
        return
    last = rows[-1]

    def number(key: str) -> float:
        with contextlib.suppress(KeyError, ValueError, TypeError):
            return float(last[key])
        return 0.0

    result.successful = int(number("SuccessfulCall(C)"))
    result.failed = int(number("FailedCall(C)"))
    result.retransmissions = int(number("Retransmissions(C)"))
    result.achieved_cps = number("CallRate(C)")
    path.unlink()


def _read_rtt(path: Path) -> list[float]:
    values: list[float] = []
    with path.open(errors="replace") as handle:
        next(handle, None)
        for line in handle:
            parts = line.strip().split(";")
            if len(parts) >= 2:
                with contextlib.suppress(ValueError):
                    values.append(float(parts[1]))
    return values


# -- the proxy under test -------------------------------------------------------------------


@dataclass
class Target:
    """A proxy to load: its SIP address and, when known, its process id (for CPU figures)."""

    host: str
    port: int
    pid: int | None = None
    stop: Callable[[], None] = lambda: None

    def pids(self) -> list[int]:
        """The proxy's process and its worker children."""
        return process_tree(self.pid) if self.pid else []


def sipguard_config(
    workdir: Path, mode: str, proxy_port: int, trunk_port: int, pki: Path
) -> dict[str, Any]:
    """A working config (mirrors tests/integration/conftest.py base_config) for `mode`."""
    from proxy.policy.rules import RULES_BY_ID

    policy: dict[str, Any] = {"customer": CUSTOMER, "kind": "interpersonal",
                              "principals": [PRINCIPAL]}
    if mode == "pure":
        policy["rules"] = {rule_id: "off" for rule_id in RULES_BY_ID}
    config: dict[str, Any] = {
        "listen": [
            {"transport": "udp", "host": HOST, "port": proxy_port},
            {"transport": "tcp", "host": HOST, "port": proxy_port},
        ],
        "timers": {"t1": 0.5, "t2": 4.0, "t4": 5.0, "timer_c": 180},
        "trunks": [{"name": "operator", "host": HOST, "port": trunk_port,
                    "options_interval": 10, "inbound": {}}],
        "sources": [{"name": "pbx", "addresses": [f"{HOST}/32"], "trunk": "operator",
                     "policy": policy}],
        "policy": {
            "database": str(workdir / "sipguard.sqlite3"),
            "allocation_database": str(workdir / "allocation.sqlite3"),
            "principals": [{"name": PRINCIPAL}],
            "audit": {"database": str(workdir / "audit.sqlite3")},
        },
        "logging": {"format": "json", "level": "warning"},
        "admin": {"enabled": False},
    }
    if mode == "signing":
        if not (pki / "operator.key").exists():
            subprocess.run([sys.executable, "-m", "proxy", "pki", "init", str(pki)],
                           check=True, capture_output=True, timeout=60, cwd=REPO)
        config["signing"] = {
            "enabled": True,
            "key_file": str(pki / "operator.key"),
            "cert_file": str(pki / "operator.pem"),
            "x5u": "https://certs.example.net/LAB001/operator.cer",
        }
    return config


def start_sipguard(workdir: Path, mode: str, workers: int, trunk_port: int) -> Target:
    """Start `python -m proxy run` on a generated config; wait until it answers OPTIONS."""
    run_dir = workdir / f"{mode}-w{workers}"
    run_dir.mkdir(exist_ok=True)
    port = free_port()
    # One lab PKI for the session, built on first use.
    config = sipguard_config(run_dir, mode, port, trunk_port, workdir / "pki")
    config_path = run_dir / "sipguard.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    if mode != "pure":
        # The caller on the customer's own list, so the policy lets it through (attest A).
        subprocess.run(
            [sys.executable, "-m", "proxy", "numbers", "add", "--config", str(config_path),
             "--holder", CUSTOMER, CALLER],
            check=True, capture_output=True, timeout=60, cwd=REPO,
        )
    log = (run_dir / "proxy.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", "run", "--config", str(config_path),
         "--workers", str(workers)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                for pid in reversed(process_tree(process.pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait(5)
        log.close()

    ready = wait_until(lambda: process.poll() is not None or sip_options(HOST, port), 30)
    if process.poll() is not None or not ready:
        stop()
        raise RuntimeError(f"sipguard did not start:\n{(run_dir / 'proxy.log').read_text()}")
    if workers > 1:
        wait_until(lambda: len(process_tree(process.pid)) >= workers + 1, 10)
    return Target(HOST, port, process.pid, stop)


# -- kernel-timestamped transit through the proxy ---------------------------------------------


class TransitSniffer:
    """Timestamps every UDP datagram on `lo` (AF_PACKET, SO_TIMESTAMPNS) during a run.

    The proxy's transit time of a message is (time it left the proxy) - (time it reached it),
    matched on Call-ID, CSeq and the start line. Requests go UAC -> proxy -> UAS (the UAS port
    is known), responses come back the other way. Needs CAP_NET_RAW; `available` says.
    """

    SO_TIMESTAMPNS = 35
    ETH_P_ALL = 0x0003

    def __init__(self, uas_port: int, proxy_port: int) -> None:
        self.uas_port = uas_port
        self.proxy_port = proxy_port
        self.inbound: dict[tuple[str, str, str], float] = {}
        self.transit: dict[str, list[float]] = {}
        self.per_call: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sock: socket.socket | None = None
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM,
                                      socket.htons(self.ETH_P_ALL))
            self.sock.bind(("lo", 0))
            self.sock.setsockopt(socket.SOL_SOCKET, self.SO_TIMESTAMPNS, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        except (OSError, AttributeError):
            self.sock = None

    @property
    def available(self) -> bool:
        """True when the sniffer could open its socket."""
        return self.sock is not None

    def __enter__(self) -> TransitSniffer:
        if self.sock is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.sock is not None:
            self.sock.close()

    def _loop(self) -> None:
        assert self.sock is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.2)
            if not ready:
                continue
            for _ in range(256):
                try:
                    data, ancdata, _, address = self.sock.recvmsg(
                        65535, socket.CMSG_SPACE(16), socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                if address[2] == socket.PACKET_OUTGOING:
                    continue  # lo shows each datagram twice: keep the incoming copy
                stamp = time.time()
                for level, kind, value in ancdata:
                    if level == socket.SOL_SOCKET and kind == self.SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", value[:16])
                        stamp = sec + nsec / 1e9
                self._packet(data, stamp)

    def _packet(self, data: bytes, stamp: float) -> None:
        if len(data) < 28 or data[0] >> 4 != 4 or data[9] != 17:
            return
        header = (data[0] & 0x0F) * 4
        sport, dport = struct.unpack("!HH", data[header:header + 4])
        payload = data[header + 8:]
        head, _, _ = payload.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        start = lines[0].decode(errors="replace")
        call_id = cseq = ""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered in (b"call-id", b"i"):
                call_id = value.strip().decode(errors="replace")
            elif lowered == b"cseq":
                cseq = value.strip().decode(errors="replace")
        if not call_id or call_id.startswith("sgping"):
            return
        is_request = not start.startswith("SIP/2.0")
        kind = start.split(" ", 1)[0] if is_request else start.split(" ", 2)[1]
        key = (call_id, cseq, kind)
        if is_request:
            leaving = dport == self.uas_port
            entering = not leaving and sport != self.uas_port
        else:
            entering = sport == self.uas_port
            leaving = not entering and dport != self.uas_port
        if entering:
            self.inbound[key] = stamp
        elif leaving:
            began = self.inbound.pop(key, None)
            if began is not None:
                label = kind if is_request else f"{kind} {cseq.split()[-1]}"
                micros = (stamp - began) * 1e6
                self.transit.setdefault(label, []).append(micros)
                if label in ("INVITE", "200 INVITE"):
                    self.per_call[call_id] = self.per_call.get(call_id, 0.0) + micros

    def summary(self) -> dict[str, Any]:
        """p50/p99 transit in µs per message kind, and INVITE+200 per call."""
        out: dict[str, Any] = {}
        for label, values in sorted(self.transit.items()):
            out[label] = {"n": len(values), "p50_us": percentile(values, 0.5),
                          "p99_us": percentile(values, 0.99)}
        calls = list(self.per_call.values())
        out["call_setup_added"] = {"n": len(calls), "p50_us": percentile(calls, 0.5),
                                   "p99_us": percentile(calls, 0.99)}
        return out


# -- the measurements -----------------------------------------------------------------------


@dataclass
class Settings:
    """Sizes of one bench run (default or --quick)."""

    step_seconds: float
    min_calls: int
    ramp: list[int]
    bisect_steps: int
    fixed_rate: int
    fixed_calls: int
    max_rate: int
    idle_seconds: float


DEFAULT = Settings(step_seconds=2.5, min_calls=1000, ramp=[100, 200, 400, 800, 1600, 3200],
                   bisect_steps=2, fixed_rate=100, fixed_calls=1000, max_rate=6400,
                   idle_seconds=3.0)
QUICK = Settings(step_seconds=1.5, min_calls=1000, ramp=[200, 400, 800, 1600, 3200],
                 bisect_steps=1, fixed_rate=100, fixed_calls=400, max_rate=6400,
                 idle_seconds=1.0)


def log(message: str) -> None:
    """Progress on stderr (stdout carries the table or the JSON)."""
    print(message, file=sys.stderr, flush=True)


def step_calls(rate: int, settings: Settings) -> int:
    """Calls in one step: `step_seconds` of traffic, at least `min_calls` (99.9 % needs 1000)."""
    return max(settings.min_calls, int(rate * settings.step_seconds))


def find_max_rate(
    workdir: Path, target: Target, settings: Settings, *, transport: str, start: int | None = None,
) -> dict[str, Any]:
    """Highest rate with >= 99.9 % successful calls: double until a step fails, then bisect."""
    steps: list[dict[str, Any]] = []

    pids = target.pids()

    def attempt(rate: int) -> bool:
        before = sum(tree_cpu(pids).values())
        run = run_uac(workdir, (target.host, target.port), rate, step_calls(rate, settings),
                      transport=transport)
        cpu = (sum(tree_cpu(pids).values()) - before) * 1000 / max(run.successful, 1)
        steps.append({"rate": rate, "calls": run.calls, "successful": run.successful,
                      "achieved_cps": round(run.achieved_cps, 1), "retrans": run.retransmissions,
                      "proxy_cpu_ms_per_call": round(cpu, 3) if pids else None,
                      "passed": run.passed})
        log(f"    {rate:5d} cps: {run.successful}/{run.calls} ok, offered "
            f"{run.achieved_cps:.0f} cps, {run.retransmissions} retrans, proxy "
            f"{cpu:.2f} CPU-ms/call -> {'pass' if run.passed else 'FAIL'}")
        return run.passed

    ramp = [r for r in settings.ramp if start is None or r >= start // 2]
    best, worst = 0, None
    for rate in ramp:
        if attempt(rate):
            best = rate
        else:
            worst = rate
            break
    else:
        rate = ramp[-1] * 2 if ramp else settings.max_rate
        while rate <= settings.max_rate and attempt(rate):
            best, rate = rate, rate * 2
        worst = rate if rate <= settings.max_rate else None
    if worst is not None:
        low, high = best, worst
        for _ in range(settings.bisect_steps):
            middle = (low + high) // 2
            if middle <= low or high - low < 50:
                break
            if attempt(middle):
                low = middle
            else:
                high = middle
        best = low
    at_max = [step["proxy_cpu_ms_per_call"] for step in steps if step["rate"] == best]
    # When SIPp cannot produce the rate asked for (it shares the cores), a step fails the
    # offered-rate test even though every call went through: the rate SIPp did produce with
    # >= 99.9 % successful calls is what the proxy carried, reported beside max_cps.
    carried = max(
        (step for step in steps if step["successful"] >= SUCCESS_RATIO * step["calls"]),
        key=lambda step: step["achieved_cps"],
        default=None,
    )
    return {"max_cps": best, "cpu_ms_per_call_at_max": at_max[-1] if at_max else None,
            "carried_cps": carried["achieved_cps"] if carried else None,
            "carried_retrans": carried["retrans"] if carried else None,
            "carried_cpu_ms_per_call": carried["proxy_cpu_ms_per_call"] if carried else None,
            "steps": steps}


def fixed_rate_run(
    workdir: Path, target: Target, settings: Settings, *, transport: str,
    uas: Uas | None, sniff_uas_port: int | None = None,
) -> dict[str, Any]:
    """CPU ms per call (proxy, UAC, UAS) and response times at the fixed rate."""
    pids = target.pids()
    idle: float | None = None
    if pids:
        # What the proxy burns with no traffic (timers, audit flush, list poll, OPTIONS pings),
        # so the per-call figure can be shown net of it.
        start_cpu, start_wall = sum(tree_cpu(pids).values()), time.monotonic()
        time.sleep(settings.idle_seconds)
        idle = (sum(tree_cpu(pids).values()) - start_cpu) * 1000 / (
            time.monotonic() - start_wall)
    before = tree_cpu(pids)
    uas_before = uas.cpu() if uas else 0.0
    sniffer = TransitSniffer(sniff_uas_port, target.port) if sniff_uas_port else None
    with sniffer if sniffer is not None else contextlib.nullcontext():
        run = run_uac(workdir, (target.host, target.port), settings.fixed_rate,
                      settings.fixed_calls, transport=transport, rtt=True)
    after = tree_cpu(pids)
    calls = max(run.successful, 1)
    result: dict[str, Any] = {
        "rate": settings.fixed_rate, "calls": run.calls, "successful": run.successful,
        "retrans": run.retransmissions,
        "uac_cpu_ms_per_call": round(run.uac_cpu_s * 1000 / calls, 3),
        "rtt_ms": {"p50": percentile(run.rtt_ms, 0.5), "p99": percentile(run.rtt_ms, 0.99),
                   "mean": round(statistics.fmean(run.rtt_ms), 3) if run.rtt_ms else None},
    }
    if uas is not None:
        result["uas_cpu_ms_per_call"] = round((uas.cpu() - uas_before) * 1000 / calls, 3)
    if pids:
        per_process = {pid: after.get(pid, 0.0) - before.get(pid, 0.0) for pid in pids}
        result["proxy_cpu_ms_per_call"] = round(sum(per_process.values()) * 1000 / calls, 3)
        result["idle_cpu_ms_per_s"] = round(idle or 0.0, 2)
        result["net_cpu_ms_per_call"] = round(
            result["proxy_cpu_ms_per_call"] - (idle or 0.0) / settings.fixed_rate, 3)
        result["cpu_ms_per_call_by_process"] = [round(v * 1000 / calls, 3)
                                                for v in per_process.values()]
    if sniffer is not None and sniffer.available:
        result["transit"] = sniffer.summary()
    return result


@contextlib.contextmanager
def sipguard(workdir: Path, mode: str, workers: int, trunk_port: int) -> Iterator[Target]:
    """A sipguard for the block, stopped whatever happens."""
    target = start_sipguard(workdir, mode, workers, trunk_port)
    try:
        yield target
    finally:
        target.stop()


def measure_target(
    workdir: Path, target: Target, settings: Settings, *, transport: str, uas: Uas,
    search: bool = True, search_start: int | None = None, sniff: bool = False,
) -> dict[str, Any]:
    """Fixed-rate figures first (a rested proxy), then the max-rate search."""
    figures = fixed_rate_run(workdir, target, settings, transport=transport, uas=uas,
                             sniff_uas_port=uas.port if sniff else None)
    cpu = figures.get("proxy_cpu_ms_per_call")
    log(f"  fixed {settings.fixed_rate} cps: {figures['successful']}/{figures['calls']} ok, "
        f"proxy {cpu} CPU-ms/call, SIPp UAC {figures['uac_cpu_ms_per_call']} "
        f"UAS {figures.get('uas_cpu_ms_per_call')}")
    if search:
        figures.update(find_max_rate(workdir, target, settings, transport=transport,
                                     start=search_start))
    return figures


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of the run; returns the JSON-able report."""
    settings = QUICK if args.quick else DEFAULT
    if args.fixed_rate:
        settings.fixed_rate = args.fixed_rate
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick,
                              "fixed_rate": settings.fixed_rate, "results": {}}
    keep = args.keep is not None
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="sipguard-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = report["results"]
    uas_port = args.uas_port or free_port()
    uas = Uas(workdir, uas_port, lifetime=600)
    try:
        log(f"direct UAC -> UAS (no proxy) at {settings.fixed_rate} cps")
        direct = Target(HOST, uas_port)
        results["direct"] = fixed_rate_run(workdir, direct, settings, transport="u1", uas=uas)
        if args.proxy:
            host, _, port = args.proxy.rpartition(":")
            target = Target(host or HOST, int(port), args.pid)
            log(f"proxy {args.proxy} (external)")
            results["external"] = measure_target(workdir, target, settings, transport="un",
                                                 uas=uas, sniff=True)
        else:
            plan: list[tuple[str, str, int]] = [("pure-w1", "pure", 1)]
            if args.signing in ("on", "both"):
                plan += [("policy-w1", "policy", 1), ("signing-w1", "signing", 1)]
            if args.workers > 1:
                plan.append((f"pure-w{args.workers}", "pure", args.workers))
            for name, mode, workers in plan:
                log(f"sipguard {name} (rules {'off' if mode == 'pure' else 'on'}, signing "
                    f"{'on' if mode == 'signing' else 'off'}, {workers} worker(s))")
                search = not args.quick or name == "pure-w1"
                start = (results.get("pure-w1", {}).get("max_cps") or None) if workers > 1 \
                    else None
                with sipguard(workdir, mode, workers, uas_port) as target:
                    results[name] = measure_target(
                        workdir, target, settings, transport="un", uas=uas, search=search,
                        search_start=start, sniff=(workers == 1),
                    )
                results[name].update({"mode": mode, "workers": workers})
        report["derived"] = derive(results)
    finally:
        uas.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """Latency differences against the direct run, scaling and signing ratios."""
    derived: dict[str, Any] = {}
    direct = results.get("direct", {}).get("rtt_ms", {})
    for name, figures in results.items():
        if name == "direct":
            continue
        rtt = figures.get("rtt_ms", {})
        derived[f"{name}.added_rtt_ms"] = {
            key: (round(rtt[key] - direct[key], 3)
                  if rtt.get(key) is not None and direct.get(key) is not None else None)
            for key in ("p50", "p99", "mean")
        }
    w1 = results.get("pure-w1", {})
    for name, figures in results.items():
        workers = figures.get("workers", 1)
        if name.startswith("pure-w") and workers > 1:
            derived[f"{name}.cpu_ms_per_call_per_worker"] = figures.get(
                "cpu_ms_per_call_by_process")
            derived[f"{name}.max_cps_vs_w1"] = _ratio(figures.get("max_cps"),
                                                      w1.get("max_cps"))
            derived[f"{name}.cpu_ms_per_call_vs_w1"] = _ratio(
                figures.get("proxy_cpu_ms_per_call"), w1.get("proxy_cpu_ms_per_call"))
    on, off = results.get("signing-w1"), results.get("policy-w1")
    if on and off:
        derived["signing_on_vs_off.max_cps"] = _ratio(on.get("max_cps"), off.get("max_cps"))
        derived["signing_on_vs_off.cpu_ms_per_call"] = _ratio(
            on.get("proxy_cpu_ms_per_call"), off.get("proxy_cpu_ms_per_call"))
    if off and w1:
        derived["policy_vs_pure.cpu_ms_per_call"] = _ratio(
            off.get("proxy_cpu_ms_per_call"), w1.get("proxy_cpu_ms_per_call"))
    return derived


# -- output -----------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(report: dict[str, Any]) -> str:
    """The plain-text table."""
    m = report["machine"]
    lines = [
        "sipguard SIPp load bench (full calls INVITE/100/180/200/ACK/BYE/200, UDP, loopback)",
        f"machine: {m['nproc']} x {m['cpu_model']}, Linux {m['kernel']}, Python {m['python']}, "
        f"{m['event_loop']}, {m['sipp']}, load avg at start {m['loadavg_at_start']}, {m['date']}",
        f"note: SIPp UAC and UAS run on the same {m['nproc']} cores as the proxy; with 2 cores "
        "SIPp takes about one of them, so max calls/s is a floor, and 2 workers compete with "
        "SIPp for the second core. CPU ms/call is the stable figure.",
        "",
        f"{'run':<11} {'max cps':>7} {'carried':>7} {'ms/call@max':>11} {'ms/call':>8} {'net':>6} "
        f"{'idle ms/s':>9} {'share/process':>15} {'UAC/UAS':>10} {'rtt p50/p99':>11} "
        f"{'added p50/p99':>13} {'INVITE transit p50/p99 µs':>25}",
    ]
    derived = report.get("derived", {})
    for name, r in report["results"].items():
        added = derived.get(f"{name}.added_rtt_ms", {})
        transit = (r.get("transit") or {}).get("INVITE", {})
        per_process = "/".join(_fmt(v) for v in r.get("cpu_ms_per_call_by_process", [])) or "-"
        sipp_cpu = f"{_fmt(r.get('uac_cpu_ms_per_call'))}/{_fmt(r.get('uas_cpu_ms_per_call'))}"
        rtt = f"{_fmt(r['rtt_ms']['p50'], 0)}/{_fmt(r['rtt_ms']['p99'], 0)}"
        added_text = f"{_fmt(added.get('p50'), 0)}/{_fmt(added.get('p99'), 0)}"
        transit_text = f"{_fmt(transit.get('p50_us'), 0)}/{_fmt(transit.get('p99_us'), 0)}"
        lines.append(
            f"{name:<11} {_fmt(r.get('max_cps')):>7} {_fmt(r.get('carried_cps'), 0):>7} "
            f"{_fmt(r.get('cpu_ms_per_call_at_max')):>11} "
            f"{_fmt(r.get('proxy_cpu_ms_per_call')):>8} {_fmt(r.get('net_cpu_ms_per_call')):>6} "
            f"{_fmt(r.get('idle_cpu_ms_per_s'), 1):>9} {per_process:>15} {sipp_cpu:>10} "
            f"{rtt:>11} {added_text:>13} {transit_text:>25}"
        )
    lines.append("")
    lines.append(
        f"ms/call: proxy CPU (utime+stime, all its processes) per call at a fixed "
        f"{report['fixed_rate']} calls/s; net: minus the idle burn (idle ms/s); ms/call@max: "
        f"during the max-rate step. max cps: highest rate with >= {SUCCESS_RATIO:.1%} successful "
        "calls and the rate really offered; carried: the highest rate SIPp really produced in a "
        f"step with >= {SUCCESS_RATIO:.1%} successful calls (above max cps when SIPp, not the "
        "proxy, ran out of CPU; its retransmissions are in the JSON). UAC/UAS: SIPp's own CPU "
        "ms per call. rtt and added in ms.")
    for name, r in report["results"].items():
        setup = (r.get("transit") or {}).get("call_setup_added")
        if setup:
            lines.append(f"{name}: proxy transit INVITE + 200 per call (kernel timestamps on lo): "
                         f"p50 {_fmt(setup['p50_us'], 0)} µs, p99 {_fmt(setup['p99_us'], 0)} µs "
                         f"over {setup['n']} calls")
    for key, value in derived.items():
        if not key.endswith("added_rtt_ms"):
            lines.append(f"{key}: {value}")
    lines.append("rtt: SIPp's INVITE->200 response time, clocked in jiffies (coarse); 'added' is "
                 "through the proxy minus the direct UAC->UAS run at the same rate.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--proxy", metavar="HOST:PORT",
                        help="load this proxy (its trunk must be --uas-port) instead of starting "
                             "sipguard")
    parser.add_argument("--pid", type=int, help="with --proxy: its process id, for CPU figures")
    parser.add_argument("--uas-port", type=int, help="port of the SIPp UAS (default: free)")
    parser.add_argument("--start", action="store_true",
                        help="start sipguard on generated configs (the default without --proxy)")
    parser.add_argument("--workers", type=int, default=2,
                        help="also run sipguard with N workers against 1 (default 2; 1 = skip)")
    parser.add_argument("--signing", choices=["on", "off", "both"], default="both",
                        help="off: pure proxy only; on/both: also policy and policy+signing")
    parser.add_argument("--fixed-rate", type=int, help="rate of the CPU/latency run (100)")
    parser.add_argument("--quick", action="store_true", help="a small run (< 60 s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--json-file", metavar="PATH", help="also write the JSON report here")
    parser.add_argument("--keep", metavar="DIR", help="keep configs, logs and CSVs in DIR")
    args = parser.parse_args(argv)
    if args.proxy and args.start:
        parser.error("--proxy and --start are exclusive")
    if args.proxy and not args.uas_port:
        parser.error("--proxy needs --uas-port (the port its trunk points to)")
    report = run_all(args)
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

