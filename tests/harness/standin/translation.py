"""A tiny phrase table standing in for machine translation.

The stand-in only needs translations that are deterministic and visibly
different from the input. Text is translated clause by clause (split at
``, . ! ?``); clauses the table does not know stay as they are.
"""

from __future__ import annotations

import re

_PHRASES: dict[str, dict[str, str]] = {
    "es": {
        "hello": "hola",
        "hello there": "hola",
        "how are you": "cómo estás",
        "good morning": "buenos días",
        "good night": "buenas noches",
        "thank you": "gracias",
        "welcome home": "bienvenido a casa",
        "the light is on": "la luz está encendida",
        "the kitchen light is on": "la luz de la cocina está encendida",
        "turn on the light": "enciende la luz",
        "the door is open": "la puerta está abierta",
        "dinner is ready": "la cena está lista",
    },
    "fr": {
        "hello": "bonjour",
        "hello there": "bonjour",
        "how are you": "comment allez-vous",
        "good morning": "bonjour",
        "good night": "bonne nuit",
        "thank you": "merci",
        "welcome home": "bienvenue à la maison",
        "the light is on": "la lumière est allumée",
        "the kitchen light is on": "la lumière de la cuisine est allumée",
        "turn on the light": "allume la lumière",
        "the door is open": "la porte est ouverte",
        "dinner is ready": "le dîner est prêt",
    },
    "de": {
        "hello": "hallo",
        "hello there": "hallo",
        "how are you": "wie geht es dir",
        "good morning": "guten Morgen",
        "good night": "gute Nacht",
        "thank you": "danke",
        "welcome home": "willkommen zu Hause",
        "the light is on": "das Licht ist an",
        "the kitchen light is on": "das Küchenlicht ist an",
        "turn on the light": "mach das Licht an",
        "the door is open": "die Tür ist offen",
        "dinner is ready": "das Abendessen ist fertig",
    },
}

# A clause: text up to and including its punctuation, plus following spaces.
_CLAUSE = re.compile(r"([^,.!?]+)([,.!?]*\s*)")
_NOT_WORD = re.compile(r"[^a-z0-9' ]+")


def _normalize(clause: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", clause.lower()).split())


def _capitalize_sentences(text: str) -> str:
    return re.sub(r"(^|[.!?]\s+)(\w)", lambda m: m.group(1) + m.group(2).upper(), text)


def translate(text: str, target_language: str) -> str:
    """Translate ``text`` clause by clause; unknown clauses are kept."""
    table = _PHRASES.get(target_language)
    if not table:
        return text
    parts: list[str] = []
    for clause, punctuation in _CLAUSE.findall(text.strip()):
        leading = clause[: len(clause) - len(clause.lstrip())]
        translated = table.get(_normalize(clause))
        parts.append(f"{leading}{translated or clause.strip()}{punctuation}")
    return _capitalize_sentences("".join(parts).strip())
