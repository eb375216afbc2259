"""Templates and message batches (SPEC 7): the sandbox, checks, SMS sizing and batch files."""

from loyalty_cli.render.batches import (
    message_id,
    render_message,
    write_email_batch,
    write_sms_batch,
)
from loyalty_cli.render.context import CONTEXT_KEYS, member_context, sample_context
from loyalty_cli.render.sandbox import (
    PARTS,
    RenderError,
    check_template,
    make_environment,
    missing_parts,
    template_files,
)
from loyalty_cli.render.sms import SmsInfo, normalize_phone, sms_info

__all__ = [
    "CONTEXT_KEYS",
    "PARTS",
    "RenderError",
    "SmsInfo",
    "check_template",
    "make_environment",
    "member_context",
    "message_id",
    "missing_parts",
    "normalize_phone",
    "render_message",
    "sample_context",
    "sms_info",
    "template_files",
    "write_email_batch",
    "write_sms_batch",
]
