"""SMS encoding and segments (GSM 03.38, UCS-2) and phone normalisation to E.164."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty_cli.render.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SmsInfo,
    non_gsm7_chars,
    normalize_phone,
    sms_info,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsInfo("GSM-7", 0, 0)),
        ("a", SmsInfo("GSM-7", 1, 1)),
        ("a" * 160, SmsInfo("GSM-7", 1, 160)),
        ("a" * 161, SmsInfo("GSM-7", 2, 161)),
        ("a" * 306, SmsInfo("GSM-7", 2, 306)),
        ("a" * 307, SmsInfo("GSM-7", 3, 307)),
        ("a" * 459, SmsInfo("GSM-7", 3, 459)),
        ("a" * 460, SmsInfo("GSM-7", 4, 460)),
        # extension characters take two septets
        ("€", SmsInfo("GSM-7", 1, 2)),
        ("{}[]~|^\\€\f", SmsInfo("GSM-7", 1, 20)),
        ("a" * 158 + "€", SmsInfo("GSM-7", 1, 160)),
        ("a" * 159 + "€", SmsInfo("GSM-7", 2, 161)),
        # an escape pair is not split: 152 + (2) does not fit 153, so € opens segment 2,
        # which then holds 2 + 152 = 154 > 153 septets: a third segment.
        ("a" * 152 + "€" + "a" * 152, SmsInfo("GSM-7", 3, 306)),
        ("a" * 151 + "€" + "a" * 153, SmsInfo("GSM-7", 2, 306)),
        # basic set beyond ASCII
        ("Ñoño Ångström Ødegaard ß ¿¡ §¤ ΔΦΓΛΩΠΨΣΘΞ £¥ èéùìòÇ Ææ Éà", SmsInfo("GSM-7", 1, 57)),
        ("line\r\nnext", SmsInfo("GSM-7", 1, 10)),
        # UCS-2: one character outside GSM-7 is enough
        ("ż", SmsInfo("UCS-2", 1, 1)),
        ("ż" * 70, SmsInfo("UCS-2", 1, 70)),
        ("ż" * 71, SmsInfo("UCS-2", 2, 71)),
        ("ż" * 134, SmsInfo("UCS-2", 2, 134)),
        ("ż" * 135, SmsInfo("UCS-2", 3, 135)),
        ("a" * 69 + "ç", SmsInfo("UCS-2", 1, 70)),
        ("`", SmsInfo("UCS-2", 1, 1)),
        ("\t", SmsInfo("UCS-2", 1, 1)),
        # astral characters (emoji) are two UTF-16 units, and a pair is not split
        ("😀", SmsInfo("UCS-2", 1, 2)),
        ("a" * 68 + "😀", SmsInfo("UCS-2", 1, 70)),
        ("a" * 69 + "😀", SmsInfo("UCS-2", 2, 71)),
        ("ż" * 66 + "😀" + "ż" * 66, SmsInfo("UCS-2", 3, 134)),
        ("ż" * 65 + "😀" + "ż" * 67, SmsInfo("UCS-2", 2, 134)),
    ],
)
def test_sms_info(text, expected):
    assert sms_info(text) == expected


def test_gsm7_tables_have_the_standard_sizes():
    # 128 code points in the basic table, less the escape; 10 in the extension table.
    assert len(GSM7_BASIC) == 127
    assert GSM7_EXTENSION == frozenset("\f^{}\\[~]|€")
    assert "\x1b" not in GSM7_BASIC
    assert GSM7_BASIC.isdisjoint(GSM7_EXTENSION)


def test_non_gsm7_chars_in_order_of_appearance():
    assert non_gsm7_chars("Zażółć gęślą €") == ["ż", "ó", "ł", "ć", "ę", "ś", "ą"]
    assert non_gsm7_chars("plain [text]") == []


@given(st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=700))
def test_gsm7_segments_hold_at_most_153_septets(text):
    info = sms_info(text)
    assert info.encoding == "GSM-7"
    assert info.units == len(text) + sum(ch in GSM7_EXTENSION for ch in text)
    if info.units <= 160:
        assert info.segments == (1 if text else 0)
    else:
        assert info.segments >= -(-info.units // 153)
        assert info.segments <= -(-info.units // 152)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("601 234 567", "PL", "+48601234567"),
        ("+48 601-234-567", "PL", "+48601234567"),
        ("0048601234567", "PL", "+48601234567"),
        ("+48601234567", None, "+48601234567"),
        ("(201) 555-0123", "us", "+12015550123"),
        ("+1 201 555 0123", "PL", "+12015550123"),
        ("601234567", None, None),  # no country code and no region
        ("123", "PL", None),
        ("not a phone", "PL", None),
        ("", "PL", None),
        ("   ", "PL", None),
        (None, "PL", None),
        ("+48 000 000 000", "PL", None),
    ],
)
def test_normalize_phone(raw, region, expected):
    assert normalize_phone(raw, region) == expected
