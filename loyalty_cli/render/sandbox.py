"""The Jinja2 sandbox templates run in, and the checks `validate` makes on them (SPEC 7).

Templates are code kept in git beside the program, but they print data from the shop's
exports, so they run in Jinja2's immutable sandbox: no attribute whose name starts with an
underscore, no methods that change lists or dicts, no file outside the templates folder,
and bounded work per render (:mod:`~loyalty_cli.render.limits`).
An undefined variable is an error rather than an empty string, so a typo cannot send
"Hello ," to a hundred thousand members; ``validate`` finds it by rendering every template
against a sample member and by reading the parts a sample member does not reach.

A template NAME is ``NAME.subject.j2``, ``NAME.html.j2`` and ``NAME.txt.j2`` for email and
``NAME.sms.j2`` for SMS. Only ``.html.j2`` files are autoescaped.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial, update_wrapper, wraps
from pathlib import Path
from types import TracebackType
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, parse_pattern
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
    pass_context,
    pass_eval_context,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter, SecurityError
from markupsafe import Markup

from loyalty_cli.diagnostics import Diagnostic, LoyaltyError
from loyalty_cli.render import context as render_context
from loyalty_cli.render import limits
from loyalty_cli.render.sms import non_gsm7_chars, sms_info

# channel -> part -> file suffix after NAME.
PARTS: dict[str, dict[str, str]] = {
    "email": {"subject": "subject.j2", "html": "html.j2", "text": "txt.j2"},
    "sms": {"text": "sms.j2"},
}

DEFAULT_MAX_SMS_SEGMENTS = 3

# Spaces that number and date formatting put in; in an SMS they would force UCS-2.
_FORMAT_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " "})


_BOM = "\ufeff"

_NOT_FOUND_HINT = "create the file or fix the name; templates may not leave their folder"


class TemplateValueError(ValueError):
    """A template asked a filter for something its value cannot give; the message says
    what (reported as T506 without the exception's type)."""


class RenderError(LoyaltyError):
    """A template failed to render; ``diagnostic`` says where and why."""

    @property
    def diagnostic(self) -> Diagnostic:
        return self.diagnostics[0]


# --------------------------------------------------------------------------- files


def template_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a template name, or None when it can.

    Names may use ``/`` for subfolders but must stay inside the templates folder.
    """
    if not name or not name.strip():
        return "template name is empty"
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return f"template name {name!r} must be relative to the templates folder, using /"
    if any(piece in ("", ".", "..") for piece in name.split("/")):
        return f"template name {name!r} leaves the templates folder or has an empty segment"
    return None


def template_files(
    template_dir: str | os.PathLike[str], name: str, channel: str
) -> dict[str, Path]:
    """Part -> file of template ``name`` for ``channel`` (``email`` or ``sms``)."""
    if channel not in PARTS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {sorted(PARTS)}")
    folder = Path(template_dir)
    return {part: folder / f"{name}.{suffix}" for part, suffix in PARTS[channel].items()}


def missing_parts(template_dir: str | os.PathLike[str], name: str, channel: str) -> list[str]:
    """The parts of template ``name`` for ``channel`` whose file does not exist."""
    return [
        part
        for part, path in template_files(template_dir, name, channel).items()
        if not path.is_file()
    ]


def part_template_name(name: str, channel: str, part: str) -> str:
    """The loader name of one part, e.g. ``winback.sms.j2``."""
    return f"{name}.{PARTS[channel][part]}"


# --------------------------------------------------------------------------- environment


class _FolderLoader(FileSystemLoader):
    """A FileSystemLoader that also refuses files that a symlink takes out of the folder,
    and drops the byte order mark some Windows editors put at the start of a UTF-8 file:
    it is not text of the message (in an SMS it would force UCS-2)."""

    def __init__(self, folder: str | os.PathLike[str]):
        super().__init__(os.fspath(folder))
        self._root = os.path.realpath(os.fspath(folder))

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        real = os.path.realpath(filename)
        if os.path.commonpath([self._root, real]) != self._root:
            raise TemplateNotFound(template, f"{template!r} leaves the templates folder")
        return source.removeprefix(_BOM), filename, uptodate


def autoescape_for(template_name: str | None) -> bool:
    """HTML parts (and HTML partials) are autoescaped; subject, text and SMS are not."""
    return template_name is not None and template_name.endswith(".html.j2")


def _parse_locale(value: Any) -> Locale:
    return Locale.parse(str(value).strip().replace("-", "_"))


def _context_locale(ctx: Context, explicit: Any, default: Locale) -> Locale:
    """The explicit locale argument, else the member's ``customer.locale``, else the default.

    A bad explicit argument is the template's error; a bad locale in the shop's data is
    not, so that one falls back to the default.
    """
    if explicit is not None:
        return _parse_locale(explicit)
    customer = ctx.get("customer")
    value = customer.get("locale") if isinstance(customer, Mapping) else None
    if value:
        try:
            return _parse_locale(value)
        except (UnknownLocaleError, ValueError, TypeError):
            pass
    return default


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not an amount")
    if isinstance(value, int | float | str):
        try:
            return Decimal(str(value).strip())
        except InvalidOperation:
            pass
    raise TypeError(f"not a number: {value!r}")


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value.strip()[:10])
    raise TypeError(f"not a date: {value!r}")


def _to_moment(value: Any) -> date:
    """A date, or a datetime when the value has a time (a timestamp, ISO text with a time)."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) > 10:
        return datetime.fromisoformat(value.strip())
    return _to_date(value)


_NAMED_DATE_FORMATS = ("short", "medium", "long", "full")
# CLDR pattern fields that need a time of day (or a zone): hour, minute, second, period.
_TIME_FIELD = re.compile(r"%\(([abBhHKkmsSAzZOvVxX]\w*)\)s")


def _format_moment(value: Any, format: str, locale: Locale) -> str:
    """The ``date`` filter: a named format gives the day; a CLDR pattern may also show the
    time of a timestamp, and asking a date for one is the template's error."""
    if format in _NAMED_DATE_FORMATS:
        return format_date(_to_date(value), format=format, locale=locale)
    moment = _to_moment(value)
    pattern = parse_pattern(str(format))
    if not isinstance(moment, datetime):
        fields = _TIME_FIELD.findall(str(pattern.format))
        if fields:
            raise TemplateValueError(
                f"date: the pattern {format!r} asks for a time of day "
                f"({', '.join(repr(f) for f in fields)}) but {moment.isoformat()} is a date; "
                "only timestamps such as customer.joined_at have one"
            )
    return pattern.apply(moment, locale)


def _filters(default_locale: Locale) -> dict[str, Callable[..., Any]]:
    """Formatting filters; each prints nothing for None (a value the member does not have)."""

    @pass_context
    def money(ctx: Context, amount: Any, currency: str | None = None, locale: Any = None) -> str:
        """``{{ 12.5 | money }}`` -> ``12,50 zł`` (program currency, member locale)."""
        if amount is None:
            return ""
        if currency is None:
            program = ctx.get("program")
            currency = program.get("currency") if isinstance(program, Mapping) else None
        if not currency:
            raise ValueError("money: no currency given and the program has none")
        return format_currency(
            _to_decimal(amount), str(currency), locale=_context_locale(ctx, locale, default_locale)
        )

    @pass_context
    def date_(ctx: Context, value: Any, format: str = "medium", locale: Any = None) -> str:
        """``{{ expiring_on | date }}`` -> ``Apr 3, 2026``; format short/medium/long/full or a
        CLDR pattern such as ``d MMMM`` (``d MMMM HH:mm`` for a timestamp)."""
        if value is None:
            return ""
        return _format_moment(value, format, _context_locale(ctx, locale, default_locale))

    @pass_context
    def points(ctx: Context, value: Any, locale: Any = None) -> str:
        """``{{ balance | points }}`` -> ``12,345`` with the member's thousands separator."""
        if value is None:
            return ""
        number = _to_decimal(value)
        if number == number.to_integral_value():
            number = Decimal(int(number))
        return format_decimal(number, locale=_context_locale(ctx, locale, default_locale))

    @pass_context
    def discount(ctx: Context, value: Any, locale: Any = None) -> str:
        """``{{ coupon.discount | discount }}`` -> ``25%`` or ``20,00 zł``."""
        if value is None:
            return ""
        if not isinstance(value, Mapping):
            raise TypeError(f"discount: expected coupon.discount, got {value!r}")
        loc = _context_locale(ctx, locale, default_locale)
        if value.get("percent") is not None:
            return format_percent(_to_decimal(value["percent"]) / 100, locale=loc)
        if value.get("amount") is not None:
            return money(ctx, value["amount"], None, locale)
        return ""

    return {"money": money, "date": date_, "points": points, "discount": discount}


def _finalize(value: Any) -> Any:
    """None prints as nothing: a member without a last name gets "Hi Anna", not "Hi Anna None".

    Printed text also counts towards the render's limit (:mod:`~loyalty_cli.render.limits`).
    """
    if value is None:
        return ""
    limits.printed(value)
    return value


# Built-in filters that work on text: given none (a value the member does not have) they see
# empty text, so `{{ customer.first_name | upper }}` prints nothing rather than "NONE", as
# `{{ customer.first_name }}` does. The context keeps none, so `{% if %}` and `is none` work.
_TEXT_FILTERS = (
    "capitalize",
    "center",
    "count",
    "e",
    "escape",
    "forceescape",
    "indent",
    "length",
    "lower",
    "replace",
    "safe",
    "string",
    "striptags",
    "title",
    "trim",
    "truncate",
    "upper",
    "urlencode",
    "urlize",
    "wordcount",
    "wordwrap",
)


def _none_as_empty(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a filter) with a value of None replaced by empty text."""
    at = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @wraps(func)  # keeps jinja_pass_arg, so Jinja2 still passes the context first
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if len(args) > at and args[at] is None:
            args = (*args[:at], "", *args[at + 1 :])
        return func(*args, **kwargs)

    return wrapper


def _text_filters(builtin: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The built-in text filters, ``default`` and ``join`` taking none as a missing value."""
    filters = {name: _none_as_empty(builtin[name]) for name in _TEXT_FILTERS}
    builtin_default, builtin_join = builtin["default"], builtin["join"]

    def default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
        """``{{ customer.first_name | default("there") }}`` also for a member without one."""
        if value is None:
            return default_value
        return builtin_default(value, default_value, boolean)

    @pass_eval_context
    def join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        """Items that are none join as empty text, as they print."""
        if value is None:
            return ""
        if not isinstance(value, str):
            value = list(value)  # sized, so the limit on its length is checked before joining
            if attribute is None:
                value = ["" if item is None else item for item in value]
        return builtin_join(eval_ctx, value, d, attribute)

    filters.update(default=default, d=default, join=join)
    return filters


def _none_as_empty_text(value: Any) -> Any:
    return "" if value is None else value


class _CodeGenerator(CodeGenerator):
    """Jinja2's code generator with the sandbox's additions to the compiled template."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """``~`` as in Jinja2, except that none joins as empty text, as it prints:
        ``"Hi " ~ customer.first_name`` is ``"Hi "`` for a member without a first name."""
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"environment.bounded_text({func_name}((")
        for arg in node.nodes:
            self.write("environment.none_as_empty(")
            self.visit(arg, frame)
            self.write("), ")
        self.write(")))")

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        """``{% for %}`` as in Jinja2, with each item counted against the render's limit."""
        if not (isinstance(node.iter, nodes.Call) and _is_counted(node.iter)):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("count_iterations", lineno=node.iter.lineno),
                [node.iter],
                [],
                None,
                None,
                lineno=node.iter.lineno,
            )
        super().visit_For(node, frame)


def _is_counted(call: nodes.Call) -> bool:
    target = call.node
    return isinstance(target, nodes.EnvironmentAttribute) and target.name == "count_iterations"


MAX_RESULT_LENGTH = 100_000  # characters or items one `*` may build in a template
MAX_POWER = 10**12  # largest result of `**` a template may compute
_MAX_POWER_LOG = math.log10(MAX_POWER) + 1e-9


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with the work of a render bounded (:mod:`~loyalty_cli.render.limits`)
    so that a template cannot hang a run or exhaust memory."""

    intercepted_binops = frozenset(["*", "**", "%", "+"])
    code_generator_class = _CodeGenerator
    template_class = limits.BoundedTemplate
    none_as_empty = staticmethod(_none_as_empty_text)
    bounded_text = staticmethod(limits.bounded_text)
    count_iterations = staticmethod(limits.counted)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """Every call counts as a step of the render; text methods that could build a
        text beyond the limits (``center``, ``replace``, ``join``, ...) are refused first."""
        limits.step()
        limits.check_call(__obj, args)
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (limits.counted(args[0]), *args[1:])
        return limits.bounded_text(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map`` as in the sandbox, with bounded widths."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        f_self = value.__self__
        formatter: SandboxedFormatter = (
            limits.BoundedEscapeFormatter(self, escape=f_self.escape)
            if isinstance(f_self, Markup)
            else limits.BoundedFormatter(self)
        )
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    return wrapped(*args, **kwargs)  # raises the sandbox's TypeError
                kwargs, args = args[0], ()
            return type(f_self)(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``customer.items`` is the member's ``items`` column, not the dict method.

        Jinja2 looks up an attribute before a key; for the context's dicts the key comes
        first, so a declared customer column named ``items``, ``keys``, ``get`` or
        ``update`` prints its value. Names starting with ``_`` and names that are not keys
        go through the sandbox as before.
        """
        if isinstance(obj, dict) and not attribute.startswith("_") and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    if len(seq) * max(n, 0) > MAX_RESULT_LENGTH:
                        raise limits.TemplateLimitError(
                            f"repeating a sequence to more than {MAX_RESULT_LENGTH:,} items"
                        )
        if operator == "%":
            limits.check_printf(left, right)
        if operator == "+":
            return limits.bounded_text(super().call_binop(context, operator, left, right))
        if operator == "**" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
            # log10 of the result, checked before computing it; the exact check after it
            # settles results next to the limit (10**12 is allowed, 10**12 + 1 is not)
            if abs(left) > 1 and right > 0 and right * math.log10(abs(left)) > _MAX_POWER_LOG:
                raise limits.TemplateLimitError(f"a power above {MAX_POWER:,}")
            result = super().call_binop(context, operator, left, right)
            if isinstance(result, (int, float)) and abs(result) > MAX_POWER:
                raise limits.TemplateLimitError(f"a power above {MAX_POWER:,}")
            return result
        return super().call_binop(context, operator, left, right)


def make_environment(
    template_dir: str | os.PathLike[str], *, default_locale: str = "en"
) -> ImmutableSandboxedEnvironment:
    """The sandboxed environment that renders the templates in ``template_dir``.

    ``default_locale`` formats numbers and dates for members without a usable
    ``customer.locale``.
    """
    env = _BoundedSandbox(
        loader=_FolderLoader(template_dir),
        undefined=StrictUndefined,
        autoescape=autoescape_for,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals.pop("lipsum", None)  # placeholder text has no place in a message
    env.globals["range"] = limits.bounded_range  # Jinja's own fails with an OverflowError
    env.filters.update(limits.bounded_filters(env.filters))
    env.filters.update(_text_filters(env.filters))
    env.filters.update(_filters(_parse_locale(default_locale)))
    return env


# --------------------------------------------------------------------------- errors


def _template_frame(tb: TracebackType | None) -> tuple[str, int] | None:
    """(file, line) of the innermost template frame of a rendering traceback.

    Jinja2 rewrites tracebacks so that template code shows as frames of the template file
    at the template's line; those frames carry ``__jinja_exception__`` in their globals.
    """
    found = None
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


_UNDEFINED_NAME = re.compile(r"'(\w+)' is undefined|has no attribute '(\w+)'")


def _line_of(source: str | None, word: str | None) -> int | None:
    """The first line of ``source`` where ``word`` appears inside ``{{ }}`` or ``{% %}``."""
    if not source or not word:
        return None
    for number, line in enumerate(source.splitlines(), start=1):
        if re.search(rf"\b{re.escape(word)}\b", line) and ("{{" in line or "{%" in line):
            return number
    return None


def diagnose(exc: BaseException, path: str, source: str | None = None) -> Diagnostic:
    """The Diagnostic for an exception raised while loading or rendering template ``path``."""
    if isinstance(exc, TemplateSyntaxError):
        return Diagnostic(
            "T502",
            f"template syntax error: {exc.message}",
            path=exc.filename or path,
            line=exc.lineno,
            hint="see https://jinja.palletsprojects.com/templates/ for the syntax",
        )
    frame = _template_frame(exc.__traceback__)
    where, line = frame if frame else (path, None)
    if isinstance(exc, TemplateNotFound):
        return Diagnostic(
            "T501",
            f"template {exc.name!r} not found in the templates folder",
            path=where,
            line=line,
            hint=_NOT_FOUND_HINT,
        )
    if isinstance(exc, limits.TemplateLimitError):
        return Diagnostic(
            "T504",
            f"unsafe template operation: {exc}",
            path=where,
            line=line,
            hint="no message needs this much; see the limits in docs/templates.md",
        )
    if isinstance(exc, SecurityError):
        return Diagnostic(
            "T504",
            f"unsafe template operation: {exc}",
            path=where,
            line=line,
            hint="templates may not use attributes starting with '_' or change lists and dicts",
        )
    if isinstance(exc, UndefinedError):
        if line is None and where == path:
            match = _UNDEFINED_NAME.search(str(exc))
            line = _line_of(source, next((g for g in match.groups() if g), None)) if match else None
        return Diagnostic(
            "T503",
            f"undefined template variable: {exc}",
            path=where,
            line=line,
            hint="use the context keys listed in docs/templates.md; guard optional values "
            "with `{% if x is defined %}` or `| default(...)`",
        )
    if isinstance(exc, UnicodeDecodeError):
        return Diagnostic("T502", "template file is not valid UTF-8", path=where, line=line)
    if isinstance(exc, TemplateValueError):
        return Diagnostic("T506", f"template render error: {exc}", path=where, line=line)
    return Diagnostic(
        "T506",
        f"template render error: {type(exc).__name__}: {exc}",
        path=where,
        line=line,
    )


def render_template(
    env: ImmutableSandboxedEnvironment, template_name: str, context: Mapping
) -> str:
    """Render one template file; any failure becomes a RenderError with a Diagnostic."""
    path = os.path.normpath(os.path.join(_searchpath(env), template_name))
    try:
        return env.get_template(template_name).render(dict(context))
    except Exception as exc:  # every failure of a user's template is reported, never raised raw
        raise RenderError(diagnose(exc, path)) from exc


def _searchpath(env: ImmutableSandboxedEnvironment) -> str:
    loader = env.loader
    return loader.searchpath[0] if isinstance(loader, FileSystemLoader) else ""


def clean_subject(text: str) -> str:
    """A subject is one line: runs of whitespace, newlines included, become one space."""
    return " ".join(text.split())


def clean_sms(text: str) -> str:
    """SMS text without leading or trailing whitespace, and with the no-break spaces that
    number and date formatting insert turned into plain spaces (they are not in GSM-7)."""
    return text.translate(_FORMAT_SPACES).strip()


def finish_part(channel: str, part: str, text: str) -> str:
    """The rendered text of a part as it is sent."""
    if channel == "sms":
        return clean_sms(text)
    if part == "subject":
        return clean_subject(text)
    return text


def empty_part_diagnostic(
    env: ImmutableSandboxedEnvironment, name: str, channel: str, part: str, *, sample: bool = False
) -> Diagnostic:
    """The error of a part that renders empty for a member (a warning for the sample member
    in ``validate``): T505 for the SMS text, T506 for an email's subject, HTML or text."""
    path = os.path.normpath(os.path.join(_searchpath(env), part_template_name(name, channel, part)))
    what = f"SMS {name!r}" if channel == "sms" else f"the {part} of email {name!r}"
    return Diagnostic(
        "T505" if channel == "sms" else "T506",
        f"{what} renders empty" + (" for the sample member" if sample else ""),
        path=path,
        severity="warning" if sample else "error",
        hint="an empty message is not sent; give a fallback "
        '(`{{ customer.first_name or "there" }}`) or keep text outside the `{% if %}`',
    )


# --------------------------------------------------------------------------- static checks


def _path_of(node: nodes.Node) -> tuple[str, ...] | None:
    """``customer.first_name`` or ``customer['first_name']`` as ("customer", "first_name")."""
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        inner = _path_of(node.node)
        return inner + (node.attr,) if inner else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        if isinstance(node.arg.value, str):
            inner = _path_of(node.node)
            return inner + (node.arg.value,) if inner else None
    return None


def _guarded_paths(ast: nodes.Template) -> set[tuple[str, ...]]:
    """Paths the template tests with ``is defined`` or gives a ``default``: not errors."""
    guarded = set()
    for test in ast.find_all(nodes.Test):
        if test.name in ("defined", "undefined"):
            path = _path_of(test.node)
            if path:
                guarded.add(path)
    for flt in ast.find_all(nodes.Filter):
        if flt.name in ("default", "d") and flt.node is not None:
            path = _path_of(flt.node)
            if path:
                guarded.add(path)
    return guarded


def static_checks(
    env: ImmutableSandboxedEnvironment, ast: nodes.Template, path: str, context: Mapping
) -> list[Diagnostic]:
    """Problems visible without rendering, also in branches the sample member does not take.

    T504 for attributes starting with ``_``; T503 for names that are neither context keys
    nor template globals, and for keys missing from the context's dicts
    (``customer.frist_name``), unless the template guards them with ``is defined`` or
    ``default``.
    """
    diags: list[Diagnostic] = []
    unsafe = [n for n in ast.find_all(nodes.Getattr) if n.attr.startswith("_")]
    # in ``x.__class__.__mro__`` report the first: the one no other unsafe access is inside
    innermost = [
        n
        for n in unsafe
        if not any(m.attr.startswith("_") for m in n.node.find_all(nodes.Getattr))
        and not (isinstance(n.node, nodes.Getattr) and n.node.attr.startswith("_"))
    ]
    unsafe_lines: set[int] = set()
    for node in innermost:
        if node.lineno not in unsafe_lines:
            unsafe_lines.add(node.lineno)
            diags.append(
                Diagnostic(
                    "T504",
                    f"unsafe template operation: attribute {node.attr!r} starts with '_'",
                    path=path,
                    line=node.lineno,
                    hint="templates may not use attributes starting with '_'",
                )
            )
    guarded = _guarded_paths(ast)
    undeclared = meta.find_undeclared_variables(ast)
    known = set(context) | set(env.globals)
    first_use: dict[str, int] = {}
    for name_node in ast.find_all(nodes.Name):
        if name_node.ctx == "load":
            first_use.setdefault(name_node.name, name_node.lineno)
    for name in sorted(undeclared - known, key=lambda n: (first_use.get(n, 0), n)):
        if (name,) in guarded:
            continue
        close = difflib.get_close_matches(name, sorted(context), n=1)
        diags.append(
            Diagnostic(
                "T503",
                f"undefined template variable: {name!r} is not in the template context",
                path=path,
                line=first_use.get(name),
                hint=f"did you mean {close[0]!r}?"
                if close
                else "the context is: " + ", ".join(context),
            )
        )
    seen: set[tuple[tuple[str, ...], int]] = set()
    for access in ast.find_all((nodes.Getattr, nodes.Getitem)):
        dotted = _path_of(access)
        if not dotted or dotted[0] not in undeclared or dotted[0] not in context:
            continue
        if dotted in guarded or (dotted, access.lineno) in seen:
            continue
        value: Any = context[dotted[0]]
        for step in dotted[1:-1]:
            value = value.get(step) if isinstance(value, Mapping) else None
        last = dotted[-1]
        if last.startswith("_") or not isinstance(value, Mapping):
            continue  # underscores are T504; other values have attributes of their type
        if last in value or hasattr(dict, last):
            continue
        seen.add((dotted, access.lineno))
        close = difflib.get_close_matches(last, [str(k) for k in value], n=1)
        diags.append(
            Diagnostic(
                "T503",
                f"undefined template variable: {'.'.join(dotted[:-1])} has no key {last!r}",
                path=path,
                line=access.lineno,
                hint=f"did you mean {close[0]!r}?"
                if close
                else "its keys are: " + ", ".join(str(k) for k in value),
            )
        )
    return diags


def _referenced(ast: nodes.Template) -> list[tuple[str, int, bool]]:
    """(template name, line, may be missing) of each include, import and extends by name."""
    out = []
    for node in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        target = getattr(node, "template", None)
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            optional = isinstance(node, nodes.Include) and node.ignore_missing
            out.append((target.value, node.lineno, optional))
    return out


def _load(env: ImmutableSandboxedEnvironment, template_name: str) -> tuple[str, str]:
    assert env.loader is not None
    source, filename, _ = env.loader.get_source(env, template_name)
    return source, filename or template_name


def _check_file(
    env: ImmutableSandboxedEnvironment,
    template_name: str,
    context: Mapping | None,
    seen: set[str],
) -> list[Diagnostic]:
    """Syntax and static checks of one file and, without context checks, of the files it
    includes, imports or extends."""
    seen.add(template_name)
    path = os.path.normpath(os.path.join(_searchpath(env), template_name))
    try:
        source, path = _load(env, template_name)
        env.get_template(template_name)  # compiles: also finds unknown filters and tests
        ast = env.parse(source, template_name, path)
    except Exception as exc:
        return [diagnose(exc, path)]
    diags = (
        static_checks(env, ast, path, context)
        if context is not None
        else [d for d in static_checks(env, ast, path, {}) if d.code == "T504"]
    )
    for ref, line, optional in _referenced(ast):
        if ref in seen:
            continue
        if template_name_problem(ref) or not _exists(env, ref):
            if not optional:
                diags.append(
                    Diagnostic(
                        "T501",
                        f"template {ref!r} not found in the templates folder",
                        path=path,
                        line=line,
                        hint=_NOT_FOUND_HINT,
                    )
                )
            continue
        diags.extend(_check_file(env, ref, None, seen))
    return diags


def _exists(env: ImmutableSandboxedEnvironment, template_name: str) -> bool:
    try:
        _load(env, template_name)
    except TemplateNotFound:
        return False
    except Exception:
        return True  # it exists but fails otherwise: reported when checked
    return True


# --------------------------------------------------------------------------- check_template


def _top_tier(context: Mapping) -> dict | None:
    """The context of a member on the top tier, when the sample member is not."""
    if context.get("next_tier") is None:
        return None
    variant = dict(context)
    variant["next_tier"] = None
    variant["points_to_next_tier"] = None
    return variant


_CHECKED: dict[tuple, list[tuple]] = {}
_INCLUDES = re.compile(r"\{%-?\s*(include|import|from|extends)\b")


def check_template(
    template_dir: str | os.PathLike[str],
    name: str | None,
    channel: str | None,
    *,
    ref_path: str = "",
    ref_line: int | None = None,
    ref_col: int | None = None,
    program: Mapping | None = None,
    sample_context: Mapping | None = None,
    env: ImmutableSandboxedEnvironment | None = None,
    max_sms_segments: int = DEFAULT_MAX_SMS_SEGMENTS,
) -> list[Diagnostic]:
    """Every problem of template ``name`` for ``channel`` (see `_check_template`).

    Results are remembered by the templates' text and the sample context, so a repository
    of many shops sharing the same templates checks each text once. Templates that include
    others, and missing files, are always checked afresh.
    """
    folder = Path(template_dir)
    key = None
    if isinstance(name, str) and channel in PARTS and not template_name_problem(name):
        files = template_files(folder, name, channel)
        try:
            texts = tuple(path.read_text(encoding="utf-8") for path in files.values())
        except (OSError, UnicodeDecodeError):
            texts = None
        if texts is not None and not any(_INCLUDES.search(t) for t in texts):
            ctx = sample_context if sample_context is not None else program
            key = (
                name,
                channel,
                texts,
                json.dumps(ctx, sort_keys=True, default=str),
                max_sms_segments,
                sample_context is None,
            )
    if key is not None and key in _CHECKED:
        return [_reroot(entry, folder) for entry in _CHECKED[key]]
    diags = _check_template(
        template_dir,
        name,
        channel,
        ref_path=ref_path,
        ref_line=ref_line,
        ref_col=ref_col,
        program=program,
        sample_context=sample_context,
        env=env,
        max_sms_segments=max_sms_segments,
    )
    if key is not None:
        relative = [_relative(d, folder) for d in diags]
        entries = [e for e in relative if e is not None]
        if len(entries) == len(relative):
            if len(_CHECKED) > 5000:
                _CHECKED.clear()
            _CHECKED[key] = entries
    return diags


def _relative(d: Diagnostic, folder: Path) -> tuple | None:
    try:
        rel = Path(d.path).relative_to(folder)
    except ValueError:
        return None
    return (d, rel)


def _reroot(entry: tuple, folder: Path) -> Diagnostic:
    d, rel = entry
    return replace(d, path=os.path.join(str(folder), str(rel)))


def _check_template(
    template_dir: str | os.PathLike[str],
    name: str | None,
    channel: str | None,
    *,
    ref_path: str = "",
    ref_line: int | None = None,
    ref_col: int | None = None,
    program: Mapping | None = None,
    sample_context: Mapping | None = None,
    env: ImmutableSandboxedEnvironment | None = None,
    max_sms_segments: int = DEFAULT_MAX_SMS_SEGMENTS,
) -> list[Diagnostic]:
    """Every problem of template ``name`` for ``channel``, as validate reports them.

    ``ref_path``/``ref_line``/``ref_col`` locate where a program or workflow names the
    template: a missing file (T501) or a bad name (R306) is reported there. The template
    is rendered against ``sample_context`` (default:
    :func:`~loyalty_cli.render.context.sample_context` of ``program``; pass one with
    ``coupon`` None for a step that assigns no coupon). A name or channel that is not
    text, or a channel other than email and sms, is the schema's to report: no diagnostics.

    - T501 a part's file is missing (or a file it includes)
    - T502 syntax error, with the template's file and line
    - T503 undefined variable, also in branches the sample member does not reach; a
      failure only for members on the top tier (``next_tier`` empty) is a warning
    - T504 unsafe operation (attributes starting with ``_``, changing lists or dicts)
    - T506 any other render error; a warning when an email part renders empty for the
      sample member
    - T505 for SMS: encoding and segments of the sample render (info; a warning above
      ``max_sms_segments`` segments or when it renders empty)
    """
    folder = Path(template_dir)
    if not isinstance(name, str) or channel not in PARTS:
        return []
    at_ref = partial(Diagnostic, path=ref_path or str(folder), line=ref_line, col=ref_col)
    problem = template_name_problem(name)
    if problem:
        return [at_ref("R306", problem, hint="name a template inside the templates folder")]
    files = template_files(folder, name, channel)
    missing = missing_parts(folder, name, channel)
    diags: list[Diagnostic] = []
    if missing:
        listed = ", ".join(files[part].name for part in missing)
        diags.append(
            at_ref(
                "T501",
                f"template {name!r} for {channel} is missing {listed} in {folder}",
                hint="a template for "
                + channel
                + " needs "
                + ", ".join(path.name for path in files.values()),
                extra={"missing": [str(files[part]) for part in missing]},
            )
        )
    env = env or make_environment(folder)
    ctx = (
        dict(sample_context)
        if sample_context is not None
        else render_context.sample_context(program)
    )
    top = _top_tier(ctx)
    rendered: dict[str, str] = {}
    for part in files:
        if part in missing:
            continue
        tname = part_template_name(name, channel, part)
        part_diags = _check_file(env, tname, ctx, set())
        if any(d.code in ("T501", "T502") for d in part_diags):
            diags.extend(part_diags)
            continue
        reported = {(d.code, d.path, d.line) for d in part_diags}
        try:
            rendered[part] = finish_part(channel, part, render_template(env, tname, ctx))
        except RenderError as err:
            d = err.diagnostic
            if (d.code, d.path, d.line) not in reported:
                part_diags.append(d)
        else:
            if top is not None:
                try:
                    render_template(env, tname, top)
                except RenderError as err:
                    d = err.diagnostic
                    if (d.code, d.path, d.line) not in reported:
                        part_diags.append(
                            Diagnostic(
                                d.code,
                                d.message + " (for a member on the top tier: next_tier is empty)",
                                path=d.path,
                                line=d.line,
                                severity="warning",
                                hint="guard it with `{% if next_tier %}...{% endif %}`",
                            )
                        )
        diags.extend(sorted(part_diags, key=lambda d: (d.path, d.line or 0)))
    if channel == "sms" and "text" in rendered:
        diags.append(sms_diagnostic(name, rendered["text"], str(files["text"]), max_sms_segments))
    if channel == "email":
        diags.extend(
            empty_part_diagnostic(env, name, channel, part, sample=True)
            for part, text in rendered.items()
            if not text.strip()
        )
    return [_with_column(d) for d in diags]


_QUOTED = re.compile(r"'([^']+)'")
_BLOCK_TAG = re.compile(r"\{%-?\s*(\w+)")
_BLOCKS = {"if", "for", "macro", "call", "filter", "with", "block", "raw", "autoescape", "trans"}


def _with_column(d: Diagnostic) -> Diagnostic:
    """Give template diagnostics a column: the name or tag the message is about."""
    if d.col is not None or not d.line or not d.code.startswith("T50") or d.code == "T505":
        return d
    try:
        lines = Path(d.path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return d
    if d.code == "T502" and "Unexpected end of template" in d.message:
        opened = _unclosed_block(lines)
        if opened:
            return replace(d, line=opened[0], col=opened[1])
    if d.line > len(lines):
        return d
    text = lines[d.line - 1]
    for token in _QUOTED.findall(d.message):
        at = text.find(token)
        if at >= 0 and token not in ("str", "dict object"):
            return replace(d, col=at + 1)
    at = text.find("{{")
    return replace(d, col=at + 1 if at >= 0 else 1)


def _unclosed_block(lines: list[str]) -> tuple[int, int] | None:
    """(line, col) of the innermost block tag that is never closed."""
    stack: list[tuple[str, int, int]] = []
    for n, text in enumerate(lines, start=1):
        for m in _BLOCK_TAG.finditer(text):
            tag = m.group(1)
            if tag in _BLOCKS:
                stack.append((tag, n, m.start() + 1))
            elif tag.startswith("end") and stack and stack[-1][0] == tag[3:]:
                stack.pop()
    return (stack[-1][1], stack[-1][2]) if stack else None


def sms_diagnostic(name: str, text: str, path: str, max_segments: int) -> Diagnostic:
    """T505: how the sample render of an SMS template is sent."""
    info = sms_info(text)
    unit = "septets" if info.encoding == "GSM-7" else "UTF-16 units"
    plural = "" if info.segments == 1 else "s"
    message = (
        f"SMS {name!r} for the sample member: {info.encoding}, "
        f"{info.segments} segment{plural}, {info.units} {unit}"
    )
    hint = ""
    severity = "info"
    if info.encoding == "UCS-2":
        chars = non_gsm7_chars(text)
        shown = " ".join(repr(c) for c in chars[:5]) + (" ..." if len(chars) > 5 else "")
        message += f" (UCS-2 because of {shown})"
    if info.segments == 0:
        severity = "warning"
        message = f"SMS {name!r} renders empty for the sample member"
        hint = "an empty SMS is not sent"
    elif info.segments > max_segments:
        severity = "warning"
        message += f"; more than {max_segments} segments"
        hint = "shorten the text" + (
            " or use only GSM-7 characters (a UCS-2 segment holds 70 characters, not 160)"
            if info.encoding == "UCS-2"
            else ""
        )
    return Diagnostic(
        "T505",
        message,
        path=path,
        severity=severity,
        hint=hint,
        extra={"encoding": info.encoding, "segments": info.segments, "units": info.units},
    )
