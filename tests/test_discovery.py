"""``rpc.discover``: an OpenRPC 1.3 document scoped to the caller.

The documents are validated against the official OpenRPC meta-schema, which is third-party
data and never committed here: it is read from ``../shared/corpora/openrpc-meta-schema/``
beside the repository, or from the directory (or file) named by ``SAFE_RPC_OPENRPC_SCHEMA``.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import AsyncIterator, Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from core_support import assert_still_serving, make_rpc
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from support import check_response, request

from safe_rpc import Context, Keyring, RegistrationError, RPCError, RPCServer

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = ("bank", "calculator", "quickstart", "tcp_tls_service")
META = "openrpc-meta-schema.json"
TOOLS = "json-schema-tools-meta-schema.json"


@cache
def _meta_dir() -> Path | None:
    named = os.environ.get("SAFE_RPC_OPENRPC_SCHEMA")
    candidates = [Path(named)] if named else []
    # ../shared/corpora beside the repository (a git worktree may sit one level deeper).
    candidates += [p / "shared" / "corpora" / "openrpc-meta-schema" for p in REPO.parents[:2]]
    for path in candidates:
        directory = path.parent if path.is_file() else path
        if (directory / META).is_file() and (directory / TOOLS).is_file():
            return directory
    return None


@cache
def _validator() -> Any:
    directory = _meta_dir()
    if directory is None:
        pytest.skip(
            "OpenRPC meta-schema not found: set SAFE_RPC_OPENRPC_SCHEMA to the directory "
            f"holding {META} and {TOOLS}"
        )
    import jsonschema
    from referencing import Registry
    from referencing.jsonschema import DRAFT7

    meta = json.loads((directory / META).read_text())
    tools = json.loads((directory / TOOLS).read_text())
    # The OpenRPC schema refers to the tools schema without the trailing "/" of its $id.
    registry: Any = Registry().with_resources(
        (uri, DRAFT7.create_resource(doc))
        for doc in (meta, tools)
        for uri in {doc["$id"], doc["$id"].rstrip("/")}
    )
    # The meta-schemas name json-schema.tools' own draft-07 dialect in "$schema", which
    # jsonschema does not know by URI: it is draft 7, the fallback given here.
    cls = jsonschema.validators.validator_for(meta, default=jsonschema.Draft7Validator)
    return cls(meta, registry=registry)


def validate_openrpc(document: dict[str, Any]) -> None:
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]


def discover(rpc: RPCServer, token: str | None = None) -> dict[str, Any]:
    reply = check_response(rpc.dispatch(request("rpc.discover"), token=token))
    assert "result" in reply, reply
    document: dict[str, Any] = reply["result"]
    return document


def names(document: dict[str, Any]) -> list[str]:
    return [m["name"] for m in document["methods"]]


def _example(name: str) -> RPCServer:
    rpc = importlib.import_module(f"examples.{name}").rpc
    assert isinstance(rpc, RPCServer)
    return rpc


def _scope_sets(rpc: RPCServer) -> list[frozenset[str] | None]:
    """Anonymous, no scope, each method's own scope set, and every scope together."""
    sets: set[frozenset[str]] = {frozenset(), *(s.scopes for s in rpc.methods.values())}
    everything = frozenset().union(*sets)
    return [None, *sorted(sets | {everything}, key=sorted)]


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_view_validates_against_the_openrpc_meta_schema(example: str) -> None:
    """Each example's document, for every scope set of its table and --all, is valid."""
    rpc = _example(example)
    for scopes in _scope_sets(rpc):
        validate_openrpc(rpc.discovery.document(scopes))
    validate_openrpc(rpc.discovery.document(everything=True))


def test_bank_document_per_scope_table() -> None:
    """Anonymous sees public methods; each token adds exactly what its scopes allow, and
    components hold only the models of those methods."""
    rpc = _example("bank")
    ring = Keyring.generate(audience="bank")
    table: list[tuple[list[str] | None, list[str], set[str]]] = [
        (None, ["bank.rates"], set()),
        ([], ["bank.rates"], set()),
        (
            ["account:read"],
            ["account.balance", "account.entry", "account.statement", "bank.rates"],
            {"Entry", "Statement"},
        ),
        (
            ["account:write"],
            ["account.deposit", "account.withdraw", "bank.rates"],
            {"InsufficientFundsData"},
        ),
    ]
    previous, rpc.keyring = rpc.keyring, ring
    try:
        for scopes, expected, models in table:
            token = None if scopes is None else ring.issue("alice", scopes)
            document = discover(rpc, token)
            validate_openrpc(document)
            assert names(document) == expected
            assert set(document.get("components", {}).get("schemas", {})) == models
    finally:
        rpc.keyring = previous


def test_bank_method_objects_carry_the_contract() -> None:
    """Params in order with required and schema, result, paramStructure, errors with their
    data schema, x-scopes, x-public, and the docstring's first paragraph."""
    document = _example("bank").discovery.document(everything=True)
    withdraw = next(m for m in document["methods"] if m["name"] == "account.withdraw")
    assert withdraw == {
        "name": "account.withdraw",
        "description": withdraw["description"],
        "params": [
            {
                "name": "amount",
                "required": True,
                "schema": {
                    "exclusiveMinimum": 0,
                    "maximum": 1_000_000,
                    "title": "Amount",
                    "type": "integer",
                },
            }
        ],
        "result": {"name": "result", "schema": {"type": "integer"}},
        "paramStructure": "either",
        "errors": [
            {
                "code": 1001,
                "message": "insufficient funds",
                "data": {"$ref": "#/components/schemas/InsufficientFundsData"},
            }
        ],
        "x-scopes": ["account:write"],
        "x-public": False,
    }
    assert withdraw["description"].startswith("Take ``amount``")
    statement = document["components"]["schemas"]["Statement"]
    assert statement["properties"]["entries"]["items"] == {"$ref": "#/components/schemas/Entry"}
    rates = next(m for m in document["methods"] if m["name"] == "bank.rates")
    assert rates["x-public"] is True
    assert rates["x-scopes"] == []


def test_positional_order_and_optional_params() -> None:
    """Params follow the signature's order; a parameter with a default is not required;
    only the docstring's first paragraph is the description."""
    rpc = RPCServer()

    @rpc.method(public=True)
    def f(zeta: int, alpha: str = "a", *, mid: float = 1.0) -> None:
        """First paragraph
        on two lines.

        Second paragraph, not in the document.
        """

    (method,) = discover(rpc)["methods"]
    assert [(p["name"], p["required"]) for p in method["params"]] == [
        ("zeta", True),
        ("alpha", False),
        ("mid", False),
    ]
    assert method["description"] == "First paragraph on two lines."
    assert method["result"]["schema"] == {"type": "null"}


class Point(BaseModel):
    x: int
    y: int


def test_shared_models_appear_once_by_ref() -> None:
    """A model used by several methods is one component, referenced by $ref everywhere."""
    rpc = RPCServer()

    @rpc.method(public=True)
    def move(p: Point) -> Point:
        return p

    @rpc.method(public=True)
    def origin() -> Point:
        return Point(x=0, y=0)

    document = discover(rpc)
    validate_openrpc(document)
    assert list(document["components"]["schemas"]) == ["Point"]
    text = json.dumps(document["methods"])
    assert text.count('"$ref": "#/components/schemas/Point"') == 3


def test_error_data_models_with_one_name_get_distinct_readable_names() -> None:
    """Every error's model is called ``Data``: components name them after their error class
    and never show a module path."""

    class Late(RPCError, register=False):
        code = 2001
        message = "late"

        class Data(BaseModel):
            minutes: int

    class Early(RPCError, register=False):
        code = 2002
        message = "early"

        class Data(BaseModel):
            hours: int

    rpc = RPCServer()

    @rpc.method(public=True, errors=[Late, Early])
    def arrive() -> None:
        return None

    document = discover(rpc)
    validate_openrpc(document)
    assert sorted(document["components"]["schemas"]) == ["EarlyData", "LateData"]
    assert [e["code"] for e in document["methods"][0]["errors"]] == [2001, 2002]
    assert "test_discovery" not in json.dumps(document)


def test_errors_option_refuses_what_cannot_be_declared() -> None:
    """errors=[...] takes application error classes with distinct, unreserved codes."""
    rpc = RPCServer()

    class A(RPCError, register=False):
        code = 3001

    class B(RPCError, register=False):
        code = 3001

    from safe_rpc import InvalidParams

    for bad in ([ValueError], [InvalidParams], [A, B], ["A"]):
        with pytest.raises(RegistrationError):
            rpc.method(public=True, errors=bad)(lambda: None)  # type: ignore[arg-type]


def test_discover_is_public_and_a_bad_token_still_fails() -> None:
    """Anonymous callers get the public view even where private methods exist; a
    present-but-invalid token gets -32001; params are refused; a notification gets nothing;
    the server serves normally afterwards."""
    rpc = make_rpc(keyring=Keyring.generate(audience="t"))

    @rpc.method(scopes=["secret"])
    def hidden() -> int:
        return 1

    assert names(discover(rpc)) == ["add"]
    reply = check_response(rpc.dispatch(request("rpc.discover"), token="not-a-token"))
    assert reply["error"]["code"] == -32001
    reply = check_response(rpc.dispatch(request("rpc.discover", [1])))
    assert reply["error"]["code"] == -32602
    assert check_response(rpc.dispatch(request("rpc.discover", {}))).get("result")
    assert rpc.dispatch(request("rpc.discover", id="notification")) is None
    batch = b"[" + request("rpc.discover") + b"," + request("add", [1, 2], id=2) + b"]"
    assert [("result" in r) for r in check_response(rpc.dispatch(batch))] == [True, True]
    assert_still_serving(rpc)


def test_discover_off_makes_it_an_unknown_method() -> None:
    """RPCServer(discover=False): rpc.discover is like any name that is not registered."""
    rpc = make_rpc(discover=False)
    assert check_response(rpc.dispatch(request("rpc.discover")))["error"]["code"] == -32601


def test_rpc_names_are_still_reserved() -> None:
    """Users cannot register rpc.discover (or any rpc. name) themselves."""
    rpc = RPCServer()
    with pytest.raises(RegistrationError, match="reserved"):
        rpc.method(name="rpc.discover", public=True)(lambda: None)


def test_output_is_deterministic_cached_and_sees_new_methods() -> None:
    """Two identical servers give identical bytes; a second call returns the cached bytes;
    a method registered later shows up."""

    def build() -> RPCServer:
        rpc = make_rpc(title="T", version="1")

        @rpc.method(public=True)
        def zed(b: list[int], a: dict[str, float]) -> str:
            return ""

        return rpc

    first, second = build(), build()
    assert first.discovery.answer(None) == second.discovery.answer(None)
    assert first.discovery.answer(None) is first.discovery.answer(None)
    assert first.dispatch(request("rpc.discover")) == second.dispatch(request("rpc.discover"))

    @first.method(public=True)
    def later() -> int:
        return 1

    assert names(discover(first)) == ["add", "later", "zed"]
    assert discover(first)["info"] == {"title": "T", "version": "1"}


# -- no leak, whatever the scopes ------------------------------------------------------------

_SCOPES = ["s0", "s1", "s2", "s3"]


def _leaky_server() -> tuple[RPCServer, Keyring, dict[str, frozenset[str]]]:
    """Methods with every combination of up to two scopes, each with a model of its own
    (argument, result and error data) whose name says which method it belongs to."""
    ring = Keyring.generate(audience="leak")
    rpc = RPCServer(keyring=ring)
    required: dict[str, frozenset[str]] = {}
    combos = [frozenset(), *({a} for a in _SCOPES), *({a, b} for a in _SCOPES for b in _SCOPES)]
    for n, scopes in enumerate(dict.fromkeys(frozenset(c) for c in combos)):
        name = f"m{n}x"
        required[name] = scopes
        arg = type(f"Arg{name}", (BaseModel,), {"__annotations__": {"v": int}})
        res = type(f"Res{name}", (BaseModel,), {"__annotations__": {"w": str}})
        data = type(f"Dat{name}", (BaseModel,), {"__annotations__": {"z": int}})
        err = type(
            f"Err{name}",
            (RPCError,),
            {"code": 5000 + n, "message": f"Msg{name}", "Data": data},
            register=False,
        )
        func: Callable[..., Any] = lambda a: a  # noqa: E731
        func.__annotations__ = {"a": arg, "return": res}
        func.__doc__ = f"Doc{name}."
        rpc.method(name=name, scopes=sorted(scopes), public=not scopes, errors=[err])(func)
    return rpc, ring, required


_LEAKY = _leaky_server()


@given(st.none() | st.frozensets(st.sampled_from([*_SCOPES, "other"])))
def test_no_method_or_model_outside_the_callers_scopes_appears(
    scopes: frozenset[str] | None,
) -> None:
    """For any scope set, the document names exactly the callable methods; no name, model,
    description or error of any other method appears anywhere in it."""
    rpc, ring, required = _LEAKY
    token = None if scopes is None else ring.issue("p", sorted(scopes))
    raw = rpc.dispatch(request("rpc.discover"), token=token)
    assert raw is not None
    text = raw.decode()
    held = scopes if scopes is not None else None
    for name, needs in required.items():
        allowed = not needs or (held is not None and needs <= held)
        assert (f'"{name}"' in text) is allowed, name
        for part in ("Arg", "Res", "Dat", "Doc", "Err", "Msg"):
            assert (f"{part}{name}" in text) is allowed, part
    validate_openrpc(json.loads(text)["result"])


# -- over the wire and on the command line ----------------------------------------------------


def test_client_discover_over_http_is_scoped_by_the_token(tmp_path: Path) -> None:
    """Client.discover() and AsyncClient.discover() against a real server: anonymous sees the
    public view, a token its own; a bad token raises Unauthenticated."""
    import asyncio

    from servers import REPO_ROOT, serve

    from safe_rpc import AsyncClient, Client, Unauthenticated

    ring = Keyring.generate(audience="bank")
    ring.to_file(tmp_path / "keys.json")
    with serve("examples.bank:rpc", "--keys", str(tmp_path / "keys.json"), cwd=REPO_ROOT) as srv:
        with Client(srv.url) as anonymous:
            assert names(anonymous.discover()) == ["bank.rates"]
        with Client(srv.url, token=ring.issue("a", ["account:write"])) as writer:
            document = writer.discover()
            validate_openrpc(document)
            assert names(document) == ["account.deposit", "account.withdraw", "bank.rates"]
        with Client(srv.url, token="garbage") as bad, pytest.raises(Unauthenticated):
            bad.discover()

        async def reader() -> dict[str, Any]:
            async with AsyncClient(srv.url, token=ring.issue("a", ["account:read"])) as c:
                return await c.discover()

        assert "account.statement" in names(asyncio.run(reader()))


def test_cli_openrpc_prints_each_view() -> None:
    """safe-rpc openrpc MODULE:ATTR [--scope S ...] [--all] prints a valid document."""
    import subprocess
    import sys

    def run(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "safe_rpc", "openrpc", "examples.bank:rpc", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert done.returncode == 0, done.stderr
        document: dict[str, Any] = json.loads(done.stdout)
        validate_openrpc(document)
        return document

    assert names(run()) == ["bank.rates"]
    assert names(run("--scope", "account:write")) == [
        "account.deposit",
        "account.withdraw",
        "bank.rates",
    ]
    assert len(names(run("--all"))) == 6
    done = subprocess.run(
        [sys.executable, "-m", "safe_rpc", "openrpc", "examples.nope:rpc"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1


def test_subscription_specs_are_marked_with_their_item_schema() -> None:
    """The hook for subscriptions: a spec with ``kind = "subscription"`` is listed with
    ``x-subscription: true`` and its item type as the result; stubs leave it out."""
    from safe_rpc import generate_stubs
    from safe_rpc._core.registry import MethodSpec, build_method
    from safe_rpc._discovery import build_document

    class SubscriptionSpec(MethodSpec):
        kind = "subscription"

    def ticker(symbol: str) -> Point:
        raise NotImplementedError

    plain = build_method(ticker, name="ticker", public=True, scopes=())
    spec = SubscriptionSpec.__new__(SubscriptionSpec)
    for slot in MethodSpec.__slots__:
        setattr(spec, slot, getattr(plain, slot))
    document = build_document([spec], title="T", version="1")
    validate_openrpc(document)
    (method,) = document["methods"]
    assert method["x-subscription"] is True
    assert method["result"]["schema"] == {"$ref": "#/components/schemas/Point"}
    assert "def ticker" not in generate_stubs(document)


class Quote(BaseModel):
    symbol: str
    bid: float


def test_registered_subscription_is_marked_with_its_item_schema() -> None:
    """``@rpc.subscription``: listed with ``x-subscription: true``, the item model as its
    result, params as for a method; the document still validates, stubs still generate."""
    from safe_rpc import generate_stubs

    rpc = RPCServer()

    @rpc.subscription(public=True)
    async def quotes(ctx: Context, symbol: str, depth: int = 1) -> AsyncIterator[Quote]:
        yield Quote(symbol=symbol, bid=1.0)

    @rpc.method(public=True)
    def ping() -> str:
        return "pong"

    document = discover(rpc)
    validate_openrpc(document)
    by_name = {m["name"]: m for m in document["methods"]}
    method = by_name["quotes"]
    assert method["x-subscription"] is True
    assert method["result"]["schema"] == {"$ref": "#/components/schemas/Quote"}
    assert set(document["components"]["schemas"]["Quote"]["properties"]) == {"symbol", "bid"}
    assert [(p["name"], p["required"]) for p in method["params"]] == [
        ("symbol", True),
        ("depth", False),
    ]
    assert "x-subscription" not in by_name["ping"]
    stubs = generate_stubs(document)
    assert "def ping" in stubs
    assert "def quotes" not in stubs
