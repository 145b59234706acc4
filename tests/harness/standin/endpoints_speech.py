"""Speech to text, speech translation and voice chat."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .common import (
    check_text_length,
    form_fields,
    require_model,
    require_voice,
    synthesize_to,
    uploaded_audio,
)
from .contract import (
    CREDITS_PER_MINUTE,
    GENERATED_AUDIO_FORMAT,
    TRANSLATE_LANGUAGES,
    VOICE_CHAT_CREDITS_PER_TURN,
    credits_for_audio,
)
from .engines import Segment, transcribe_samples
from .errors import bad_request, not_found
from .forms import Fields
from .state import Conversation, caller, charge, get_state, new_id, store_audio
from .translation import translate

#: A pause this long (seconds) between segments switches the speaker label:
#: a deterministic stand-in for real diarization.
SPEAKER_CHANGE_GAP = 1.5

# tiny.en only knows English: whatever language is requested, the stand-in
# transcribes as English and reports "en".
DETECTED_LANGUAGE = "en"


async def _transcribe(samples: Any, *, word_timestamps: bool = False) -> list[Segment]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None, lambda: transcribe_samples(samples, word_timestamps=word_timestamps)
    )


def _segments_json(
    segments: list[Segment], *, timestamps: bool, diarize: bool
) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    speaker = 0
    previous_end: float | None = None
    for segment in segments:
        if (
            previous_end is not None
            and segment.start - previous_end > SPEAKER_CHANGE_GAP
        ):
            speaker += 1
        previous_end = segment.end
        item: dict[str, Any] = {
            "start": segment.start,
            "end": segment.end,
            "text": segment.text,
        }
        if timestamps:
            item["words"] = [
                {"word": word.word, "start": word.start, "end": word.end}
                for word in segment.words
            ]
        if diarize:
            item["speaker"] = f"SPEAKER_{speaker:02d}"
        result.append(item)
    return result


async def handle_stt(request: web.Request) -> web.Response:
    """``POST stt/``: transcribe the upload with faster-whisper tiny.en."""
    fields = form_fields(request)
    fields.file("file")
    model_id = fields.string_or("model", "whisper")
    fields.language("language", default="auto")
    timestamps = fields.boolean("timestamps", default=False)
    diarize = fields.boolean("diarize", default=False)
    require_model(model_id, endpoint="stt/")
    async with uploaded_audio(fields, "file") as audio:
        charge(request, credits_for_audio(audio.duration, CREDITS_PER_MINUTE["stt/"]))
        segments = await _transcribe(audio.samples, word_timestamps=timestamps)
        duration = round(audio.duration, 2)
    return web.json_response(
        {
            "text": " ".join(segment.text for segment in segments).strip(),
            "language": DETECTED_LANGUAGE,
            "duration": duration,
            "segments": _segments_json(
                segments, timestamps=timestamps, diarize=diarize
            ),
        }
    )


async def handle_translate(request: web.Request) -> web.Response:
    """``POST translate/``: transcribe, translate (phrase table), re-synthesise."""
    fields = form_fields(request)
    fields.file("file")
    target = fields.required_string("target_language", choices=TRANSLATE_LANGUAGES)
    voice_id = fields.string("voice")
    fields.boolean("preserve_voice", default=False)
    if voice_id is not None:
        require_voice(voice_id)
    async with uploaded_audio(fields, "file") as audio:
        credits = credits_for_audio(audio.duration, CREDITS_PER_MINUTE["translate/"])
        charge(request, credits)
        segments = await _transcribe(audio.samples)
    original = " ".join(segment.text for segment in segments).strip()
    translated = translate(original, target) if original else ""
    speech = await synthesize_to(translated or "…", GENERATED_AUDIO_FORMAT)
    return web.json_response(
        {
            "original_text": original,
            "translated_text": translated,
            "source_language": DETECTED_LANGUAGE,
            "target_language": target,
            "audio_url": store_audio(
                request, "translate", GENERATED_AUDIO_FORMAT, speech
            ),
            "credits_used": credits,
        }
    )


def _reply(conversation: Conversation, user_text: str) -> str:
    """A deterministic answer that proves the conversation is remembered."""
    turn = conversation.turns
    reply = f'You said "{user_text}". This is turn {turn} of our conversation.'
    if conversation.last_user_text is not None:
        reply += f' Before that you said "{conversation.last_user_text}".'
    return reply


def _conversation(request: web.Request, fields: Fields) -> tuple[str, Conversation]:
    key, _account = caller(request)
    conversations = get_state(request).conversations
    conversation_id = fields.string("conversation_id")
    if conversation_id is None:
        conversation_id = new_id("conv")
        return conversation_id, conversations.setdefault(
            conversation_id, Conversation(owner=key)
        )
    conversation = conversations.get(conversation_id)
    # Another key's conversation is as unknown as one that never existed.
    if conversation is None or conversation.owner != key:
        raise not_found(
            f"Conversation '{conversation_id}' not found (field 'conversation_id')."
        )
    return conversation_id, conversation


async def handle_voice_chat(request: web.Request) -> web.Response:
    """``POST voice-chat/``: one turn of a (scripted) spoken conversation."""
    fields = form_fields(request)
    audio = fields.file("audio", required=False)
    text = fields.string("text")
    if (audio is None) == (text is None):
        raise bad_request("Send exactly one of the fields 'audio' and 'text'.")
    voice_id = fields.string_or("voice", "af_bella")
    model = require_model(fields.string_or("tts_model", "kokoro"))
    if model.type != "tts":
        raise bad_request(
            f"Field 'tts_model': '{model.id}' is not a text-to-speech model."
        )
    require_voice(voice_id, model=model)
    system_prompt = fields.string("system_prompt")
    if text is not None:
        check_text_length(request, text)
    if text is None:
        async with uploaded_audio(fields, "audio") as decoded:
            segments = await _transcribe(decoded.samples)
        user_text = " ".join(segment.text for segment in segments).strip()
    else:
        user_text = text
    conversation_id, conversation = _conversation(request, fields)
    charge(request, VOICE_CHAT_CREDITS_PER_TURN)
    conversation.turns += 1
    if system_prompt is not None:
        conversation.system_prompt = system_prompt
    ai_text = _reply(conversation, user_text)
    conversation.last_user_text = user_text
    speech = await synthesize_to(ai_text, GENERATED_AUDIO_FORMAT)
    return web.json_response(
        {
            "conversation_id": conversation_id,
            "user_text": user_text,
            "ai_text": ai_text,
            "audio_url": store_audio(request, "resp", GENERATED_AUDIO_FORMAT, speech),
            "credits_used": VOICE_CHAT_CREDITS_PER_TURN,
        }
    )
