"""The worker's heap settling: loaded data frozen, young collections made rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from proxy import runtime


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
def test_settle_heap_freezes_what_is_loaded_and_raises_only_the_oldest_threshold() -> None:
    gc.set_threshold(700, 10, 10)
    loaded = [[n] for n in range(1000)]  # tracked objects standing for the list index
    runtime._settle_heap()
    assert gc.get_freeze_count() >= len(loaded)
    assert gc.get_threshold() == (700, 10, runtime.GC_OLDEST_THRESHOLD)

