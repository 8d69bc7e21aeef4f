"""``@rpc.subscription``: server-pushed streams on connections that stay open.

A subscription is an async generator function. Registering it builds, once:

* a *starter*: an ordinary method (same name, same parameters, same scopes, validated by the
  same pipeline) whose answer is the new subscription's id. It asks the connection the
  message came from (the session in a context variable) to open the stream; over plain HTTP
  or in-process there is no session and the call answers -32601 (nothing to stream to);
* the item serializer, from the yield type (``AsyncIterator[Price]`` -> ``Price``);
* once per server, the reserved ``rpc.unsubscribe`` method.

The connection core (``_transports/connection.py``) then owns the stream: its id, the
binding to the connection and principal, the queue and the end.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import TypeAdapter

from .._core.context import Context
from .._core.errors import MethodNotFound, RegistrationError
from .._core.registry import MethodSpec, build_method
from .._transports.connection import SESSION

if TYPE_CHECKING:
    from .server import RPCServer

__all__ = ["UNSUBSCRIBE", "StarterSpec", "StreamSpec", "register_subscription"]

F = TypeVar("F", bound=Callable[..., Any])

UNSUBSCRIBE = "rpc.unsubscribe"
_CTX = "_safe_rpc_ctx"
_ITERATORS = (
    collections.abc.AsyncIterator,
    collections.abc.AsyncGenerator,
    collections.abc.AsyncIterable,
)


class StreamSpec:
    """A registered subscription: its generator function and its item serializer."""

    __slots__ = ("ctx_param", "ctx_position", "func", "item_adapter", "name")

    def __init__(
        self,
        name: str,
        func: Callable[..., Any],
        item_adapter: TypeAdapter[Any],
        ctx_param: str | None,
        ctx_position: int | None,
    ) -> None:
        self.name = name
        self.func = func
        self.item_adapter = item_adapter
        self.ctx_param = ctx_param
        self.ctx_position = ctx_position


class StarterSpec(MethodSpec):
    """The starter's ``MethodSpec``, marked for discovery: ``kind`` makes ``rpc.discover``
    list it with ``x-subscription: true`` and ``item_adapter`` gives its items' schema."""

    __slots__ = ("item_adapter", "kind")
    item_adapter: TypeAdapter[Any]
    kind: str

    @classmethod
    def of(cls, method: MethodSpec, item_adapter: TypeAdapter[Any]) -> StarterSpec:
        spec = cls.__new__(cls)
        for slot in MethodSpec.__slots__:
            if hasattr(method, slot):
                setattr(spec, slot, getattr(method, slot))
        spec.kind = "subscription"
        spec.item_adapter = item_adapter
        return spec


def _item_type(func: Callable[..., Any], where: str) -> Any:
    if not inspect.isasyncgenfunction(func):
        raise RegistrationError(
            f"{where}: @rpc.subscription needs an async generator function "
            "(`async def ...` that `yield`s items)"
        )
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise RegistrationError(f"cannot read the signature of {where}: {exc}") from exc
    hint = hints.get("return")
    if typing.get_origin(hint) not in _ITERATORS or not typing.get_args(hint):
        raise RegistrationError(
            f"{where}: annotate the return as AsyncIterator[ItemType]; every item is "
            "serialised through ItemType"
        )
    return typing.get_args(hint)[0]


def _starter(
    func: Callable[..., Any], name: str, public: bool, scopes: Iterable[str]
) -> tuple[MethodSpec, StreamSpec]:
    where = f"{getattr(func, '__qualname__', name)} (registered as {name!r})"
    item = _item_type(func, where)
    try:
        item_adapter: TypeAdapter[Any] = TypeAdapter(item)
        item_adapter.json_schema(mode="serialization")
    except Exception as exc:
        raise RegistrationError(f"{where}: unsupported item type: {exc}") from exc
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func, include_extras=True)
    params = []
    ctx_param = ctx_position = None
    for position, param in enumerate(signature.parameters.values()):
        if hints.get(param.name) is Context:
            ctx_param = param.name
            if param.kind is param.POSITIONAL_ONLY:
                ctx_position = position
            continue
        params.append(param)
    # The starter takes the same parameters, plus a Context of its own (keyword-only).
    params.append(inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=Context))
    annotations = {p.name: hints[p.name] for p in params if p.name in hints}
    annotations[_CTX] = Context
    annotations["return"] = str
    spec = StreamSpec(name, func, item_adapter, ctx_param, ctx_position)

    async def start(*args: Any, **kwargs: Any) -> str:
        ctx: Context = kwargs.pop(_CTX)
        session = SESSION.get()
        if session is None:
            raise MethodNotFound()  # plain HTTP, in-process: no connection to stream to
        if ctx.is_notification:
            return ""  # nobody would ever learn the id: open nothing
        call_args = list(args)
        if spec.ctx_param is not None:
            if spec.ctx_position is not None:
                call_args.insert(spec.ctx_position, ctx)
            else:
                kwargs[spec.ctx_param] = ctx
        return session.subscribe(spec, call_args, kwargs, ctx)

    start.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=str
    )
    start.__annotations__ = annotations
    start.__name__ = getattr(func, "__name__", name)
    start.__qualname__ = getattr(func, "__qualname__", name)
    method = build_method(start, name=name, public=public, scopes=scopes)
    return StarterSpec.of(method, item_adapter), spec


async def _unsubscribe(subscription: str, _safe_rpc_ctx: Context) -> bool:
    session = SESSION.get()
    if session is None:
        raise MethodNotFound()
    return session.unsubscribe(subscription, _safe_rpc_ctx.principal)


def register_subscription(
    rpc: RPCServer,
    func: F,
    *,
    name: str | None,
    scopes: Iterable[str],
    public: bool,
) -> F:
    """Register ``func`` on ``rpc`` (see ``RPCServer.subscription``)."""
    wire_name = name if name is not None else getattr(func, "__name__", "")
    method, stream = _starter(func, wire_name, public, scopes)
    methods = rpc._methods
    if method.name in methods:
        raise RegistrationError(f"method {method.name!r} is already registered")
    if UNSUBSCRIBE not in methods:
        # Reserved names cannot be registered by users; the library builds this one under
        # an ordinary name and files it under the reserved one. Public: the session
        # checks that the caller holds the subscription, whoever the caller is.
        unsubscribe = build_method(_unsubscribe, name="unsubscribe", public=True, scopes=())
        unsubscribe.name = UNSUBSCRIBE
        methods[UNSUBSCRIBE] = unsubscribe
    methods[method.name] = method
    rpc._has_private = rpc._has_private or not method.public
    rpc._streams[method.name] = stream
    return func
