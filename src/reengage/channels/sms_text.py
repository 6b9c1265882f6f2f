"""What an SMS costs before it is sent: its encoding, its segments, and the opt-out line.

A text that only uses the GSM 03.38 alphabet travels as GSM-7: 160 septets in a single
message, 153 per segment once it has to be split (the other 7 carry the concatenation
header). The characters of the extension table (`{ } [ ] ~ \\ ^ | €` and form feed) take
two septets each, and an escape pair is never split across two segments. One character
outside the alphabet turns the whole text into UCS-2: 70 UTF-16 code units in a single
message, 67 per segment, a character outside the Basic Multilingual Plane (most emoji)
taking two units that are never split either.
"""

from __future__ import annotations

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# 3GPP TS 23.038, the default alphabet (the escape code 0x1B is not a character)
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# ... and its extension table: each of these is sent as ESC + code, two septets
_GSM_EXTENSION = "\f^{}\\[~]|€"
GSM_BASIC = frozenset(_GSM_BASIC)
GSM_EXTENSION = frozenset(_GSM_EXTENSION)

SINGLE = {GSM7: 160, UCS2: 70}
PER_SEGMENT = {GSM7: 153, UCS2: 67}

# Appended to marketing texts in the contact's language; counted in the segments.
OPT_OUT_LINES = {
    "en": "Reply STOP to opt out",
    "it": "Rispondi STOP per disiscriverti",
    "fr": "Répondez STOP pour vous désabonner",
}


def encoding(text: str) -> str:
    """GSM-7 when every character is in the GSM alphabet (with its extension), else UCS-2."""
    return GSM7 if all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text) else UCS2


def _width(ch: str, enc: str) -> int:
    if enc == GSM7:
        return 2 if ch in GSM_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def units(text: str) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) the text takes."""
    enc = encoding(text)
    return sum(_width(ch, enc) for ch in text)


def split(text: str) -> tuple[str, list[str]]:
    """The encoding and the parts the text is sent in, in order: joined, they are the text.

    A character never straddles two parts: an extension character or a surrogate pair that
    does not fit in what is left of a segment starts the next one.
    """
    enc = encoding(text)
    widths = [_width(ch, enc) for ch in text]
    if sum(widths) <= SINGLE[enc]:
        return enc, [text]
    capacity = PER_SEGMENT[enc]
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch, width in zip(text, widths, strict=True):
        if used + width > capacity:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += width
    parts.append("".join(current))
    return enc, parts


def segments(text: str) -> tuple[str, int]:
    """(encoding, how many messages the text is billed and delivered as); an empty text is
    one (empty) message."""
    enc, parts = split(text)
    return enc, len(parts)


def opt_out_line(language: str) -> str:
    """The STOP instruction in the language (English when reengage has no copy for it)."""
    return OPT_OUT_LINES.get(language, OPT_OUT_LINES["en"])


def with_opt_out(text: str, language: str) -> str:
    """The text with the opt-out line on a line of its own, once: a text that already ends
    with it (a retry, a template that wrote it) is returned as it is."""
    line = opt_out_line(language)
    stripped = text.rstrip()
    if stripped.endswith(line):
        return stripped
    return f"{stripped}\n{line}" if stripped else line
