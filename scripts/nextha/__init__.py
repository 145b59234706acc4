"""The integration on the next Home Assistant release, as a real `hass`."""
