"""Benchmark of PASSporT signing and verification on one core, against `openssl speed`.

Run: ``python bench/bench_stir_shaken.py [seconds]``. Prints numbers only; nothing is asserted.

Measures, single-threaded in this process:
* sign/s: `Signer.sign_shaken` (canonical JSON, ES256, raw r||s, Identity formatting);
* verify/s: `Verifier.verify` (the full checklist §3 path, certificate chain memoised as in
  production, plus the ES256 verification that dominates);
and runs ``openssl speed -seconds 2 ecdsap256`` as a subprocess in the same run, printing our
rate as a fraction of OpenSSL's raw ECDSA P-256 rate on this machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from stir_shaken import pki
from stir_shaken.certs import TrustAnchor, TrustStore
from stir_shaken.signer import Signer
from stir_shaken.verifier import Verifier

X5U = "https://api.man-bpco.fr/certs/LAB001/01.cer"
ORIG, DEST = "33162000001", "33187654321"


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn` over about `seconds` (after a short warm-up)."""
    for _ in range(50):
        fn()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def _openssl_rates() -> tuple[float, float] | None:
    """(sign/s, verify/s) of `openssl speed -seconds 2 ecdsap256`, or None if unavailable."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    result = subprocess.run(
        [openssl, "speed", "-seconds", "2", "ecdsap256"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for line in result.stdout.splitlines():
        match = re.search(r"ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", line)
        if match:
            return float(match.group(1)), float(match.group(2))
    return None


def main(seconds: float = 2.0) -> int:
    """Run the benchmark and print a small table."""
    now = time.time()
    root = pki.make_root(now=now)
    inter = pki.make_intermediate(root, now=now)
    operator = pki.make_operator(inter, now=now)
    signer = Signer(operator.key, X5U)
    verifier = Verifier(TrustStore([TrustAnchor(root.cert)], [inter.cert]))
    value = signer.sign_shaken(orig=ORIG, dest=DEST, attest="A", iat=int(now), origid="o")
    chain = [operator.cert]

    def sign() -> object:
        return signer.sign_shaken(orig=ORIG, dest=DEST, attest="A", iat=int(now), origid="o")

    def verify() -> object:
        result = verifier.verify(
            [value], orig_tn=ORIG, dest_tn=DEST, now=now, lookup=lambda _u: chain
        )
        if not result.ok:  # pragma: no cover - the bench would be meaningless
            raise SystemExit(f"verification failed: {result.reason}")
        return result

    sign_rate = _rate(sign, seconds)
    verify_rate = _rate(verify, seconds)
    openssl = _openssl_rates()
    print(f"{'operation':10} {'sipguard/s':>12} {'openssl/s':>12} {'ratio':>7}")
    for label, ours, index in (("sign", sign_rate, 0), ("verify", verify_rate, 1)):
        if openssl is None:
            print(f"{label:10} {ours:12.0f} {'n/a':>12} {'n/a':>7}")
        else:
            raw = openssl[index]
            print(f"{label:10} {ours:12.0f} {raw:12.0f} {ours / raw:7.2f}")
    print("(one core, this process; openssl = raw ECDSA P-256 via `openssl speed`)")
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0))
