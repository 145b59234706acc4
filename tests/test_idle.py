"""Giving a model's memory back after a quiet spell (local/idle.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from custom_components.tts_ai.local.idle import IdleReleaser


async def test_close_waits_for_a_release_already_under_way() -> None:
    """Unloading the entry does not leave a half-done release behind."""
    started = asyncio.Event()
    may_finish = asyncio.Event()
    finished: list[bool] = []

    async def release() -> None:
        started.set()
        await may_finish.wait()
        finished.append(True)

    releaser = IdleReleaser(0, release)
    with releaser.in_use():
        pass
    await asyncio.wait_for(started.wait(), 5)

    closing = asyncio.create_task(releaser.close())
    await asyncio.sleep(0)
    assert not closing.done()
    may_finish.set()
    await asyncio.wait_for(closing, 5)
    assert finished == [True]


async def test_a_failed_release_is_logged_and_forgotten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failed = asyncio.Event()

    async def release() -> None:
        failed.set()
        raise MemoryError("the allocator said no")

    releaser = IdleReleaser(0, release)
    with caplog.at_level(logging.WARNING), releaser.in_use():
        pass
    await asyncio.wait_for(failed.wait(), 5)
    await asyncio.sleep(0)

    assert "Unloading an idle speech model failed: the allocator said no" in (
        caplog.text
    )
    await asyncio.wait_for(releaser.close(), 5)  # nothing left to wait for


async def test_no_release_while_in_use_and_none_without_a_delay() -> None:
    released: list[bool] = []

    async def release() -> None:
        released.append(True)

    busy = IdleReleaser(0, release)
    with busy.in_use():
        await asyncio.sleep(0.05)
        assert released == []
    never = IdleReleaser(None, release)
    with never.in_use():
        pass
    await asyncio.sleep(0.05)
    assert released == [True]  # only the first, after its use ended
    await busy.close()
    await never.close()
