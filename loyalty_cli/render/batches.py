"""Rendered message batches, the files the email and SMS tools import (SPEC 7).

For each workflow step that sends, a run writes ``out/D/messages/<workflow>/<step>.email.jsonl``
and ``<step>.sms.csv``. Both are sorted by customer_id then message_id (as text) and
written the same way every time, so the same state and data give byte-identical files.

Each message has an id that depends only on what it is (:func:`message_id`), so a re-run of
a day, or an email tool importing the same file twice, can tell a message already sent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from loyalty_cli.csvsafe import csv_text, is_e164, write_text_atomic
from loyalty_cli.render.sandbox import (
    PARTS,
    RenderError,
    empty_part_diagnostic,
    finish_part,
    part_template_name,
    render_template,
)
from loyalty_cli.render.sms import sms_info

EMAIL_FIELDS = ("customer_id", "message_id", "to", "from", "subject", "html", "text")
SMS_FIELDS = ("customer_id", "message_id", "to", "sender", "text", "encoding", "segments")

# Columns of the SMS batch that are neutralised for spreadsheets. The text is the message
# itself and stays exactly as it is sent; the recipient is E.164 and the rest is ours.
SMS_TEXT_COLUMNS = ("customer_id",)

MESSAGE_ID_LENGTH = 20

# Characters that str.splitlines() and some JSON-lines readers take as line breaks but
# json.dumps(ensure_ascii=False) leaves as they are.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def message_id(workflow_id: str, step_id: str, customer_id: str, instance_key: Any) -> str:
    """The id of one message: the first 20 hex digits of a SHA-256.

    The hash is over the UTF-8 JSON array ``[workflow_id, step_id, customer_id,
    instance_key]`` (all as text, no spaces), so ids never collide by concatenation and
    the same message gets the same id in every run. ``instance_key`` tells apart the
    times a member goes through the same workflow (e.g. the day of entry).
    """
    key = json.dumps(
        [str(workflow_id), str(step_id), str(customer_id), str(instance_key)],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:MESSAGE_ID_LENGTH]


def render_message(
    env: ImmutableSandboxedEnvironment, name: str, channel: str, context: Mapping
) -> dict[str, str]:
    """The parts of template ``name`` rendered for one member, as they are sent.

    Email: ``subject`` (one line), ``html`` (autoescaped) and ``text``. SMS: ``text``
    (trimmed, no-break spaces from formatting made plain). Raises
    :class:`~loyalty_cli.render.sandbox.RenderError` with a Diagnostic on failure, and
    when a part renders empty (or only whitespace) for this member: an SMS without text
    or an email without subject or body is not a message to send.
    """
    if channel not in PARTS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {sorted(PARTS)}")
    parts = {}
    for part in PARTS[channel]:
        template_name = part_template_name(name, channel, part)
        text = finish_part(channel, part, render_template(env, template_name, context))
        if not text.strip():
            raise RenderError(empty_part_diagnostic(env, name, channel, part))
        parts[part] = text
    return parts


def _sorted(messages: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(messages, key=lambda m: (str(m["customer_id"]), str(m["message_id"])))


def _json_line(obj: dict[str, Any]) -> str:
    line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in _LINE_BREAKS.items():
        line = line.replace(raw, escaped)
    return line


def email_batch_text(messages: Iterable[Mapping[str, Any]]) -> str:
    """The JSON-lines document written by :func:`write_email_batch`."""
    messages = list(messages)
    for message in messages:
        missing = [f for f in EMAIL_FIELDS if f not in message]
        if missing:
            raise ValueError(f"email message lacks {missing}: {dict(message)!r}")
    lines = []
    for message in _sorted(messages):
        lines.append(_json_line({f: str(message[f]) for f in EMAIL_FIELDS}) + "\n")
    return "".join(lines)


def write_email_batch(path: str | os.PathLike[str], messages: Iterable[Mapping[str, Any]]) -> int:
    """Write an email batch as JSON lines; returns the number of messages.

    One object per line with the keys customer_id, message_id, to, from, subject, html,
    text in that order, UTF-8 (non-ASCII characters as they are), compact separators,
    ``\\n`` after every line.
    """
    text = email_batch_text(messages)
    write_text_atomic(Path(path), text)
    return text.count("\n")


def sms_batch_text(messages: Iterable[Mapping[str, Any]]) -> str:
    """The CSV document written by :func:`write_sms_batch`."""
    messages = list(messages)
    for message in messages:
        missing = [f for f in SMS_FIELDS[:5] if f not in message]
        if missing:
            raise ValueError(f"SMS message lacks {missing}: {dict(message)!r}")
    rows = []
    for message in _sorted(messages):
        to = str(message["to"])
        if not is_e164(to):
            raise ValueError(f"SMS recipient {to!r} is not in E.164; normalise it first")
        text = str(message["text"])
        info = sms_info(text)
        rows.append(
            [
                str(message["customer_id"]),
                str(message["message_id"]),
                to,
                str(message["sender"]),
                text,
                info.encoding,
                info.segments,
            ]
        )
    return csv_text(SMS_FIELDS, rows, text_columns=SMS_TEXT_COLUMNS)


def write_sms_batch(path: str | os.PathLike[str], messages: Iterable[Mapping[str, Any]]) -> int:
    """Write an SMS batch as CSV; returns the number of messages.

    Columns customer_id, message_id, to (E.164), sender, text, encoding (GSM-7 or UCS-2)
    and segments, both computed from the text. Recipients must already be E.164
    (:func:`~loyalty_cli.render.sms.normalize_phone`; members without a valid phone are
    reported, not sent).
    """
    messages = list(messages)
    write_text_atomic(Path(path), sms_batch_text(messages))
    return len(messages)
