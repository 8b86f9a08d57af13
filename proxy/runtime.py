"""The asyncio shell: sockets and timers around the sans-IO core, workers, signals.

One `Worker` per process feeds what the transport hub receives into `ProxyCore.handle()` and
carries out the actions it returns. The core never sees a socket or a clock; the worker owns
the single timer (armed at `core.next_deadline()`, aioquic style) and everything that blocks
(certificate fetches, audit flushes, number-list reloads) runs off the event loop's hot path.

With `--workers N` the main process is a supervisor: it starts N worker processes that share the
configured ports through SO_REUSEPORT. The kernel spreads datagrams by source address, so each
worker also binds a private port of its own and puts it in its Via and Record-Route: responses
and in-dialog requests then come back to the worker holding the transaction and dialog state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from proxy.config import Config, ConfigError, Listener, load_config
from proxy.core.actions import (
    FetchCertificate,
    MessageDropped,
    Send,
    TransactionEnded,
    TrunkStateChanged,
)
from proxy.core.events import (
    CertificateFetched,
    ConfigReloaded,
    ConnectionClosed,
    ConnectionFailed,
    DatagramReceived,
    DrainStarted,
    Event,
    StreamMessageReceived,
    TimerFired,
)
from proxy.core.proxy import ProxyCore
from proxy.observability import Metrics, configure_logging, transaction_logger
from proxy.sip.errors import SipParseError
from proxy.transport.hub import Address, TransportHub
from proxy.transport.tls import client_context, server_context
from proxy.wiring import Components, build_components

log = structlog.get_logger("sipguard")
_now = time.time

# How often the worker flushes the audit queue and looks for number-list changes comes from
# `policy.audit.flush_interval_s` and `policy.reload_interval_s` (read at start). The audit
# crash-loss window is bounded by the flush interval (README, "Audit").

# Longest call the drain waits for; older entries are calls whose BYE we never saw.
DIALOG_MAX_AGE = 12 * 3600.0

# How often a worker looks at the certificate, key and CRL files its config names. A CRL is
# reissued daily or so and a certificate rotated a few times a year, by a job that writes the
# files: the worker reloads when they change, so revocations take effect without a SIGHUP.
PKI_WATCH_INTERVAL = 30.0


class Worker:
    """One process's proxy: transport hub + core + timer + background chores."""

    def __init__(
        self, config: Config, config_path: Path | None, *, index: int = 0, workers: int = 1
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.index = index
        self.workers = workers
        self.metrics = Metrics(worker=index)
        self.hub = TransportHub(
            self,
            max_message_size=config.routing.max_message_size,
            client_tls=_client_tls(config),
        )
        self.components: Components | None = None
        self.core: ProxyCore | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self.bound: list[tuple[str, Address]] = []
        self.private: list[tuple[str, Address]] = []
        self.draining = False
        # Call-IDs of calls established through this worker and not yet ended by a BYE: a
        # drain keeps proxying their in-dialog requests until they end or the deadline.
        # Call-ID -> when it was answered; a call whose BYE never crossed us ages out after
        # DIALOG_MAX_AGE so the table cannot grow without bound.
        self.dialogs: dict[str, float] = {}
        # (x5u hits, x5u misses, memo hits, memo misses) last published, per Components.
        self._cache_counts_seen: dict[int, tuple[int, int, int, int]] = {}
        self._pki_stamps = file_stamps(pki_files(config))
        # One line per transaction outcome (issue 2 §6), on a logger resolved once: the
        # arguments are not even built when the level filters info out.
        self._transaction_log = transaction_logger()
        enabled = getattr(self._transaction_log, "is_enabled_for", None)
        self._log_transactions = enabled is None or bool(enabled(logging.INFO))

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listener, build the core and start the chores."""
        shared = self.workers > 1
        for listener in self.config.listen:
            address = await self._bind(listener, listener.port, reuse_port=shared)
            self.bound.append((listener.transport, address))
            if shared:
                # A private port per worker (kernel-chosen) so responses find this worker.
                private = await self._bind(listener, 0, reuse_port=False)
                self.private.append((listener.transport, private))
        self.components = build_components(
            self.config, self.config_path, worker=self.index, metrics=self.metrics
        )
        _settle_heap()
        self.core = ProxyCore(
            self.config,
            source_steps=self.components.source_steps,
            trunk_steps=self.components.trunk_steps,
            logger=log.bind(worker=self.index),
            advertised=self._advertised(),
        )
        self.metrics.listeners_bound.set(len(self.bound))
        self._publish_trunk_states()
        self._dispatch(TimerFired())
        self._every(self.config.policy.audit.flush_interval_s, self._flush_audit)
        self._every(self.config.policy.reload_interval_s, self._poll_lists)
        self._every(PKI_WATCH_INTERVAL, self._watch_pki_files)
        log.info(
            "worker.started",
            worker=self.index,
            listen=[f"{t}:{a[0]}:{a[1]}" for t, a in self.bound],
            private=[f"{t}:{a[0]}:{a[1]}" for t, a in self.private],
        )

    def _publish_trunk_states(self) -> None:
        """Set sipguard_trunk_up for every configured trunk: the core reports only changes,
        and a trunk presumed up at start (or added by a reload) would otherwise have no sample."""
        if self.core is not None:
            for trunk, up in self.core.trunk_states().items():
                self.metrics.trunk_up.labels(trunk=trunk).set(1 if up else 0)

    def _advertised(self) -> list[tuple[str, Address]]:
        """The addresses this worker puts in Via/Record-Route, per transport and family
        (`advertise` names the host of its own family only)."""
        advertise = self.config.advertise
        chosen: list[tuple[str, Address]] = []
        for transport, address in self.private or self.bound:
            host = address[0]
            if advertise is not None and (":" in advertise) == (":" in host):
                host = advertise
            chosen.append((transport, (host, address[1])))
        return chosen

    async def _bind(self, listener: Listener, port: int, *, reuse_port: bool) -> Address:
        if listener.transport == "udp":
            return await self.hub.listen_udp(listener.host, port, reuse_port=reuse_port)
        context = None
        if listener.transport == "tls":
            assert listener.cert_file is not None and listener.key_file is not None
            context = server_context(
                listener.cert_file, listener.key_file, listener.ca_file, listener.verify_client
            )
        return await self.hub.listen_stream(
            listener.transport, listener.host, port, ssl_context=context, reuse_port=reuse_port
        )

    async def serve_forever(self) -> None:
        """Run until `stop()`."""
        await self._stopping.wait()

    async def drain(self, grace: float) -> None:
        """Graceful shutdown: refuse new dialogs, let the rest finish until `grace` elapses."""
        if self.core is None:
            return
        self.draining = True
        deadline = time.time() + grace
        self._dispatch(DrainStarted(deadline))
        log.info("drain.started", deadline_s=grace, dialogs=len(self.dialogs))
        while time.time() < deadline and (self.core.busy() or self.dialogs):
            await asyncio.sleep(0.05)
        log.info("drain.finished", busy=self.core.busy(), dialogs=len(self.dialogs))
        await self.stop()

    async def stop(self) -> None:
        """Flush the audit store, close the sockets, release `serve_forever`."""
        current = asyncio.current_task()
        for task in list(self._background):
            # drain() ends by calling stop(): it must not cancel itself half-way.
            if task is not current:
                task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self.components is not None:
            await self.components.aclose()
            await asyncio.get_running_loop().run_in_executor(None, self.components.close)
        await self.hub.close()
        self._stopping.set()

    # -- events from the transport hub --------------------------------------------------------

    def datagram_received(self, data: bytes, remote: Address, local: Address) -> None:
        """A UDP datagram arrived."""
        self._dispatch(DatagramReceived(data, remote, local))

    def stream_message_received(
        self,
        data: bytes,
        connection_id: int,
        remote: Address,
        local: Address,
        transport: str,
        tls_subject: str | None,
    ) -> None:
        """A framed message arrived on a TCP/TLS connection."""
        self._dispatch(
            StreamMessageReceived(data, connection_id, remote, local, transport, tls_subject)
        )

    def stream_error(self, error: SipParseError, connection_id: int) -> None:
        """A connection lost its framing; the hub closes it."""
        self.metrics.parse_errors.labels(kind="framing").inc()
        log.debug("stream.framing_error", connection=connection_id, reason=error.reason)

    def connection_closed(self, connection_id: int) -> None:
        """A connection went away."""
        self._dispatch(ConnectionClosed(connection_id))

    def connection_failed(self, transport: str, remote: Address, error: str) -> None:
        """A connection could not be opened: the core fails over, or retries over UDP
        (RFC 3261 §17.1.4, §18.1.1), instead of waiting for Timer B."""
        self._dispatch(ConnectionFailed(transport, remote, error))

    # -- the core -------------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        core = self.core
        if core is None:
            return
        now = _now()
        try:
            actions = core.handle(event, now)
        except Exception:
            # Anything escaping the core is our bug: count it, keep the loop alive, drop
            # only this message (docs/design.md, "Errors").
            self.metrics.internal_errors.inc()
            log.exception("core.internal_error", event=type(event).__name__)
            return
        if actions:
            send_udp = self.hub.send_udp
            for action in actions:
                # Sends over UDP are most of the actions: straight to the socket.
                if type(action) is Send and action.transport == "udp":
                    send_udp(action.remote, action.data, action.local)
                else:
                    self._execute(action, now)
        self._rearm()
        # The time spent here feeds the core's overload gauge (503 to new INVITEs when the
        # worker is busy nearly all the time).
        core.record_busy(now, _now())

    def _execute(self, action: object, now: float | None = None) -> None:
        if isinstance(action, Send):
            self.hub.send(
                action.transport,
                action.remote,
                action.data,
                action.connection_id,
                local=action.local,
            )
        elif isinstance(action, TransactionEnded):
            self.metrics.transaction_ended(action)
            if action.method == "INVITE" and 200 <= action.status < 300:
                self.dialogs[action.call_id] = _now() if now is None else now
            elif action.method == "BYE":
                self.dialogs.pop(action.call_id, None)
            if self._log_transactions:
                self._transaction_log.info(
                    "transaction",
                    call_id=action.call_id,
                    method=action.method,
                    source=action.origin,
                    trunk=action.trunk,
                    status=action.status,
                    duration_ms=round(action.duration * 1000, 1),
                )
        elif isinstance(action, MessageDropped):
            self.metrics.dropped.labels(reason=action.reason).inc()
        elif isinstance(action, TrunkStateChanged):
            self.metrics.trunk_up.labels(trunk=action.trunk).set(1 if action.up else 0)
            log.warning("trunk.state", trunk=action.trunk, up=action.up)
        elif isinstance(action, FetchCertificate):
            self._spawn(self._fetch(action.url))

    def _rearm(self) -> None:
        """Keep one loop timer at the core's earliest deadline, touching it only when needed.

        The timer armed already stays when it fires no later than the new deadline (plus
        the slack): firing early is harmless (the core finds nothing due and we re-arm),
        whereas cancelling and re-creating a loop timer after every message is not. It is
        armed `slack` past the deadline so that timers due within a few ms (the Timers
        J/K/L/M of consecutive calls) are handled in one wake-up."""
        core = self.core
        if core is None:
            return
        slack = 0.005
        deadline = core.next_deadline()
        armed = self._timer_deadline
        if self._timer is not None and (
            deadline is None or (armed is not None and armed <= deadline + slack)
        ):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = None
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        fire = deadline + slack
        self._timer_deadline = fire
        self._timer = loop.call_at(loop.time() + max(0.0, fire - _now()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        self._dispatch(TimerFired())

    # -- chores off the hot path ------------------------------------------------------------

    async def _fetch(self, url: str) -> None:
        assert self.components is not None
        started = time.perf_counter()
        try:
            await self.components.fetch_certificate(url)
        except Exception as exc:  # reported to the core as a failed fetch, never raised
            self.metrics.x5u_fetches.labels(result="error").inc()
            self._dispatch(CertificateFetched(url, False, str(exc) or type(exc).__name__))
            return
        self.metrics.x5u_fetch_seconds.observe(time.perf_counter() - started)
        self.metrics.x5u_fetches.labels(result="ok").inc()
        self._dispatch(CertificateFetched(url, True))

    async def _flush_audit(self) -> None:
        if self.components is not None:
            self.metrics.audit_queue.set(self.components.audit_backlog())
            self._publish_cache_counts(self.components)
            self._forget_old_dialogs(time.time())
            await asyncio.get_running_loop().run_in_executor(None, self.components.flush_audit)

    def _forget_old_dialogs(self, now: float) -> None:
        cutoff = now - DIALOG_MAX_AGE
        for call_id in [c for c, answered in self.dialogs.items() if answered < cutoff]:
            del self.dialogs[call_id]

    def _publish_cache_counts(self, components: Components) -> None:
        # The caches count plain ints on the hot path; Prometheus sees the deltas here.
        counts = (*components.certificate_cache_counts(), *components.policy_memo_counts())
        last = self._cache_counts_seen.get(id(components), (0, 0, 0, 0))
        x5u, memo = self.metrics.x5u_cache, self.metrics.policy_memo
        for counter, outcome, now_seen, before in (
            (x5u, "hit", counts[0], last[0]),
            (x5u, "miss", counts[1], last[1]),
            (memo, "hit", counts[2], last[2]),
            (memo, "miss", counts[3], last[3]),
        ):
            counter.labels(outcome=outcome).inc(now_seen - before)
        self._cache_counts_seen = {id(components): counts}

    async def _poll_lists(self) -> None:
        if self.components is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.components.refresh_lists)

    async def _watch_pki_files(self) -> None:
        """Reload when a certificate, key or CRL file of the config changed on disk (a new
        CRL must take effect without an operator's SIGHUP). A reload that fails keeps the
        running config, as SIGHUP does; the next change tries again."""
        files = pki_files(self.config)
        stamps = await asyncio.get_running_loop().run_in_executor(None, file_stamps, files)
        if stamps == self._pki_stamps:
            return
        self._pki_stamps = stamps
        log.info("pki.files_changed", worker=self.index)
        await self.reload()

    def _every(self, interval: float, chore: Any) -> None:
        async def loop_forever() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await chore()
                except Exception:
                    self.metrics.internal_errors.inc()
                    log.exception("chore.failed", chore=chore.__name__)

        self._spawn(loop_forever())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- health and reload ------------------------------------------------------------------

    def readiness(self) -> dict[str, bool]:
        """The /readyz checks: each must hold for the worker to take traffic."""
        core = self.core
        components = self.components
        return {
            "listeners_bound": len(self.bound) == len(self.config.listen),
            "trunk_up": core is not None and any(core.trunk_states().values()),
            "signing_ready": components is not None and components.signing_ready(),
            "audit_writable": components is not None and components.audit_writable(),
            "not_draining": not self.draining,
        }

    async def request_reload(self) -> bool:
        """Reload every worker: directly with one, through the supervisor's SIGHUP with several."""
        if self.workers > 1:
            os.kill(os.getppid(), signal.SIGHUP)
            return True
        return await self.reload()

    async def reload(self) -> bool:
        """Re-read the config file and swap it in; a bad file keeps the running config."""
        if self.config_path is None:
            return False
        loop = asyncio.get_running_loop()
        try:
            config = await loop.run_in_executor(None, load_config, self.config_path)
            # Built on the loop thread: the hot path uses these stores from this thread.
            components = build_components(config, self.config_path, self.index, self.metrics)
        except (ConfigError, OSError, ValueError) as exc:
            self.metrics.reloads.labels(result="failed").inc()
            log.error("reload.failed", worker=self.index, error=str(exc))
            return False
        old = self.components
        self.config = config
        self.components = components
        self._pki_stamps = file_stamps(pki_files(config))
        _settle_heap()
        assert self.core is not None
        self.core.replace_steps(components.source_steps, components.trunk_steps)
        self._dispatch(ConfigReloaded(config))
        self._publish_trunk_states()
        if old is not None:
            await old.aclose()
            await loop.run_in_executor(None, old.close)
        self.metrics.reloads.labels(result="ok").inc()
        log.info("reload.done", worker=self.index)
        return True


#: Full-collection threshold of a worker, in middle-generation collections (CPython's
#: default is 10). A call leaves ~80 tracked objects alive for Timers J/K (up to 32 s) but
#: almost no cyclic garbage (measured: < 1 object per call; the rest is freed by reference
#: counting), so each full collection walked the whole live set for nothing: with the
#: default, collections took ~15 % of a worker's CPU under SIPp load at 400 calls/s (1.5 s
#: per 6,000 calls, bench/README.md), 0.4 s with 1,000. The young and middle generations
#: keep their defaults, so their pauses stay short.
GC_OLDEST_THRESHOLD = 1_000


def pki_files(config: Config) -> tuple[Path, ...]:
    """The certificate, key and CRL files the signing and verification steps load."""
    files: list[Path] = []
    signing = config.signing
    if signing.enabled:
        files += [path for path in (signing.key_file, signing.cert_file) if path is not None]
        files += signing.chain
    for trunk in config.trunks:
        verification = trunk.verification
        if verification.enabled:
            files += [anchor.file for anchor in verification.trust_anchors]
            files += verification.intermediates
            for crl in verification.crls:
                files += [crl.file, crl.signer]
    return tuple(dict.fromkeys(files))


def file_stamps(files: tuple[Path, ...]) -> tuple[tuple[int, int] | None, ...]:
    """(modification time, size) of each file; None for one that cannot be read."""
    stamps: list[tuple[int, int] | None] = []
    for path in files:
        try:
            status = path.stat()
        except OSError:
            stamps.append(None)
        else:
            stamps.append((status.st_mtime_ns, status.st_size))
    return tuple(stamps)


def _settle_heap() -> None:
    """Move everything loaded so far (number-list index, plan, certificates) out of the
    garbage collector's reach: a million listed numbers otherwise make every full collection
    a pause of tens of milliseconds on the hot path (bench/bench_policy.py). Then run full
    collections less often (`GC_OLDEST_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, GC_OLDEST_THRESHOLD)


def _client_tls(config: Config) -> ssl.SSLContext:
    """The TLS client context towards trunks: the system store plus every trunk's
    `tls_ca_file` (one context per worker, so each listed CA is trusted for every TLS trunk)."""
    context = client_context(None)
    for trunk in config.trunks:
        if trunk.tls_ca_file is not None:
            context.load_verify_locations(trunk.tls_ca_file)
    return context


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(config: Config, config_path: Path | None, index: int, workers: int) -> int:
    worker = Worker(config, config_path, index=index, workers=workers)
    await worker.start()
    loop = asyncio.get_running_loop()

    def on_term() -> None:
        if not worker.draining:
            worker._spawn(worker.drain(config.routing.drain_seconds))

    def on_hup() -> None:
        worker._spawn(worker.reload())

    loop.add_signal_handler(signal.SIGTERM, on_term)
    loop.add_signal_handler(signal.SIGINT, on_term)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    admin = None
    if config.admin.enabled and index == 0:
        from proxy.admin import start_admin

        admin = await start_admin(config.admin, worker)
    x5u_server = None
    if config.signing.enabled and config.signing.lab_x5u_server is not None and index == 0:
        from proxy.x5u_server import start_x5u_server

        x5u_server = await start_x5u_server(config.signing)
    await worker.serve_forever()
    for runner in (admin, x5u_server):
        if runner is not None:
            await runner.cleanup()
    log.info("worker.stopped", worker=index)
    return 0


def run(
    config: Config,
    *,
    config_path: Path | None = None,
    workers: int = 1,
    worker_index: int | None = None,
) -> int:
    """Run the proxy in the foreground until SIGTERM/SIGINT; returns the exit code."""
    configure_logging(config.logging)
    _install_uvloop()
    if workers <= 1 or worker_index is not None:
        return asyncio.run(_serve(config, config_path, worker_index or 0, max(workers, 1)))
    return _supervise(config_path, workers)


def _supervise(config_path: Path | None, workers: int) -> int:
    """Start `workers` processes and relay SIGHUP/SIGTERM/SIGINT to them."""
    if config_path is None:
        raise ValueError("several workers need a config file to start from")
    # prometheus-client's multiprocess mode: every worker writes its samples under this
    # folder and worker 0's /metrics sums them. It must be set before the workers import
    # prometheus_client, hence in their environment.
    metrics_dir = tempfile.mkdtemp(prefix="sipguard-metrics-")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    children: list[subprocess.Popen[bytes]] = []
    for index in range(workers):
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "proxy",
                    "run",
                    "--config",
                    str(config_path),
                    "--workers",
                    str(workers),
                    "--worker-index",
                    str(index),
                ],
                env=env,
            )
        )

    def relay(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, relay)
    codes = [child.wait() for child in children]
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return max(codes, default=0)
