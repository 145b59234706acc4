"""Wyoming server for microWakeWord."""

import importlib.metadata

__version__ = importlib.metadata.version("wyoming-microwakeword")

__all__ = ["__version__"]
