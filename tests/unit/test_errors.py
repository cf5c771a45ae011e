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


@pytest.mark.parametrize(
    "cls, status, definite",
    [
        (errors.ConsensusError, 500, False),
        (errors.KeyNotFound, 404, True),
        (errors.SessionNotFound, 404, True),
        (errors.Compacted, 410, True),
        (errors.Overloaded, 503, True),
        (errors.LockHeld, 409, True),
        (errors.RevisionMismatch, 409, True),
        (errors.QuotaExceeded, 409, True),
        (errors.SessionExpired, 409, True),
    ],
)
def test_every_code_has_its_status_and_definiteness(cls, status, definite):
    err = cls("boom")
    assert err.http_status == status and err.definite is definite
    assert errors.error_class(err.code) is cls


def test_internal_errors_are_never_definite_on_either_side():
    assert not errors.ConsensusError("x").definite
    assert not errors.from_dict({"code": "internal", "message": "x", "definite": True}).definite


def test_details_survive_the_round_trip():
    back = errors.from_dict(errors.RevisionMismatch("no", detail={"key": "a"}).to_dict())
    assert isinstance(back, errors.RevisionMismatch) and back.detail == {"key": "a"}
    back = errors.from_dict(errors.Compacted(oldest_revision=12).to_dict())
    assert isinstance(back, errors.Compacted) and back.oldest_revision == 12
