"""The worker's heap setting (`balancer.heap`): large buffers get mappings of their own."""

from __future__ import annotations

import ctypes
import platform

import pytest

from balancer.heap import MMAP_THRESHOLD, keep_large_buffers_off_the_heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_takes_the_fixed_threshold() -> None:
    assert keep_large_buffers_off_the_heap() is True
    assert keep_large_buffers_off_the_heap(MMAP_THRESHOLD) is True  # idempotent


def test_without_mallopt_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoMallopt:
        pass

    monkeypatch.setattr(ctypes, "CDLL", lambda name: NoMallopt())
    assert keep_large_buffers_off_the_heap() is False

