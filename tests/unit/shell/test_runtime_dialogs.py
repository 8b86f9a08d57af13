"""The worker's table of answered calls (what a drain waits for) cannot grow without bound."""

from __future__ import annotations

from types import SimpleNamespace

from proxy.runtime import DIALOG_MAX_AGE, Worker


def test_calls_whose_bye_never_came_age_out() -> None:
    """Entries older than DIALOG_MAX_AGE are forgotten; younger ones stay."""
    now = 1_000_000.0
    worker = SimpleNamespace(dialogs={"old@pbx": now - DIALOG_MAX_AGE - 1, "live@pbx": now - 60})
    Worker._forget_old_dialogs(worker, now)  # type: ignore[arg-type]
    assert worker.dialogs == {"live@pbx": now - 60}
