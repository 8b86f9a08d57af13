"""Real processes for integration tests: the proxy itself and SIPp peers, on free loopback ports.

Every wait is bounded; nothing sleeps a fixed time. SIPp runs with -timeout/-timeout_error so a
lost message fails the run instead of hanging it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        try:
            with socket.socket(socket.AF_INET, other) as check:
                check.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def require_tool(name: str) -> str:
    """The path of a tool the tests need; in CI its absence is a failure, elsewhere a skip."""
    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def terminate(process: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM, wait up to `timeout` s, then SIGKILL; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


def sip_options(host: str, port: int, timeout: float = 0.5) -> bytes | None:
    """Send one OPTIONS to the proxy over UDP and return the first answer, if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local_port = sock.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex
        message = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{local_port};branch={branch};rport\r\n"
            f"From: <sip:probe@{host}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@probe\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sock.settimeout(timeout)
        sock.sendto(message, (host, port))
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return None
        return data


@dataclass
class ProxyProcess:
    """A running `sipguard run` on a generated config."""

    config_path: Path
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    admin_port: int | None = None

    def log_text(self) -> str:
        """Everything the proxy printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        """Send a signal to the proxy's main process."""
        self.process.send_signal(signum)

    def drain_seconds(self) -> float:
        """routing.drain_seconds from the config file (30, the default, when absent or bad)."""
        try:
            routing = (yaml.safe_load(self.config_path.read_text()) or {}).get("routing") or {}
            value = float(routing.get("drain_seconds", 30.0))
        except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
            return 30.0
        return value if value >= 0 else 30.0

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, then SIGKILL after `timeout` (default: the drain deadline plus 10 s, so a
        graceful drain is never cut short); returns the exit code."""
        if timeout is None:
            timeout = self.drain_seconds() + 10.0
        return terminate(self.process, timeout)


def start_proxy(
    tmp_path: Path,
    config: Mapping[str, Any],
    *,
    workers: int = 1,
    ready_timeout: float = 20.0,
    extra_env: Mapping[str, str] | None = None,
) -> ProxyProcess:
    """Write `config`, start the proxy, and wait until it answers OPTIONS on its first listener."""
    config_path = tmp_path / f"sipguard-{uuid.uuid4().hex[:6]}.yaml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    listener = config["listen"][0]
    host, port = listener["host"], int(listener["port"])
    log_path = config_path.with_suffix(".log")
    env = dict(os.environ)
    env.update(extra_env or {})
    env["PYTHONUNBUFFERED"] = "1"
    # The proxy runs from this checkout whatever `pip install -e` pointed at last.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "run", "--config", str(config_path),
             "--workers", str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
    proxy = ProxyProcess(config_path, host, port, process, log_path,
                         admin_port=(config.get("admin") or {}).get("port"))
    ready = wait_until(
        lambda: process.poll() is not None or sip_options(host, port) is not None,
        ready_timeout,
        interval=0.1,
    )
    if process.poll() is not None or not ready:
        proxy.stop()
        raise RuntimeError(f"proxy did not start:\n{proxy.log_text()}")
    return proxy


@dataclass
class Sipp:
    """One SIPp process."""

    args: list[str]
    process: subprocess.Popen[bytes]
    workdir: Path
    name: str
    output: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)

    def wait(self, timeout: float) -> int:
        """Wait for SIPp to exit (bounded); returns its exit code."""
        try:
            self.output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output, _ = self.process.communicate(timeout=5)
        return self.process.returncode

    def report(self) -> str:
        """SIPp's output and error log, for assertion messages."""
        text = self.output.decode(errors="replace")[-4000:]
        for path in sorted(self.workdir.glob(f"{self.name}*_errors.log")):
            text += f"\n--- {path.name}\n" + path.read_text(errors="replace")[-4000:]
        return f"sipp {' '.join(self.args)}\n{text}"

    def messages(self) -> str:
        """The -trace_msg log: every message SIPp sent and received."""
        return "\n".join(
            path.read_text(errors="replace")
            for path in sorted(self.workdir.glob(f"{self.name}*_messages.log"))
        )


def start_sipp(
    workdir: Path,
    scenario: str,
    *,
    local_port: int,
    remote: tuple[str, int] | None = None,
    calls: int = 1,
    transport: str = "u1",
    keys: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
    local_ip: str = "127.0.0.1",
    trace_msg: bool = True,
) -> Sipp:
    """Start SIPp on `scenario` (a file under scenarios/ or a builtin like 'uac')."""
    sipp = require_tool("sipp")
    path = SCENARIOS / scenario
    name = Path(scenario).stem + f"_{uuid.uuid4().hex[:6]}"
    scenario_file = workdir / f"{name}.xml"
    if path.exists():
        scenario_file.write_bytes(path.read_bytes())
        scenario_args = ["-sf", str(scenario_file)]
    else:
        scenario_args = ["-sn", scenario]
    args = [
        sipp, *scenario_args,
        "-i", local_ip, "-p", str(local_port), "-t", transport,
        "-m", str(calls), "-timeout", f"{int(timeout)}s", "-timeout_error",
        "-nostdin", "-trace_err", "-max_socket", "200", "-d", "100",
    ]
    if trace_msg:
        args.append("-trace_msg")
    merged = {"from_user": "+33162000001", "pai_user": "+33162000001"}
    merged.update(keys or {})
    for key, value in merged.items():
        args += ["-key", key, value]
    args += list(extra_args)
    if remote is not None:
        args.append(f"{remote[0]}:{remote[1]}")
    process = subprocess.Popen(
        args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    return Sipp(args, process, workdir, name)


@contextlib.contextmanager
def running(*processes: Sipp | ProxyProcess | Stunnel) -> Iterator[None]:
    """Make sure every process is gone when the block ends, whatever happened."""
    try:
        yield
    finally:
        for item in processes:
            if isinstance(item, ProxyProcess | Stunnel):
                item.stop()
            elif item.process.poll() is None:
                item.process.kill()
                item.process.communicate(timeout=5)


# --- helpers for the policy and identity call tests ------------------------------------------


def scenario_variant(
    workdir: Path, scenario: str, replacements: Mapping[str, str], *, name: str | None = None
) -> str:
    """Copy scenarios/`scenario` into `workdir` with text replaced; returns its absolute path.

    `start_sipp` accepts the result as its scenario (an absolute path wins over SCENARIOS).
    """
    text = (SCENARIOS / scenario).read_text(encoding="iso-8859-1")
    for old, new in replacements.items():
        if old not in text:
            raise ValueError(f"{old!r} is not in {scenario}")
        text = text.replace(old, new)
    target = workdir / (name or f"{Path(scenario).stem}_variant_{uuid.uuid4().hex[:6]}.xml")
    target.write_text(text, encoding="iso-8859-1")
    return str(target)


def received_messages(trace: str, start_line: str) -> list[str]:
    """The messages of a SIPp -trace_msg log that were received and start with `start_line`.

    `start_line` is a method ("INVITE") or a status line prefix ("SIP/2.0 403").
    """
    found: list[str] = []
    for block in trace.split("-----------------------------------------------"):
        head, _, message = block.partition("\n\n")
        if " message received " not in head:
            continue
        message = message.lstrip("\r\n")
        if message.startswith(start_line):
            found.append(message)
    return found


def header_values(message: str, name: str) -> list[str]:
    """Every value of header `name` (case-insensitive, no compact forms) in one message."""
    values: list[str] = []
    head = message.split("\n\n", 1)[0]
    for line in head.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            values.append(value.strip())
    return values


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run `python -m proxy ARGS` (the sipguard command) with a timeout; no shell."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd or REPO,
    )


class SipSink:
    """A UDP trunk that must receive nothing but OPTIONS: it records every datagram and answers
    OPTIONS with 200 (so trunk monitoring keeps it up)."""

    def __init__(self, host: str, port: int) -> None:
        import threading

        self.address = (host, port)
        self.received: list[bytes] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(self.address)
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sink-{port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, remote = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append(data)
            if data.startswith(b"OPTIONS "):
                self._sock.sendto(self._ok(data), remote)

    @staticmethod
    def _ok(request: bytes) -> bytes:
        head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
        keep = (b"via:", b"v:", b"from:", b"f:", b"to:", b"t:", b"call-id:", b"i:", b"cseq:")
        lines = [line for line in head if line.lower().startswith(keep)]
        return b"\r\n".join([b"SIP/2.0 200 OK", *lines, b"Content-Length: 0", b"", b""])

    def requests(self, method: str) -> list[bytes]:
        """Received requests of `method`."""
        return [data for data in self.received if data.startswith(method.encode() + b" ")]

    def close(self) -> None:
        """Stop the reader thread and close the socket."""
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


# --- TLS peers: a throw-away PKI and stunnel4 in front of SIPp (Debian's SIPp has no TLS) ---


@dataclass(frozen=True)
class TestPki:
    """A self-signed CA and one certificate it signed for a loopback address (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_test_pki(directory: Path, ip: str = "127.0.0.1") -> TestPki:
    """Write a CA and a server/client certificate for `ip` (IP SAN) into `directory`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sipguard test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pki = TestPki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    return pki


def tcp_listening(host: str, port: int) -> bool:
    """True when some socket listens on TCP host:port (read from /proc, no connection made)."""
    packed = socket.inet_aton(host)
    wanted = {f"{int.from_bytes(packed, 'little'):08X}:{port:04X}", f"00000000:{port:04X}"}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[1] in wanted and fields[3] == "0A":
                return True
    return False


@dataclass
class Stunnel:
    """A foreground stunnel4 process with one service."""

    process: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path

    def log_text(self) -> str:
        """What stunnel logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        terminate(self.process, 5)


def start_stunnel(
    workdir: Path,
    *,
    accept: tuple[str, int],
    connect: tuple[str, int],
    client: bool,
    pki: TestPki,
    ready_timeout: float = 10.0,
) -> Stunnel:
    """Start stunnel4: client mode (plain TCP in, TLS out, peer checked against the test CA
    and its IP) or server mode (TLS in with the test certificate, plain TCP out)."""
    binary = shutil.which("stunnel4") or shutil.which("stunnel")
    if binary is None:
        require_tool("stunnel4")
        raise AssertionError("unreachable")
    name = f"stunnel-{'client' if client else 'server'}-{uuid.uuid4().hex[:6]}"
    lines = ["foreground = yes", "pid =", "debug = 5", "syslog = no",
             f"[{name}]", f"accept = {accept[0]}:{accept[1]}",
             f"connect = {connect[0]}:{connect[1]}"]
    if client:
        lines += ["client = yes", f"CAfile = {pki.ca_file}", "verifyChain = yes",
                  f"checkIP = {connect[0]}"]
    else:
        lines += [f"cert = {pki.cert_file}", f"key = {pki.key_file}"]
    config_path = workdir / f"{name}.conf"
    config_path.write_text("\n".join(lines) + "\n")
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([binary, str(config_path)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    tunnel = Stunnel(process, config_path, log_path)
    ready = wait_until(
        lambda: process.poll() is not None or tcp_listening(accept[0], accept[1]), ready_timeout
    )
    if process.poll() is not None or not ready:
        tunnel.stop()
        raise RuntimeError(f"stunnel did not start:\n{tunnel.log_text()}")
    return tunnel


def log_events(proxy: ProxyProcess, event: str) -> list[dict[str, Any]]:
    """The proxy's JSON log lines whose `event` is `event`, in order."""
    import json

    found = []
    for line in proxy.log_text().splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found
