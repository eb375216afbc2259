"""How much work one render of a template may do (docs/templates.md, "Limits").

A template is code, and a slip in it (a loop inside a loop, a width typed with three zeros
too many) should stop with an error that names the limit, not make ``validate`` or ``run``
hang or take gigabytes. No real message comes near these limits:

- ``MAX_STEPS`` loop iterations and calls (macros, methods, ``range``) in one render;
- ``MAX_OUTPUT`` characters of text: the rendered part, everything printed with ``{{ }}``
  (also inside ``{% set %}`` blocks and macros), and each text built with ``~``, ``+``,
  ``join`` or ``replace``;
- ``MAX_PADDING`` for a width or precision: ``center``, ``indent``, ``format``, ``%``,
  ``str.format`` and the ``ljust``/``rjust``/``zfill``/``expandtabs`` methods.

Operations that can multiply a text are checked before they build it, the others after.
The counters live in a context variable that :class:`BoundedTemplate` sets for each render.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from functools import wraps
from typing import Any

from jinja2 import Template
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter, SecurityError

MAX_STEPS = 100_000
MAX_OUTPUT = 1_000_000
MAX_PADDING = 1_000


class TemplateLimitError(SecurityError):
    """A render went past one of the limits; the message names it (T504)."""


class _Budget:
    """What one render has used so far."""

    __slots__ = ("printed", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.printed = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TemplateLimitError(
                f"more than {MAX_STEPS:,} loop iterations and calls in one render"
            )

    def print(self, text: str) -> None:
        self.printed += len(text)
        if self.printed > MAX_OUTPUT:
            raise TemplateLimitError(f"a render of more than {MAX_OUTPUT:,} characters")


_BUDGET: ContextVar[_Budget | None] = ContextVar("loyalty_render_budget", default=None)


def step() -> None:
    """Count one call or loop iteration of the current render."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.step()


def printed(value: Any) -> None:
    """Count text printed with ``{{ }}`` in the current render."""
    budget = _BUDGET.get()
    if budget is not None and isinstance(value, str):
        budget.print(value)


def bounded_range(*args: int) -> range:
    """``range()`` of templates: at most MAX_STEPS items (more could never be looped over)."""
    items = range(*args)
    # len() fails with an OverflowError past sys.maxsize items; the slice's length does not.
    if len(items[: MAX_STEPS + 1]) > MAX_STEPS:
        raise TemplateLimitError(f"range() of more than {MAX_STEPS:,} items")
    return items


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """The items of a ``{% for %}`` loop, each counted as a step."""
    for item in iterable:
        step()
        yield item


def bounded_text(value: Any) -> Any:
    """``value`` when it is not a text or list longer than ``MAX_OUTPUT``."""
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_OUTPUT:
        raise TemplateLimitError(f"a text or list longer than {MAX_OUTPUT:,}")
    return value


def _refuse_total(total: int) -> None:
    if total > MAX_OUTPUT:
        raise TemplateLimitError(f"a text or list longer than {MAX_OUTPUT:,}")


def _refuse_width(width: Any) -> None:
    if isinstance(width, str):
        width = len(width)
    if isinstance(width, int) and width > MAX_PADDING:
        raise TemplateLimitError(f"a width or precision of {width:,} (at most {MAX_PADDING:,})")


class BoundedTemplate(Template):
    """A template whose render counts steps and output against the limits."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        token = _BUDGET.set(_Budget())
        try:
            ctx = self.new_context(dict(*args, **kwargs))
            try:
                pieces = _output(self.root_render_func(ctx))
                return self.environment.concat(pieces)  # type: ignore[attr-defined,no-any-return]
            except Exception:
                self.environment.handle_exception()
        finally:
            _BUDGET.reset(token)


def _output(pieces: Iterable[str]) -> Iterator[str]:
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > MAX_OUTPUT:
            raise TemplateLimitError(f"a render of more than {MAX_OUTPUT:,} characters")
        yield piece


# --------------------------------------------------------------------------- widths

# A printf conversion: %[(name)][flags][width][.precision]
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_printf(template: Any, args: Any) -> None:
    """Refuse ``template % args`` when a width or precision is above ``MAX_PADDING``."""
    if not isinstance(template, str) or "%" not in template:
        return
    star = False
    for match in _PRINTF.finditer(template):
        for number in match.groups():
            if number == "*":
                star = True
            elif number:
                _refuse_width(int(number))
    if star:
        for arg in args if isinstance(args, tuple) else (args,):
            _refuse_width(arg)


def check_format_spec(spec: str) -> None:
    """Refuse a ``str.format`` spec (``>20``, ``.2f``) with a number above ``MAX_PADDING``."""
    for number in re.findall(r"\d+", spec):
        _refuse_width(int(number))


class _CheckedSpecs:
    def format_field(self, value: Any, format_spec: str) -> Any:
        check_format_spec(format_spec)  # nested fields ({:{w}}) are filled in by now
        return super().format_field(value, format_spec)  # type: ignore[misc]


class BoundedFormatter(_CheckedSpecs, SandboxedFormatter):
    """The sandbox's ``str.format`` with bounded widths."""


class BoundedEscapeFormatter(_CheckedSpecs, SandboxedEscapeFormatter):
    """The sandbox's ``Markup.format`` with bounded widths."""


_PADDING_METHODS = ("center", "ljust", "rjust", "zfill")


def check_call(obj: Any, args: tuple[Any, ...]) -> None:
    """Refuse a call of a text method that would build a text beyond the limits."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str) or not args:
        return
    name = getattr(obj, "__name__", "")
    if name in _PADDING_METHODS:
        _refuse_width(args[0])
    elif name == "expandtabs":
        _refuse_width(args[0])
        if isinstance(args[0], int):
            _refuse_total(len(owner) + owner.count("\t") * args[0])
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        _refuse_total(len(owner) + _occurrences(owner, args[0]) * len(str(args[1])))
    elif name == "join" and isinstance(args[0], (list, tuple, str)):
        _refuse_total(len(owner) * len(args[0]))
    elif name == "translate" and isinstance(args[0], dict):
        longest = max((len(str(v)) for v in args[0].values() if v is not None), default=1)
        _refuse_total(len(owner) * longest)


def _occurrences(text: str, old: str) -> int:
    return text.count(old) if old else len(text) + 1


def bounded_filters(builtin: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The built-in filters that can multiply a text, with their arguments checked first."""

    def checked(name: str, check: Callable[..., None]) -> Callable[..., Any]:
        func = builtin[name]
        at = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check(*args[at:], **kwargs)
            return bounded_text(func(*args, **kwargs))

        return wrapper

    def center(value: Any, width: Any = 80) -> None:
        _refuse_width(width)

    def indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> None:
        _refuse_width(width)
        size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _refuse_total(len(str(value)) + (str(value).count("\n") + 1) * size)

    def format_(value: Any, *args: Any, **kwargs: Any) -> None:
        check_printf(value, kwargs or args)

    def replace(value: Any, old: Any = "", new: Any = "", count: Any = None) -> None:
        text = str(value)
        _refuse_total(len(text) + _occurrences(text, str(old)) * len(str(new)))

    def join(value: Any, d: Any = "", attribute: Any = None) -> None:
        if isinstance(value, (list, tuple, str)):
            _refuse_total(len(str(d)) * len(value))

    checks: dict[str, Callable[..., None]] = {
        "center": center,
        "indent": indent,
        "format": format_,
        "replace": replace,
        "join": join,
    }
    return {name: checked(name, check) for name, check in checks.items()}
