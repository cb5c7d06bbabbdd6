"""micro.transport.timeouts: the grpc-timeout header."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from micro.errors import BadRequest
from micro.transport.timeouts import format_grpc_timeout, parse_grpc_timeout

#: the largest time grpc-timeout can carry: 8 digits of hours
MAX_SECONDS = 99_999_999 * 3600.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1H", 3600.0),
        ("2M", 120.0),
        ("3S", 3.0),
        ("250m", 0.25),
        ("5u", 5e-6),
        ("7n", 7e-9),
        ("00000010S", 10.0),
        ("99999999S", 99_999_999.0),
        ("99999999H", MAX_SECONDS),
    ],
)
def test_parse(value: str, seconds: float) -> None:
    assert parse_grpc_timeout(value) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "S",
        "1",
        "10",
        "1s",  # units are case sensitive: s is not a unit
        "1h",
        "1x",
        "123456789S",  # nine digits
        "1.5S",
        "-1S",
        "+1S",
        " 1S",
        "1S ",
        "1 S",
        "1_0S",
        "0x1S",
        "1SS",
        "S1",
    ],
)
def test_malformed_values(value: str) -> None:
    with pytest.raises(BadRequest, match="grpc-timeout") as info:
        parse_grpc_timeout(value)
    assert info.value.code == 400


@pytest.mark.parametrize("value", ["²S", "٣S", "1²S"])
def test_non_ascii_digits_are_malformed(value: str) -> None:
    with pytest.raises(BadRequest):
        parse_grpc_timeout(value)


@pytest.mark.parametrize("seconds", [0.0, -0.0, -1.0, -1e9, -math.inf])
def test_no_time_left_is_the_smallest_timeout(seconds: float) -> None:
    assert format_grpc_timeout(seconds) == "1n"


@pytest.mark.parametrize(
    ("seconds", "value"),
    [
        (1e-9, "1n"),
        (2.5e-9, "3n"),
        (5e-324, "1n"),
        (0.05, "50000000n"),
        (MAX_SECONDS, "99999999H"),
        (MAX_SECONDS * 10, "99999999H"),
        (1e300, "99999999H"),
    ],
)
def test_format(seconds: float, value: str) -> None:
    assert format_grpc_timeout(seconds) == value


def test_format_infinity_is_capped() -> None:
    assert format_grpc_timeout(math.inf) == "99999999H"


@given(st.floats(min_value=0.0, max_value=MAX_SECONDS, allow_nan=False))
def test_format_is_a_valid_header(seconds: float) -> None:
    value = format_grpc_timeout(seconds)
    assert 2 <= len(value) <= 9
    assert value[:-1].isascii() and value[:-1].isdigit()
    assert value[-1] in "HMSmun"


@given(st.floats(min_value=-1e12, max_value=MAX_SECONDS, allow_nan=False))
def test_round_trip_never_shortens_the_time(seconds: float) -> None:
    assert parse_grpc_timeout(format_grpc_timeout(seconds)) >= seconds


@given(st.floats(min_value=1e-9, max_value=MAX_SECONDS, allow_nan=False))
def test_round_trip_adds_at_most_one_unit(seconds: float) -> None:
    # The finest unit that fits eight digits is chosen, so the rounding up
    # costs at most about a hundred-thousandth of the time (or 1 ns).
    back = parse_grpc_timeout(format_grpc_timeout(seconds))
    assert back - seconds <= max(1.01e-9, seconds * 1e-5)


@given(
    st.integers(min_value=0, max_value=99_999_999),
    st.sampled_from("HMSmun"),
)
def test_parse_then_format_never_shortens(amount: int, unit: str) -> None:
    seconds = parse_grpc_timeout(f"{amount}{unit}")
    assert parse_grpc_timeout(format_grpc_timeout(seconds)) >= seconds
