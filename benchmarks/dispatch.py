"""In-process dispatch benchmark: safe_rpc against its peers and two floors, in one run.

    python -m pip install -e ".[bench]"
    python benchmarks/dispatch.py                 # about a minute
    python benchmarks/dispatch.py --quick         # a smoke run

Every implementation is a ``handle(bytes) -> bytes | None`` built once. Before timing, every
response to every workload is checked (right result or error code, right id). Each round
times every implementation once per workload in a rotated order, and the ratio to the
``floor_stdlib`` implementation (``json.loads``, a dict lookup, the call, ``json.dumps``:
no validation at all) is taken inside the round; the table shows the median of those
ratios (lower is faster). Absolute times on a shared 2-core machine drift; ratios hold.

safe_rpc runs with every check on (strict parser, envelope, strict pydantic argument
models, return-type serialisation). ``add_batch1``/``add_batch10``/``add_batch100`` are the
batch-size sweep (all ``add`` calls). The ``*_async`` implementations time one event-loop
turn (``run_until_complete``) around the call: ``floor_async`` is the floor that way,
``safe_rpc_async`` is ``await rpc.dispatch_async`` with the sync handlers on the server's
thread pool (the transports' path), ``safe_rpc_inline_async`` the same with the handlers
declared ``blocking=False``. The ``token`` workload adds HMAC bearer-token
verification for safe_rpc only; the peers have no token support, so for them it is the
plain call. Peers that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

Handle = Callable[[bytes], bytes | None]


def add(a: int, b: int) -> int:
    return a + b


def echo(s: str) -> str:
    return s


def sum_list(xs: list[int]) -> int:
    return sum(xs)


METHODS: dict[str, Callable[..., Any]] = {"add": add, "echo": echo, "sum_list": sum_list}


def _request(method: Any, params: Any, id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": id_}


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _batch() -> tuple[bytes, dict[int, Any]]:
    calls: list[dict[str, Any]] = []
    expected: dict[int, Any] = {}
    for i in range(10):
        if i % 3 == 0:
            calls.append(_request("add", [i, 1], i + 1))
            expected[i + 1] = i + 1
        elif i % 3 == 1:
            calls.append(_request("echo", {"s": f"hi-{i}"}, i + 1))
            expected[i + 1] = f"hi-{i}"
        else:
            calls.append(_request("sum_list", [[i, i, i]], i + 1))
            expected[i + 1] = 3 * i
    return _dump(calls), expected


BATCH, BATCH_EXPECTED = _batch()


def _add_batch(size: int) -> tuple[bytes, dict[int, Any]]:
    calls = [_request("add", [i, 1], i + 1) for i in range(size)]
    return _dump(calls), {i + 1: i + 1 for i in range(size)}


BIG = "x" * (100 * 1024)
# name -> (payload, expected result or ("error", code), or {id: result} for the batch)
WORKLOADS: dict[str, tuple[bytes, Any]] = {
    "positional": (_dump(_request("add", [2, 3])), 5),
    "named": (_dump(_request("add", {"a": 2, "b": 3})), 5),
    "batch10": (BATCH, BATCH_EXPECTED),
    "invalid_request": (_dump(_request(5, [1])), ("error", -32600)),
    "not_found": (_dump(_request("nope", [])), ("error", -32601)),
    "parse_error": (b'{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1', ("error", -32700)),
    "list1000": (_dump(_request("sum_list", [list(range(1000))])), sum(range(1000))),
    "token": (_dump(_request("add", [2, 3])), 5),
    "string100k": (_dump(_request("echo", [BIG])), BIG),
    "add_batch1": _add_batch(1),
    "add_batch10": _add_batch(10),
    "add_batch100": _add_batch(100),
}


# -- implementations ------------------------------------------------------------------------


def _floor_one(req: Any) -> dict[str, Any]:
    if not isinstance(req, dict) or not isinstance(req.get("method"), str):
        error = {"code": -32600, "message": "Invalid Request"}
        return {"jsonrpc": "2.0", "error": error, "id": None}
    func = METHODS.get(req["method"])
    if func is None:
        error = {"code": -32601, "message": "Method not found"}
        return {"jsonrpc": "2.0", "error": error, "id": req.get("id")}
    params = req.get("params", [])
    result = func(**params) if isinstance(params, dict) else func(*params)
    return {"jsonrpc": "2.0", "result": result, "id": req.get("id")}


def floor_stdlib() -> Handle:
    """json.loads, a dict lookup, the call, json.dumps: the cost of JSON-RPC with no checks."""

    def handle(data: bytes) -> bytes | None:
        try:
            req = json.loads(data)
        except ValueError:
            error = {"code": -32700, "message": "Parse error"}
            return _dump({"jsonrpc": "2.0", "error": error, "id": None})
        if isinstance(req, list):
            return _dump([_floor_one(r) for r in req])
        return _dump(_floor_one(req))

    return handle


def floor_orjson() -> Handle:
    import orjson

    plain = floor_stdlib()

    def handle(data: bytes) -> bytes | None:
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            return plain(data)
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            return plain(data)
        func = METHODS.get(req["method"])
        if func is None:
            return plain(data)
        params = req.get("params", [])
        result = func(**params) if isinstance(params, dict) else func(*params)
        out: bytes = orjson.dumps({"jsonrpc": "2.0", "result": result, "id": req.get("id")})
        return out

    return handle


def _on_loop(handle: Callable[[bytes], Awaitable[bytes | None]]) -> Handle:
    loop = asyncio.new_event_loop()
    return lambda data: loop.run_until_complete(handle(data))


def floor_async() -> Handle:
    """floor_stdlib inside one event-loop turn: what the *_async rows pay for the loop."""
    plain = floor_stdlib()

    async def handle(data: bytes) -> bytes | None:
        return plain(data)

    return _on_loop(handle)


def _public_rpc(blocking: bool = True) -> Any:
    from safe_rpc import RPCServer

    rpc = RPCServer()
    for name, func in METHODS.items():
        rpc.method(name=name, public=True, blocking=blocking)(func)
    return rpc


def safe_rpc_async() -> Handle:
    return _on_loop(_public_rpc().dispatch_async)


def safe_rpc_inline_async() -> Handle:
    return _on_loop(_public_rpc(blocking=False).dispatch_async)


def _safe_rpc(with_token: bool) -> Handle:
    from safe_rpc import Keyring, RPCServer

    if not with_token:
        return _public_rpc().dispatch  # type: ignore[no-any-return]
    keyring = Keyring.generate(audience="bench")
    rpc = RPCServer(keyring=keyring)
    for name, func in METHODS.items():
        rpc.method(name=name, scopes=["bench"])(func)
    token = keyring.issue("bench", ["bench"], ttl=3600)
    dispatch = rpc.dispatch
    return lambda data: dispatch(data, token=token)


def safe_rpc() -> Handle:
    return _safe_rpc(with_token=False)


def safe_rpc_token() -> Handle:
    return _safe_rpc(with_token=True)


def jsonrpcserver() -> Handle:
    from jsonrpcserver import Success, dispatch

    methods = {
        name: (lambda f: lambda *a, **k: Success(f(*a, **k)))(func)
        for name, func in METHODS.items()
    }

    def handle(data: bytes) -> bytes | None:
        out = dispatch(data.decode(), methods=methods)
        return out.encode() if out else None

    return handle


def json_rpc() -> Handle:
    from jsonrpc import Dispatcher, JSONRPCResponseManager

    dispatcher = Dispatcher()
    for name, func in METHODS.items():
        dispatcher.add_method(func, name=name)

    def handle(data: bytes) -> bytes | None:
        response = JSONRPCResponseManager.handle(data, dispatcher)
        return None if response is None else response.json.encode()

    return handle


def tinyrpc() -> Handle:
    from tinyrpc.dispatch import RPCDispatcher
    from tinyrpc.exc import RPCError
    from tinyrpc.protocols.jsonrpc import JSONRPCProtocol

    protocol, dispatcher = JSONRPCProtocol(), RPCDispatcher()
    for name, func in METHODS.items():
        dispatcher.add_method(func, name)

    def handle(data: bytes) -> bytes | None:
        try:
            request = protocol.parse_request(data)
        except RPCError as exc:
            response = exc.error_respond()
        else:
            response = dispatcher.dispatch(request)
        return None if response is None else response.serialize()

    return handle


IMPLEMENTATIONS: dict[str, Callable[[], Handle]] = {
    "floor_stdlib": floor_stdlib,
    "floor_orjson": floor_orjson,
    "safe_rpc": safe_rpc,
    "jsonrpcserver": jsonrpcserver,
    "json-rpc": json_rpc,
    "tinyrpc": tinyrpc,
    "floor_async": floor_async,
    "safe_rpc_async": safe_rpc_async,
    "safe_rpc_inline_async": safe_rpc_inline_async,
}


# -- checking and timing ------------------------------------------------------------------


def check(raw: bytes | None, expected: Any) -> str | None:
    """None when ``raw`` is the right answer, else what is wrong."""
    try:
        answer = json.loads(raw or b"null")
    except ValueError:
        return "not JSON"
    if isinstance(expected, dict):
        if not isinstance(answer, list):
            return "not a batch answer"
        got = {a.get("id"): a.get("result") for a in answer}
        return None if got == expected else "wrong batch results"
    if not isinstance(answer, dict):
        return "not an object"
    if isinstance(expected, tuple):
        code = (answer.get("error") or {}).get("code")
        return None if code == expected[1] else f"error code {code}, expected {expected[1]}"
    return None if answer.get("result") == expected and answer.get("id") == 1 else "wrong result"


def time_one(handle: Handle, payload: bytes, target: float) -> float:
    """Seconds per call, over enough calls to last about ``target`` seconds."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            handle(payload)
        elapsed = time.perf_counter() - start
        if elapsed >= target:
            return elapsed / n
        n *= 2 if elapsed < target / 4 else max(2, round(target / max(elapsed, 1e-9) * n) // n)


def run(rounds: int, target: float, names: list[str], workloads: list[str]) -> None:
    handles: dict[str, Handle] = {}
    for name in names:
        try:
            handles[name] = IMPLEMENTATIONS[name]()
        except ImportError as exc:
            print(f"skipped {name}: {exc}")
    token_handle = safe_rpc_token() if "safe_rpc" in handles else None
    cells: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    broken: set[tuple[str, str]] = set()
    for workload in workloads:
        payload, expected = WORKLOADS[workload]
        for name, handle in handles.items():
            if workload == "token" and name == "safe_rpc" and token_handle is not None:
                handle = token_handle
            problem = check(handle(payload), expected)
            if problem:
                broken.add((name, workload))
                print(f"FAIL {name} / {workload}: {problem}")
    order = list(handles)
    for r in range(rounds):
        order = order[1:] + order[:1]
        for workload in workloads:
            payload, _ = WORKLOADS[workload]
            per_call: dict[str, float] = {}
            for name in order:
                if (name, workload) in broken:
                    continue
                handle = handles[name]
                if workload == "token" and name == "safe_rpc" and token_handle is not None:
                    handle = token_handle
                per_call[name] = time_one(handle, payload, target)
                cells.setdefault((name, workload), []).append(per_call[name])
            floor = per_call.get("floor_stdlib")
            for name, seconds in per_call.items():
                if floor:
                    ratios.setdefault((name, workload), []).append(seconds / floor)
        print(f"round {r + 1}/{rounds} done", flush=True)
    _table("median µs per call", handles, workloads, cells, broken, lambda v: f"{v * 1e6:.1f}")
    _table(
        "ratio to floor_stdlib (lower is faster)",
        handles,
        workloads,
        ratios,
        broken,
        lambda v: f"{v:.2f}x",
    )


def _table(
    title: str,
    handles: dict[str, Handle],
    workloads: list[str],
    values: dict[tuple[str, str], list[float]],
    broken: set[tuple[str, str]],
    fmt: Callable[[float], str],
) -> None:
    print(f"\n{title}\n")
    print("| implementation | " + " | ".join(workloads) + " |")
    print("|---" * (len(workloads) + 1) + "|")
    for name in handles:
        row = []
        for workload in workloads:
            if (name, workload) in broken:
                row.append("FAIL")
            else:
                row.append(fmt(statistics.median(values[(name, workload)])))
        print(f"| {name} | " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--target-ms", type=float, default=15.0, help="length of one sample")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 ms samples")
    parser.add_argument("--impls", default=",".join(IMPLEMENTATIONS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()
    rounds, target = (args.rounds, args.target_ms / 1000)
    if args.quick:
        rounds, target = min(rounds, 3), 0.003
    run(rounds, target, args.impls.split(","), args.workloads.split(","))


if __name__ == "__main__":
    main()
