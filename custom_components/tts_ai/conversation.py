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


# Who may continue a cloud conversation: HA's chat session together with the
# user and the device that started it. HA reuses a chat session for whoever
# names its id, so the id alone would let another user (or a satellite in
# another room) read on in someone else's conversation.
type ConversationKey = tuple[str, str | None, str | None]


def conversation_key(
    user_input: conversation.ConversationInput, session_id: str
) -> ConversationKey:
    """Return the key of the caller's own conversation in HA's chat session."""
    return (session_id, user_input.context.user_id, user_input.device_id)


def conversation_gone(err: NotFoundError, api_id: str) -> bool:
    """Whether a 404 says the service no longer knows *this* conversation.

    The contract documents 404 only for unknown models and voices; for an
    expired (or foreign) conversation the service answers 404 with a message
    naming the conversation, as in "Conversation 'conv_…' not found (field
    'conversation_id')." Any other 404 (the configured voice withdrawn) must
    not cost the user the conversation.
    """
    message = err.message.casefold()
    return (
        api_id.casefold() in message
        or "conversation_id" in message
        or message.startswith("conversation")
    )


class TtsAiConversationEntity(TtsAiEntity, conversation.ConversationEntity):
    """Answers through TTS.ai's voice chat, continuing HA's chat sessions."""

    def __init__(self, entry: TtsAiConfigEntry, client: TtsAiClient) -> None:
        """Initialise the agent."""
        super().__init__(entry, "voice_chat")
        self._client = client
        # (HA's conversation id, user, device) -> the service's conversation_id.
        self._conversations: OrderedDict[ConversationKey, str] = OrderedDict()

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
        key = conversation_key(user_input, session_id)
        # Another caller naming this session finds no entry under its own key
        # and so starts a conversation of its own.
        api_id = self._conversations.get(key)
        try:
            reply = await self._send(user_input, api_id)
        except NotFoundError as err:
            if api_id is None or not conversation_gone(err, api_id):
                return self._error_result(user_input, session_id, err)
            # The service expired the conversation: start a new one rather
            # than failing every follow-up of this session.
            self._conversations.pop(key, None)
            try:
                reply = await self._send(user_input, None)
            except TtsAiError as retry_err:
                return self._error_result(user_input, session_id, retry_err)
        except TtsAiError as err:
            return self._error_result(user_input, session_id, err)
        if reply.conversation_id:
            self._remember(key, reply.conversation_id)
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

    def _remember(self, key: ConversationKey, api_id: str) -> None:
        self._conversations[key] = api_id
        self._conversations.move_to_end(key)
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
