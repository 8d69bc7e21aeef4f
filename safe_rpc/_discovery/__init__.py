"""Discovery: the OpenRPC document of a server and typed client stubs generated from it.

This layer sits just above ``_core``: it reads registered specs and produces documents and
source text, with no I/O of its own.
"""

from .openrpc import OPENRPC_VERSION, Discovery, build_document
from .stubs import StubError, generate_stubs

__all__ = ["OPENRPC_VERSION", "Discovery", "StubError", "build_document", "generate_stubs"]
