"""The error model (README: Errors; JSON-RPC 2.0 section 5.1): the exception tree, codes as
class attributes, the code -> class registry, and what a handler's error puts on the wire."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
from core_support import answer, assert_still_serving, make_rpc
from pydantic import BaseModel
from support import request

import safe_rpc
from safe_rpc import (
    DEFAULT_ERRORS,
    AuthError,
    ConfigError,
    ErrorRegistry,
    InvalidResponse,
    LimitExceeded,
    ProtocolError,
    RegistrationError,
    RemoteError,
    RPCError,
    TransportError,
)

TABLE = [
    (-32700, "ParseError", "Parse error", ProtocolError),
    (-32600, "InvalidRequest", "Invalid Request", ProtocolError),
    (-32601, "MethodNotFound", "Method not found", RPCError),
    (-32602, "InvalidParams", "Invalid params", RPCError),
    (-32603, "InternalError", "Internal error", RPCError),
    (-32001, "Unauthenticated", "Unauthenticated", AuthError),
    (-32002, "RequestTimeout", "Request timed out", LimitExceeded),
    (-32003, "Forbidden", "Forbidden", AuthError),
    (-32004, "RateLimited", "Rate limited", LimitExceeded),
    (-32007, "RequestTooLarge", "Request too large", LimitExceeded),
    (-32008, "ResponseTooLarge", "Response too large", LimitExceeded),
    (-32009, "ServerBusy", "Server busy", LimitExceeded),
    (-32010, "BatchTooLarge", "Batch too large", LimitExceeded),
]


@pytest.mark.parametrize(("code", "name", "message", "parent"), TABLE)
def test_library_errors_have_class_codes_and_fixed_messages(
    code: int, name: str, message: str, parent: type[RPCError]
) -> None:
    """Each class of the error table has its code and message as class attributes."""
    cls: type[RPCError] = getattr(safe_rpc, name)
    assert cls.__dict__["code"] == code
    assert cls.message == message
    assert issubclass(cls, parent)
    assert issubclass(cls, RPCError)
    error = cls()
    assert DEFAULT_ERRORS.get(code) == cls
    assert code in DEFAULT_ERRORS
    assert (error.code, error.message, error.data) == (code, message, None)
    assert str(error) == f"[{code}] {message}"
    assert repr(error) == f"{name}(code={code}, data=None)"


def test_the_rest_of_the_tree() -> None:
    """Client and developer errors sit outside RPCError, as the module docstring draws."""
    assert issubclass(InvalidResponse, TransportError)
    assert issubclass(RegistrationError, ConfigError)
    assert not issubclass(TransportError, RPCError)
    assert not issubclass(ConfigError, RPCError)
    assert issubclass(RemoteError, RPCError)
    assert RemoteError not in DEFAULT_ERRORS
    # Every registered class is one of the table or an application error.
    assert {c for c, *_ in TABLE} <= {cls.code for cls in DEFAULT_ERRORS}


@pytest.mark.parametrize("cls", [RPCError, ProtocolError, AuthError, LimitExceeded])
def test_classes_without_a_code_cannot_be_raised(cls: type[RPCError]) -> None:
    """The base and intermediate classes have no code and cannot be instantiated."""
    with pytest.raises(TypeError, match="has no code"):
        cls()


class Overdrawn(RPCError):
    code = 9001
    message = "insufficient funds"

    class Data(BaseModel):
        balance: int


class Teapot(RPCError):
    code = 9418
    message = "I'm a teapot"


def test_application_errors_with_and_without_data() -> None:
    """Data is validated into the model; errors without a model carry any JSON value."""
    error = Overdrawn(data={"balance": 3})
    assert isinstance(error.data, Overdrawn.Data)
    assert error.data_for_wire() == {"balance": 3}
    model = Overdrawn.Data(balance=4)
    assert Overdrawn(data=model).data is model
    assert Overdrawn().data is None
    assert Teapot(data=[1, "x"]).data_for_wire() == [1, "x"]
    assert DEFAULT_ERRORS.get(9001) is Overdrawn
    assert DEFAULT_ERRORS.get(9418) is Teapot


def test_duplicate_code_refused_at_class_definition() -> None:
    """A second class with a code already registered fails when its class statement runs."""
    with pytest.raises(RegistrationError, match="already used"):

        class Other(RPCError):
            code = 9001
            message = "other"

    assert DEFAULT_ERRORS.get(9001) is Overdrawn


def test_rerunning_the_same_class_statement_replaces_it() -> None:
    """Re-defining the same module-level class (a reload) replaces it instead of failing."""
    namespace: dict[str, Any] = {"__name__": __name__, "RPCError": RPCError}
    source = "class Teapot(RPCError):\n    code = 9418\n    message = 'again'\n"
    exec(compile(source, __file__, "exec"), namespace)  # noqa: S102  # simulates a reload
    assert DEFAULT_ERRORS.get(9418) is namespace["Teapot"]
    DEFAULT_ERRORS.add(Teapot)  # restore
    assert DEFAULT_ERRORS.get(9418) is Teapot


@pytest.mark.parametrize("code", [-32768, -32700, -32500, -32000, -32099])
def test_reserved_range_refused(code: int) -> None:
    """Application codes inside -32768..-32000 are refused at class definition."""
    with pytest.raises(RegistrationError, match="reserved"):
        type("Bad", (RPCError,), {"code": code, "message": "x"})


@pytest.mark.parametrize("code", ["1", 1.0, True, None])
def test_non_int_codes_refused(code: object) -> None:
    """A code must be a real int."""
    with pytest.raises(RegistrationError, match="must be an int"):
        type("Bad", (RPCError,), {"code": code, "message": "x"})


def test_data_must_be_a_pydantic_model() -> None:
    """``Data`` that is not a BaseModel subclass is refused at class definition."""
    with pytest.raises(RegistrationError, match="BaseModel"):
        type("Bad", (RPCError,), {"code": 9701, "message": "x", "Data": dict})


def test_codes_just_outside_the_reserved_range_are_fine() -> None:
    """-32769 and -31999 are application codes."""
    low = type("Low", (RPCError,), {"code": -32769, "message": "low"}, register=False)
    high = type("High", (RPCError,), {"code": -31999, "message": "high"}, register=False)
    assert low().code == -32769
    assert high().code == -31999


def test_register_false_and_a_custom_registry() -> None:
    """register=False keeps a class out of DEFAULT_ERRORS; a custom registry holds it."""

    class Private(RPCError, register=False):
        code = 9001  # the same code as Overdrawn: fine, it is not registered
        message = "private"

    assert DEFAULT_ERRORS.get(9001) is Overdrawn
    registry = ErrorRegistry()
    assert registry.add(Private) is Private
    assert registry.get(9001) is Private
    assert 9001 in registry
    assert list(registry) == [Private]
    assert registry.get(9002) is None
    with pytest.raises(RegistrationError, match="already used"):
        registry.add(Overdrawn)
    copy = registry.copy()
    copy.add(Teapot)
    assert 9418 in copy
    assert 9418 not in registry
    extended = DEFAULT_ERRORS.copy()
    assert extended.get(-32700) is safe_rpc.ParseError
    with pytest.raises(RegistrationError, match="must be an int"):
        registry.add(RPCError)

    rpc = make_rpc(errors=registry)
    assert rpc.errors is registry

    @rpc.method(public=True)
    def secret() -> None:
        raise Private()

    reply = answer(rpc, request("secret"))
    assert reply["error"] == {"code": 9001, "message": "private"}


def test_handler_error_sends_exactly_code_message_and_validated_data() -> None:
    """A handler's registered error reaches the wire as code, message and model data."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def withdraw(amount: int) -> int:
        if amount == 1:
            raise Teapot()
        raise Overdrawn(data={"balance": 3})

    assert answer(rpc, request("withdraw", [5])) == {
        "jsonrpc": "2.0",
        "error": {"code": 9001, "message": "insufficient funds", "data": {"balance": 3}},
        "id": 1,
    }
    assert answer(rpc, request("withdraw", [1], id="t")) == {
        "jsonrpc": "2.0",
        "error": {"code": 9418, "message": "I'm a teapot"},
        "id": "t",
    }
    assert rpc.dispatch(request("withdraw", [5], id="notification")) is None
    assert_still_serving(rpc)


class Weird(RPCError):
    code = 9242
    message = "weird"

    class Data(BaseModel):
        value: Any


@pytest.mark.parametrize(
    "raise_it",
    [
        lambda: Overdrawn(data={"balance": "lots"}),  # invalid Data
        lambda: Overdrawn(data={"wrong": 1}),
        lambda: Teapot(data=object()),  # not JSON
        lambda: Teapot(data=math.nan),  # not strict JSON
        lambda: Weird(data={"value": object()}),  # a model pydantic cannot serialise
        lambda: RemoteError(-32000, "relayed from elsewhere", {"exc_type": "os.system"}),
    ],
    ids=["bad-data", "wrong-data", "object-data", "nan-data", "unserialisable-model",
         "remote-error"],
)  # fmt: skip
def test_errors_that_cannot_be_sent_as_declared_become_internal_errors(
    raise_it: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Invalid or unencodable data and relayed RemoteErrors answer -32603 for that call only."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def fail() -> None:
        raise raise_it()

    batch = b"[" + request("fail", id=7) + b"," + request("add", [1, 2], id=8) + b"]"
    first, second = answer(rpc, batch)
    assert first["id"] == 7
    assert first["error"]["code"] == -32603
    assert first["error"]["message"] == "Internal error"
    assert set(first["error"]["data"]) == {"error_id"}
    error_id = first["error"]["data"]["error_id"]
    assert any(error_id in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert second == {"jsonrpc": "2.0", "result": 3, "id": 8}
    assert "os.system" not in str(first)
    assert "relayed" not in str(first)


def test_remote_error_carries_what_was_received() -> None:
    """RemoteError holds code, message and data per instance and prints them escaped."""
    error = RemoteError(-32099, "bad\x1b[31m", {"k": 1})
    assert (error.code, error.message, error.data) == (-32099, "bad\x1b[31m", {"k": 1})
    assert str(error) == "[-32099] 'bad\\x1b[31m'"
    assert RemoteError.code == 0
    assert error.data_for_wire() == {"k": 1}


def test_configuration_mistakes_are_config_errors_and_value_errors() -> None:
    """Every configuration mistake raises ConfigError, which is also a ValueError (so code
    that caught ValueError keeps working, and the CLI's one ConfigError catch sees all)."""
    from safe_rpc import Client, ConfigError, FailedAuthLimiter, Keyring, Limits, RPCServer
    from safe_rpc._transports.http import ASGIApp

    keyring = Keyring.generate(audience="calc")
    mistakes: list[Callable[[], object]] = [
        lambda: Limits(max_batch=0),
        lambda: Limits(max_depth=129),
        lambda: FailedAuthLimiter(0),
        lambda: keyring.issue("", ["a"]),
        lambda: keyring.issue("alice", ["has space"]),
        lambda: keyring.issue("alice", ttl=0),
        lambda: ASGIApp(RPCServer(), cors_origins=["*"]),
        lambda: Client("ftp://example.invalid/"),
        lambda: Client("tcp://127.0.0.1"),
    ]
    for mistake in mistakes:
        with pytest.raises(ConfigError) as info:
            mistake()
        assert isinstance(info.value, ValueError)
        assert str(info.value)  # says what to fix
