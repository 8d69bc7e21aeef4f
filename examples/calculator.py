"""A calculator service with public methods: the smallest useful safe_rpc server.

Serve it:   safe-rpc serve examples.calculator:rpc
Call it:    safe-rpc call http://127.0.0.1:8000/ add 2 3
In process: python -m examples.calculator
"""

from __future__ import annotations

from safe_rpc import RPCServer

rpc = RPCServer()


@rpc.method(public=True)
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@rpc.method(public=True)
def subtract(minuend: int, subtrahend: int) -> int:
    """The JSON-RPC 2.0 specification's own example method."""
    return minuend - subtrahend


@rpc.method(name="stats.mean", public=True)
def mean(values: list[float]) -> float:
    """Arithmetic mean of a non-empty list of numbers."""
    if not values:
        raise ValueError("empty list")  # becomes -32603 with an error_id; text stays here
    return sum(values) / len(values)


def main() -> None:
    for message in (
        b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}',
        b'{"jsonrpc":"2.0","method":"subtract","params":{"minuend":42,"subtrahend":23},"id":2}',
        b'{"jsonrpc":"2.0","method":"add","params":["2",3],"id":3}',
    ):
        print(message.decode(), "->", (rpc.dispatch(message) or b"").decode())


if __name__ == "__main__":
    main()
