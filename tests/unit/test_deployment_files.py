"""Deployment files (docker/, .dockerignore) checked without a Docker engine.

These hold the structure and the cross-references a lint cannot see: the compose network's
static addresses against the sipguard config's sources and trunks, Prometheus's target against
the admin listener, the dashboard's PromQL against the metrics proxy/observability.py defines,
stop timeouts against the drain time, the .dockerignore against what the Dockerfile copies.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from proxy.config import Config, Routing, load_config
from proxy.observability import Metrics

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
SIPGUARD_CONFIG = DOCKER / "sipguard.compose.yaml"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _config() -> Config:
    return load_config(SIPGUARD_CONFIG)


def _address(service: dict[str, Any]) -> str:
    networks = service["networks"]
    assert isinstance(networks, dict), "services need a static ipv4_address"
    (settings,) = networks.values()
    return str(settings["ipv4_address"])


def _seconds(text: str) -> float:
    """A compose duration ('30s', '1m30s') in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), text
    return sum(float(n) * units[u] for n, u in parts)


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    pairs = []
    for text in logical:
        keyword, _, rest = text.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    pairs = _instructions(dockerfile)
    starts = [i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM"]
    return pairs[starts[-1] :]


def _unit(path: Path) -> dict[str, list[str]]:
    """Key -> every value of the [Service]-style unit file (keys may repeat)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_compose_has_the_demo_services() -> None:
    """sipguard, pbx, trunk and prometheus are defined, each with an image or a build."""
    services = _compose()["services"]
    for name in ("sipguard", "pbx", "trunk", "prometheus"):
        assert name in services, name
        assert "image" in services[name] or "build" in services[name], name
    assert services.get("grafana", {}).get("profiles") == ["grafana"], "grafana stays optional"
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            context = (DOCKER / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name


def test_compose_sipguard_service() -> None:
    """sipguard mounts the demo config, has a /healthz check and a stop grace above the drain."""
    sipguard = _compose()["services"]["sipguard"]
    mounts = [v.split(":") for v in sipguard["volumes"] if isinstance(v, str)]
    assert ["./sipguard.compose.yaml", "/etc/sipguard/sipguard.yaml", "ro"] in mounts
    assert "/healthz" in " ".join(sipguard["healthcheck"]["test"])
    assert _seconds(sipguard["stop_grace_period"]) > _config().routing.drain_seconds
    for port in sipguard.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"publish admin on loopback only: {port}"
    pbx = _compose()["services"]["pbx"]
    assert pbx["depends_on"]["sipguard"]["condition"] == "service_healthy"


def test_compose_addresses_match_the_sipguard_config() -> None:
    """Static addresses: pbx in the source CIDR, trunk = trunks[0].host, sipguard = listeners."""
    compose = _compose()
    services = compose["services"]
    (network,) = compose["networks"].values()
    subnet = ipaddress.ip_network(network["ipam"]["config"][0]["subnet"])
    addresses = {name: _address(service) for name, service in services.items()}
    for name, address in addresses.items():
        assert ipaddress.ip_address(address) in subnet, name
    assert len(set(addresses.values())) == len(addresses), "addresses must be distinct"
    config = _config()
    (source,) = config.sources
    pbx = ipaddress.ip_address(addresses["pbx"])
    assert any(pbx in ipaddress.ip_network(cidr, strict=False) for cidr in source.addresses)
    for name, address in addresses.items():
        if name != "pbx":
            assert not any(
                ipaddress.ip_address(address) in ipaddress.ip_network(c, strict=False)
                for c in source.addresses
            ), f"{name} must not count as the source"
    (trunk,) = config.trunks
    assert trunk.host == addresses["trunk"]
    assert {listener.host for listener in config.listen} == {addresses["sipguard"]}
    assert f"{addresses['sipguard']}:{config.listen[0].port}" in services["pbx"]["command"]
    assert f"-i {addresses['trunk']} -p {trunk.port}" in services["trunk"]["command"]
    assert "-aa" in services["trunk"]["command"].split(), "the trunk must answer OPTIONS pings"


def test_compose_scenarios_exist() -> None:
    """Every -sf scenario the SIPp services run is in the bind-mounted scenario folder."""
    services = _compose()["services"]
    for name in ("pbx", "trunk"):
        service = services[name]
        mounts = dict(v.split(":")[:2][::-1] for v in service["volumes"])
        scenario = re.search(r"-sf (\S+)", service["command"])
        assert scenario is not None, name
        folder, file = scenario.group(1).rsplit("/", 1)
        assert (DOCKER / mounts[folder] / file).is_file(), scenario.group(1)


def test_demo_config_passes_check_config() -> None:
    """`sipguard check-config docker/sipguard.compose.yaml` exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", str(SIPGUARD_CONFIG)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_prometheus_scrapes_the_admin_listener() -> None:
    """The demo admin listener is reachable in the network and Prometheus targets its port."""
    config = _config()
    assert config.admin.enabled
    assert config.admin.host == "0.0.0.0"
    prometheus = yaml.safe_load((DOCKER / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [
        t
        for job in prometheus["scrape_configs"]
        for s in job["static_configs"]
        for t in s["targets"]
    ]
    assert targets == [f"sipguard:{config.admin.port}"]
    mounts = _compose()["services"]["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_dockerfile_runtime_stage() -> None:
    """The final stage is slim, runs as a non-root user, exposes SIP/admin and checks /healthz."""
    pairs = _instructions(DOCKER / "Dockerfile")
    args = {a for k, a in pairs if k == "ARG"}
    assert "PYTHON_IMAGE=python:3.11-slim-bookworm" in args
    stage = _final_stage(DOCKER / "Dockerfile")
    assert stage[0] == ("FROM", "${PYTHON_IMAGE}")
    users = [a for k, a in stage if k == "USER"]
    assert users, "the runtime stage must set USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    exposed = " ".join(a for k, a in stage if k == "EXPOSE").split()
    assert {"5060/udp", "5060/tcp", "9090/tcp"} <= set(exposed)
    (healthcheck,) = [a for k, a in stage if k == "HEALTHCHECK"]
    assert "CMD" in healthcheck and "python" in healthcheck and "curl" not in healthcheck
    assert "SIPGUARD_HEALTH_URL=http://127.0.0.1:9090/healthz" in " ".join(
        a for k, a in stage if k == "ENV"
    )
    assert ("ENTRYPOINT", '["sipguard"]') in stage
    assert ("CMD", '["run", "--config", "/etc/sipguard/sipguard.yaml"]') in stage
    assert any(k == "RUN" and "pip install ." in a for k, a in pairs)


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    """Every COPY source from the build context is re-included by the root .dockerignore."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", "the .dockerignore is a whitelist"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    for keyword, args in _instructions(DOCKER / "Dockerfile"):
        if keyword != "COPY" or args.startswith("--from"):
            continue
        for source in args.split()[:-1]:
            name = source.rstrip("/").replace("README.m[d]", "README.md")
            parents = {str(p) for p in Path(name).parents} | {name}
            assert parents & allowed, f"{source} is excluded by .dockerignore"
            assert (ROOT / name).exists() or name == "README.md", source


def _metric_names() -> tuple[set[str], dict[str, set[str]]]:
    """Exposed sample names and label names of every metric Metrics defines."""
    registry = CollectorRegistry()
    metrics = Metrics(registry=registry)
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    for collector in vars(metrics).values():
        if not hasattr(collector, "_name"):
            continue
        base, kind = collector._name, collector._type
        exposed = {
            "counter": [f"{base}_total"],
            "gauge": [base],
            "histogram": [f"{base}_bucket", f"{base}_sum", f"{base}_count"],
        }[kind]
        for name in exposed:
            names.add(name)
            labels[name] = set(collector._labelnames) | ({"le"} if kind == "histogram" else set())
    return names, labels


def _expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in _expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in _expressions(item)]
    return []


def test_dashboard_queries_existing_metrics_and_labels() -> None:
    """Every sipguard_* name and label the dashboard's PromQL uses is defined in observability."""
    dashboard = json.loads((DOCKER / "grafana-dashboard.json").read_text(encoding="utf-8"))
    names, labels = _metric_names()
    expressions = _expressions(dashboard)
    assert len(expressions) >= 20
    used: set[str] = set()
    for expr in expressions:
        in_expr = set(re.findall(r"\bsipguard_[a-z0-9_]+", expr))
        assert in_expr, expr
        unknown = in_expr - names
        assert not unknown, f"{expr}: not defined in proxy/observability.py: {unknown}"
        used |= in_expr
        known_labels = set().union(*(labels[n] for n in in_expr))
        for name, matchers in re.findall(r"(sipguard_[a-z0-9_]+)\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
                assert label in labels[name], f"{expr}: {name} has no label {label}"
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (part.strip() for part in group.split(",")):
                assert label in known_labels, f"{expr}: no metric here has label {label}"
    wanted = {
        "sipguard_transactions_total",
        "sipguard_transaction_seconds_bucket",
        "sipguard_policy_verdicts_total",
        "sipguard_identity_total",
        "sipguard_x5u_fetches_total",
        "sipguard_x5u_cache_total",
        "sipguard_policy_memo_total",
        "sipguard_trunk_up",
        "sipguard_parse_errors_total",
        "sipguard_internal_errors_total",
        "sipguard_audit_queue_depth",
    }
    assert wanted <= used, f"dashboard lacks {wanted - used}"


def test_dashboard_panels_are_well_formed() -> None:
    """Panel ids are unique, every panel uses the datasource variable, the uid is fixed."""
    dashboard = json.loads((DOCKER / "grafana-dashboard.json").read_text(encoding="utf-8"))
    assert dashboard["uid"] == "sipguard-overview"
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert "datasource" in variables
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["refId"] for t in panel["targets"]), panel["title"]


def test_systemd_unit_is_hardened_and_drains() -> None:
    """Reload by SIGHUP, stop by SIGTERM with time for the drain, no root, read-only system."""
    unit = _unit(DOCKER / "sipguard.service")
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["KillSignal"] == ["SIGTERM"]
    default_drain = Routing().drain_seconds
    example_drain = load_config(ROOT / "configs" / "example.yaml").routing.drain_seconds
    assert float(unit["TimeoutStopSec"][0]) > max(default_drain, example_drain)
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["StateDirectory"] == ["sipguard"]
    assert unit["WorkingDirectory"] == ["/var/lib/sipguard"]
    assert unit.get("User", ["root"])[0] not in ("root", "0") or unit.get("DynamicUser") == ["yes"]
    assert unit["NoNewPrivileges"] == ["yes"]
    # 5060 and 9090 need no privilege: no ambient capability is granted.
    assert unit.get("AmbientCapabilities", [""]) == [""]
    (start,) = unit["ExecStart"]
    assert start.split()[1:4] == ["run", "--config", "/etc/sipguard/sipguard.yaml"]


def test_lint_script_is_valid_bash() -> None:
    """docker/lint.sh is executable and parses (bash -n)."""
    script = DOCKER / "lint.sh"
    assert script.stat().st_mode & 0o111
    result = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr
