"""The one error table: every domain error a use case can raise has a row, and only outages are 5xx."""

from __future__ import annotations

import pytest

from core import errors as e
from triggers.http_errors import ERROR_TABLE, INTERNAL_ERROR, mapping_for


def _every_domain_error() -> list[type[e.DomainError]]:
    found: list[type[e.DomainError]] = []
    pending: list[type[e.DomainError]] = [e.DomainError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    # The grouping bases (ConflictError, RequestError, UnprocessableError) name no code and are never raised.
    return [cls for cls in found if cls.__module__ == e.__name__ and cls.code != e.DomainError.code]


@pytest.mark.parametrize("error", _every_domain_error(), ids=lambda cls: cls.__name__)
def test_every_domain_error_maps_to_a_row_and_only_outages_are_5xx(error: type[e.DomainError]) -> None:
    mapping = mapping_for(error.__new__(error))
    assert mapping is not INTERNAL_ERROR, f"{error.__name__} has no row in the error table"
    if issubclass(error, e.ServiceUnavailable):
        assert mapping.status == 503
    else:
        assert mapping.status < 500


def test_the_table_names_no_class_twice_and_covers_the_tree() -> None:
    assert len(_every_domain_error()) >= 30
    assert all(issubclass(cls, BaseException) for cls in ERROR_TABLE)
