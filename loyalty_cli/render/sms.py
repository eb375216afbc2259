"""SMS length and encoding, and phone numbers in E.164 (SPEC 7).

An SMS is billed per segment, so the tool reports how a text will be sent:

- **GSM-7** when every character is in the GSM 03.38 basic set or its extension table.
  A basic character takes one septet, an extension character (``€ [ ] { } \\ ^ ~ |`` and
  form feed) two, because it is sent as an escape plus the character. One segment holds
  160 septets; a longer text is split into segments of 153 septets (the rest is the
  concatenation header), and an escape pair is never split across two segments.
- **UCS-2** otherwise (one character outside GSM-7, such as ``ł``, ``ç`` or an emoji, is
  enough). Length is counted in UTF-16 code units: a character outside the Basic
  Multilingual Plane (most emoji) takes two. One segment holds 70 units, a longer text is
  split into segments of 67, and a surrogate pair is never split.

An empty text has 0 segments: there is nothing to send.
"""

from __future__ import annotations

from typing import NamedTuple

import phonenumbers

# GSM 03.38 basic character set, in code order 0x00-0x7F. 0x1B is the escape to the
# extension table and is not a character of its own, so it is left out.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ"
    "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

# GSM 03.38 extension table: each is sent as ESC + character, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE_SEGMENT = 160
GSM7_MULTI_SEGMENT = 153
UCS2_SINGLE_SEGMENT = 70
UCS2_MULTI_SEGMENT = 67


class SmsInfo(NamedTuple):
    """How a text is sent: its encoding, number of segments and length in units.

    ``units`` is septets for GSM-7 and UTF-16 code units for UCS-2.
    """

    encoding: str  # "GSM-7" | "UCS-2"
    segments: int
    units: int


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` can be sent in GSM-7."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def non_gsm7_chars(text: str) -> list[str]:
    """The distinct characters that force UCS-2, in order of first appearance."""
    seen: list[str] = []
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION and ch not in seen:
            seen.append(ch)
    return seen


def _segments(costs: list[int], single: int, multi: int) -> int:
    """Segments needed for characters of the given unit costs; a character is never split."""
    total = sum(costs)
    if total == 0:
        return 0
    if total <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments += 1
            used = 0
        used += cost
    return segments


def sms_info(text: str) -> SmsInfo:
    """Encoding, segment count and length of ``text`` as an SMS."""
    if is_gsm7(text):
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return SmsInfo(
            "GSM-7", _segments(costs, GSM7_SINGLE_SEGMENT, GSM7_MULTI_SEGMENT), sum(costs)
        )
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return SmsInfo("UCS-2", _segments(costs, UCS2_SINGLE_SEGMENT, UCS2_MULTI_SEGMENT), sum(costs))


def normalize_phone(raw: object, default_region: str | None = None) -> str | None:
    """A phone number in E.164 (``+48601234567``), or None when it is not a valid number.

    Numbers written without a country code are read in ``default_region`` (the program's
    ``messaging.default_region``, an ISO country code such as ``PL``); without one, only
    numbers with a ``+`` or international prefix can be read.
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    region = default_region.upper() if default_region else None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
