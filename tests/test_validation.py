"""The fast checks (``plain_id``, ``plain_count``, ``plain_datetime``) only ever pass what
the full checks pass: they let the usual argument through without building its name for an
error message, so a value one of them passes and the full check refuses would be stored
unchecked."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from composite_store import ValidationError
from composite_store import validation as v

COUNTS = st.one_of(
    st.integers(),
    st.sampled_from([0, 1, v.MAX_INT, v.MAX_INT + 1, -1, 2**63, True, False]),
    st.floats(),
    st.text(max_size=3),
    st.none(),
)
IDS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " ", "a\x00b", "\ud800", "x" * (v.MAX_ID_LENGTH + 1), "ü"]),
    st.integers(),
    st.none(),
)


def accepted(check: object, value: object) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except ValidationError:
        return False
    return True


@given(COUNTS)
def test_plain_count_passes_only_what_require_int_accepts(value: object) -> None:
    if v.plain_count(value):
        assert accepted(lambda x: v.require_int(x, "n", minimum=0), value)


@given(IDS)
def test_plain_id_passes_only_what_require_id_accepts(value: object) -> None:
    if v.plain_id(value):
        assert accepted(lambda x: v.require_id(x, "id"), value)


DATETIMES = st.one_of(
    st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=5))])),
    st.sampled_from(
        [datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC), date(2026, 1, 1)]
    ),
    st.text(max_size=3),
    st.none(),
)


@given(DATETIMES)
def test_plain_datetime_passes_only_what_require_datetime_accepts(value: object) -> None:
    if v.plain_datetime(value):
        assert accepted(lambda x: v.require_datetime(x, "at"), value)


@pytest.mark.parametrize(
    "value",
    [datetime(2026, 1, 1), datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), "2026"],
)
def test_plain_datetime_refuses_what_require_datetime_refuses(value: object) -> None:
    assert not v.plain_datetime(value)
    assert not accepted(lambda x: v.require_datetime(x, "at"), value)


@pytest.mark.parametrize("value", [True, -1, v.MAX_INT + 1, 1.0])
def test_plain_count_refuses_what_require_int_refuses(value: object) -> None:
    assert not v.plain_count(value)
    assert not accepted(lambda x: v.require_int(x, "n", minimum=0), value)
