"""Long tasks: stem separation through the webhook, and by polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
import logging
from pathlib import Path
from typing import Any, Self
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
from tests.harness.hostile_cloud import HostileCloud, Tamper, json_body, status
from tests.harness.standin import Fault, StandinServer

from .conftest import make_entry
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


# --- The service misbehaving -------------------------------------------------

# A task's status path, not its stem files (``task_<12 hex>_<stem>.<ext>``).
TASK_STATUS_PATH = "results/task_????????????"


@dataclass
class Separation:
    """A loaded entry ready to separate stems: its tracker polls every 0.1 s,
    its completion events are collected from the start, and there is speech."""

    hass: HomeAssistant
    entry: MockConfigEntry
    tracker: TaskTracker
    events: list[Event]
    folders: Folders
    speech_file: Path

    async def polled(self, **data: Any) -> dict[str, Any]:
        """Separate the speech with no webhook URL: the task is polled."""
        with no_webhook_url():
            return await separate(self.hass, self.speech_file, **data)

    async def polled_error(self, **data: Any) -> HomeAssistantError:
        """Separate the speech with no webhook URL; the error the action raises."""
        with no_webhook_url(), pytest.raises(HomeAssistantError) as caught:
            await separate(self.hass, self.speech_file, **data)
        return caught.value

    def stored_stems(self) -> list[Path]:
        """The separated stems stored in the media folder."""
        stored = self.folders.media / "tts_ai" / "separate_stems"
        return sorted(p for p in stored.rglob("*") if p.is_file())

    @classmethod
    def ready(
        cls,
        hass: HomeAssistant,
        entry: MockConfigEntry,
        folders: Folders,  # noqa: F811
        speech_file: Path,  # noqa: F811
        **more: Any,
    ) -> Self:
        """``entry`` polling its tasks quickly, its events collected from now on."""
        tracker = tracker_of(hass, entry)
        tracker.poll.interval = 0.1
        events = completed_events(hass)
        return cls(hass, entry, tracker, events, folders, speech_file, **more)


@dataclass
class HostileSeparation(Separation):
    """A separation whose cloud is the stand-in behind the tampering proxy."""

    cloud: HostileCloud

    def tamper_status(self, tamper: Tamper) -> None:
        """The service's answers about the task's state go through ``tamper``."""
        self.cloud.tamper(TASK_STATUS_PATH, tamper)


@pytest.fixture
def separation(
    hass: HomeAssistant,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    config_entry: MockConfigEntry,
) -> Separation:
    """The stand-in's entry, ready to separate stems."""
    return Separation.ready(hass, config_entry, folders, speech_file)


@pytest.fixture
async def hostile_separation(
    hass: HomeAssistant,
    folders: Folders,  # noqa: F811
    speech_file: Path,  # noqa: F811
    standin: StandinServer,
) -> AsyncIterator[HostileSeparation]:
    """A loaded entry whose cloud is the tampering proxy, ready to separate."""
    async with HostileCloud(standin.base_url) as cloud:
        entry = make_entry(cloud)  # type: ignore[arg-type]
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        yield HostileSeparation.ready(hass, entry, folders, speech_file, cloud=cloud)
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_stem_download_breaking_off_leaves_no_stems(
    hass: HomeAssistant, separation: Separation, standin: StandinServer
) -> None:
    """The second stem's download fails: the first one is not left behind."""
    standin.inject(Fault.TRUNCATED_STREAM, path="results/*_accompaniment.*")
    error = await separation.polled_error()

    assert error.translation_key == "task_failed"
    downloads = [r.path for r in standin.requests if r.path.endswith(".wav")]
    assert any(path.endswith("_vocals.wav") for path in downloads)  # it was fetched
    assert separation.stored_stems() == []
    await hass.async_block_till_done()
    events = separation.events
    assert [e.data["status"] for e in events] == ["failed"]
    assert events[0].data["stems"] == {}
    assert separation.tracker.pending == set()


async def test_a_task_the_service_failed_reports_the_services_error(
    hass: HomeAssistant,
    hostile_separation: HostileSeparation,
) -> None:
    """The service says the separation failed: the action says why, no stems."""
    hostile_separation.tamper_status(
        json_body(
            lambda document, request: {
                **document,
                "status": "failed",
                "error": "The audio has no separable sources",
                "credits_used": 3,
            }
        )
    )
    error = await hostile_separation.polled_error()

    assert error.translation_key == "task_failed"
    assert "The audio has no separable sources" in str(error)
    assert not any(path.endswith(".wav") for path in hostile_separation.cloud.requests)
    await hass.async_block_till_done()
    events = hostile_separation.events
    assert [e.data["status"] for e in events] == ["failed"]
    assert events[0].data["credits_used"] == 3
    assert hostile_separation.stored_stems() == []


async def test_a_task_the_service_lost_fails_at_once(
    hass: HomeAssistant,
    hostile_separation: HostileSeparation,
) -> None:
    """Asked for its state, the service does not know the task: not polled on."""
    hostile_separation.tamper_status(
        status(404, {"error": {"code": "not_found", "message": "No such task."}})
    )
    error = await hostile_separation.polled_error(timeout=30)

    assert error.translation_key == "task_failed"
    assert "No such task." in str(error)
    await hass.async_block_till_done()
    assert [e.data["status"] for e in hostile_separation.events] == ["failed"]
    assert hostile_separation.tracker.pending == set()
    # Asked once: a task the service does not know is not asked about again.
    await asyncio.sleep(0.5)
    assert sum(p.startswith("results/") for p in hostile_separation.cloud.requests) == 1


async def test_a_passing_failure_to_ask_is_retried(
    separation: Separation, standin: StandinServer
) -> None:
    """Two 500s while asking for the state: asked again, the stems still come."""
    standin.inject(Fault.INTERNAL_ERROR, path="results/*", times=2)
    response = await separation.polled()

    assert response["status"] == "success"
    asked = [r for r in standin.requests if r.path == f"results/{response['task_id']}"]
    assert [r.status for r in asked[:2]] == [500, 500]
    assert len(asked) >= 3
    assert all(Path(s["path"]).is_file() for s in response["stems"].values())


async def test_an_invalid_task_id_from_the_service_is_a_translated_error(
    hostile_separation: HostileSeparation,
) -> None:
    """A task id shaped like a path is refused: nothing pending, nothing asked."""
    hostile_separation.cloud.tamper(
        "audio/separate/",
        json_body(lambda document, request: {**document, "task_id": "../../config"}),
    )
    error = await hostile_separation.polled_error()

    assert error.translation_key == "invalid_response"
    assert "invalid task id ../../config" in str(error)
    assert hostile_separation.tracker.pending == set()
    await asyncio.sleep(0.3)
    assert not any(p.startswith("results/") for p in hostile_separation.cloud.requests)


async def test_a_task_finished_at_once_is_fetched_without_waiting_for_the_webhook(
    hass: HomeAssistant,
    hostile_separation: HostileSeparation,
) -> None:
    """The service answers "completed" at once: no grace period for a webhook."""
    hass.config.internal_url = "http://127.0.0.1:9"  # a webhook that never comes
    assert hostile_separation.tracker.poll.webhook_grace >= 60
    hostile_separation.cloud.tamper(
        "audio/separate/",
        json_body(lambda document, request: {**document, "status": "completed"}),
    )

    response = await separate(hass, hostile_separation.speech_file, timeout=20)

    assert response["status"] == "success"
    assert all(Path(s["path"]).is_file() for s in response["stems"].values())


# --- The webhook and storage ---------------------------------------------------


async def test_an_oversized_chunked_webhook_body_is_refused_while_reading(
    hass: HomeAssistant,
    webhook_client: Any,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A body with no length that runs past the limit: 413, nothing fetched."""
    tracker = tracker_of(hass, config_entry)

    async def endless_json() -> AsyncIterator[bytes]:
        yield b'{"event": "task.completed", "task_id": "task_x", "padding": "'
        for _ in range(64):  # 4 MiB, far past the limit
            yield b"A" * (64 * 1024)
        yield b'"}'

    answer = await webhook_client.post(
        f"/api/webhook/{tracker.webhook_id}", data=endless_json()
    )

    assert answer.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert not any(r.path.startswith("results/") for r in standin.requests)


async def test_suppressed_webhook_warnings_are_counted_in_the_next_one(
    hass: HomeAssistant,
    webhook_client: Any,
    config_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After the quiet period the next warning says how many were not logged."""
    tracker = tracker_of(hass, config_entry)
    tracker._warnings.period = 1.0  # stands in for WARNING_PERIOD_SECONDS
    url = f"/api/webhook/{tracker.webhook_id}"
    caplog.set_level(logging.WARNING, logger="custom_components.tts_ai")

    for n in range(3):
        await webhook_client.post(url, json=forged_call(f"task_{n:03d}"))
    await asyncio.sleep(1.1)
    await webhook_client.post(url, json=forged_call("task_last"))

    warnings = [
        r.getMessage() for r in caplog.records if "unknown task" in r.getMessage()
    ]
    assert len(warnings) == 2
    assert "task_000" in warnings[0]
    assert warnings[1].startswith(
        "Ignored a TTS.ai webhook call for unknown task task_last"
    )
    assert warnings[1].endswith("(and 2 more such calls since the last message)")


async def test_a_task_stored_by_an_older_version_is_still_finished(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    separation: Separation,
    standin: StandinServer,
) -> None:
    """Stored as its action alone (before the age limit): resumed; junk skipped."""
    config_entry, events = separation.entry, separation.events
    standin.hold_tasks()
    with no_webhook_url():
        task_id = await start_separation(
            hass, separation.tracker, separation.speech_file
        )
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    stored = hass_storage[f"{DOMAIN}.tasks.{config_entry.entry_id}"]["data"]
    stored["pending"] = {
        task_id: "separate_stems",  # what versions before the age limit stored
        "task_number": 42,
        "task_no_start": {"action": "separate_stems"},
        "task_bad_start": {"action": "separate_stems", "started": "yesterday"},
    }
    standin.release_tasks()

    with no_webhook_url():
        assert await hass.config_entries.async_setup(config_entry.entry_id)
        resumed = tracker_of(hass, config_entry)
        assert resumed.pending == {task_id}
        resumed.poll.interval = 0.1
        await wait_for_events(events, 10)

    assert [(e.data["task_id"], e.data["status"]) for e in events] == [
        (task_id, "success")
    ]
    assert events[0].data["action"] == "separate_stems"
    assert all(Path(s["path"]).is_file() for s in events[0].data["stems"].values())


async def test_removing_the_entry_forgets_its_stored_tasks(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    separation: Separation,
    standin: StandinServer,
) -> None:
    """A removed entry leaves no task store behind, even with a task pending."""
    standin.hold_tasks()
    with no_webhook_url():
        await start_separation(hass, separation.tracker, separation.speech_file)
    key = f"{DOMAIN}.tasks.{separation.entry.entry_id}"

    await hass.config_entries.async_remove(separation.entry.entry_id)
    await hass.async_block_till_done()

    assert key not in hass_storage
