"""Long tasks: stem separation through the webhook, and by polling."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from datetime import timedelta
from http import HTTPStatus
import logging
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.network import NoURLAvailableError
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.tts_ai.const import DOMAIN, EVENT_TASK_COMPLETED
from custom_components.tts_ai.tasks import TASK_MAX_AGE, TaskTracker, get_tracker
from tests.audio import probe
from tests.harness.standin import Fault, StandinServer

from .test_services import Folders, folders, speech_file  # noqa: F401 - fixtures


@pytest.fixture
async def webhook_client(
    hass: HomeAssistant,
    hass_client_no_auth,
    folders: Folders,  # noqa: F811 - routes must exist before the server starts
    config_entry: MockConfigEntry,
) -> Any:
    """HA's HTTP server on loopback, set as HA's internal URL for webhooks."""
    client = await hass_client_no_auth()
    hass.config.internal_url = str(client.make_url("/")).rstrip("/")
    return client


def tracker_of(hass: HomeAssistant, entry: MockConfigEntry) -> TaskTracker:
    """The entry's task tracker."""
    tracker = get_tracker(hass, entry.entry_id)
    assert tracker is not None
    return tracker


def completed_events(hass: HomeAssistant) -> list[Event]:
    """Collect tts_ai_task_completed events from now on."""
    events: list[Event] = []
    hass.bus.async_listen(EVENT_TASK_COMPLETED, events.append)
    return events


async def separate(hass: HomeAssistant, audio: Path, **data: Any) -> dict[str, Any]:
    """Call separate_stems and wait for the stems."""
    return await hass.services.async_call(
        DOMAIN,
        "separate_stems",
        {"audio": str(audio), "timeout": 30, **data},
        blocking=True,
        return_response=True,
    )


async def start_separation(
    hass: HomeAssistant, tracker: TaskTracker, audio: Path
) -> str:
    """Call separate_stems without a response; return the pending task's id."""
    await hass.services.async_call(
        DOMAIN, "separate_stems", {"audio": str(audio)}, blocking=True
    )
    (task_id,) = tracker.pending
    return task_id


def no_webhook_url() -> AbstractContextManager[Any]:
    """Home Assistant has no URL the service could call back: tasks are polled."""
    return patch(
        "homeassistant.components.webhook.async_generate_url",
        side_effect=NoURLAvailableError,
    )


async def wait_for_events(events: list[Event], seconds: float) -> None:
    """Wait until an event has come, at most ``seconds``."""
    for _ in range(round(seconds / 0.1)):
        if events:
            return
        await asyncio.sleep(0.1)


async def test_webhook_delivers_stored_stems(
    hass: HomeAssistant,
    webhook_client: Any,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """The service's webhook call ends the task: stems stored, event fired."""
    events = completed_events(hass)
    tracker = tracker_of(hass, config_entry)

    response = await separate(hass, speech_file, stems=2, format="mp3")

    sent = next(r for r in standin.requests if r.path == "audio/separate/")
    assert sent.form["webhook_url"].endswith(f"/api/webhook/{tracker.webhook_id}")
    assert [d["status"] for d in standin.webhook_deliveries] == [HTTPStatus.OK]
    assert set(response["stems"]) == {"vocals", "accompaniment"}
    source = await probe(speech_file.read_bytes())
    for stem in response["stems"].values():
        path = Path(stem["path"])
        assert path.parent == folders.media / "tts_ai" / "separate_stems"
        info = await probe(path.read_bytes())
        assert info.codec == "mp3"
        assert abs(info.duration - source.duration) < 0.3
        assert stem["media_content_id"].endswith(path.name)
    await hass.async_block_till_done()
    assert len(events) == 1
    assert events[0].data["task_id"] == response["task_id"]
    assert events[0].data["stems"] == response["stems"]
    assert events[0].data["entry_id"] == config_entry.entry_id
    assert response["task_id"] not in tracker.pending


async def test_webhook_ignores_replays_unknown_ids_and_junk(
    hass: HomeAssistant,
    webhook_client: Any,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
    standin: StandinServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Replayed, unknown, malformed and wrong-method calls change nothing."""
    response = await separate(hass, speech_file)
    await hass.async_block_till_done()
    events = completed_events(hass)
    tracker = tracker_of(hass, config_entry)
    url = f"/api/webhook/{tracker.webhook_id}"
    files_before = sorted((folders.media / "tts_ai").rglob("*"))
    payload = standin.webhook_deliveries[0]["payload"]
    caplog.set_level(logging.INFO, logger="custom_components.tts_ai")

    replay = await webhook_client.post(url, json=payload)
    unknown = await webhook_client.post(url, json={**payload, "task_id": "task_x"})
    malformed = await webhook_client.post(url, data=b"{not json")
    no_task = await webhook_client.post(url, json={"event": "task.completed"})
    wrong_method = await webhook_client.put(url, json=payload)
    await hass.async_block_till_done()

    assert replay.status == HTTPStatus.OK
    assert unknown.status == HTTPStatus.OK
    assert malformed.status == HTTPStatus.BAD_REQUEST
    assert no_task.status == HTTPStatus.BAD_REQUEST
    assert wrong_method.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert events == []
    assert sorted((folders.media / "tts_ai").rglob("*")) == files_before
    log = caplog.text
    assert f"replayed TTS.ai webhook call for {response['task_id']}" in log
    assert "unknown task task_x" in log
    # The second malformed call is counted, not logged again (rate-limited).
    assert log.count("malformed TTS.ai webhook") == 1
    # Nothing was fetched for the ignored calls: results were asked for once.
    task_path = f"results/{response['task_id']}"
    assert [r.path for r in standin.requests].count(task_path) == 1


async def test_polls_when_no_webhook_url(
    hass: HomeAssistant,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """Without a URL the service could call, the task is polled to the end."""
    events = completed_events(hass)
    tracker_of(hass, config_entry).poll.interval = 0.1
    with no_webhook_url():
        response = await separate(hass, speech_file, stems=4)

    sent = next(r for r in standin.requests if r.path == "audio/separate/")
    assert "webhook_url" not in sent.form
    assert standin.webhook_deliveries == []
    polls = [r for r in standin.requests if r.path == f"results/{response['task_id']}"]
    assert len(polls) >= 2  # queued/processing first, then the result
    assert set(response["stems"]) == {"vocals", "drums", "bass", "other"}
    for stem in response["stems"].values():
        assert (await probe(Path(stem["path"]).read_bytes())).duration > 1.0
    await hass.async_block_till_done()
    assert [e.data["task_id"] for e in events] == [response["task_id"]]


async def test_without_response_the_event_brings_the_stems(
    hass: HomeAssistant,
    webhook_client: Any,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
) -> None:
    """Called without a response, the action returns at once; the event follows."""
    events = completed_events(hass)
    tracker = tracker_of(hass, config_entry)
    task_id = await start_separation(hass, tracker, speech_file)
    assert events == []

    await tracker.async_wait(task_id, 30)
    await hass.async_block_till_done()

    assert len(events) == 1
    for stem in events[0].data["stems"].values():
        assert Path(stem["path"]).is_file()


async def test_wait_times_out_with_a_translated_error(
    hass: HomeAssistant,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A task slower than the timeout raises task_timeout; unloading ends it."""
    tracker = tracker_of(hass, config_entry)
    tracker.poll.interval = 0.1
    standin.inject(Fault.HANG, path="results/*")
    with no_webhook_url(), pytest.raises(HomeAssistantError) as caught:
        await separate(hass, speech_file, timeout=1)

    assert caught.value.translation_key == "task_timeout"
    assert "1 s" in str(caught.value)
    assert len(tracker.pending) == 1
    # The pending task is kept for after a restart; unloading stops the poll.
    assert await hass.config_entries.async_unload(config_entry.entry_id)


async def test_pending_task_survives_a_reload(
    hass: HomeAssistant,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A task pending at unload is stored, and finished after the next setup."""
    events = completed_events(hass)
    tracker = tracker_of(hass, config_entry)
    webhook_id = tracker.webhook_id
    standin.inject(Fault.HANG, path="results/*")
    with no_webhook_url():
        task_id = await start_separation(hass, tracker, speech_file)
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    standin.clear_faults()

    assert await hass.config_entries.async_setup(config_entry.entry_id)
    resumed = tracker_of(hass, config_entry)
    assert resumed.webhook_id == webhook_id  # the service may still call it
    assert resumed.pending == {task_id}
    resumed.poll.interval = 0.1
    await wait_for_events(events, 10)

    assert [e.data["task_id"] for e in events] == [task_id]
    assert events[0].data["status"] == "success"
    assert resumed.pending == set()


async def test_unreachable_webhook_falls_back_to_slow_polling(
    hass: HomeAssistant,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """An internal URL the service cannot reach still ends with the stems."""
    hass.config.internal_url = "http://127.0.0.1:9"  # nothing listens there
    tracker = tracker_of(hass, config_entry)
    tracker.poll.webhook_grace = 0.5
    tracker.poll.webhook_interval = 0.1

    response = await separate(hass, speech_file)

    sent = next(r for r in standin.requests if r.path == "audio/separate/")
    assert sent.form["webhook_url"].startswith("http://127.0.0.1:9/api/webhook/")
    assert standin.webhook_deliveries[0]["status"] is None  # the call failed
    assert response["status"] == "success"
    assert all(Path(s["path"]).is_file() for s in response["stems"].values())


def forged_call(task_id: str) -> dict[str, Any]:
    """A webhook payload shaped like the contract's ``task.completed`` call."""
    return {
        "event": "task.completed",
        "task_id": task_id,
        "status": "success",
        "result_url": f"https://api.tts.ai/v1/results/{task_id}",
        "credits_used": 12,
        "created_at": "2025-01-15T10:30:00Z",
        "completed_at": "2025-01-15T10:30:45Z",
    }


async def test_forged_webhook_flood_costs_one_status_request(
    hass: HomeAssistant,
    webhook_client: Any,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """40 forged calls for a pending task: one status request, no rate limit hit.

    A webhook only says "look now": the task's one poller looks, at most once
    per ``webhook_min_gap``, and the real completion still brings the stems.
    """
    events = completed_events(hass)
    tracker = tracker_of(hass, config_entry)
    standin.hold_tasks()
    task_id = await start_separation(hass, tracker, speech_file)
    url = f"/api/webhook/{tracker.webhook_id}"
    status_path = f"results/{task_id}"
    loop = asyncio.get_running_loop()

    started = loop.time()
    answers = []
    for _ in range(40):  # paced like the audit's attacker: 40 calls in ~1.6 s
        answers.append(await webhook_client.post(url, json=forged_call(task_id)))
        await asyncio.sleep(0.04)
    await asyncio.sleep(0.5)  # let whatever the calls started reach the stand-in
    elapsed = loop.time() - started

    assert {answer.status for answer in answers} == {HTTPStatus.OK}
    asked = [r for r in standin.requests if r.path == status_path]
    assert 1 <= len(asked) <= 1 + int(elapsed // tracker.poll.webhook_min_gap)
    assert HTTPStatus.TOO_MANY_REQUESTS not in {r.status for r in standin.requests}
    assert tracker.pending == {task_id}

    standin.release_tasks()  # the real completion calls the webhook
    outcome = await tracker.async_wait(task_id, 30)
    await hass.async_block_till_done()

    assert outcome.status == "success"
    assert [e.data["task_id"] for e in events] == [task_id]
    assert all(Path(s.path).is_file() for s in outcome.stems.values())
    assert HTTPStatus.TOO_MANY_REQUESTS not in {r.status for r in standin.requests}


async def test_webhook_task_ids_are_checked_and_logged_bounded(
    hass: HomeAssistant,
    webhook_client: Any,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A huge id with a forged log line, and 40 unknown ids: short, clean, few logs."""
    tracker = tracker_of(hass, config_entry)
    url = f"/api/webhook/{tracker.webhook_id}"
    forged_line = "2026-01-01 12:00:00 ERROR (MainThread) [homeassistant] FORGED"
    huge_id = "task_x\n" + forged_line + "\n" + "A" * 1_000_000
    caplog.set_level(logging.INFO, logger="custom_components.tts_ai")

    huge = await webhook_client.post(url, json=forged_call(huge_id))
    forged = await webhook_client.post(url, json=forged_call(huge_id[:5000]))
    too_long = await webhook_client.post(url, json=forged_call("task_" + "a" * 200))
    control = await webhook_client.post(url, json=forged_call("task_\x1b[2Jx"))
    unknown = [
        await webhook_client.post(url, json=forged_call(f"task_{n:03d}"))
        for n in range(40)
    ]
    await hass.async_block_till_done()

    assert huge.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    for refused in (forged, too_long, control):
        assert refused.status == HTTPStatus.BAD_REQUEST
    assert {answer.status for answer in unknown} == {HTTPStatus.OK}
    ours = [r for r in caplog.records if r.name.startswith("custom_components")]
    messages = [record.getMessage() for record in ours]
    assert messages, "the ignored calls are logged"
    for message in messages:
        assert len(message) <= 300
        assert message.isprintable(), repr(message[:200])
    assert not any(
        line.startswith(forged_line[:10]) for line in caplog.text.splitlines()
    )
    # The forged id is still named, on one line, cut short.
    assert any("invalid task id task_x?2026-01-01" in m for m in messages)
    # Repeated warnings are rate-limited: one line for the 40 unknown ids.
    assert sum("unknown task" in message for message in messages) == 1
    # Nothing of it reached the service.
    assert not any(r.path.startswith("results/") for r in standin.requests)


async def test_task_older_than_the_max_age_ends_failed_after_a_reload(
    hass: HomeAssistant,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A task that never finishes is not re-polled forever: it expires, failed."""
    events = completed_events(hass)
    tracker = tracker_of(hass, config_entry)
    standin.hold_tasks()  # the service never finishes this one
    with no_webhook_url():
        task_id = await start_separation(hass, tracker, speech_file)
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    status_path = f"results/{task_id}"
    asked_before = [r.path for r in standin.requests].count(status_path)

    # Home Assistant comes back after the task's maximum age has passed.
    later = dt_util.utcnow() + TASK_MAX_AGE + timedelta(minutes=1)
    with patch("homeassistant.util.dt.utcnow", return_value=later):
        assert await hass.config_entries.async_setup(config_entry.entry_id)
    resumed = tracker_of(hass, config_entry)
    resumed.poll.interval = 0.1
    await wait_for_events(events, 5)

    assert [e.data["task_id"] for e in events] == [task_id]
    assert events[0].data["status"] == "failed"
    assert "did not finish within 6 h" in events[0].data["error"]
    assert resumed.pending == set()
    # One last look at most, then no more polling.
    await asyncio.sleep(0.5)
    assert [r.path for r in standin.requests].count(status_path) - asked_before <= 1

    # And after the next reload it stays gone.
    assert await hass.config_entries.async_reload(config_entry.entry_id)
    await hass.async_block_till_done()
    assert tracker_of(hass, config_entry).pending == set()
    assert len(events) == 1


async def test_task_past_the_max_age_fails_the_waiting_action(
    hass: HomeAssistant,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """While HA runs, too old a task ends too: the waiting action gets why."""
    events = completed_events(hass)
    tracker = tracker_of(hass, config_entry)
    tracker.poll.interval = 0.1
    tracker.poll.max_age = 1.0  # stands in for TASK_MAX_AGE
    standin.hold_tasks()
    with no_webhook_url(), pytest.raises(HomeAssistantError) as caught:
        await separate(hass, speech_file, timeout=30)

    assert caught.value.translation_key == "task_failed"
    assert "did not finish within" in str(caught.value)
    await hass.async_block_till_done()
    assert [e.data["status"] for e in events] == ["failed"]
    assert tracker.pending == set()
