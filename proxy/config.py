"""YAML configuration, validated once at start (and on reload).

Every error names the file, the key path and the problem, so an engineer fixing a config at
3 a.m. does not have to guess. The sections owned by other parts (policy, signing,
verification) are their own pydantic models, composed here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from proxy.policy.settings import PolicySettings, SourcePolicy
from stir_shaken.settings import SigningSettings, TrunkVerification

TransportName = Literal["udp", "tcp", "tls"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listener(_Model):
    """One socket the proxy listens on."""

    transport: TransportName = "udp"
    host: str = "127.0.0.1"
    port: int = Field(5060, ge=0, le=65535)
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    verify_client: bool = False

    @field_validator("host")
    @classmethod
    def _literal_address(cls, value: str) -> str:
        # A listener binds to an address, never to a name we would have to resolve.
        ipaddress.ip_address(value)
        return value

    @model_validator(mode="after")
    def _tls_needs_certificate(self) -> Listener:
        if self.transport == "tls" and (self.cert_file is None or self.key_file is None):
            raise ValueError("a tls listener needs cert_file and key_file")
        return self


class Timers(_Model):
    """RFC 3261 timer base values, in seconds."""

    t1: float = Field(0.5, gt=0)
    t2: float = Field(4.0, gt=0)
    t4: float = Field(5.0, gt=0)
    timer_c: float = Field(180.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Timers:
        if self.t2 < self.t1:
            raise ValueError("t2 must not be smaller than t1")
        # RFC 3261 §16.6 step 11: Timer C MUST be greater than 3 minutes; we allow shorter
        # values for labs but never below T1.
        if self.timer_c < self.t1:
            raise ValueError("timer_c must not be smaller than t1")
        return self


class InboundRoute(_Model):
    """Calls from a trunk whose called number starts with `prefix` go to `pbx` (a source)."""

    prefix: str
    pbx: str


class InboundRouting(_Model):
    """Where initial requests arriving from a trunk go."""

    default_pbx: str | None = None
    routes: tuple[InboundRoute, ...] = ()


class Trunk(_Model):
    """An operator trunk: where calls from the sources leave."""

    name: str
    host: str
    port: int = Field(5060, ge=1, le=65535)
    transport: TransportName = "udp"
    udp_only: bool = False
    backup: str | None = None
    options_interval: float = Field(30.0, gt=0)
    options_failures: int = Field(3, ge=1)
    inbound: InboundRouting = InboundRouting()
    tls_server_name: str | None = None
    tls_ca_file: Path | None = None
    """PEM file of the CA(s) that sign this trunk's TLS certificate, trusted in addition to
    the system store (for `transport: tls` towards a private PKI)."""
    verification: TrunkVerification = TrunkVerification()


class PbxTarget(_Model):
    """Where calls for a source (the PBX behind it) are sent."""

    host: str
    port: int = Field(5060, ge=1, le=65535)
    transport: TransportName = "udp"


class Source(_Model):
    """A call-centre PBX, dialer or SMS platform allowed to send through sipguard."""

    name: str
    addresses: tuple[str, ...]
    transports: tuple[TransportName, ...] = ("udp", "tcp", "tls")
    tls_subject: str | None = None
    trunk: str
    pbx: PbxTarget | None = None
    policy: SourcePolicy = SourcePolicy()

    @field_validator("addresses")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("a source needs at least one address or CIDR")
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value


class Routing(_Model):
    """Routing choices that have a safe default."""

    preloaded_route: Literal["strip", "reject"] = "strip"
    register_requests: Literal["reject"] = "reject"
    resolve_hostnames: bool = False
    max_message_size: int = Field(65535, ge=1500, le=1048576)
    udp_mtu_threshold: int = Field(1300, ge=500)
    tcp_refused_memory: float = Field(300.0, ge=0)
    """Seconds a trunk whose TCP connection failed gets its large requests over UDP at once,
    instead of a new TCP attempt (and, behind a silent firewall, a connect timeout of post-dial
    delay) on every call; 0 tries TCP every time."""
    drain_seconds: float = Field(30.0, ge=0)
    overload_protection: bool = True
    """Answer new INVITEs 503 + Retry-After while the worker is overloaded (core/overload.py)."""
    overload_period: float = Field(3.0, gt=0)
    """How long the worker must run back to back, never idle, before it counts as overloaded.
    INVITE retransmissions (the worker is late by T1) trip it sooner; at 1 s the full-call
    bench shed 40 % of the calls at a rate the worker was still carrying without one
    retransmission (bench/README.md)."""
    retry_after: int = Field(30, ge=0)


class Logging(_Model):
    """structlog output."""

    format: Literal["json", "console"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Admin(_Model):
    """The admin HTTP listener (metrics, health, reload)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9090, ge=0, le=65535)
    token: str | None = None


class Config(_Model):
    """The whole sipguard configuration."""

    listen: tuple[Listener, ...] = (Listener(),)
    advertise: str | None = None
    timers: Timers = Timers()
    routing: Routing = Routing()
    trunks: tuple[Trunk, ...]
    sources: tuple[Source, ...] = ()
    policy: PolicySettings = PolicySettings()
    signing: SigningSettings = SigningSettings()
    logging: Logging = Logging()
    admin: Admin = Admin()

    @model_validator(mode="after")
    def _references(self) -> Config:
        trunk_names = [t.name for t in self.trunks]
        source_names = [s.name for s in self.sources]
        _unique(trunk_names, "trunks")
        _unique(source_names, "sources")
        for index, trunk in enumerate(self.trunks):
            if trunk.backup is not None and trunk.backup not in trunk_names:
                raise _RefError(("trunks", index, "backup"), f"no trunk named {trunk.backup!r}")
            if trunk.backup == trunk.name:
                raise _RefError(("trunks", index, "backup"), "a trunk cannot back itself up")
            pbx_names = [r.pbx for r in trunk.inbound.routes]
            if trunk.inbound.default_pbx is not None:
                pbx_names.append(trunk.inbound.default_pbx)
            for name in pbx_names:
                if name not in source_names:
                    raise _RefError(("trunks", index, "inbound"), f"no source named {name!r}")
        for index, source in enumerate(self.sources):
            if source.trunk not in trunk_names:
                raise _RefError(("sources", index, "trunk"), f"no trunk named {source.trunk!r}")
        return self

    def trunk(self, name: str) -> Trunk:
        """The trunk called `name` (names are validated at load)."""
        for trunk in self.trunks:
            if trunk.name == name:
                return trunk
        raise KeyError(name)

    def source(self, name: str) -> Source:
        """The source called `name` (names are validated at load)."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


class _RefError(ValueError):
    """A cross-reference error; carries the key path so the message can name it."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{_format_path(path)}: {message}")


def _unique(names: Sequence[str], section: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{section}: the name {name!r} is used twice")
        seen.add(name)


class ConfigError(Exception):
    """The configuration file cannot be used; `str()` names file, key and problem."""

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{self.path}: invalid configuration\n{lines}")


def _format_path(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def parse_config(data: Any, path: Path | str = "<config>") -> Config:
    """Validate already-loaded YAML data; `path` only names the file in error messages.

    Relative paths in the configuration are taken from the working directory the proxy is
    started in (docs/deployment.md), as most daemons do.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, ["(top level): expected a mapping of sections"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = _format_path(
                [p for p in error["loc"] if not isinstance(p, str) or not p.startswith("function-")]
            )
            message = error["msg"].removeprefix("Value error, ")
            # Cross-reference errors carry their own key path in the message.
            problems.append(
                message
                if location == "(top level)" and ": " in message
                else f"{location}: {message}"
            )
        raise ConfigError(path, problems) from None


def check_signing_credentials(config: Config) -> str | None:
    """Why the configured signing key cannot be used (permissions, mismatch), or None.

    Issue 4 §4: the proxy refuses to start on a key readable by others or one that does not
    match its certificate, rather than running in signing outage.
    """
    signing = config.signing
    if not signing.enabled:
        return None
    if signing.key_file is None or signing.cert_file is None:
        return "signing.key_file and signing.cert_file are required when signing is enabled"
    from stir_shaken.keys import KeyLoadError, load_credentials

    try:
        load_credentials(signing.key_file, signing.cert_file, list(signing.chain))
    except KeyLoadError as exc:
        return f"signing: {exc}"
    return None


def load_config(path: Path | str) -> Config:
    """Read and validate a YAML configuration file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, [f"(file): cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(file, [f"{where}: YAML syntax: {problem}"]) from None
    return parse_config(data, file)
