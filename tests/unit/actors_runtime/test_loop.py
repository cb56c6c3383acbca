"""The event loop choice: uvloop when importable unless EDGE_NO_UVLOOP is set."""

from __future__ import annotations

import asyncio

import pytest

from actors import loop


async def which_loop() -> str:
    return loop.loop_kind(asyncio.get_running_loop())


def test_edge_no_uvloop_forces_plain_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_NO_UVLOOP", "1")
    assert not loop.uvloop_enabled()
    assert loop.run(which_loop()) == "asyncio"


def test_uvloop_is_used_when_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv("EDGE_NO_UVLOOP", raising=False)
    assert loop.uvloop_enabled()
    assert loop.run(which_loop()) == "uvloop"


def test_run_returns_the_coroutine_result_and_closes_its_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGE_NO_UVLOOP", "1")
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> int:
        seen.append(asyncio.get_running_loop())
        return 42

    assert loop.run(main()) == 42
    assert seen[0].is_closed()
