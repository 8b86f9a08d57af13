"""Configuration loading: every error names the file, the key path and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "example.yaml"

MINIMAL = """
trunks:
  - {name: operator, host: 127.0.0.1, port: 5070}
sources:
  - {name: pbx, addresses: [10.0.0.0/24], trunk: operator}
"""


def _load(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


def test_example_config_is_valid() -> None:
    """The shipped example loads."""
    config = load_config(EXAMPLE)
    assert config.trunks[0].name == "operator"
    assert {s.name for s in config.sources} == {"callcentre-dialer", "callcentre-agents"}


def test_minimal_config_takes_defaults(tmp_path: Path) -> None:
    """Timers and routing default to RFC 3261 values and the safe choices."""
    path = tmp_path / "ok.yaml"
    path.write_text(MINIMAL)
    config = load_config(path)
    assert config.timers.t1 == 0.5 and config.timers.t2 == 4.0
    assert config.routing.preloaded_route == "strip"
    assert config.admin.host == "127.0.0.1"
    assert config.sources[0].policy.kind == "automated"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL.replace("port: 5070", "port: 99999"), "trunks[0].port:"),
        (MINIMAL.replace("trunk: operator}", "trunk: operator, colour: red}"),
         "sources[0].colour: Extra inputs are not permitted"),
        (MINIMAL.replace("10.0.0.0/24", "10.0.0.300/24"), "sources[0].addresses:"),
        (MINIMAL.replace("trunk: operator}", "trunk: nowhere}"),
         "sources[0].trunk: no trunk named 'nowhere'"),
        (MINIMAL.replace("port: 5070}", "port: 5070, backup: spare}"),
         "trunks[0].backup: no trunk named 'spare'"),
        (MINIMAL + "timers: {t1: 2, t2: 1}\n", "t2 must not be smaller than t1"),
        (MINIMAL + "listen:\n  - {transport: tls, host: 127.0.0.1, port: 5061}\n",
         "a tls listener needs cert_file and key_file"),
        (MINIMAL + "listen:\n  - {transport: udp, host: example.com}\n", "listen[0].host:"),
        ("trunks: [\n", "YAML syntax"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_errors_name_file_key_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    """A bad value is reported with the file name and the key path."""
    error = _load(tmp_path, text)
    message = str(error)
    assert str(tmp_path / "bad.yaml") in message
    assert expected in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing file is reported, not raised as a traceback."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
