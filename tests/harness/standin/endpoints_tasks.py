"""Long tasks (stem separation), their webhooks, and downloadable results."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from .audio import AudioError, content_type, decoded_upload, transform
from .common import form_fields, require_model, uploaded_audio
from .contract import (
    API_PREFIX,
    SEPARATE_FORMATS,
    SEPARATION_CREDITS_PER_MINUTE,
    SEPARATION_STEMS,
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_PROCESSING,
    TASK_QUEUED,
    credits_for_audio,
    result_path,
    task_accepted_body,
    task_result_body,
    webhook_body,
)
from .errors import bad_request, not_found
from .state import (
    SeparationTask,
    StandinState,
    StoredAudio,
    caller,
    charge,
    get_state,
    new_id,
)

_LOGGER = logging.getLogger(__name__)

#: How long a separation job stays queued before it starts, in seconds: long
#: enough for a client to observe the "queued" state, short enough for tests.
QUEUE_DELAY_SECONDS = 0.2
WEBHOOK_TIMEOUT_SECONDS = 10

#: ffmpeg filter that stands in for each stem's source separation.
_STEM_FILTERS = {
    "vocals": "highpass=f=200,lowpass=f=4000",
    "accompaniment": "bandreject=f=1500:t=h:w=2600",
    "drums": "highpass=f=4000",
    "bass": "lowpass=f=200",
    "piano": "bandpass=f=500:t=h:w=400",
    "guitar": "bandpass=f=1200:t=h:w=800",
    "other": "bandpass=f=1000:t=h:w=1500",
}


def _webhook_url(value: str | None) -> str | None:
    if value is None:
        return None
    url = URL(value)
    if url.scheme not in {"http", "https"} or not url.host:
        raise bad_request("Field 'webhook_url' must be an http(s) URL.")
    return value


async def handle_separate(request: web.Request) -> web.Response:
    """``POST audio/separate/``: queue a stem-separation task (202)."""
    fields = form_fields(request)
    upload = fields.file("file")
    model_id = fields.string_or("model", "demucs")
    stems = fields.integer("stems", default=2, choices=tuple(SEPARATION_STEMS))
    fmt = fields.string_or("format", "wav", choices=SEPARATE_FORMATS)
    webhook_url = _webhook_url(fields.string("webhook_url"))
    require_model(model_id, endpoint="audio/separate/")
    assert stems is not None and upload is not None and upload.data is not None
    async with uploaded_audio(fields, "file") as audio:
        credits = credits_for_audio(
            audio.duration, SEPARATION_CREDITS_PER_MINUTE[model_id]
        )
    charge(request, credits)

    state = get_state(request)
    key, _account = caller(request)
    task = SeparationTask(
        task_id=new_id("task"),
        owner=key,
        status=TASK_QUEUED,
        credits_used=credits,
        created_at=time.time(),
    )
    state.tasks[task.task_id] = task
    job = _SeparationJob(
        state,
        task,
        upload.data,
        SEPARATION_STEMS[stems],
        fmt,
        base_url=f"{request.url.origin()}{API_PREFIX}",
        webhook_url=webhook_url,
    )
    background = asyncio.get_running_loop().create_task(job.run())
    state.background.add(background)
    background.add_done_callback(state.background.discard)
    return web.json_response(task_accepted_body(task.task_id), status=202)


class _SeparationJob:
    """Runs one separation task in the background, then calls the webhook."""

    def __init__(
        self,
        state: StandinState,
        task: SeparationTask,
        data: bytes,
        stems: tuple[str, ...],
        fmt: str,
        *,
        base_url: str,
        webhook_url: str | None,
    ) -> None:
        self._state = state
        self._task = task
        self._data = data
        self._stems = stems
        self._fmt = fmt
        self._base_url = base_url
        self._webhook_url = webhook_url

    async def run(self) -> None:
        task = self._task
        await asyncio.sleep(QUEUE_DELAY_SECONDS)
        task.status = TASK_PROCESSING
        await self._state.tasks_running.wait()
        try:
            task.stems = await self._separate()
            task.status = TASK_COMPLETED
        except AudioError as err:
            task.status = TASK_FAILED
            task.error = str(err)
        if self._webhook_url is not None:
            await self._deliver_webhook(self._webhook_url)

    async def _separate(self) -> dict[str, str]:
        urls: dict[str, str] = {}
        async with decoded_upload(self._data) as audio:
            for stem in self._stems:
                data = await transform(
                    audio.path, self._fmt, audio_filter=_STEM_FILTERS[stem]
                )
                name = f"{self._task.task_id}_{stem}.{self._fmt}"
                self._state.audio_results[name] = StoredAudio(
                    self._task.owner, data, content_type(self._fmt)
                )
                urls[stem] = f"{self._base_url}{result_path(name)}"
        return urls

    async def _deliver_webhook(self, url: str) -> None:
        task = self._task
        payload = webhook_body(
            task.task_id,
            succeeded=task.status == TASK_COMPLETED,
            result_url=f"{self._base_url}{result_path(task.task_id)}",
            credits_used=task.credits_used,
            created_at=task.created_at,
            completed_at=time.time(),
        )
        delivery: dict[str, Any] = {"url": url, "payload": payload, "status": None}
        self._state.webhook_deliveries.append(delivery)
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=payload) as response,
            ):
                delivery["status"] = response.status
        except (aiohttp.ClientError, TimeoutError) as err:
            delivery["error"] = repr(err)
            _LOGGER.warning("Webhook for %s failed: %r", task.task_id, err)


async def handle_result(request: web.Request) -> web.StreamResponse:
    """``GET results/<id>``: a generated audio file, or a task's status/result."""
    name = request.match_info["name"]
    state = get_state(request)
    key, _account = caller(request)
    audio = state.audio_results.get(name)
    if audio is not None and audio.owner == key:
        return web.Response(body=audio.data, content_type=audio.content_type)
    task = state.tasks.get(name)
    if task is not None and task.owner == key:
        return web.json_response(
            task_result_body(
                task.task_id,
                task.status,
                stems=task.stems,
                credits_used=task.credits_used,
                error=task.error,
            )
        )
    # Another key's result is reported exactly like one that does not exist.
    raise not_found(f"Result '{name}' not found.")
