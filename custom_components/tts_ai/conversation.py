"""TTS.ai voice chat as a conversation agent: text in, the AI's answer out."""

from __future__ import annotations

from collections import OrderedDict
import logging
from typing import Literal, override

from homeassistant.components import conversation
from homeassistant.const import MATCH_ALL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import intent
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import TtsAiConfigEntry
from .api import NotFoundError, TtsAiClient, TtsAiError, VoiceChatReply
from .const import CONF_MODEL, CONF_SYSTEM_PROMPT, CONF_VOICE
from .entity import TtsAiEntity
from .errors import to_ha_error

_LOGGER = logging.getLogger(__name__)

PARALLEL_UPDATES = 0

# HA chat sessions end after a few minutes of silence; remembering the API's
# conversation ids of the latest few hundred is plenty and bounds the memory.
MAX_CONVERSATIONS = 256


async def async_setup_entry(
    hass: HomeAssistant,
    entry: TtsAiConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the voice-chat agent to entries that have the cloud."""
    if entry.runtime_data.client is not None:
        async_add_entities([TtsAiConversationEntity(entry, entry.runtime_data.client)])


class TtsAiConversationEntity(TtsAiEntity, conversation.ConversationEntity):
    """Answers through TTS.ai's voice chat, continuing HA's chat sessions."""

    def __init__(self, entry: TtsAiConfigEntry, client: TtsAiClient) -> None:
        """Initialise the agent."""
        super().__init__(entry, "voice_chat")
        self._client = client
        # HA's conversation id -> the service's conversation_id.
        self._conversations: OrderedDict[str, str] = OrderedDict()

    @property
    @override
    def supported_languages(self) -> list[str] | Literal["*"]:
        """Return every language: the service detects it."""
        return MATCH_ALL

    @override
    async def _async_handle_message(
        self,
        user_input: conversation.ConversationInput,
        chat_log: conversation.ChatLog,
    ) -> conversation.ConversationResult:
        """Send one turn; answer with the AI's text, or a spoken error."""
        session_id = chat_log.conversation_id
        try:
            reply = await self._send(user_input, self._conversations.get(session_id))
        except NotFoundError:
            # The service forgot the conversation (expired): start a new one
            # rather than failing every follow-up of this session.
            self._conversations.pop(session_id, None)
            try:
                reply = await self._send(user_input, None)
            except TtsAiError as err:
                return self._error_result(user_input, session_id, err)
        except TtsAiError as err:
            return self._error_result(user_input, session_id, err)
        if reply.conversation_id:
            self._remember(session_id, reply.conversation_id)
        chat_log.async_add_assistant_content_without_tools(
            conversation.AssistantContent(
                agent_id=user_input.agent_id, content=reply.ai_text
            )
        )
        return conversation.async_get_result_from_chat_log(user_input, chat_log)

    async def _send(
        self, user_input: conversation.ConversationInput, api_id: str | None
    ) -> VoiceChatReply:
        """Send the user's text with the configured prompt, voice and model."""
        options = self._entry.options
        prompts = [options.get(CONF_SYSTEM_PROMPT), user_input.extra_system_prompt]
        system_prompt = "\n\n".join(p.strip() for p in prompts if p and p.strip())
        return await self._client.voice_chat(
            text=user_input.text,
            system_prompt=system_prompt or None,
            voice=options.get(CONF_VOICE),
            tts_model=options.get(CONF_MODEL),
            conversation_id=api_id,
        )

    def _remember(self, session_id: str, api_id: str) -> None:
        self._conversations[session_id] = api_id
        self._conversations.move_to_end(session_id)
        while len(self._conversations) > MAX_CONVERSATIONS:
            self._conversations.popitem(last=False)

    def _error_result(
        self,
        user_input: conversation.ConversationInput,
        session_id: str,
        err: TtsAiError,
    ) -> conversation.ConversationResult:
        """Say what went wrong instead of raising: a voice satellite speaks it."""
        _LOGGER.warning("TTS.ai voice chat failed: %s", err)
        response = intent.IntentResponse(language=user_input.language)
        response.async_set_error(
            intent.IntentResponseErrorCode.UNKNOWN,
            str(to_ha_error(self.hass, self._entry, err)),
        )
        return conversation.ConversationResult(
            response=response, conversation_id=session_id
        )
