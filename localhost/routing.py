"""HTTP route templates, matched the way the Functions host matches them (ASP.NET Core route syntax).

A template is `/`-separated segments. A segment is a literal (`assignments`, compared case-insensitively), a
parameter (`{id}`), or literal text and parameters mixed (`{name}.{ext}`). A parameter may carry constraints
(`{id:int}`, `{code:length(3):alpha}`, `{slug:regex(^[a-z]+$)}`), be optional (`{page?}`), have a default
(`{page=1}`), or be a catch-all for the rest of the path (`{*path}`, last segment only).

Several routes can match one path; the host tries them in inbound precedence order, segment by segment:
literal, then a constrained parameter or a mixed segment, then a parameter, then a constrained catch-all,
then a catch-all. A route whose methods exclude the request's is skipped, so the next route may answer.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")
Constraint = Callable[[str], bool]


class RouteTemplateError(ValueError):
    """A route template the host would refuse at startup."""


@dataclass(frozen=True)
class Parameter:
    name: str
    constraints: tuple[Constraint, ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.constraints)


Part = str | Parameter


@dataclass(frozen=True)
class Segment:
    parts: tuple[Part, ...]

    @property
    def parameter(self) -> Parameter | None:
        """The parameter when the segment is exactly one parameter."""
        only = self.parts[0] if len(self.parts) == 1 else None
        return only if isinstance(only, Parameter) else None

    @property
    def precedence_digit(self) -> int:
        if len(self.parts) > 1:
            return 2
        parameter = self.parameter
        if parameter is None:
            return 1
        digit = 5 if parameter.catch_all else 3
        return digit - 1 if parameter.constraints else digit


# ---- constraints ----------------------------------------------------------------------------------------------


def _integer(bits: int) -> Constraint:
    def check(value: str) -> bool:
        return re.fullmatch(r"[+-]?\d+", value) is not None and -(2 ** (bits - 1)) <= int(value) < 2 ** (bits - 1)

    return check


def _number(value: str) -> bool:
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return value.strip().lower() not in ("nan", "inf", "-inf", "infinity", "-infinity")


def _parses_as(parse: Callable[[str], object]) -> Constraint:
    def check(value: str) -> bool:
        try:
            parse(value)
        except ValueError:
            return False
        return True

    return check


def _ints(name: str, args: str | None, count: Iterable[int]) -> list[int]:
    values = [part.strip() for part in (args or "").split(",")] if args else []
    if len(values) not in count or not all(re.fullmatch(r"-?\d+", v) for v in values):
        raise RouteTemplateError(f"the constraint {name} takes {' or '.join(map(str, count))} integer argument(s)")
    return [int(v) for v in values]


def _between(low: int, high: int) -> Constraint:
    return lambda value: _integer(64)(value) and low <= int(value) <= high


def _length_between(low: int, high: int) -> Constraint:
    return lambda value: low <= len(value) <= high


_SIMPLE: dict[str, Constraint] = {
    "int": _integer(32),
    "long": _integer(64),
    "bool": lambda value: value.lower() in ("true", "false"),
    "decimal": _number,
    "double": _number,
    "float": _number,
    "datetime": _parses_as(datetime.fromisoformat),
    "guid": _parses_as(uuid.UUID),
    "alpha": lambda value: re.fullmatch(r"[A-Za-z]+", value) is not None,
    "required": lambda value: value != "",
}


def make_constraint(name: str, args: str | None) -> Constraint:
    key = name.lower()
    if key in _SIMPLE:
        if args is not None:
            raise RouteTemplateError(f"the constraint {name} takes no arguments")
        return _SIMPLE[key]
    if key == "regex":
        if not args:
            raise RouteTemplateError("the constraint regex needs a pattern")
        try:
            pattern = re.compile(args, re.IGNORECASE)
        except re.error as error:
            raise RouteTemplateError(f"regex({args}): {error}") from None
        return lambda value: pattern.search(value) is not None
    if key in ("min", "max"):
        (bound,) = _ints(name, args, (1,))
        return _between(bound, 2**63 - 1) if key == "min" else _between(-(2**63), bound)
    if key == "range":
        low, high = _ints(name, args, (2,))
        return _between(low, high)
    if key in ("minlength", "maxlength"):
        (bound,) = _ints(name, args, (1,))
        return _length_between(bound, 2**31) if key == "minlength" else _length_between(0, bound)
    if key == "length":
        bounds = _ints(name, args, (1, 2))
        return _length_between(bounds[0], bounds[-1])
    raise RouteTemplateError(f"the constraint reference '{name}' could not be resolved")


# ---- parsing --------------------------------------------------------------------------------------------------


def _parse_parameter(text: str, template: str) -> Parameter:
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    match = re.match(r"[^:=?]+", text)
    if match is None:
        raise RouteTemplateError(f"{template!r}: a parameter has no name")
    name, rest = match.group(0).strip(), text[match.end() :]
    constraints: list[Constraint] = []
    optional, default = False, None
    while rest:
        if rest == "?":
            optional, rest = True, ""
        elif rest.startswith("="):
            default, rest = rest[1:], ""
        elif rest.startswith(":"):
            constraint = re.match(r":([A-Za-z]+)(?:\((.*?)\))?(?=$|:|=|\?$)", rest)
            if constraint is None:
                raise RouteTemplateError(f"{template!r}: cannot read the constraints of {{{text}}}")
            constraints.append(make_constraint(constraint.group(1), constraint.group(2)))
            rest = rest[constraint.end() :]
        else:
            raise RouteTemplateError(f"{template!r}: cannot read the parameter {{{text}}}")
    return Parameter(name, tuple(constraints), optional, default, catch_all)


def _parse_segment(text: str, template: str) -> Segment:
    parts: list[Part] = []
    literal = ""
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            literal += char
            i += 2
        elif char == "{":
            end = i + 1
            # Inside a parameter, "}}" is an escaped brace (regex quantifiers); a single "}" closes it.
            while end < len(text) and (text[end] != "}" or text.startswith("}}", end)):
                end += 2 if text.startswith("}}", end) else 1
            if end >= len(text):
                raise RouteTemplateError(f"{template!r}: unclosed '{{'")
            if literal:
                parts.append(literal)
                literal = ""
            parts.append(_parse_parameter(text[i + 1 : end].replace("}}", "}").replace("{{", "{"), template))
            i = end + 1
        elif char == "}":
            raise RouteTemplateError(f"{template!r}: unmatched '}}'")
        else:
            literal += char
            i += 1
    if literal:
        parts.append(literal)
    if not parts:
        raise RouteTemplateError(f"{template!r}: empty segment")
    return Segment(tuple(parts))


def parse_template(template: str) -> tuple[Segment, ...]:
    text = template.strip("/")
    segments = tuple(_parse_segment(part, template) for part in text.split("/")) if text else ()
    names: list[str] = []
    for index, segment in enumerate(segments):
        parameters = [part for part in segment.parts if isinstance(part, Parameter)]
        names += [p.name.lower() for p in parameters]
        if len(segment.parts) > 1 and any(p.catch_all or p.optional for p in parameters):
            raise RouteTemplateError(f"{template!r}: a catch-all or optional parameter must be a whole segment")
        if any(p.catch_all for p in parameters) and index != len(segments) - 1:
            raise RouteTemplateError(f"{template!r}: a catch-all parameter must be the last segment")
    if len(set(names)) != len(names):
        raise RouteTemplateError(f"{template!r}: a parameter name appears twice")
    return segments


def _mixed_pattern(segment: Segment) -> re.Pattern[str]:
    # Greedy groups: like ASP.NET, which matches a mixed segment from the right, the last literal splits it.
    pattern = "".join(
        re.escape(part) if isinstance(part, str) else f"(?P<p{index}>.+)" for index, part in enumerate(segment.parts)
    )
    return re.compile(f"^{pattern}$", re.IGNORECASE)


# ---- matching -------------------------------------------------------------------------------------------------


def split_path(path: str) -> list[str]:
    """The decoded segments of a request path; one trailing slash is ignored, as the host ignores it."""
    text = path[1:] if path.startswith("/") else path
    text = text.removesuffix("/")
    return [unquote(segment) for segment in text.split("/")] if text else []


@dataclass(frozen=True)
class Route(Generic[T]):
    template: str
    methods: frozenset[str] | None  # None: every method
    target: T
    segments: tuple[Segment, ...] = field(init=False)
    patterns: dict[int, re.Pattern[str]] = field(init=False)

    def __post_init__(self) -> None:
        segments = parse_template(self.template)
        object.__setattr__(self, "segments", segments)
        patterns = {i: _mixed_pattern(s) for i, s in enumerate(segments) if len(s.parts) > 1}
        object.__setattr__(self, "patterns", patterns)

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(segment.precedence_digit for segment in self.segments)

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods

    def match(self, path: Sequence[str]) -> dict[str, str] | None:
        """The route values when the decoded path segments match this template, else None."""
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            parameter = segment.parameter
            if parameter is not None and parameter.catch_all:
                rest = "/".join(path[index:])
                value = rest or parameter.default
                if value is not None:
                    if not parameter.accepts(value):
                        return None
                    values[parameter.name] = value
                return values
            if index >= len(path):
                if parameter is None or not (parameter.optional or parameter.default is not None):
                    return None
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                continue
            if not self._match_segment(index, segment, path[index], values):
                return None
        return values if len(path) <= len(self.segments) else None

    def _match_segment(self, index: int, segment: Segment, text: str, values: dict[str, str]) -> bool:
        parameter = segment.parameter
        if parameter is not None:
            if text == "" or not parameter.accepts(text):
                return False
            values[parameter.name] = text
            return True
        if len(segment.parts) == 1:
            return str(segment.parts[0]).casefold() == text.casefold()
        found = self.patterns[index].match(text)
        if found is None:
            return False
        for position, part in enumerate(segment.parts):
            if isinstance(part, Parameter):
                value = found.group(f"p{position}")
                if not part.accepts(value):
                    return False
                values[part.name] = value
        return True


@dataclass(frozen=True)
class RouteMatch(Generic[T]):
    target: T
    route_params: dict[str, str]


@dataclass(frozen=True)
class NoMatch:
    """No route answers: 405 with `allowed` when some route matched the path, else 404."""

    allowed: frozenset[str]


class RouteTable(Generic[T]):
    def __init__(self, routes: Iterable[Route[T]]) -> None:
        # Stable sort: templates of equal precedence keep a deterministic order, then registration order.
        self.routes = sorted(routes, key=lambda r: (r.precedence, r.template.casefold()))

    def resolve(self, method: str, path: str) -> RouteMatch[T] | NoMatch:
        segments = split_path(path)
        allowed: set[str] = set()
        for route in self.routes:
            values = route.match(segments)
            if values is None:
                continue
            if route.allows(method):
                return RouteMatch(route.target, values)
            allowed |= route.methods or set()
        return NoMatch(frozenset(allowed))


def join_prefix(prefix: str, template: str) -> str:
    """The full template under the host's routePrefix."""
    parts = [part.strip("/") for part in (prefix, template) if part.strip("/")]
    return "/".join(parts)
