"""Route templates match as on the Functions host: syntax, constraints, precedence, method fall-through."""

import pytest

from localhost.routing import NoMatch, Route, RouteMatch, RouteTable, RouteTemplateError, join_prefix, split_path


def table(*routes: tuple[str, str | None]) -> RouteTable[str]:
    return RouteTable(
        Route(template, frozenset(methods.split(",")) if methods else None, template) for template, methods in routes
    )


def resolved(routes: RouteTable[str], path: str, method: str = "GET") -> tuple[str, dict[str, str]] | NoMatch:
    result = routes.resolve(method, path)
    return (result.target, result.route_params) if isinstance(result, RouteMatch) else result


def matches(template: str, path: str) -> dict[str, str] | None:
    return Route(template, None, template).match(split_path(path))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/items/new", ("items/new", {})),
        ("/items/42", ("items/{id:int}", {"id": "42"})),
        ("/items/abc", ("items/{name}", {"name": "abc"})),
        ("/items/abc/def", ("{*rest}", {"rest": "items/abc/def"})),
        ("/", ("{*rest}", {})),
    ],
)
def test_literal_beats_constrained_beats_parameter_beats_catch_all(path, expected) -> None:
    # Registered in the worst order on purpose: precedence, not registration, decides.
    routes = table(("{*rest}", None), ("items/{name}", None), ("items/{id:int}", None), ("items/new", None))
    assert resolved(routes, path) == expected


def test_a_route_whose_methods_exclude_the_request_lets_a_lower_route_answer() -> None:
    routes = table(("health", "GET"), ("{*path}", "GET,POST,DELETE"))
    assert resolved(routes, "/health", "DELETE") == ("{*path}", {"path": "health"})


def test_no_route_is_404_and_a_path_match_with_the_wrong_method_is_405_with_the_allowed_methods() -> None:
    routes = table(("health", "GET"), ("things/{id}", "PUT,DELETE"))
    assert resolved(routes, "/nothing") == NoMatch(frozenset())
    assert resolved(routes, "/health", "POST") == NoMatch(frozenset({"GET"}))
    assert resolved(routes, "/things/1", "GET") == NoMatch(frozenset({"PUT", "DELETE"}))


def test_no_methods_means_every_method() -> None:
    assert resolved(table(("any", None)), "/any", "PATCH") == ("any", {})


def test_literals_are_case_insensitive_and_a_trailing_slash_is_ignored() -> None:
    assert matches("Assignments/{id}", "/assignments/A1/") == {"id": "A1"}


def test_values_are_percent_decoded() -> None:
    assert matches("users/{key}", "/users/a%20b%40c") == {"key": "a b@c"}


def test_optional_and_default_parameters() -> None:
    assert matches("pages/{page?}", "/pages") == {}
    assert matches("pages/{page?}", "/pages/3") == {"page": "3"}
    assert matches("sizes/{size=10}", "/sizes") == {"size": "10"}
    assert matches("sizes/{size=10}", "/sizes/7") == {"size": "7"}
    assert matches("pages/{page}", "/pages") is None


def test_a_catch_all_takes_the_rest_of_the_path_or_nothing() -> None:
    assert matches("files/{*path}", "/files/a/b/c.txt") == {"path": "a/b/c.txt"}
    assert matches("files/{*path}", "/files") == {}
    assert matches("files/{**path}", "/files/x") == {"path": "x"}


def test_extra_or_missing_segments_do_not_match() -> None:
    assert matches("a/{b}", "/a/b/c") is None
    assert matches("a/{b}", "/a") is None
    assert matches("a/b", "/a//b") is None


def test_mixed_segments() -> None:
    assert matches("files/{name}.{ext}", "/files/report.final.pdf") == {"name": "report.final", "ext": "pdf"}
    assert matches("files/v{version:int}", "/files/v2") == {"version": "2"}
    assert matches("files/v{version:int}", "/files/vX") is None


@pytest.mark.parametrize(
    ("constraint", "accepted", "refused"),
    [
        ("int", ["0", "-12", "2147483647"], ["2147483648", "1.5", "x"]),
        ("long", ["9223372036854775807"], ["9223372036854775808"]),
        ("bool", ["true", "False"], ["yes", "1"]),
        ("guid", ["6e74172b-be56-4843-9ff4-e66a39bb12e3"], ["6e74172b"]),
        ("alpha", ["abcXYZ"], ["abc1", "a-b"]),
        ("double", ["1.5", "-2", "1e3"], ["abc", "nan"]),
        ("datetime", ["2026-11-24", "2026-11-24T10:00:00"], ["yesterday"]),
        ("minlength(3)", ["abc"], ["ab"]),
        ("maxlength(3)", ["abc"], ["abcd"]),
        ("length(2)", ["ab"], ["a", "abc"]),
        ("length(2,3)", ["ab", "abc"], ["a", "abcd"]),
        ("min(10)", ["10", "11"], ["9", "x"]),
        ("max(10)", ["10", "-5"], ["11"]),
        ("range(1,3)", ["1", "3"], ["0", "4"]),
        ("regex(^[a-z]{{2}}\\d$)", ["ab1", "AB1"], ["abc1", "a1"]),
    ],
)
def test_constraints(constraint: str, accepted: list[str], refused: list[str]) -> None:
    route = Route(f"x/{{value:{constraint}}}", None, "x")
    for value in accepted:
        assert route.match(["x", value]) == {"value": value}, value
    for value in refused:
        assert route.match(["x", value]) is None, value


def test_several_constraints_all_apply() -> None:
    route = Route("x/{name:alpha:maxlength(3)}", None, "x")
    assert route.match(["x", "abc"]) == {"name": "abc"}
    assert route.match(["x", "abcd"]) is None
    assert route.match(["x", "ab1"]) is None


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("x/{id:nosuch}", "could not be resolved"),
        ("{*rest}/x", "must be the last segment"),
        ("x/{id}/{ID}", "appears twice"),
        ("x/{id", "unclosed"),
        ("x/id}", "unmatched"),
        ("x/{a}.{b?}", "whole segment"),
        ("x/{n:length(a)}", "integer argument"),
    ],
)
def test_templates_the_host_would_refuse(template: str, message: str) -> None:
    with pytest.raises(RouteTemplateError, match=message):
        Route(template, None, template)


def test_route_prefix() -> None:
    assert join_prefix("", "assignments/{id}") == "assignments/{id}"
    assert join_prefix("api", "/health") == "api/health"
    assert join_prefix("/api/", "") == "api"
