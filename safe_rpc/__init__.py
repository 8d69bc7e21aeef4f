"""safe_rpc: a JSON-RPC 2.0 server and client that is safe to put on an untrusted network.

Strict JSON only (no pickle anywhere), every message checked against the JSON-RPC 2.0
envelope and a per-method pydantic model, HMAC bearer tokens with per-method scopes, hard
limits on every resource, and structured errors that the client rebuilds into exception
classes without trusting anything in the message.

The public API is exactly what this module exports; every other module is private.
"""

from ._auth.limiter import FailedAuthLimiter
from ._auth.tokens import Keyring
from ._client import AsyncClient, AsyncSubscription, BatchFuture, Client, Subscription
from ._core.authn import Authenticator
from ._core.context import Context, Principal
from ._core.errors import (
    DEFAULT_ERRORS,
    AuthError,
    BatchTooLarge,
    ConfigError,
    ErrorRegistry,
    Forbidden,
    InternalError,
    InvalidParams,
    InvalidRequest,
    InvalidResponse,
    LimitExceeded,
    MethodNotFound,
    ParseError,
    ProtocolError,
    RateLimited,
    RegistrationError,
    RemoteError,
    RequestTimeout,
    RequestTooLarge,
    ResponseTooLarge,
    RPCError,
    ServerBusy,
    SlowConsumer,
    TransportError,
    Unauthenticated,
)
from ._core.limits import Limits
from ._core.schemas import load_schema
from ._discovery.stubs import StubError, generate_stubs
from ._ops import AccessLog, CallRecord, Observer, OpenTelemetry, PrometheusMetrics
from ._server.server import RPCServer
from ._serving import serve
from ._store import (
    MemoryStore,
    RedisStore,
    SQLiteStore,
    Store,
    StoreUnavailable,
    store_from_url,
)
from ._transports.http import ASGIApp
from ._transports.tcp import TCPServer
from ._version import __version__

__all__ = [
    # serving
    "ASGIApp",
    "AccessLog",
    "Authenticator",
    "CallRecord",
    "Context",
    "FailedAuthLimiter",
    "Keyring",
    "Limits",
    "Observer",
    "OpenTelemetry",
    "Principal",
    "PrometheusMetrics",
    "RPCServer",
    "load_schema",
    "serve",
    # transports and the authenticator interface (for mounting and custom credentials)
    "TCPServer",
    # shared state
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "store_from_url",
    # clients
    "AsyncClient",
    "AsyncSubscription",
    "BatchFuture",
    "Client",
    "StubError",
    "generate_stubs",
    "Subscription",
    # errors
    "DEFAULT_ERRORS",
    "AuthError",
    "BatchTooLarge",
    "ConfigError",
    "ErrorRegistry",
    "Forbidden",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "InvalidResponse",
    "LimitExceeded",
    "MethodNotFound",
    "ParseError",
    "ProtocolError",
    "RPCError",
    "RateLimited",
    "RegistrationError",
    "RemoteError",
    "RequestTimeout",
    "RequestTooLarge",
    "ResponseTooLarge",
    "ServerBusy",
    "SlowConsumer",
    "TransportError",
    "Unauthenticated",
    # metadata
    "__version__",
]
