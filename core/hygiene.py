"""Input hygiene: the rules every model applies to what it accepts and what it stores.

This module is the code of docs/api-rules.md, "Model" (Timestamps, Targets) and "Input hygiene and
limits", and this docstring is their documentation. It is pure: no I/O, no `azure.functions`.

The principle is *nothing unreadable is ever stored*: every type here accepts exactly what it produces, so
a value that passed validation, written as JSON and read back, validates again to an equal value. The
tests check this as a property for every type.

Timestamps
----------
- **Stored and shown** as RFC 3339 UTC with a four-digit year, milliseconds and `Z`:
  `2030-01-31T17:00:00.000Z` (`format_timestamp`). The year is formatted by us, never by `strftime`, whose
  `%Y` glibc does not zero-pad (year 999 came out as `999-…`, which no reader accepts).
- **Accepted from callers** (`TimestampInput`): a *string* only, never a number (no Unix times):
  `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, ASCII digits, `T` and `Z` in either case. A zone is
  required. Refused besides: a date without a time, a space instead of `T`, `24:00`, a leap second
  (`:60`, which Python cannot represent), offsets without a colon or beyond `±23:59`.
- **Normalized**: the offset is applied (the result is UTC), and digits beyond milliseconds are dropped,
  which moves the instant towards the past (`.9999` becomes `.999`), exactly as formatting does.
- **Range**: 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z inclusive, judged after normalization
  (`1970-01-01T00:30:00+01:00` is refused; `9999-12-31T23:59:00-00:01` is 10000-01-01 and refused).
  Outside it, or for a date that does not exist, a `ValueError` explains why. The arithmetic is done in
  integer milliseconds, so no `OverflowError` escapes, whatever the offset.
- `Timestamp` (stored and public fields) takes the same strings, plus aware `datetime`s from our own code;
  a naive `datetime` is refused rather than guessed to be local time.

Text
----
Lengths count code points (Python `len`) of the value as stored, that is after normalization.

- **Identifiers** (ids, keys, `targetId`; `Identifier(max_length)`): normalized to NFC; then refused if
  they hold a control (Cc), format (Cf: zero-width characters, bidi marks and overrides, BOM), private-use
  (Co) or surrogate (Cs) character, a line or paragraph separator (Zl, Zp: line breaks in all but name),
  or an unassigned code point (Cn). Unassigned code points are refused because a later Unicode version
  may make them format characters, or change how they normalize; refusing them now keeps every stored
  identifier valid after a Python upgrade.
- **`targetId`** (`TargetId`): an identifier of 1 to 256 characters.
- **Free text** (titles, names, messages, reasons, notes; `FreeText(max_length)`): kept as sent (no
  normalization: it is the caller's prose). It may hold `\\t`, `\\n` and `\\r`, but no other control
  character (U+0000-U+001F, U+007F-U+009F), no bidi override or isolate (U+202A-U+202E, U+2066-U+2069:
  they make text display other than it reads) and no lone surrogate. Other format characters stay
  allowed: ZWJ (U+200D) builds emoji, LRM/RLM (U+200E/U+200F) are needed by right-to-left text.
- **UPNs** (`Upn`; `assigneeEmail`, `originatorEmail`, `toUpn`, a directory entry's `upn`): every address
  the API takes is resolved as an Entra user principal name, so Entra's documented UPN rules apply
  ("UserPrincipalName policies that apply to all user accounts",
  https://learn.microsoft.com/entra/identity/authentication/concept-sspr-policy):
  the characters `A-Z a-z 0-9 ' . - _ ! # ^ ~` before the `@`, exactly one `@`, no `.` right before it,
  at most 64 characters before the `@`, 48 after it, 113 in all. Plus `$`: that table omits it, but Graph
  documents UPNs that begin with it ("Get user": `/users('$AdeleVance@contoso.com')`), Microsoft 365's
  list of invalid UPN characters does not name it, and `core.directory` already looks such UPNs up.
  The domain must be a routable DNS name (Microsoft 365 "Prepare for directory synchronization":
  routable domains only): dot-separated labels of letters, digits and inner hyphens, at least two
  labels, the last one not all digits. The value is
  stripped of surrounding ASCII whitespace and lower-cased. Anything non-ASCII is refused *before*
  lower-casing or normalizing, so fullwidth letters (U+FF47 for `g`), zero-width spaces, U+202E, and
  characters whose case mapping or NFC is ASCII (U+212A KELVIN SIGN lower-cases to `k`) can never alias
  an ASCII UPN. Note `+` is not an Entra UPN character. Guest UPNs (`ann_fabrikam.com#EXT#@…`) pass.
  Actor fields (`createdBy`, …) are not UPNs (`app:{azp}`, `system:timer`, a guest's
  `preferred_username`): store them as `Annotated[str, Identifier(MAX_ACTOR_LENGTH)]`, 320 characters
  being the longest email address (64 + 1 + 255).

Numbers and JSON values
-----------------------
Every number is finite, and every integer lies within ±(2^53 - 1) (I-JSON, RFC 7493), in nested JSON too;
beyond that a double, which is what Cosmos DB and JavaScript hold, cannot represent it exactly.

- `check_json_value(value, max_depth=, max_bytes=)` walks a parsed JSON value without recursion (a
  hostile body may nest thousands deep) and raises `JsonValueError` naming the path of the first problem
  (`a.1.b`) for: a non-finite float, an integer out of range, a value that is not JSON (a tuple, a set, a
  non-string key), nesting deeper than `max_depth` (the outermost container is level 1), a compact
  encoding (`json.dumps(value, separators=(",", ":"), ensure_ascii=False)`) longer than `max_bytes`
  UTF-8 bytes. Object keys and string values follow the **free-text rule**: they are data that is shown
  back to people, so control characters, bidi overrides and lone surrogates are refused there as in a
  title. The size is computed while walking, so a huge or deep value is refused without serializing it.
- `JsonObject` (`outcomeData`): a JSON object checked with `MAX_OUTCOME_DEPTH` (32) levels and
  `MAX_OUTCOME_BYTES` (8 KiB). In a pydantic model its errors name the inner path
  (`outcomeData.a`), as pydantic locations do.

Request bodies: which status (`json_loads_strict`)
--------------------------------------------------
`json_loads_strict(raw)` parses a request body and sorts failures by who can fix what:

- **400 `invalidRequest`** (`InvalidJson`): the bytes are not a JSON text: not UTF-8 (a BOM, UTF-16,
  encoded surrogates included), a syntax error, the `NaN`/`Infinity`/`-Infinity` literals (not JSON
  grammar), nesting deeper than `MAX_JSON_NESTING` (64) levels, which no route takes and which guards
  the recursive parser; with `require_object=True`, a JSON text that is not an object.
- **422 `validationFailed`** (`JsonValueError`, with one `JsonProblem(path, message)` per field): a
  well-formed JSON text holding a value that cannot be held faithfully: a number that overflows a double
  (`1e400`, never stored as `null`), a nonzero number that underflows to 0 (`1e-400`), an integer outside
  ±(2^53 - 1) (`2**64`, never rounded), a lone surrogate escape (`"\\ud800"`, not Unicode text), a member
  name repeated in one object (I-JSON forbids it; Python would keep the last silently). Each problem names
  its field the way the model's errors do (`outcomeData.a`), so the caller maps them to
  `FieldError(problem.field, problem.message)` and `1e400` reads like any other field error.

The parser never hands markers or half-checked values to the caller: the body is parsed completely
(so invalid JSON anywhere is still a 400), and then either every value is representable or
`JsonValueError` is raised. Hence the result can be hashed and re-serialized safely (idempotency).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, GetCoreSchemaHandler, PlainSerializer, PlainValidator, ValidationError
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

__all__ = [
    "MAX_ACTOR_LENGTH",
    "MAX_JSON_NESTING",
    "MAX_OUTCOME_BYTES",
    "MAX_OUTCOME_DEPTH",
    "MAX_SAFE_INTEGER",
    "MAX_TARGET_ID_LENGTH",
    "MAX_TIMESTAMP",
    "MAX_UPN_LENGTH",
    "MIN_TIMESTAMP",
    "FreeText",
    "Identifier",
    "InvalidJson",
    "JsonObject",
    "JsonProblem",
    "JsonValueError",
    "TargetId",
    "Timestamp",
    "TimestampInput",
    "Upn",
    "check_free_text",
    "check_identifier",
    "check_json_value",
    "check_timestamp",
    "format_timestamp",
    "json_loads_strict",
    "normalize_upn",
    "parse_timestamp",
]

# --- timestamps ----------------------------------------------------------------------------------------

MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)

_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)
_MAX_EPOCH_MS = (MAX_TIMESTAMP - MIN_TIMESTAMP) // _ONE_MS
_EPOCH_ORDINAL = _EPOCH_NAIVE.toordinal()
_RANGE_MESSAGE = "must lie between 1970-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z"
_FORMAT_MESSAGE = "must be an RFC 3339 date-time string such as 2030-01-31T17:00:00Z"

# [0-9], never \d: \d also matches other scripts' digits, which int() would then happily read.
_DATE_TIME = r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
_RFC3339 = re.compile(_DATE_TIME + r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))")
_RFC3339_WITHOUT_ZONE = re.compile(_DATE_TIME)


def _from_epoch_ms(ms: int) -> datetime:
    return MIN_TIMESTAMP + timedelta(milliseconds=ms)


def _in_range(ms: int) -> datetime:
    if not 0 <= ms <= _MAX_EPOCH_MS:
        raise ValueError(_RANGE_MESSAGE)
    return _from_epoch_ms(ms)


def _epoch_ms(value: datetime) -> int:
    """Milliseconds since 1970 in UTC, floored. Pure timedelta arithmetic: unlike `astimezone`, it cannot
    overflow at the ends of the calendar (9999-12-31T23:59:59-23:59 is merely out of our range)."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("must include a time zone (Z or an offset such as +01:00)")
    return (value.replace(tzinfo=None) - _EPOCH_NAIVE - offset) // _ONE_MS


def check_timestamp(value: datetime) -> datetime:
    """An aware datetime as stored: UTC, truncated to milliseconds, within range; else `ValueError`."""
    return _in_range(_epoch_ms(value))


def format_timestamp(value: datetime) -> str:
    """`2030-01-31T17:00:00.000Z`: the one format every timestamp is stored and shown in.

    Refuses (`ValueError`) what `parse_timestamp` would refuse to read back: a naive datetime, or one
    outside the range. Sub-millisecond digits are dropped, as parsing drops them.
    """
    utc = check_timestamp(value)
    # Formatted by hand: strftime's %Y is not zero-padded by glibc, which is how year 999 became "999-…".
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 date-time string, normalized to UTC and milliseconds; `ValueError` says what is wrong."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        if _RFC3339_WITHOUT_ZONE.fullmatch(text):
            raise ValueError("must include a time zone (Z or an offset such as +01:00)")
        raise ValueError(_FORMAT_MESSAGE)
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, zulu, sign, offset_hour, offset_minute = match.group(7, 8, 9, 10, 11)
    if hour > 23 or minute > 59:
        raise ValueError(_FORMAT_MESSAGE + " (hours 00-23, minutes 00-59)")
    if second > 59:
        raise ValueError("must not be a leap second (:60); use :59.999")
    if year == 0:
        raise ValueError(_RANGE_MESSAGE)
    try:
        days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise ValueError("is not a valid calendar date") from None
    offset_minutes = 0
    if not zulu:
        if int(offset_hour) > 23 or int(offset_minute) > 59:
            raise ValueError("must have an offset between -23:59 and +23:59")
        offset_minutes = (int(offset_hour) * 60 + int(offset_minute)) * (1 if sign == "+" else -1)
    # Truncating the fraction before applying a whole-minute offset equals flooring the UTC instant.
    millis = int((fraction or "")[:3].ljust(3, "0"))
    ms = (((days * 24 + hour) * 60 + minute - offset_minutes) * 60 + second) * 1000 + millis
    return _in_range(ms)


def _validate_timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        return check_timestamp(value)
    if isinstance(value, str):
        return parse_timestamp(value)
    raise ValueError(_FORMAT_MESSAGE)


def _validate_timestamp_input(value: object) -> datetime:
    # Only a string: pydantic would otherwise read numbers, and digit strings, as Unix times.
    if not isinstance(value, str):
        raise ValueError(_FORMAT_MESSAGE)
    return parse_timestamp(value)


_SERIALIZE_TIMESTAMP = PlainSerializer(format_timestamp, return_type=str)

# A stored or public field: an RFC 3339 string or an aware datetime in, always `format_timestamp` out.
Timestamp = Annotated[datetime, PlainValidator(_validate_timestamp, json_schema_input_type=str), _SERIALIZE_TIMESTAMP]
# What callers send: a string only, with a zone.
TimestampInput = Annotated[
    datetime, PlainValidator(_validate_timestamp_input, json_schema_input_type=str), _SERIALIZE_TIMESTAMP
]

# --- text ----------------------------------------------------------------------------------------------

MAX_UPN_LENGTH = 113
_MAX_UPN_PREFIX = 64
_MAX_UPN_DOMAIN = 48
MAX_ACTOR_LENGTH = 320
MAX_TARGET_ID_LENGTH = 256

# Cc except \t \n \r, the bidi embeddings/overrides and isolates, and every surrogate: in valid Python
# text from JSON a surrogate can only be a lone one. A fixed set, so it means the same in every Python.
_FREE_TEXT_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTIFIER_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
_CATEGORY_NAMES = {
    "Cc": "a control character",
    "Cf": "a format character (zero-width, bidi)",
    "Co": "a private-use character",
    "Cs": "a lone surrogate",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
_UPN_PREFIX = re.compile(r"[a-z0-9'.\-_!#^~$]+")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_UPN_MESSAGE = "must be a user principal name such as user@contoso.com"


def _describe(char: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`: names the character without echoing it into messages and logs."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def _check_length(value: str, min_length: int, max_length: int) -> None:
    if not min_length <= len(value) <= max_length:
        if min_length == 0:
            raise ValueError(f"must be at most {max_length} characters")
        raise ValueError(f"must be {min_length} to {max_length} characters")


def check_free_text(value: str, *, max_length: int, min_length: int = 0) -> str:
    """Free text as stored (unchanged), or `ValueError` naming the first refused character."""
    bad = _FREE_TEXT_REFUSED.search(value)
    if bad is not None:
        raise ValueError(
            f"must not contain {_describe(bad.group())}: control characters other than tab, line feed and "
            "carriage return, bidirectional overrides and isolates, and lone surrogates are not allowed"
        )
    _check_length(value, min_length, max_length)
    return value


def check_identifier(value: str, *, max_length: int, min_length: int = 1) -> str:
    """An identifier as stored (NFC), or `ValueError` naming the first refused character."""
    # Refused before normalizing, so the message names the character the caller sent.
    bad = _SURROGATE.search(value)
    if bad is not None:
        raise ValueError(f"must not contain {_describe(bad.group())} (a lone surrogate)")
    normalized = unicodedata.normalize("NFC", value)
    for char in normalized:
        category = unicodedata.category(char)
        if category in _IDENTIFIER_REFUSED_CATEGORIES:
            raise ValueError(f"must not contain {_describe(char)} ({_CATEGORY_NAMES[category]})")
    _check_length(normalized, min_length, max_length)
    return normalized


def normalize_upn(value: str) -> str:
    """A UPN as stored: Entra's rules (see the module docstring), lower-cased; else `ValueError`."""
    text = value.strip(" \t\r\n")
    # Before lower() and NFC: both map some non-ASCII characters to ASCII ones (KELVIN SIGN to k).
    for char in text:
        if not char.isascii():
            raise ValueError(f"{_UPN_MESSAGE}; {_describe(char)} is not allowed (ASCII only)")
    text = text.lower()
    if text.count("@") != 1:
        raise ValueError(f"{_UPN_MESSAGE}, with exactly one @")
    prefix, domain = text.split("@")
    if not prefix or not _UPN_PREFIX.fullmatch(prefix):
        raise ValueError(f"{_UPN_MESSAGE}; before the @ only letters, digits and ' . - _ ! # ^ ~ $ are allowed")
    if prefix.endswith("."):
        raise ValueError(f"{_UPN_MESSAGE}; a . must not come right before the @")
    if len(prefix) > _MAX_UPN_PREFIX:
        raise ValueError(f"{_UPN_MESSAGE}; at most {_MAX_UPN_PREFIX} characters before the @")
    if len(domain) > _MAX_UPN_DOMAIN:
        raise ValueError(f"{_UPN_MESSAGE}; at most {_MAX_UPN_DOMAIN} characters after the @")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DNS_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(f"{_UPN_MESSAGE}; the part after the @ must be a domain name such as contoso.com")
    return text


@dataclass(frozen=True, slots=True)
class _CheckedText:
    """Pydantic metadata: a string that `check` accepts, of `min_length` to `max_length` characters, checked
    after its type.

    Classes rather than factory functions, so the annotation stays a type that mypy understands.
    """

    max_length: int
    min_length: int
    check: ClassVar[Callable[..., str]]

    def __call__(self, value: str) -> str:
        return type(self).check(value, max_length=self.max_length, min_length=self.min_length)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self, handler(source))


@dataclass(frozen=True, slots=True)
class Identifier(_CheckedText):
    """`Annotated[str, Identifier(64)]` is an identifier of 1 to 64 characters."""

    min_length: int = 1
    check = staticmethod(check_identifier)


@dataclass(frozen=True, slots=True)
class FreeText(_CheckedText):
    """`Annotated[str, FreeText(2000)]` is free text of at most 2000 characters."""

    min_length: int = 0
    check = staticmethod(check_free_text)


Upn = Annotated[str, AfterValidator(normalize_upn)]
TargetId = Annotated[str, Identifier(MAX_TARGET_ID_LENGTH)]

# --- numbers and JSON values ---------------------------------------------------------------------------

MAX_SAFE_INTEGER = 2**53 - 1
MAX_OUTCOME_DEPTH = 32
MAX_OUTCOME_BYTES = 8 * 1024
MAX_JSON_NESTING = 64

_INTEGER_MESSAGE = f"integers must lie within ±{MAX_SAFE_INTEGER} (2^53 - 1)"
_PATH_KEY_LIMIT = 64

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class JsonProblem:
    """One refused value: where it is (`path`, as a pydantic location) and why."""

    path: Path
    message: str

    @property
    def field(self) -> str:
        """The path as the service's validation errors write fields: `outcomeData.a`, `items.0`."""
        return ".".join(str(part) for part in self.path)


class JsonValueError(ValueError):
    """Well-formed JSON holding values the service cannot keep faithfully: 422 `validationFailed`."""

    def __init__(self, problems: Sequence[JsonProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p.field}: {p.message}" if p.path else p.message for p in self.problems))


class InvalidJson(ValueError):
    """The body is not a JSON text the service reads: 400 `invalidRequest`."""


@dataclass(frozen=True, slots=True)
class _Step:
    """A path as a linked list from the leaf: O(1) per child, however deep the value."""

    parent: _Step | None
    key: str | int


def _path_key(key: str | int) -> str | int:
    # Paths end up in responses and logs: no control, bidi or surrogate characters there, and no megabyte keys.
    if isinstance(key, int):
        return key
    if len(key) > _PATH_KEY_LIMIT:
        key = key[:_PATH_KEY_LIMIT] + "…"
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in _IDENTIFIER_REFUSED_CATEGORIES - {"Cn"} else c for c in key
    )


def _path(step: _Step | None) -> Path:
    parts: list[str | int] = []
    while step is not None:
        parts.append(_path_key(step.key))
        step = step.parent
    return tuple(reversed(parts))


def _walk(root: object) -> Iterator[tuple[object, _Step | None, int]]:
    """Every value of a JSON tree in document order with its path and level (the root is level 1),
    using an explicit stack: Python's recursion limit is no defence against a 100 000-deep value."""
    stack: list[tuple[object, _Step | None, int]] = [(root, None, 1)]
    while stack:
        value, step, level = stack.pop()
        yield value, step, level
        if isinstance(value, dict):
            stack.extend((child, _Step(step, key), level + 1) for key, child in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((value[i], _Step(step, i), level + 1) for i in range(len(value) - 1, -1, -1))


def _encoded_size(value: object) -> int:
    """UTF-8 bytes of this scalar or string in compact JSON; containers count only their punctuation."""
    if isinstance(value, dict):
        # Braces, a colon per member, commas between members; the keys are sized here too.
        return 2 + len(value) + max(len(value) - 1, 0) + sum(_encoded_size(key) for key in value)
    if isinstance(value, list):
        return 2 + max(len(value) - 1, 0)
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def _scalar_problem(value: object) -> str | None:
    """Why a non-container value is refused, or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else _INTEGER_MESSAGE
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite"
    if isinstance(value, str):
        return _text_problem(value)
    return f"{type(value).__name__} is not a JSON value"


def _text_problem(value: str) -> str | None:
    try:
        check_free_text(value, max_length=len(value))
    except ValueError as error:
        return str(error)
    return None


def check_json_value(value: object, *, max_depth: int, max_bytes: int) -> None:
    """Raise `JsonValueError` (naming the path) unless `value` is I-JSON within the limits.

    Numbers: finite, integers within ±(2^53 - 1). Strings and object keys: the free-text rule. At most
    `max_depth` nested containers and `max_bytes` UTF-8 bytes of compact JSON. Never recursive, and
    stops at the first problem, so a deep or huge value costs no more than the part that was read.
    """
    size = 0
    for item, step, level in _walk(value):
        problem: str | None
        if isinstance(item, dict | list):
            if level > max_depth:
                raise JsonValueError([JsonProblem(_path(step), f"must nest at most {max_depth} levels deep")])
            problem = None
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        raise JsonValueError([JsonProblem(_path(step), "object keys must be strings")])
                    problem = _text_problem(key)
                    if problem is not None:
                        raise JsonValueError([JsonProblem(_path(_Step(step, key)), f"the key {problem}")])
        else:
            problem = _scalar_problem(item)
        if problem is not None:
            raise JsonValueError([JsonProblem(_path(step), problem)])
        size += _encoded_size(item)
        if size > max_bytes:
            raise JsonValueError([JsonProblem((), f"must be at most {max_bytes} bytes of JSON")])


def _validate_json_object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    try:
        check_json_value(value, max_depth=MAX_OUTCOME_DEPTH, max_bytes=MAX_OUTCOME_BYTES)
    except JsonValueError as error:
        # A ValidationError raised inside a validator keeps its locations, under the field's: the
        # caller's error then names `outcomeData.a`, not just `outcomeData`.
        raise ValidationError.from_exception_data(
            "JsonObject",
            [
                InitErrorDetails(
                    type=PydanticCustomError("json_value", "{message}", {"message": problem.message}),
                    loc=problem.path,
                    input=value,
                )
                for problem in error.problems
            ],
        ) from None
    return value


# `outcomeData`: a JSON object of at most 32 levels and 8 KiB, I-JSON numbers, free-text strings and keys.
JsonObject = Annotated[dict[str, Any], PlainValidator(_validate_json_object, json_schema_input_type=dict[str, Any])]

# --- request bodies ------------------------------------------------------------------------------------

_MAX_PROBLEMS = 20
# Strings are removed before brackets are counted; on valid JSON the count is exact, on invalid JSON the
# parser decides anyway. Possessive, with an optional closing quote, so an unterminated string takes the
# rest of the text in one pass instead of being rescanned from every later quote (quadratic).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}


@dataclass(frozen=True, slots=True)
class _Unrepresentable:
    """Stands in for a number during parsing; never leaves `json_loads_strict`."""

    message: str


def _parse_float(text: str) -> float | _Unrepresentable:
    number = float(text)
    if math.isinf(number):
        return _Unrepresentable("numbers must be finite; this one is too large for a double (IEEE 754)")
    mantissa = text.lower().split("e", 1)[0]
    if number == 0.0 and any(digit in mantissa for digit in "123456789"):
        return _Unrepresentable("this number is too small for a double (IEEE 754) and would become 0")
    return number


def _parse_int(text: str) -> int | _Unrepresentable:
    # Length first: int() of a 5000-digit string raises inside the parser (and is slow before that).
    if len(text.lstrip("-")) > len(str(MAX_SAFE_INTEGER)):
        return _Unrepresentable(_INTEGER_MESSAGE)
    number = int(text)
    return number if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER else _Unrepresentable(_INTEGER_MESSAGE)


def _refuse_constant(name: str) -> object:
    # Python's json accepts NaN and Infinity; JSON's grammar does not.
    raise InvalidJson(f"The request body is not valid JSON: {name} is not a JSON value")


def _nesting(text: str) -> int:
    """How deeply the JSON text nests, counted before parsing because Python's parser is recursive."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_DELTA.__getitem__, brackets)), default=0)


def json_loads_strict(raw: bytes, *, require_object: bool = False) -> object:
    """Parse a request body as I-JSON. `InvalidJson` is a 400, `JsonValueError` a 422 (module docstring)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("The request body is not valid JSON: it is not UTF-8") from None
    if _nesting(text) > MAX_JSON_NESTING:
        raise InvalidJson(f"The request body is not valid JSON: it nests more than {MAX_JSON_NESTING} levels deep")
    duplicates: dict[int, list[str]] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            repeated = duplicates.setdefault(id(obj), [])
            for key, _ in pairs:
                if key in seen:
                    repeated.append(key)
                seen.add(key)
        return obj

    try:
        value = json.loads(
            text,
            parse_float=_parse_float,
            parse_int=_parse_int,
            parse_constant=_refuse_constant,
            object_pairs_hook=pairs_hook,
        )
    except json.JSONDecodeError as error:
        raise InvalidJson(
            f"The request body is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except RecursionError:
        # The nesting check counts on valid JSON; for broken JSON that fooled it, the parser is the judge.
        raise InvalidJson("The request body is not valid JSON: it nests too deeply") from None
    if require_object and not isinstance(value, dict):
        raise InvalidJson("The request body must be a JSON object")
    # `value` keeps every parsed object alive, so the ids recorded by the hook still name them here.
    problems: list[JsonProblem] = []
    for item, step, _level in _walk(value):
        if isinstance(item, _Unrepresentable):
            problems.append(JsonProblem(_path(step), item.message))
        elif isinstance(item, str) and _SURROGATE.search(item):
            problems.append(JsonProblem(_path(step), "must not contain a lone surrogate (\\ud800-\\udfff)"))
        elif isinstance(item, dict):
            problems.extend(
                JsonProblem(_path(_Step(step, key)), "the key must not contain a lone surrogate (\\ud800-\\udfff)")
                for key in item
                if _SURROGATE.search(key)
            )
            problems.extend(
                JsonProblem(_path(_Step(step, key)), "must not be given twice in one object")
                for key in duplicates.get(id(item), ())
            )
        if len(problems) >= _MAX_PROBLEMS:
            break
    if problems:
        raise JsonValueError(problems[:_MAX_PROBLEMS])
    return value
