"""``safe-rpc audit``: the project's conformance and hardening checks, for any server.

Layering: imports ``_core`` (and the client-side libraries h11 and websockets) only; never
a server module, so auditing a server cannot depend on the code being audited.
"""
