"""Jinja's sandbox with limits: every template and dedup key renders in bounded time, size and
work, and cannot change what it reads.

A render may take at most ``MAX_SECONDS``, ``MAX_STEPS`` steps (a loop's turn, a call, a
filter) and ``MAX_TEXT`` characters of output, and build no text longer than that nor a number
beyond ``MAX_INT_BITS`` bits; ``lipsum`` is gone. Operators that could build something huge
(``*``, ``**``, ``%``, ``+``) are checked before they run, which also keeps Jinja from folding
them at compile time (``{{ 9 ** 99999999 }}`` would otherwise hang compiling). The environment
is immutable: ``brand.update(...)`` is refused, and every value a render reads is a read-only
copy (``frozen``).
"""

from __future__ import annotations

import contextvars
import re
import time
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2 import Template, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import Namespace

#: The limits of one render (documented in docs/marketers-guide.md and docs/engine.md).
MAX_SECONDS = 1.0
MAX_STEPS = 100_000
MAX_TEXT = 100_000
MAX_INT_BITS = 100_000

_COUNTED = "_courtship_counted"  # the filter every `for` loop's items pass through
#: a %-format's width and precision, and a {}-format's spec (which may hold a nested field)
_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE = re.compile(r"\{[^{}]*:((?:[^{}]|\{[^{}]*\})*)\}")
#: string methods whose int argument is the length of what they build
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap"})
#: what would change a mapping, were it not read-only
_MUTATORS = frozenset({"update", "pop", "popitem", "setdefault", "clear", "__setitem__"})


class TemplateLimit(TemplateError):
    """A render went over a limit, or did what the sandbox refuses."""


class _Budget:
    """What one render may still spend: steps and time."""

    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.deadline = time.monotonic() + MAX_SECONDS

    def spend(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise TemplateLimit(f"it takes more than {MAX_STEPS} steps (loops and calls)")
        if time.monotonic() > self.deadline:
            raise TemplateLimit(f"it takes longer than {MAX_SECONDS:g} s to render")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


def _spend() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.spend()


def _sized(value: Any) -> Any:
    """``value``, unless it is text or a number too large to have been built by a message."""
    if isinstance(value, str | list | tuple) and len(value) > MAX_TEXT:
        raise TemplateLimit(f"it builds a text or list longer than {MAX_TEXT} characters")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimit(f"it builds a number larger than {MAX_INT_BITS} bits")
    return value


def _length(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length()
    return len(value) if isinstance(value, str | list | tuple) else 0


def _power(base: Any, exponent: Any) -> Any:
    whole = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if whole and abs(base) > 1 and exponent * abs(base).bit_length() > MAX_INT_BITS:
        raise TemplateLimit(f"{base} ** {exponent} is larger than {MAX_INT_BITS} bits")
    return _sized(base**exponent)


def _times(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimit(f"it builds a number larger than {MAX_INT_BITS} bits")
    elif isinstance(left, int) or isinstance(right, int):
        count, item = (left, right) if isinstance(left, int) else (right, left)
        if count > 0 and count * _length(item) > MAX_TEXT:
            raise TemplateLimit(f"it builds a text or list longer than {MAX_TEXT} characters")
    return _sized(left * right)


def _check_format(text: str, args: Any, *, braces: bool) -> None:
    """Refuse a format whose width or precision (written, or taken from ``args``) is beyond
    the limit, before it builds the text."""
    if braces:
        specs = [m.group(1) for m in _BRACE.finditer(text)]
        dynamic = any("{" in spec for spec in specs)
        written = [int(n) for spec in specs for n in re.findall(r"\d+", spec)]
    else:
        parts = [p for m in _PERCENT.finditer(text) for p in m.groups() if p]
        dynamic = "*" in parts
        written = [int(p) for p in parts if p != "*"]
    if dynamic:
        values = args.values() if isinstance(args, Mapping) else args
        values = values if isinstance(values, tuple | list) else [values]
        written += [v for v in values if isinstance(v, int)]
    if any(n > MAX_TEXT for n in written):
        raise TemplateLimit(f"a format wider than {MAX_TEXT} characters")


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_format(left, right, braces=False)
    return _sized(left % right)


def _plus(left: Any, right: Any) -> Any:
    return _sized(left + right)


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox every template and dedup key renders in (see the module's docstring)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.binop_table = dict(self.binop_table) | {
            "*": _times,
            "**": _power,
            "%": _modulo,
            "+": _plus,
        }
        del self.globals["lipsum"]
        self.globals["range"] = _range
        self.globals["namespace"] = _Namespace
        self.filters = {name: _limited_filter(name, f) for name, f in self.filters.items()}
        self.filters[_COUNTED] = _counted

    def add_filter(self, name: str, function: Callable[..., Any]) -> None:
        """A filter a plugin adds, under the same limits."""
        self.filters[name] = _limited_filter(name, function)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """The template's tree, each ``for`` loop's items counted as they are taken."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, _COUNTED, [], [], None, None, lineno=loop.iter.lineno
            )
        return tree

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        for value in (*args, *kwargs.values()):
            _sized(value)
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        if isinstance(getattr(method, "__self__", None), str):
            _check_string_method(method.__self__, getattr(method, "__name__", ""), args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, types.MappingProxyType) and attribute in _MUTATORS:
            raise SecurityError(f"a template cannot change what it reads ('{attribute}')")
        return super().getattr(obj, attribute)

    def format_string(self, s: str, args: Any, kwargs: Any, format_func: Any = None) -> str:
        _check_format(s, [*args, *kwargs.values()], braces=True)
        return _sized(super().format_string(s, args, kwargs, format_func))


def _check_string_method(
    text: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    """Refuse a string method that would build a text beyond the limit, before it runs."""
    if name == "format":
        _check_format(text, [*args, *kwargs.values()], braces=True)
    if name == "format_map" and args and isinstance(args[0], Mapping):
        _check_format(text, list(args[0].values()), braces=True)
    if name in _WIDTH_METHODS and any(isinstance(a, int) and a > MAX_TEXT for a in args):
        raise TemplateLimit(f"'{name}' wider than {MAX_TEXT} characters")
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        _check_replace(text, args[0], args[1])
    if name == "join" and args and isinstance(args[0], list | tuple):
        size = len(text) * len(args[0]) + sum(_length(a) for a in args[0])
        if size > MAX_TEXT:
            raise TemplateLimit(f"it builds a text longer than {MAX_TEXT} characters")


def _check_replace(text: Any, old: Any, new: Any) -> None:
    texts = isinstance(text, str) and isinstance(old, str) and isinstance(new, str)
    if texts and len(text) + text.count(old) * len(new) > MAX_TEXT:
        raise TemplateLimit(f"'replace' builds a text longer than {MAX_TEXT} characters")


def _limited_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that spends a step, refuses to build beyond the limits, and is never run at
    compile time (it needs the render's context, so Jinja cannot fold it)."""
    passes = getattr(getattr(function, "jinja_pass_arg", None), "name", None)

    @pass_context
    def limited(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        if name in _WIDTH_FILTERS and any(
            isinstance(a, int) and a > MAX_TEXT for a in (*args, *kwargs.values())
        ):
            raise TemplateLimit(f"'{name}' wider than {MAX_TEXT} characters")
        if name == "replace" and len(args) >= 2:
            _check_replace(str(value), args[0], args[1])
        if name == "format" and isinstance(value, str):
            _check_format(value, [*args, *kwargs.values()], braces=False)
        if passes == "context":
            result = function(context, value, *args, **kwargs)
        elif passes == "eval_context":
            result = function(context.eval_ctx, value, *args, **kwargs)
        elif passes == "environment":
            result = function(context.environment, value, *args, **kwargs)
        else:
            result = function(value, *args, **kwargs)
        return _sized(result)

    return limited


def _counted(items: Any) -> Iterator[Any]:
    """A ``for`` loop's items, one step each. A loop over a text or a mapping works as in
    Jinja (the text's characters, the mapping's keys)."""
    return _Counted(iter(items), items)


class _Counted:
    """An iterator that spends a step per item and keeps ``len`` (``loop.length``)."""

    def __init__(self, iterator: Iterator[Any], items: Any) -> None:
        self._iterator, self._items = iterator, items

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        _spend()
        return next(self._iterator)

    def __len__(self) -> int:
        return len(self._items)


def _range(*args: int) -> range:
    """``range``, at most ``MAX_STEPS`` numbers (Jinja's own cap is 100000 too)."""
    _spend()
    return safe_range(*args)


class _Namespace(Namespace):
    """``namespace()``, whose attributes cannot grow beyond the limits either."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, _sized(value))


def frozen(value: Any) -> Any:
    """A read-only copy of ``value`` for one render: mappings become read-only mappings and
    lists tuples, so nothing a template does reaches the next message."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(frozen(v) for v in value)
    return value


def render_limited(template: Template, context: Mapping[str, Any]) -> str:
    """``template`` rendered under the limits: its text, or ``TemplateLimit`` when it goes over
    one (any other error of the template is raised as it is)."""
    token = _budget.set(_Budget())
    try:
        parts, size = [], 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_TEXT:
                raise TemplateLimit(f"its text is longer than {MAX_TEXT} characters")
            parts.append(chunk)
        return "".join(parts)
    except SecurityError as error:
        raise _at_line(TemplateLimit(f"the sandbox refuses it: {error}"), error) from None
    except RecursionError as error:
        raise _at_line(TemplateLimit("it calls itself too deeply"), error) from None
    except MemoryError as error:
        raise _at_line(TemplateLimit("it needs more memory than a message can"), error) from None
    finally:
        _budget.reset(token)


def _at_line(limit: TemplateLimit, error: BaseException) -> TemplateLimit:
    """``limit``, at the line of the template ``error`` was raised at."""
    limit.lineno = error_line(error)
    return limit


def error_line(error: BaseException) -> int | None:
    """The line of the template an error was raised at (Jinja points its traceback there)."""
    line = getattr(error, "lineno", None)
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
