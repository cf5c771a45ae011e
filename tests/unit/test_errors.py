import pytest

from consensus import errors


@pytest.mark.parametrize(
    "cls, status, definite",
    [
        (errors.InvalidRequest, 400, True),
        (errors.NotFound, 404, True),
        (errors.Unauthorized, 401, True),
        (errors.MethodNotAllowed, 405, True),
        (errors.PayloadTooLarge, 413, True),
        (errors.NotLeader, 503, True),
        (errors.Unavailable, 503, True),
        (errors.Rejected, 409, True),
        (errors.Indeterminate, 504, False),
    ],
)
def test_error_round_trips_through_json(cls, status, definite):
    err = cls("boom", leader="127.0.0.1:7001")
    assert err.http_status == status
    assert err.definite is definite
    back = errors.from_dict(err.to_dict())
    assert type(back) is cls
    assert back.message == "boom"
    assert back.leader == "127.0.0.1:7001"


def test_unknown_code_is_never_reported_as_definite():
    err = errors.from_dict({"code": "something_new", "message": "?"})
    assert not err.definite
