"""core.hygiene: the input rules every model uses, and the defects they close.

Each rule is tested three ways: the defect that motivated it, its boundaries, and a hypothesis property
that whatever is accepted survives `json.dumps`/`json.loads` and validation again unchanged (nothing
unreadable is ever stored).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from core import hygiene
from core.hygiene import (
    MAX_JSON_NESTING,
    MAX_OUTCOME_BYTES,
    MAX_OUTCOME_DEPTH,
    MAX_SAFE_INTEGER,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    FreeText,
    Identifier,
    InvalidJson,
    JsonObject,
    JsonValueError,
    TargetId,
    Timestamp,
    TimestampInput,
    Upn,
    check_free_text,
    check_identifier,
    check_json_value,
    check_timestamp,
    format_timestamp,
    json_loads_strict,
    normalize_upn,
    parse_timestamp,
)

TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)
TIMESTAMP_INPUT: TypeAdapter[datetime] = TypeAdapter(TimestampInput)
UPN: TypeAdapter[str] = TypeAdapter(Upn)
TARGET_ID: TypeAdapter[str] = TypeAdapter(TargetId)
JSON_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(JsonObject)
TITLE: TypeAdapter[str] = TypeAdapter(Annotated[str, FreeText(512, min_length=1)])
KEY: TypeAdapter[str] = TypeAdapter(Annotated[str, Identifier(64)])
# What callers send and what our code stores refuse the same malformed input for the same reason.
EITHER_TIMESTAMP = pytest.mark.parametrize("adapter", [TIMESTAMP_INPUT, TIMESTAMP], ids=["TimestampInput", "Timestamp"])

BIDI_CONTROLS = [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
ONE_MS = timedelta(milliseconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def fields(error: ValidationError) -> list[str]:
    """Error locations as `core.services.common.parse_model` writes them."""
    return [".".join(str(part) for part in item["loc"]) for item in error.errors()]


def deeply_nested(levels: int, *, kind: type = list) -> object:
    value: object = []
    for _ in range(levels - 1):
        value = [value] if kind is list else {"a": value}
    return value


class Event(BaseModel):
    """A request model shaped like the service's: camelCase, nothing unknown, strings stripped."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        validate_by_alias=True,
        validate_by_name=False,
        str_strip_whitespace=True,
    )

    occurred_at: TimestampInput | None = None
    outcome_data: JsonObject | None = None
    note: Annotated[str, FreeText(2000)] | None = None
    to_upn: Upn | None = None
    target_id: TargetId | None = None


# --- timestamps ----------------------------------------------------------------------------------------


class TestTimestamps:
    def test_the_stored_format_has_a_four_digit_year_milliseconds_and_z(self) -> None:
        assert format_timestamp(utc(2030, 1, 31, 17)) == "2030-01-31T17:00:00.000Z"
        assert format_timestamp(utc(2030, 1, 31, 17, 0, 0, 999_999)) == "2030-01-31T17:00:00.999Z"
        assert format_timestamp(MIN_TIMESTAMP) == "1970-01-01T00:00:00.000Z"
        assert format_timestamp(MAX_TIMESTAMP) == "9999-12-31T23:59:59.999Z"
        plus_one = timezone(timedelta(hours=1))
        assert format_timestamp(datetime(2030, 1, 31, 18, tzinfo=plus_one)) == "2030-01-31T17:00:00.000Z"

    def test_year_999_is_refused_everywhere_instead_of_stored_as_999(self) -> None:
        # The defect: strftime("%Y") gave "999-06-01T…", which no reader accepts.
        with pytest.raises(ValueError, match="1970-01-01"):
            format_timestamp(utc(999, 6, 1))
        with pytest.raises(ValidationError, match="1970-01-01"):
            TIMESTAMP.validate_python(utc(999, 6, 1))
        with pytest.raises(ValidationError, match="1970-01-01"):
            TIMESTAMP_INPUT.validate_python("0999-06-01T00:00:00Z")
        with pytest.raises(ValidationError):
            TIMESTAMP_INPUT.validate_python("999-06-01T00:00:00Z")

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2030-01-31T17:00:00Z", utc(2030, 1, 31, 17)),
            ("2030-01-31t17:00:00z", utc(2030, 1, 31, 17)),
            ("2030-01-31T18:00:00+01:00", utc(2030, 1, 31, 17)),
            ("2030-01-31T12:30:00-04:30", utc(2030, 1, 31, 17)),
            ("2030-01-31T17:00:00-00:00", utc(2030, 1, 31, 17)),
            ("2030-01-31T17:00:00.1Z", utc(2030, 1, 31, 17, 0, 0, 100_000)),
            ("2030-01-31T17:00:00.123456789Z", utc(2030, 1, 31, 17, 0, 0, 123_000)),
            ("2030-01-31T17:00:00.9999Z", utc(2030, 1, 31, 17, 0, 0, 999_000)),
            ("2031-02-01T01:00:00+01:00", utc(2031, 2, 1)),
            ("2024-02-29T00:00:00Z", utc(2024, 2, 29)),
        ],
    )
    def test_accepted_strings_are_normalized_to_utc_and_milliseconds(self, text: str, expected: datetime) -> None:
        parsed = TIMESTAMP_INPUT.validate_python(text)
        assert parsed == expected
        assert parsed.tzinfo is UTC
        assert TIMESTAMP_INPUT.dump_python(parsed) == format_timestamp(expected)

    @pytest.mark.parametrize(
        "text",
        [
            "1970-01-01T00:00:00Z",
            "1970-01-01T00:00:00.000Z",
            "1970-01-01T01:00:00+01:00",
            "1969-12-31T23:00:00-01:00",
            "9999-12-31T23:59:59.999Z",
            "9999-12-31T23:59:59.999999Z",
            "9999-12-31T22:59:59.999-01:00",
        ],
    )
    def test_the_ends_of_the_range_are_accepted(self, text: str) -> None:
        assert MIN_TIMESTAMP <= parse_timestamp(text) <= MAX_TIMESTAMP

    def test_the_last_microsecond_truncates_to_the_last_millisecond(self) -> None:
        assert check_timestamp(datetime.max.replace(tzinfo=UTC)) == MAX_TIMESTAMP
        assert format_timestamp(datetime.max.replace(tzinfo=UTC)) == "9999-12-31T23:59:59.999Z"

    @pytest.mark.parametrize(
        "text",
        [
            "1969-12-31T23:59:59.999Z",  # one millisecond before
            "1969-12-31T23:59:59.9999Z",  # truncation moves towards the past, never into range
            "1970-01-01T00:59:59.999+01:00",
            "9999-12-31T23:59:00-00:01",  # 10000-01-01T00:00:00.000Z, one millisecond after
            "9999-12-31T23:59:59-01:00",
            "9999-12-31T23:59:59-23:59",  # astimezone would raise OverflowError here
            "0001-01-01T00:00:00+01:00",  # and here
            "0001-01-01T00:00:00+23:59",
            "0000-01-01T00:00:00Z",
            "0000-01-01T00:00:00-23:59",
            "1000-01-01T00:00:00Z",
        ],
    )
    def test_outside_the_range_is_a_value_error_never_an_overflow(self, text: str) -> None:
        with pytest.raises(
            ValueError, match=re.escape("between 1970-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z")
        ):
            parse_timestamp(text)

    @pytest.mark.parametrize(
        "value",
        [
            datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=59, seconds=59))),
            datetime.max.replace(tzinfo=timezone(-timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999))),
            utc(1969, 12, 31, 23, 59, 59, 999_999),
        ],
    )
    def test_datetimes_outside_the_range_are_refused_without_overflow(self, value: datetime) -> None:
        with pytest.raises(ValueError, match="must lie between"):
            check_timestamp(value)
        with pytest.raises(ValueError, match="must lie between"):
            format_timestamp(value)
        with pytest.raises(ValidationError, match="must lie between"):
            TIMESTAMP.validate_python(value)

    @EITHER_TIMESTAMP
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("2030-01-31T17:00:00", "time zone"),
            ("2031-01-01T00:00:00.123", "time zone"),
            ("2030-01-31", "RFC 3339"),
            ("1700000000", "RFC 3339"),
            ("2030-01-31 17:00:00Z", "RFC 3339"),
            ("2030-01-31T17:00Z", "RFC 3339"),
            ("2030-01-31T17:00:00.Z", "RFC 3339"),
            ("2030-01-31T17:00:00+0100", "RFC 3339"),
            ("2030-01-31T17:00:00+01", "RFC 3339"),
            ("2030-01-31T17:00:00 Z", "RFC 3339"),
            ("2030-01-31T17:00:00Z\n", "RFC 3339"),
            (" 2030-01-31T17:00:00Z", "RFC 3339"),
            ("+2030-01-31T17:00:00Z", "RFC 3339"),
            ("12030-01-31T17:00:00Z", "RFC 3339"),
            ("\u0662\u0660\u0663\u0660-01-31T17:00:00Z", "RFC 3339"),  # Arabic-Indic digits
            ("\uff12\uff10\uff13\uff10-01-31T17:00:00Z", "RFC 3339"),  # fullwidth digits
            ("2030-01-31T24:00:00Z", "hours 00-23"),
            ("2030-01-31T17:60:00Z", "minutes 00-59"),
            ("2030-12-31T23:59:60Z", "leap second"),
            ("2030-02-30T00:00:00Z", "calendar date"),
            ("2030-13-01T00:00:00Z", "calendar date"),
            ("2030-00-10T00:00:00Z", "calendar date"),
            ("2030-01-31T17:00:00+24:00", "offset"),
            ("2030-01-31T17:00:00+01:60", "offset"),
            ("", "RFC 3339"),
        ],
    )
    def test_malformed_strings_are_refused_with_a_reason(
        self, adapter: TypeAdapter[datetime], text: str, message: str
    ) -> None:
        with pytest.raises(ValidationError, match=message):
            adapter.validate_python(text)

    @EITHER_TIMESTAMP
    @pytest.mark.parametrize("value", [1_700_000_000, 1_700_000_000.5, True, None, b"2030-01-31T17:00:00Z"])
    def test_numbers_and_other_types_are_refused(self, adapter: TypeAdapter[datetime], value: object) -> None:
        with pytest.raises(ValidationError, match="RFC 3339"):
            adapter.validate_python(value)

    def test_json_numbers_are_not_unix_times(self) -> None:
        with pytest.raises(ValidationError, match="RFC 3339"):
            TIMESTAMP_INPUT.validate_json("1700000000")
        with pytest.raises(ValidationError, match="RFC 3339"):
            TIMESTAMP_INPUT.validate_json('"1700000000"')

    def test_naive_datetimes_are_refused_not_taken_as_local_time(self) -> None:
        with pytest.raises(ValidationError, match="time zone"):
            TIMESTAMP.validate_python(datetime(2030, 1, 31, 17))
        with pytest.raises(ValueError, match="time zone"):
            format_timestamp(datetime(2030, 1, 31, 17))

    def test_callers_send_strings_while_our_code_may_pass_datetimes(self) -> None:
        moment = utc(2030, 1, 31, 17, 0, 0, 123_456)
        assert TIMESTAMP.validate_python(moment) == utc(2030, 1, 31, 17, 0, 0, 123_000)
        with pytest.raises(ValidationError):
            TIMESTAMP_INPUT.validate_python(moment)

    def test_both_serialize_as_the_stored_format_in_python_and_json(self) -> None:
        moment = utc(2030, 1, 31, 17, 0, 0, 5_000)
        assert TIMESTAMP.dump_python(moment) == "2030-01-31T17:00:00.005Z"
        assert TIMESTAMP.dump_json(moment) == b'"2030-01-31T17:00:00.005Z"'
        assert TIMESTAMP_INPUT.dump_json(moment) == b'"2030-01-31T17:00:00.005Z"'

    @given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999)))
    def test_parse_and_format_round_trip_through_json(self, naive: datetime) -> None:
        moment = naive.replace(tzinfo=UTC, microsecond=naive.microsecond // 1000 * 1000)
        assert parse_timestamp(format_timestamp(moment)) == moment
        assert TIMESTAMP.validate_json(TIMESTAMP.dump_json(moment)) == moment
        stored = json.loads(json.dumps({"at": TIMESTAMP.dump_python(moment)}))["at"]
        assert TIMESTAMP.validate_python(stored) == moment
        assert TIMESTAMP_INPUT.validate_python(stored) == moment

    @given(
        naive=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
        offset_minutes=st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
        fraction=st.none() | st.text("0123456789", min_size=1, max_size=12),
        zulu=st.sampled_from(["Z", "z"]),
    )
    def test_any_offset_either_normalizes_exactly_or_is_refused(
        self, naive: datetime, offset_minutes: int, fraction: str | None, zulu: str
    ) -> None:
        naive = naive.replace(microsecond=0)
        sign = "+" if offset_minutes >= 0 else "-"
        zone = zulu if offset_minutes == 0 else f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
        text = (
            f"{naive.year:04d}-{naive.month:02d}-{naive.day:02d}T{naive.hour:02d}:{naive.minute:02d}:"
            f"{naive.second:02d}{'' if fraction is None else '.' + fraction}{zone}"
        )
        # The oracle: aware subtraction, which Python does in timedelta arithmetic without overflowing.
        aware = naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
        millis = int((fraction or "")[:3].ljust(3, "0"))
        elapsed_ms = (aware - MIN_TIMESTAMP) // ONE_MS + millis
        if 0 <= elapsed_ms <= (MAX_TIMESTAMP - MIN_TIMESTAMP) // ONE_MS:
            parsed = parse_timestamp(text)
            assert parsed == MIN_TIMESTAMP + elapsed_ms * ONE_MS
            assert parse_timestamp(format_timestamp(parsed)) == parsed
            assert check_timestamp(aware + millis * ONE_MS) == parsed
        else:
            with pytest.raises(ValueError, match="must lie between"):
                parse_timestamp(text)
            with pytest.raises(ValueError, match="must lie between"):
                check_timestamp(aware + millis * ONE_MS)


# --- text ----------------------------------------------------------------------------------------------


def _upns_used_by_the_suite() -> list[str]:
    """Every address-like literal in the test suite (f-string holes filled), which the UPN type must take."""
    # Not a fragment of a longer token: `%23ext%23@…` in a percent-encoded URL is no UPN.
    pattern = re.compile(r"(?<![%\w.'!#^~$\-])[\w.'!#^~$\-]+@[\w\-]+(?:\.[\w\-]+)+")
    found: set[str] = set()
    for path in Path(__file__).parents[1].rglob("*.py"):
        if path.name == Path(__file__).name:
            continue
        text = re.sub(r"\{[^{}\n]*\}", "x0", path.read_text(encoding="utf-8"))
        found.update(match.group() for match in pattern.finditer(text))
    return sorted(found)


SUITE_UPNS = _upns_used_by_the_suite()


class TestUpn:
    def test_the_scan_of_the_suite_found_its_upns(self) -> None:
        expected = {"ann@contoso.com", "ann_fabrikam.com#EXT#@contoso.onmicrosoft.com", "$admin@contoso.com"}
        assert expected <= set(SUITE_UPNS)
        assert len(SUITE_UPNS) > 30

    @pytest.mark.parametrize("upn", SUITE_UPNS)
    def test_every_upn_the_suite_uses_is_accepted(self, upn: str) -> None:
        assert UPN.validate_python(upn) == upn.lower()

    @pytest.mark.parametrize(
        ("sent", "stored"),
        [
            ("ada@contoso.com", "ada@contoso.com"),
            ("Mixed.Case@Contoso.COM", "mixed.case@contoso.com"),
            ("  ada@contoso.com\n", "ada@contoso.com"),
            ("ann_fabrikam.com#EXT#@contoso.onmicrosoft.com", "ann_fabrikam.com#ext#@contoso.onmicrosoft.com"),
            ("o'brien@contoso.com", "o'brien@contoso.com"),
            ("a!b#c^d~e-f_g.h@sub.contoso-eu.com", "a!b#c^d~e-f_g.h@sub.contoso-eu.com"),
            ("_lead@contoso.com", "_lead@contoso.com"),
            ("$AdeleVance@contoso.com", "$adelevance@contoso.com"),  # Graph's own example
            ("user-0123abcd@contoso.com", "user-0123abcd@contoso.com"),
            ("x" * 64 + "@" + "d" * 44 + ".com", "x" * 64 + "@" + "d" * 44 + ".com"),  # 113, the maximum
            ("a@xn--bcher-kva.example", "a@xn--bcher-kva.example"),
        ],
    )
    def test_entra_upns_are_accepted_lower_cased(self, sent: str, stored: str) -> None:
        assert UPN.validate_python(sent) == stored
        assert Event.model_validate({"toUpn": sent}).to_upn == stored

    @pytest.mark.parametrize(
        ("upn", "message"),
        [
            ("\uff47race@contoso.com", "U\\+FF47 FULLWIDTH LATIN SMALL LETTER G"),
            ("grace\u200b@contoso.com", "U\\+200B ZERO WIDTH SPACE"),
            ("grace@contoso.com\u200b", "U\\+200B"),
            ("\u202egrace@contoso.com", "U\\+202E RIGHT-TO-LEFT OVERRIDE"),
            ("grace\u0000@contoso.com", "only letters, digits"),
            ("\u212aate@contoso.com", "U\\+212A KELVIN SIGN"),  # lower() would make it "kate"
            ("gr\u00e2ce@contoso.com", "ASCII only"),
            ("grace@contoso\u3002com", "ASCII only"),
            ("grace@c\u00f6ntoso.com", "ASCII only"),
            ("\ud800@contoso.com", "ASCII only"),
            ("not-a-upn", "exactly one @"),
            ("not a upn", "exactly one @"),
            ("a@b@contoso.com", "exactly one @"),
            ("@contoso.com", "before the @"),
            ("ann smith@contoso.com", "before the @"),
            ("ann+tag@contoso.com", "before the @"),
            ("ann&co@contoso.com", "before the @"),
            ('"ann"@contoso.com', "before the @"),
            ("ann`s@contoso.com", "before the @"),
            ("ann%40x@contoso.com", "before the @"),
            ("ann.@contoso.com", "right before the @"),
            ("x" * 65 + "@contoso.com", "64 characters before"),
            ("ann@" + "d" * 45 + ".com", "48 characters after"),
            ("ann@", "domain name"),
            ("ann@localhost", "domain name"),
            ("ann@contoso..com", "domain name"),
            ("ann@contoso.com.", "domain name"),
            ("ann@.contoso.com", "domain name"),
            ("ann@-contoso.com", "domain name"),
            ("ann@contoso-.com", "domain name"),
            ("ann@con_toso.com", "domain name"),
            ("ann@192.168.0.1", "domain name"),
            ("ann@[192.168.0.1]", "domain name"),
        ],
    )
    def test_non_entra_upns_are_refused(self, upn: str, message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            UPN.validate_python(upn)

    @given(
        prefix=st.text("AZaz09'.-_!#^~$", min_size=1, max_size=64).filter(lambda p: not p.endswith(".")),
        labels=st.lists(st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True), max_size=3),
        tld=st.from_regex(r"[a-zA-Z]{2,6}", fullmatch=True),
    )
    def test_accepted_upns_round_trip(self, prefix: str, labels: list[str], tld: str) -> None:
        upn = f"{prefix}@{'.'.join([*labels, 'contoso', tld])}"
        stored = normalize_upn(upn)
        assert stored == upn.lower()
        assert UPN.validate_json(json.dumps(stored)) == stored
        assert normalize_upn(json.loads(json.dumps(stored))) == stored

    @given(
        position=st.integers(min_value=0, max_value=15),
        char=st.characters(min_codepoint=0x80, exclude_categories=()),
    )
    def test_any_non_ascii_character_anywhere_is_refused(self, position: int, char: str) -> None:
        upn = "ada.lovelace@contoso.com"
        with pytest.raises(ValueError, match="ASCII only"):
            normalize_upn(upn[:position] + char + upn[position:])


FREE_TEXT_REFUSED = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} - {"\t", "\n", "\r"}
FREE_TEXT_REFUSED |= set(BIDI_CONTROLS)
INTERESTING = [
    *sorted(FREE_TEXT_REFUSED),
    "\t",
    "\n",
    "\r",
    "\u200b",
    "\u200d",
    "\u200e",
    "\u200f",
    "\u2028",
    "\ufeff",
    "\ue000",
    "\u0378",
    "\u0301",
    "\u00e9",
    "\U0001f469",
    "\ud800",
    "\udfff",
]
ANY_CHAR = st.characters(exclude_categories=()) | st.sampled_from(INTERESTING)


def _is_surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF


class TestFreeText:
    @pytest.mark.parametrize("char", BIDI_CONTROLS)
    def test_bidi_overrides_and_isolates_are_refused_in_titles(self, char: str) -> None:
        with pytest.raises(ValidationError, match=f"U\\+{ord(char):04X}"):
            TITLE.validate_python(f"Invoice {char}fdp.exe")

    @pytest.mark.parametrize(
        "char", ["\x00", "\x07", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9f", chr(0xD800), chr(0xDC00)]
    )
    def test_other_control_characters_and_lone_surrogates_are_refused(self, char: str) -> None:
        with pytest.raises(ValueError, match=f"U\\+{ord(char):04X}"):
            check_free_text(f"a{char}b", max_length=10)

    @pytest.mark.parametrize(
        "text",
        [
            "line one\nline two\r\n\tindented",
            "\U0001f469\u200d\U0001f4bb pair programming",  # ZWJ sequence
            "\u05e9\u05dc\u05d5\u05dd \u200fabc\u200e",  # Hebrew with RLM/LRM marks
            "zero\u200bwidth is allowed in prose",
            "caf\u00e9 and cafe\u0301 stay as sent",
            "\U0001f600\ue000",
        ],
    )
    def test_prose_is_kept_exactly_as_sent(self, text: str) -> None:
        assert TITLE.validate_python(text) == text
        assert TITLE.validate_json(json.dumps(text)) == text

    def test_lengths(self) -> None:
        assert TITLE.validate_python("x" * 512) == "x" * 512
        with pytest.raises(ValidationError, match="1 to 512 characters"):
            TITLE.validate_python("x" * 513)
        with pytest.raises(ValidationError, match="1 to 512 characters"):
            TITLE.validate_python("")
        assert check_free_text("", max_length=5) == ""
        with pytest.raises(ValueError, match="at most 5 characters"):
            check_free_text("x" * 6, max_length=5)

    def test_the_model_strips_before_the_rule_applies(self) -> None:
        assert Event.model_validate({"note": "  kept \t"}).note == "kept"
        with pytest.raises(ValidationError) as caught:
            Event.model_validate({"note": "a\u202eb"})
        assert fields(caught.value) == ["note"]

    @given(st.text(ANY_CHAR))
    def test_accepted_exactly_when_no_refused_character_and_round_trips(self, text: str) -> None:
        refused = any(c in FREE_TEXT_REFUSED or _is_surrogate(c) for c in text)
        adapter: TypeAdapter[str] = TypeAdapter(Annotated[str, FreeText(10_000)])
        if refused:
            with pytest.raises(ValidationError):
                adapter.validate_python(text)
            return
        assert adapter.validate_python(text) == text
        assert adapter.validate_json(json.dumps(text)) == text
        assert adapter.validate_json(json.dumps(text, ensure_ascii=False)) == text
        assert adapter.validate_python(json.loads(json.dumps(adapter.dump_python(text)))) == text


IDENTIFIER_REFUSED_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}


class TestIdentifiers:
    def test_identifiers_are_nfc_normalized(self) -> None:
        assert KEY.validate_python("cafe\u0301") == "caf\u00e9"
        assert KEY.validate_python("\u212b") == "\u00c5"  # ANGSTROM SIGN is a canonical singleton
        # The length is the stored (normalized) one: 64 decomposed characters are 128 code points sent.
        assert KEY.validate_python("e\u0301" * 64) == "\u00e9" * 64

    @pytest.mark.parametrize(
        ("char", "message"),
        [
            ("\x00", "U\\+0000 .*control"),
            ("\n", "U\\+000A .*control"),
            ("\x85", "U\\+0085 .*control"),
            ("\u200b", "U\\+200B ZERO WIDTH SPACE .*format"),
            ("\u200d", "U\\+200D ZERO WIDTH JOINER .*format"),
            ("\u202e", "U\\+202E RIGHT-TO-LEFT OVERRIDE .*format"),
            ("\u2066", "U\\+2066 .*format"),
            ("\ufeff", "U\\+FEFF .*format"),
            ("\u00ad", "U\\+00AD SOFT HYPHEN .*format"),
            ("\ue000", "U\\+E000 .*private-use"),
            ("\U000f0000", "U\\+F0000 .*private-use"),
            ("\ud800", "U\\+D800 .*surrogate"),
            ("\udfff", "U\\+DFFF .*surrogate"),
            ("\u0378", "U\\+0378 .*unassigned"),
            ("\uffff", "U\\+FFFF .*unassigned"),
            ("\u2028", "U\\+2028 LINE SEPARATOR"),
            ("\u2029", "U\\+2029 PARAGRAPH SEPARATOR"),
        ],
    )
    def test_control_format_private_use_surrogate_and_unassigned_are_refused(self, char: str, message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            KEY.validate_python(f"key{char}1")

    def test_lengths_and_types(self) -> None:
        with pytest.raises(ValidationError, match="1 to 64"):
            KEY.validate_python("")
        with pytest.raises(ValidationError, match="1 to 64"):
            KEY.validate_python("k" * 65)
        with pytest.raises(ValidationError):
            KEY.validate_json("12")
        assert TypeAdapter(Annotated[str, Identifier(3, min_length=0)]).validate_python("") == ""

    @pytest.mark.parametrize(
        "target_id",
        ["x", "x" * 256, "https://contoso.sharepoint.com/sites/hr/Onboarding.docx?web=1#p2", "\u6587\u6863 v2"],
    )
    def test_target_ids_of_1_to_256_characters_are_accepted(self, target_id: str) -> None:
        assert TARGET_ID.validate_python(target_id) == target_id

    @pytest.mark.parametrize("target_id", ["", "x" * 257, "a\nb", "a\tb", "a\x00b", "a\u202eb", "a\u200bb"])
    def test_target_ids_refused(self, target_id: str) -> None:
        with pytest.raises(ValidationError):
            TARGET_ID.validate_python(target_id)
        with pytest.raises(ValidationError) as caught:
            Event.model_validate({"targetId": target_id + "\x00"})
        assert fields(caught.value) == ["targetId"]

    @given(st.text(ANY_CHAR))
    def test_accepted_identifiers_are_nfc_clean_and_round_trip(self, text: str) -> None:
        refused = any(unicodedata.category(c) in IDENTIFIER_REFUSED_CATEGORIES for c in text)
        normalized_length = len(unicodedata.normalize("NFC", text)) if not refused else 0
        if refused or not 1 <= normalized_length <= 64:
            with pytest.raises(ValueError, match=r"^must "):
                check_identifier(text, max_length=64)
            return
        stored = check_identifier(text, max_length=64)
        assert stored == unicodedata.normalize("NFC", text)
        assert check_identifier(stored, max_length=64) == stored
        assert KEY.validate_json(json.dumps(stored)) == stored
        assert KEY.validate_json(json.dumps(stored, ensure_ascii=False)) == stored


# --- numbers and JSON values ---------------------------------------------------------------------------


def _problem_fields(error: JsonValueError) -> list[str]:
    return [problem.field for problem in error.problems]


class TestCheckJsonValue:
    @pytest.mark.parametrize(
        ("value", "field", "message"),
        [
            ({"a": math.inf}, "a", "finite"),
            ({"a": -math.inf}, "a", "finite"),
            ({"a": math.nan}, "a", "finite"),
            ({"a": 2**64}, "a", "2\\^53"),
            ({"a": 2**53}, "a", "2\\^53"),
            ({"a": -(2**53)}, "a", "2\\^53"),
            ({"a": [1, {"b": math.inf}]}, "a.1.b", "finite"),
            ({"a": {"b": {"c": [0, 0, 2**70]}}}, "a.b.c.2", "2\\^53"),
            ({"a": (1, 2)}, "a", "tuple is not a JSON value"),
            ({"a": {1, 2}}, "a", "set is not a JSON value"),
            ({"a": datetime(2030, 1, 1, tzinfo=UTC)}, "a", "datetime is not a JSON value"),
            ({1: "x"}, "", "keys must be strings"),
            ({"a": "x\u202ey"}, "a", "U\\+202E"),
            ({"a": "\x00"}, "a", "U\\+0000"),
            ({"a": ["ok", "\ud800"]}, "a.1", "U\\+D800"),
            ({"x\u2066": 1}, "x\\u2066", "the key must not contain U\\+2066"),
        ],
    )
    def test_refused_values_name_their_path(self, value: object, field: str, message: str) -> None:
        with pytest.raises(JsonValueError, match=message) as caught:
            check_json_value(value, max_depth=32, max_bytes=8192)
        assert _problem_fields(caught.value) == [field]
        assert isinstance(caught.value, ValueError)

    def test_the_extremes_of_i_json_are_accepted(self) -> None:
        value = {
            "max": MAX_SAFE_INTEGER,
            "min": -MAX_SAFE_INTEGER,
            "big": 1.7976931348623157e308,
            "tiny": 5e-324,
            "zero": -0.0,
            "flags": [True, False, None],
            "text": "tab\tnew\nline \U0001f469\u200d\U0001f4bb",
            "": {},
        }
        check_json_value(value, max_depth=32, max_bytes=8192)
        assert JSON_OBJECT.validate_python(value) == value

    def test_depth_counts_containers_with_the_outermost_at_level_one(self) -> None:
        check_json_value(deeply_nested(32), max_depth=32, max_bytes=8192)
        with pytest.raises(JsonValueError, match="at most 32 levels") as caught:
            check_json_value(deeply_nested(33), max_depth=32, max_bytes=8192)
        assert _problem_fields(caught.value) == [".".join(["0"] * 32)]
        check_json_value({"a": [1, 2]}, max_depth=2, max_bytes=100)
        with pytest.raises(JsonValueError):
            check_json_value({"a": [[1]]}, max_depth=2, max_bytes=100)

    @pytest.mark.parametrize("kind", [list, dict])
    def test_100k_levels_are_refused_without_recursion(self, kind: type) -> None:
        deep = deeply_nested(100_000, kind=kind)
        with pytest.raises(JsonValueError, match="at most 32 levels"):
            check_json_value(deep, max_depth=MAX_OUTCOME_DEPTH, max_bytes=MAX_OUTCOME_BYTES)
        with pytest.raises(ValidationError, match="at most 32 levels"):
            JSON_OBJECT.validate_python({"a": deep})
        with pytest.raises(ValidationError, match="at most 32 levels"):
            Event.model_validate({"outcomeData": {"a": deep}})

    def test_size_is_the_utf8_length_of_compact_json(self) -> None:
        # {"a":"…"} is 8 bytes of punctuation and key; é is two bytes in UTF-8.
        exactly = {"a": "\u00e9" * ((MAX_OUTCOME_BYTES - 8) // 2)}
        assert len(json.dumps(exactly, separators=(",", ":"), ensure_ascii=False).encode()) == MAX_OUTCOME_BYTES
        assert JSON_OBJECT.validate_python(exactly) == exactly
        over = {"a": exactly["a"] + "x"}
        with pytest.raises(ValidationError, match="at most 8192 bytes"):
            JSON_OBJECT.validate_python(over)

    def test_a_huge_value_is_refused_as_soon_as_it_is_too_big(self) -> None:
        with pytest.raises(JsonValueError, match="at most 8192 bytes"):
            check_json_value({"a": list(range(1_000_000))}, max_depth=32, max_bytes=8192)


JSON_TEXT = st.text(ANY_CHAR, max_size=6)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.floats()
    | JSON_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda children: st.lists(children, max_size=4) | st.dictionaries(JSON_TEXT, children, max_size=4)
)


def _acceptable(value: object) -> bool:
    """The rule restated recursively (the values hypothesis builds are shallow)."""
    if isinstance(value, str):
        return not any(c in FREE_TEXT_REFUSED or _is_surrogate(c) for c in value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_SAFE_INTEGER
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_acceptable(item) for item in value)
    assert isinstance(value, dict)
    return all(_acceptable(key) and _acceptable(item) for key, item in value.items())


class TestJsonProperties:
    @given(JSON_VALUES)
    def test_accepted_exactly_by_the_rule_and_round_trips(self, value: object) -> None:
        if not _acceptable(value):
            with pytest.raises(JsonValueError):
                check_json_value(value, max_depth=64, max_bytes=10**9)
            return
        check_json_value(value, max_depth=64, max_bytes=10**9)
        for ensure_ascii in (True, False):
            text = json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=False)
            assert json.loads(text) == value
            assert json_loads_strict(text.encode("utf-8")) == value
        if isinstance(value, dict):
            assert JSON_OBJECT.validate_json(JSON_OBJECT.dump_json(value)) == value
            assert JSON_OBJECT.validate_python(json.loads(json.dumps(value))) == value

    @given(JSON_VALUES.filter(_acceptable))
    def test_the_size_limit_is_exact(self, value: object) -> None:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        check_json_value(value, max_depth=64, max_bytes=size)
        with pytest.raises(JsonValueError, match="bytes of JSON"):
            check_json_value(value, max_depth=64, max_bytes=size - 1)

    @given(st.integers())
    def test_integers_in_a_body_are_exact_or_refused(self, number: int) -> None:
        raw = json.dumps({"n": number}).encode()
        if abs(number) <= MAX_SAFE_INTEGER:
            assert json_loads_strict(raw) == {"n": number}
        else:
            with pytest.raises(JsonValueError, match="2\\^53"):
                json_loads_strict(raw)

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_finite_floats_in_a_body_are_exact(self, number: float) -> None:
        assert json_loads_strict(json.dumps([number]).encode()) == [number]


# --- request bodies ------------------------------------------------------------------------------------


class TestJsonLoadsStrict:
    def test_1e400_is_a_field_error_not_a_silent_null(self) -> None:
        with pytest.raises(JsonValueError, match="too large") as caught:
            json_loads_strict(b'{"eventId": "e1", "outcomeData": {"a": 1e400}}')
        assert _problem_fields(caught.value) == ["outcomeData.a"]
        assert not isinstance(caught.value, InvalidJson)

    @pytest.mark.parametrize(
        ("raw", "field", "message"),
        [
            (b'{"outcomeData": {"a": 18446744073709551616}}', "outcomeData.a", "2\\^53"),
            (b'{"outcomeData": {"a": 9007199254740992}}', "outcomeData.a", "2\\^53"),
            (b'{"outcomeData": {"a": -9007199254740992}}', "outcomeData.a", "2\\^53"),
            (b'{"a": [1, 2, -1E400]}', "a.2", "too large"),
            (b'{"a": 1e-400}', "a", "too small"),
            (b'{"a": -0.00001e-999}', "a", "too small"),
            (b'{"a": 1' + b"0" * 5000 + b"}", "a", "2\\^53"),
            (b'{"a": "\\ud800"}', "a", "lone surrogate"),
            (b'{"a": "x\\udc00y"}', "a", "lone surrogate"),
            (b'{"a": {"\\ud800": 1}}', "a.\\ud800", "key must not contain a lone surrogate"),
            (b'{"a": 1, "a": 2}', "a", "twice"),
            (b'{"b": {"c": 1, "d": 2, "c": 3}}', "b.c", "twice"),
        ],
    )
    def test_unrepresentable_values_are_422_naming_the_field(self, raw: bytes, field: str, message: str) -> None:
        with pytest.raises(JsonValueError, match=message) as caught:
            json_loads_strict(raw)
        assert _problem_fields(caught.value) == [field]

    def test_every_bad_value_is_reported(self) -> None:
        with pytest.raises(JsonValueError) as caught:
            json_loads_strict(b'{"a": 1e400, "b": [2e400, 3], "c": 99999999999999999999}')
        assert _problem_fields(caught.value) == ["a", "b.0", "c"]

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            (b'{"a": 9007199254740991, "b": -9007199254740991}', {"a": MAX_SAFE_INTEGER, "b": -MAX_SAFE_INTEGER}),
            (
                b'{"a": 1e308, "b": 0e5, "c": -0.0, "d": 1e-300, "e": 0.000}',
                {"a": 1e308, "b": 0, "c": 0, "d": 1e-300, "e": 0},
            ),
            (b'{"a": "\\ud83d\\ude00"}', {"a": "\U0001f600"}),
            (b'{"a": "\\u0000 is valid JSON; the field decides"}', {"a": "\x00 is valid JSON; the field decides"}),
            (b' {"a": [1, 2.5, "x", null, true]} \n', {"a": [1, 2.5, "x", None, True]}),
            (b"[]", []),
            (b'"text"', "text"),
        ],
    )
    def test_faithful_values_are_returned(self, raw: bytes, expected: object) -> None:
        assert json_loads_strict(raw) == expected

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"   ",
            b"{",
            b'{"a": 1,}',
            b"{'a': 1}",
            b'{"a": 1} trailing',
            b'{"a": NaN}',
            b'{"a": Infinity}',
            b'{"a": -Infinity}',
            b"NaN",
            b'{"a": 01}',
            b'{"a": "raw\ncontrol"}',
            b'\xef\xbb\xbf{"a": 1}',  # a UTF-8 byte order mark
            b'{"a": "\xff"}',  # not UTF-8
            b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8 (CESU)
            '{"a": 1}'.encode("utf-16"),
            b'{"a": "\\x41"}',
        ],
    )
    def test_what_is_not_a_json_text_is_400(self, raw: bytes) -> None:
        with pytest.raises(InvalidJson):
            json_loads_strict(raw)

    def test_invalid_json_wins_over_a_bad_number_anywhere(self) -> None:
        # The whole text is parsed before values are judged: broken JSON is a 400 even after a 1e400.
        with pytest.raises(InvalidJson):
            json_loads_strict(b'{"a": 1e400, "b": }')

    def test_require_object(self) -> None:
        assert json_loads_strict(b'{"a": 1}', require_object=True) == {"a": 1}
        for raw in (b"[]", b'"x"', b"1", b"null", b"[1e400]"):
            with pytest.raises(InvalidJson, match="must be a JSON object"):
                json_loads_strict(raw, require_object=True)

    def test_nesting_is_limited_before_the_recursive_parser_runs(self) -> None:
        assert json_loads_strict(b"[" * MAX_JSON_NESTING + b"]" * MAX_JSON_NESTING) is not None
        with pytest.raises(InvalidJson, match=f"more than {MAX_JSON_NESTING} levels"):
            json_loads_strict(b"[" * (MAX_JSON_NESTING + 1) + b"]" * (MAX_JSON_NESTING + 1))
        with pytest.raises(InvalidJson):
            json_loads_strict(b"[" * 100_000 + b"]" * 100_000)
        with pytest.raises(InvalidJson):
            json_loads_strict(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)

    def test_brackets_inside_strings_do_not_count(self) -> None:
        text = '{"a": "' + "[{" * 1000 + '", "b": "\\"[[[[\\\\"}'
        assert json_loads_strict(text.encode()) == {"a": "[{" * 1000, "b": '"[[[[\\'}

    def test_the_parser_is_still_guarded_if_the_count_is_fooled(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(hygiene, "MAX_JSON_NESTING", 10**9)
        with pytest.raises(InvalidJson, match="nests too deeply"):
            json_loads_strict(b"[" * 100_000 + b"]" * 100_000)

    @pytest.mark.parametrize("raw", [b'"' + b'\\"' * 40_000, b'"\\' * 40_000, b'["' * 30_000, b'"' * 60_000])
    def test_hostile_strings_cost_linear_time(self, raw: bytes) -> None:
        # An unterminated string must not be rescanned from every later quote.
        with pytest.raises(InvalidJson):
            json_loads_strict(raw)


class TestIntoTheModel:
    """How the pieces meet in a request: a body parsed strictly, then validated by a model."""

    def test_a_model_names_the_inner_field(self) -> None:
        with pytest.raises(ValidationError) as caught:
            Event.model_validate({"outcomeData": {"a": {"b": [0, math.inf]}}})
        assert fields(caught.value) == ["outcomeData.a.b.1"]
        with pytest.raises(ValidationError) as caught:
            Event.model_validate({"outcomeData": {"big": 2**64}, "note": "a\u2067b"})
        assert sorted(fields(caught.value)) == ["note", "outcomeData.big"]

    def test_outcome_data_must_be_an_object(self) -> None:
        for value in ([], "x", 1, [("a", 1)]):
            with pytest.raises(ValidationError, match="must be a JSON object"):
                Event.model_validate({"outcomeData": value})

    def test_a_body_accepted_by_both_stores_and_reads_back_equal(self) -> None:
        raw = (
            b'{"occurredAt": "2030-01-31T18:00:00.123456+01:00", "toUpn": " Ada@Contoso.com ",'
            b' "targetId": "cafe\\u0301", "note": "done \\ud83d\\ude00", "outcomeData": {"score": 9.5, "n": [1, 2]}}'
        )
        event = Event.model_validate(json_loads_strict(raw, require_object=True))
        assert event.occurred_at == utc(2030, 1, 31, 17, 0, 0, 123_000)
        assert event.to_upn == "ada@contoso.com"
        assert event.target_id == "caf\u00e9"
        stored = json.loads(event.model_dump_json(by_alias=True))
        assert stored["occurredAt"] == "2030-01-31T17:00:00.123Z"
        assert Event.model_validate(json_loads_strict(json.dumps(stored).encode())) == event
