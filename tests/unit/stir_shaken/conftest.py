"""Fixtures of the stir_shaken tests; helpers live in stir_lab.py (unique module name)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

# Test modules here have no package (tests/unit has no __init__.py, and a package named
# "stir_shaken" would shadow the real one), so make the helper module importable explicitly.
sys.path.insert(0, str(Path(__file__).parent))

from stir_lab import NOW, Lab

from stir_shaken import pki


@pytest.fixture(scope="session")
def lab_pki() -> tuple[pki.Issued, pki.Issued, pki.Issued, pki.Issued]:
    """One lab PKI for the whole session (valid around NOW): root, intermediate, PA, operator."""
    root = pki.make_root(now=NOW)
    inter = pki.make_intermediate(root, now=NOW)
    pa = pki.make_policy_authority(root, now=NOW)
    operator = pki.make_operator(inter, "LAB001", crl_issuer=pa.cert.subject, now=NOW)
    return root, inter, pa, operator


@pytest.fixture
def lab(lab_pki: tuple[pki.Issued, pki.Issued, pki.Issued, pki.Issued]) -> Lab:
    """The session PKI with a fresh per-test certificate map, at NOW + 5 s."""
    root, inter, pa, operator = lab_pki
    return Lab(root=root, inter=inter, pa=pa, operator=operator, now=NOW + 5)


@pytest.fixture
def fresh_now() -> float:
    """The wall clock, for tests that talk to real tools."""
    return time.time()
