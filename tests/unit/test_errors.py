"""micro.errors: one error type, its HTTP and gRPC codes, and its JSON shape."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import micro
from micro import errors
from micro.errors import GrpcStatus, MicroError, from_grpc, from_http, grpc_to_http, http_to_grpc

# (class, HTTP code, gRPC status) for every concrete error class.
CLASSES = [
    (errors.BadRequest, 400, GrpcStatus.INVALID_ARGUMENT),
    (errors.Unauthorized, 401, GrpcStatus.UNAUTHENTICATED),
    (errors.Forbidden, 403, GrpcStatus.PERMISSION_DENIED),
    (errors.NotFound, 404, GrpcStatus.NOT_FOUND),
    (errors.MethodNotAllowed, 405, GrpcStatus.UNIMPLEMENTED),
    (errors.Timeout, 408, GrpcStatus.DEADLINE_EXCEEDED),
    (errors.Conflict, 409, GrpcStatus.ABORTED),
    (errors.PayloadTooLarge, 413, GrpcStatus.RESOURCE_EXHAUSTED),
    (errors.UnsupportedMediaType, 415, GrpcStatus.INVALID_ARGUMENT),
    (errors.TooManyRequests, 429, GrpcStatus.RESOURCE_EXHAUSTED),
    (errors.Cancelled, 499, GrpcStatus.CANCELLED),
    (errors.InternalServerError, 500, GrpcStatus.INTERNAL),
    (errors.NotImplementedByServer, 501, GrpcStatus.UNIMPLEMENTED),
    (errors.BadGateway, 502, GrpcStatus.UNAVAILABLE),
    (errors.Unavailable, 503, GrpcStatus.UNAVAILABLE),
    (errors.GatewayTimeout, 504, GrpcStatus.DEADLINE_EXCEEDED),
]

# gRPC status -> HTTP code, the grpc-gateway table.
GRPC_TO_HTTP = [
    (GrpcStatus.OK, 200),
    (GrpcStatus.CANCELLED, 499),
    (GrpcStatus.UNKNOWN, 500),
    (GrpcStatus.INVALID_ARGUMENT, 400),
    (GrpcStatus.DEADLINE_EXCEEDED, 504),
    (GrpcStatus.NOT_FOUND, 404),
    (GrpcStatus.ALREADY_EXISTS, 409),
    (GrpcStatus.PERMISSION_DENIED, 403),
    (GrpcStatus.RESOURCE_EXHAUSTED, 429),
    (GrpcStatus.FAILED_PRECONDITION, 400),
    (GrpcStatus.ABORTED, 409),
    (GrpcStatus.OUT_OF_RANGE, 400),
    (GrpcStatus.UNIMPLEMENTED, 501),
    (GrpcStatus.INTERNAL, 500),
    (GrpcStatus.UNAVAILABLE, 503),
    (GrpcStatus.DATA_LOSS, 500),
    (GrpcStatus.UNAUTHENTICATED, 401),
]

ALL_GRPC_STATUSES = range(17)


# -- status mapping -----------------------------------------------------------


@pytest.mark.parametrize(("cls", "code", "grpc_status"), CLASSES)
def test_http_to_grpc_for_each_error_class(cls: type, code: int, grpc_status: int) -> None:
    assert http_to_grpc(code) == grpc_status


def test_http_to_grpc_precondition_failed() -> None:
    assert http_to_grpc(412) == GrpcStatus.FAILED_PRECONDITION


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_http_success_codes_map_to_ok(code: int) -> None:
    assert http_to_grpc(code) == GrpcStatus.OK


@pytest.mark.parametrize("code", [0, 100, 302, 418, 451, 505, 599, 999])
def test_unmapped_http_codes_map_to_unknown(code: int) -> None:
    assert http_to_grpc(code) == GrpcStatus.UNKNOWN


@pytest.mark.parametrize(("status", "code"), GRPC_TO_HTTP)
def test_grpc_to_http(status: int, code: int) -> None:
    assert grpc_to_http(status) == code


@pytest.mark.parametrize("status", [-1, 17, 100])
def test_unknown_grpc_status_maps_to_500(status: int) -> None:
    assert grpc_to_http(status) == 500


@pytest.mark.parametrize("status", ALL_GRPC_STATUSES)
def test_every_grpc_status_has_an_http_code(status: int) -> None:
    assert 200 <= grpc_to_http(status) < 600


@pytest.mark.parametrize(
    "status",
    [
        GrpcStatus.OK,
        GrpcStatus.CANCELLED,
        GrpcStatus.INVALID_ARGUMENT,
        GrpcStatus.DEADLINE_EXCEEDED,
        GrpcStatus.NOT_FOUND,
        GrpcStatus.PERMISSION_DENIED,
        GrpcStatus.RESOURCE_EXHAUSTED,
        GrpcStatus.ABORTED,
        GrpcStatus.UNIMPLEMENTED,
        GrpcStatus.INTERNAL,
        GrpcStatus.UNAVAILABLE,
        GrpcStatus.UNAUTHENTICATED,
    ],
)
def test_grpc_status_survives_a_trip_through_http(status: int) -> None:
    # The statuses that own their HTTP code come back unchanged; the others
    # (UNKNOWN, ALREADY_EXISTS, ...) share a code and are kept in grpc_status.
    assert http_to_grpc(grpc_to_http(status)) == status


# -- the error classes --------------------------------------------------------


@pytest.mark.parametrize(("cls", "code", "grpc_status"), CLASSES)
def test_class_defaults(cls: type[MicroError], code: int, grpc_status: int) -> None:
    err = cls("boom")
    assert isinstance(err, MicroError)
    assert isinstance(err, Exception)
    assert err.code == code
    assert err.grpc_status == grpc_status
    assert err.detail == "boom"
    assert err.id == ""
    assert err.status


def test_status_is_the_reason_phrase() -> None:
    assert errors.NotFound().status == "Not Found"
    assert errors.Cancelled().status == "Client Closed Request"
    assert MicroError(code=599).status == "Unknown"


def test_base_error_defaults_to_500() -> None:
    err = MicroError("x")
    assert (err.code, err.status, err.grpc_status) == (500, "Internal Server Error", 13)


def test_explicit_fields_override_the_class() -> None:
    err = errors.NotFound("gone", id="svc", code=410, status="Gone Away", grpc_status=9)
    assert (err.id, err.code, err.status, err.grpc_status) == ("svc", 410, "Gone Away", 9)


def test_grpc_status_follows_an_explicit_code() -> None:
    assert MicroError(code=404).grpc_status == GrpcStatus.NOT_FOUND


def test_str_with_and_without_id() -> None:
    assert str(errors.NotFound("no such user", id="users")) == "users: 404 Not Found: no such user"
    assert str(errors.BadRequest("bad")) == "400 Bad Request: bad"


def test_repr_names_the_class_and_every_field() -> None:
    err = errors.Timeout("slow", id="svc")
    assert repr(err) == (
        "Timeout(detail='slow', id='svc', code=408, status='Request Timeout', grpc_status=4)"
    )


def test_args_hold_the_detail() -> None:
    assert errors.Conflict("taken").args == ("taken",)


def test_equality_compares_every_field() -> None:
    assert errors.NotFound("x", id="a") == errors.NotFound("x", id="a")
    assert errors.NotFound("x", id="a") != errors.NotFound("x", id="b")
    assert errors.NotFound("x") != errors.NotFound("x", grpc_status=GrpcStatus.UNIMPLEMENTED)
    assert errors.NotFound("x") != "x"


def test_errors_stay_hashable() -> None:
    err = errors.BadRequest("x")
    assert err in {err}


# -- the JSON shape -----------------------------------------------------------


def test_to_dict_is_go_micros_shape() -> None:
    err = errors.Forbidden("no", id="auth")
    assert err.to_dict() == {"id": "auth", "code": 403, "detail": "no", "status": "Forbidden"}


def test_to_json_is_utf8_json_of_to_dict() -> None:
    err = errors.BadRequest("naïve ☃", id="svc")
    body = err.to_json()
    assert isinstance(body, bytes)
    assert json.loads(body.decode("utf-8")) == err.to_dict()


@pytest.mark.parametrize(("cls", "code", "grpc_status"), CLASSES)
def test_from_dict_picks_the_most_specific_class(
    cls: type[MicroError], code: int, grpc_status: int
) -> None:
    err = MicroError.from_dict({"id": "svc", "code": code, "detail": "d", "status": "S"})
    assert type(err) is cls
    assert (err.id, err.code, err.detail, err.status) == ("svc", code, "d", "S")
    assert err.grpc_status == grpc_status


def test_from_dict_with_an_unknown_code_is_a_plain_micro_error() -> None:
    err = MicroError.from_dict({"code": 418, "detail": "short and stout"})
    assert type(err) is MicroError
    assert err.code == 418
    assert err.status == "I'm a Teapot"


def test_from_dict_fills_missing_fields() -> None:
    err = MicroError.from_dict({})
    assert type(err) is errors.InternalServerError
    assert (err.id, err.code, err.detail, err.status) == ("", 500, "", "Internal Server Error")


def test_from_dict_keeps_a_given_grpc_status() -> None:
    err = MicroError.from_dict({"code": 409, "detail": "exists"}, grpc_status=6)
    assert type(err) is errors.Conflict
    assert err.grpc_status == GrpcStatus.ALREADY_EXISTS


@given(
    cls_row=st.sampled_from(CLASSES),
    detail=st.text(),
    id=st.text(),
)
def test_json_round_trip(cls_row: tuple[type[MicroError], int, int], detail: str, id: str) -> None:
    err = cls_row[0](detail, id=id)
    back = MicroError.parse(err.to_json())
    assert type(back) is type(err)
    assert back == err


@pytest.mark.parametrize("status", ALL_GRPC_STATUSES[1:])
def test_grpc_status_is_preserved_through_json(status: int) -> None:
    err = from_grpc(status, "m", id="svc")
    back = MicroError.parse(err.to_json(), grpc_status=status)
    assert back == err
    assert back.grpc_status == status


def test_parse_uses_the_body_code_over_the_http_code() -> None:
    body = errors.NotFound("gone", id="svc").to_json()
    err = MicroError.parse(body, code=500)
    assert type(err) is errors.NotFound
    assert err.code == 404


def test_parse_accepts_str() -> None:
    err = MicroError.parse('{"id": "", "code": 401, "detail": "who", "status": "Unauthorized"}')
    assert type(err) is errors.Unauthorized
    assert err.detail == "who"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"upstream connect error\n", "upstream connect error"),
        (b"<html>502</html>", "<html>502</html>"),
        (b"", ""),
        (b"[1, 2]", "[1, 2]"),
        (b'"just a string"', '"just a string"'),
        (b'{"code": 404}', '{"code": 404}'),  # not the micro shape: no detail
        (b'{"error": "x", "message": "y"}', '{"error": "x", "message": "y"}'),
        ("plain text", "plain text"),
    ],
)
def test_parse_a_non_micro_body_uses_the_http_code(body: bytes | str, detail: str) -> None:
    err = MicroError.parse(body, code=502)
    assert type(err) is errors.BadGateway
    assert err.code == 502
    assert err.detail == detail


def test_parse_a_non_utf8_body() -> None:
    err = MicroError.parse(b"\xff\xfeoops", code=503)
    assert type(err) is errors.Unavailable
    assert err.detail.endswith("oops")


def test_parse_a_non_micro_body_keeps_a_given_grpc_status() -> None:
    err = MicroError.parse(b"nope", code=500, grpc_status=GrpcStatus.DATA_LOSS)
    assert err.grpc_status == GrpcStatus.DATA_LOSS


@pytest.mark.parametrize(
    "body",
    [b'{"code": "NOT_FOUND", "detail": "x"}', b'{"code": [404], "detail": "x"}'],
)
def test_parse_never_raises_on_a_foreign_json_body(body: bytes) -> None:
    err = MicroError.parse(body, code=502)
    assert isinstance(err, MicroError)


# -- from_http / from_grpc ----------------------------------------------------


@pytest.mark.parametrize(("cls", "code", "grpc_status"), CLASSES)
def test_from_http(cls: type[MicroError], code: int, grpc_status: int) -> None:
    err = from_http(code, "d", id="svc")
    assert type(err) is cls
    assert (err.code, err.detail, err.id, err.grpc_status) == (code, "d", "svc", grpc_status)


def test_from_http_unknown_code() -> None:
    err = from_http(418)
    assert type(err) is MicroError
    assert err.code == 418


@pytest.mark.parametrize(("status", "code"), GRPC_TO_HTTP[1:])
def test_from_grpc_keeps_the_exact_status(status: int, code: int) -> None:
    err = from_grpc(status, "msg", id="svc")
    assert err.code == code
    assert err.grpc_status == status
    assert (err.detail, err.id) == ("msg", "svc")


def test_from_grpc_picks_the_class_by_http_code() -> None:
    assert type(from_grpc(GrpcStatus.NOT_FOUND)) is errors.NotFound
    assert type(from_grpc(GrpcStatus.UNAVAILABLE)) is errors.Unavailable
    assert type(from_grpc(GrpcStatus.DEADLINE_EXCEEDED)) is errors.GatewayTimeout
    assert type(from_grpc(GrpcStatus.CANCELLED)) is errors.Cancelled


def test_public_error_classes_are_the_errors_module_classes() -> None:
    assert micro.NotFound is errors.NotFound
    assert micro.MicroError is errors.MicroError
