"""The voice-chat conversation agent, through HA's conversation API."""

from __future__ import annotations

from typing import Any, cast

from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import entity_registry as er, intent
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from tests.audio import probe
from tests.harness.standin import Fault, StandinServer, catalogue

from .conftest import make_entry


@pytest.fixture(autouse=True)
async def core_ready(hass: HomeAssistant) -> None:
    """Set up HA's core integration first: conversation needs its exposed entities."""
    assert await async_setup_component(hass, "homeassistant", {})


def agent_id(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    """The entity id of an entry's voice-chat agent."""
    entity_id = er.async_get(hass).async_get_entity_id(
        "conversation", "tts_ai", f"{entry.entry_id}_voice_chat"
    )
    assert entity_id is not None
    return entity_id


async def converse(
    hass: HomeAssistant, entry: MockConfigEntry, text: str, session: str | None
) -> conversation.ConversationResult:
    """Say something to the agent, as Assist does."""
    return await conversation.async_converse(
        hass,
        text,
        session,
        Context(),
        language="en",
        agent_id=agent_id(hass, entry),
    )


async def test_follow_up_continues_the_conversation(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """A second turn in HA's chat session continues the service's conversation."""
    entry = make_entry(standin, system_prompt="Answer in one sentence.")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    first = await converse(hass, entry, "Is the oven on?", None)
    assert first.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert "Is the oven on?" in first.response.speech["plain"]["speech"]
    second = await converse(hass, entry, "And the kettle?", first.conversation_id)

    speech = second.response.speech["plain"]["speech"]
    # The stand-in's answer quotes the turn before: the service remembered it.
    assert "turn 2" in speech
    assert 'Before that you said "Is the oven on?"' in speech
    assert second.conversation_id == first.conversation_id
    turns = [r.json for r in standin.requests if r.path == "voice-chat/"]
    assert "conversation_id" not in turns[0]
    assert turns[1]["conversation_id"].startswith("conv_")
    assert turns[1]["conversation_id"] != first.conversation_id  # mapped, not HA's
    assert turns[0]["system_prompt"] == "Answer in one sentence."

    # Another HA chat session starts another conversation.
    other = await converse(hass, entry, "Hello?", None)
    assert "turn 1" in other.response.speech["plain"]["speech"]
    assert "conversation_id" not in standin.requests[-1].json


async def test_forgotten_conversation_starts_a_new_one(
    hass: HomeAssistant, config_entry: MockConfigEntry, standin: StandinServer
) -> None:
    """When the service no longer knows the conversation, a new one answers."""
    first = await converse(hass, config_entry, "Good morning.", None)
    standin._state.conversations.clear()  # the service expired it
    second = await converse(hass, config_entry, "Still there?", first.conversation_id)
    assert second.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert "turn 1" in second.response.speech["plain"]["speech"]
    statuses = [r.status for r in standin.requests if r.path == "voice-chat/"]
    assert statuses == [200, 404, 200]


async def ws_converse(
    client: Any, entry_agent: str, text: str, session: str | None
) -> dict[str, Any]:
    """Say something through the WebSocket API, as the frontend's Assist does."""
    await client.send_json_auto_id(
        {
            "type": "conversation/process",
            "text": text,
            "conversation_id": session,
            "agent_id": entry_agent,
            "language": "en",
        }
    )
    answer = await client.receive_json()
    assert answer["success"], answer
    return cast(dict[str, Any], answer["result"])


def spoken(result: dict[str, Any]) -> str:
    """The plain speech of a WebSocket conversation result."""
    return cast(str, result["response"]["speech"]["plain"]["speech"])


async def test_another_user_cannot_continue_a_conversation(
    hass: HomeAssistant,
    hass_ws_client: Any,
    hass_read_only_access_token: str,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A second user naming the first user's conversation id starts afresh.

    The service's answer would quote what the first user said before (here an
    alarm code) if the second user's turn continued the first's conversation.
    """
    agent = agent_id(hass, config_entry)
    owner = await hass_ws_client(hass)
    other = await hass_ws_client(hass, hass_read_only_access_token)

    first = await ws_converse(owner, agent, "The alarm code is 4711.", None)
    session = first["conversation_id"]
    intruder = await ws_converse(other, agent, "What did I just say?", session)

    assert "4711" not in spoken(intruder)
    assert "turn 1" in spoken(intruder)
    turns = [r.json or {} for r in standin.requests if r.path == "voice-chat/"]
    assert "conversation_id" not in turns[1]

    # The first user's own follow-up still continues their conversation...
    follow_up = await ws_converse(owner, agent, "Is the door locked?", session)
    assert 'Before that you said "The alarm code is 4711."' in spoken(follow_up)
    # ...and the second user's follow-up continues the second user's.
    again = await ws_converse(other, agent, "And now?", session)
    assert 'Before that you said "What did I just say?"' in spoken(again)
    assert "4711" not in spoken(again)
    turns = [r.json or {} for r in standin.requests if r.path == "voice-chat/"]
    assert turns[2]["conversation_id"] != turns[3]["conversation_id"]


async def test_another_device_cannot_continue_a_conversation(
    hass: HomeAssistant, config_entry: MockConfigEntry, standin: StandinServer
) -> None:
    """A satellite in another room naming the same conversation starts afresh."""
    agent = agent_id(hass, config_entry)
    first = await conversation.async_converse(
        hass,
        "The alarm code is 4711.",
        None,
        Context(),
        language="en",
        agent_id=agent,
        device_id="satellite-bedroom",
    )
    other = await conversation.async_converse(
        hass,
        "What did I just say?",
        first.conversation_id,
        Context(),
        language="en",
        agent_id=agent,
        device_id="satellite-porch",
    )

    speech = other.response.speech["plain"]["speech"]
    assert "4711" not in speech
    assert "turn 1" in speech


async def test_other_not_found_keeps_the_conversation(
    hass: HomeAssistant,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 404 about the voice (withdrawn for a while) does not forget the history."""
    first = await converse(hass, config_entry, "The dog was fed at eight.", None)
    # The service withdraws the reply voice (the stand-in's default) for a while.
    monkeypatch.delitem(catalogue._VOICES_BY_ID, "af_bella")

    failed = await converse(hass, config_entry, "When?", first.conversation_id)

    assert failed.response.response_type is intent.IntentResponseType.ERROR
    monkeypatch.undo()
    later = await converse(hass, config_entry, "When was it?", first.conversation_id)

    speech = later.response.speech["plain"]["speech"]
    assert 'Before that you said "The dog was fed at eight."' in speech
    chats = [r for r in standin.requests if r.path == "voice-chat/"]
    assert [r.status for r in chats] == [200, 404, 200]
    assert chats[2].json is not None
    assert chats[2].json["conversation_id"].startswith("conv_")


async def test_api_error_is_spoken_not_raised(
    hass: HomeAssistant, config_entry: MockConfigEntry, standin: StandinServer
) -> None:
    """Out of credits: the agent answers with a sentence saying so."""
    standin.inject(Fault.INSUFFICIENT_CREDITS, path="voice-chat/")
    result = await converse(hass, config_entry, "What's the weather?", None)
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert "credits are used up" in result.response.speech["plain"]["speech"]

    standin.clear_faults()
    standin.inject(Fault.REFUSE)
    result = await converse(hass, config_entry, "Hello?", result.conversation_id)
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert "Cannot reach TTS.ai" in result.response.speech["plain"]["speech"]


async def test_no_agent_without_the_cloud(hass: HomeAssistant) -> None:
    """A device-only entry has no voice-chat agent."""
    entry = MockConfigEntry(
        domain="tts_ai",
        title="TTS.ai (on device)",
        data={},
        # Another HA engine: nothing to download for this test.
        options={"mode": "local_only", "local_engine": "entity"},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    registry = er.async_get(hass)
    domains = {
        e.domain for e in er.async_entries_for_config_entry(registry, entry.entry_id)
    }
    assert "tts" in domains
    assert "conversation" not in domains


async def test_agent_answers_in_an_assist_pipeline(
    hass: HomeAssistant,
    hass_ws_client,
    hass_client,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """As a pipeline's agent (local commands first), it answers and is spoken."""
    assert await async_setup_component(hass, "assist_pipeline", {})
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {
            "type": "assist_pipeline/pipeline/create",
            "name": "TTS.ai chat",
            "language": "en",
            "conversation_engine": agent_id(hass, config_entry),
            "conversation_language": "en",
            "prefer_local_intents": True,
            "stt_engine": None,
            "stt_language": None,
            "tts_engine": "tts.tts_ai_text_to_speech",
            "tts_language": "en",
            "tts_voice": None,
            "wake_word_entity": None,
            "wake_word_id": None,
        }
    )
    msg = await client.receive_json()
    assert msg["success"], msg
    pipeline_id = msg["result"]["id"]

    await client.send_json_auto_id(
        {
            "type": "assist_pipeline/run",
            "pipeline": pipeline_id,
            "start_stage": "intent",
            "end_stage": "tts",
            "input": {"text": "Tell me a joke"},
        }
    )
    assert (await client.receive_json())["success"]
    events: dict[str, dict] = {}
    while "run-end" not in events and "error" not in events:
        event = (await client.receive_json())["event"]
        events[event["type"]] = event.get("data") or {}
    assert "error" not in events, events["error"]
    speech = events["intent-end"]["intent_output"]["response"]["speech"]["plain"]
    assert 'You said "Tell me a joke"' in speech["speech"]
    assert [r.json["text"] for r in standin.requests if r.path == "voice-chat/"] == [
        "Tell me a joke"
    ]
    # The answer is synthesized by the pipeline's TTS and can be fetched.
    response = await (await hass_client()).get(events["tts-end"]["tts_output"]["url"])
    assert response.status == 200
    assert (await probe(await response.read())).duration > 1.0
