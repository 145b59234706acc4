"""Account problems as repair issues: out of credits, no API access.

The client reports every response; an issue is raised when the latest
request failed with 402 or 403, and deleted as soon as a request succeeds
again (credits bought, plan upgraded), so it never has to be dismissed.
"""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .api import ForbiddenError, InsufficientCreditsError, TtsAiClient, TtsAiError
from .const import DOMAIN

# Issue translation key -> the API error that raises it.
ACCOUNT_ISSUES: dict[str, type[TtsAiError]] = {
    "insufficient_credits": InsufficientCreditsError,
    "forbidden": ForbiddenError,
}


def issue_id(key: str, entry_id: str) -> str:
    """Return the id of an account issue of one entry."""
    return f"{key}_{entry_id}"


@callback
def async_track_account_issues(
    hass: HomeAssistant, entry_id: str, title: str, client: TtsAiClient
) -> Callable[[], None]:
    """Raise and clear the account issues from the client's responses.

    Returns the function that stops tracking.
    """
    # Issues raised before a restart stay until a request succeeds.
    registry = ir.async_get(hass)
    raised = {
        key
        for key in ACCOUNT_ISSUES
        if registry.async_get_issue(DOMAIN, issue_id(key, entry_id)) is not None
    }

    @callback
    def client_updated() -> None:
        if client.last_ok:
            for key in list(raised):
                ir.async_delete_issue(hass, DOMAIN, issue_id(key, entry_id))
                raised.discard(key)
            return
        if client.last_ok is None or client.last_error is None:
            return
        for key, error_class in ACCOUNT_ISSUES.items():
            if isinstance(client.last_error, error_class) and key not in raised:
                ir.async_create_issue(
                    hass,
                    DOMAIN,
                    issue_id(key, entry_id),
                    is_fixable=False,
                    severity=ir.IssueSeverity.ERROR,
                    translation_key=key,
                    translation_placeholders={"title": title},
                )
                raised.add(key)

    return client.add_listener(client_updated)


@callback
def async_delete_account_issues(hass: HomeAssistant, entry_id: str) -> None:
    """Delete an entry's account issues (on removal, or before tracking)."""
    for key in ACCOUNT_ISSUES:
        ir.async_delete_issue(hass, DOMAIN, issue_id(key, entry_id))
