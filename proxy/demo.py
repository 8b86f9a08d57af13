"""`sipguard demo`: the example config, a SIPp trunk, and a handful of calls a newcomer can watch.

It copies configs/example.yaml into a temporary folder (so the demo's number list and audit
stay there), puts one NPV number on the customer's list, starts a SIPp UAS as the operator
trunk and the proxy, then sends calls from the dialer: some presenting the listed NPV number
(they reach the trunk) and one presenting a mobile number (refused, ARCEP 2022-1583). It ends
with the audit report.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "tests" / "integration" / "scenarios"
EXAMPLE = REPO / "configs" / "example.yaml"
LISTED_NUMBER = "+33162000001"
MOBILE_NUMBER = "+33612345678"


def _sipguard(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", *args]


def _answers_options(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local = sock.getsockname()[1]
        sock.settimeout(0.3)
        sock.sendto(
            (
                f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {host}:{local};branch=z9hG4bKdemo{time.time_ns()}\r\n"
                f"From: <sip:demo@{host}>;tag=demo\r\nTo: <sip:{host}:{port}>\r\n"
                f"Call-ID: demo-{time.time_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            (host, port),
        )
        try:
            sock.recvfrom(65535)
        except TimeoutError:
            return False
        return True


def _sipp(
    workdir: Path, scenario: str, port: int, calls: int, number: str, remote: str | None
) -> subprocess.Popen[bytes]:
    args = [
        "sipp",
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-m",
        str(calls),
        "-timeout",
        "30s",
        "-timeout_error",
        "-nostdin",
        "-d",
        "200",
        "-key",
        "from_user",
        number,
        "-key",
        "pai_user",
        number,
    ]
    if remote:
        args.append(remote)
    return subprocess.Popen(
        args,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def demo(calls: int = 5) -> int:
    """Run the demo; returns 0 when the listed calls completed and the mobile one was refused."""
    if shutil.which("sipp") is None:
        print("sipguard demo needs SIPp: apt-get install sip-tester", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="sipguard-demo-"))
    config = yaml.safe_load(EXAMPLE.read_text())
    config["admin"] = {"enabled": False}
    config_path = workdir / "sipguard.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run(
        _sipguard(
            "numbers",
            "add",
            "--config",
            str(config_path),
            "--holder",
            "acme-contact",
            LISTED_NUMBER,
        ),
        cwd=workdir,
        check=True,
    )
    proxy_host, proxy_port = config["listen"][0]["host"], config["listen"][0]["port"]
    trunk_port = config["trunks"][0]["port"]
    print(f"demo folder: {workdir}")
    trunk = _sipp(workdir, "uas_call.xml", trunk_port, calls, LISTED_NUMBER, None)
    log = (workdir / "sipguard.log").open("wb")
    proxy = subprocess.Popen(
        _sipguard("run", "--config", str(config_path)),
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while not _answers_options(proxy_host, proxy_port):
            if proxy.poll() is not None or time.monotonic() > deadline:
                print("the proxy did not start; see sipguard.log", file=sys.stderr)
                return 1
        dialer = _sipp(
            workdir, "uac_call.xml", 0, calls, LISTED_NUMBER, f"{proxy_host}:{proxy_port}"
        )
        listed_ok = dialer.wait(60) == 0 and trunk.wait(60) == 0
        print(
            f"{calls} calls presenting {LISTED_NUMBER} (NPV, on the list): "
            f"{'completed' if listed_ok else 'FAILED'}"
        )
        mobile = _sipp(workdir, "uac_call.xml", 0, 1, MOBILE_NUMBER, f"{proxy_host}:{proxy_port}")
        # SIPp exits 1 when its call failed: here the failure is the point (403 from sipguard).
        refused = mobile.wait(60) != 0
        print(
            f"1 call presenting {MOBILE_NUMBER} (mobile, automated dialer): "
            f"{'refused as expected' if refused else 'NOT refused'}"
        )
    finally:
        proxy.terminate()
        proxy.wait(40)
        for process in (trunk,):
            if process.poll() is None:
                process.kill()
        log.close()
    subprocess.run(_sipguard("audit", "report", "--config", str(config_path)), cwd=workdir)
    return 0 if listed_ok and refused else 1
