"""The access log: one line per finished call on the ``safe_rpc.access`` logger.

``safe-rpc serve --access-log json|text|off`` installs it; in code,
``rpc.add_observer(AccessLog("json"))``. Lines carry the record's fields only (never params,
results or error data); the subject and client address are escaped (SECURITY.md SR-43: no
forged log lines), and the method is a registered name or ``-``.
"""

from __future__ import annotations

import json
import logging
from typing import Final, Literal

from .._core.logs import log_safe
from .record import CallRecord

__all__ = ["ACCESS_LOGGER", "AccessLog"]

ACCESS_LOGGER: Final = "safe_rpc.access"


class AccessLog:
    """An observer writing each call to the ``safe_rpc.access`` logger at INFO.

    Args:
        format: ``"json"`` (one JSON object per line: ``method``, ``subject``, ``transport``,
            ``client``, ``code``, ``ms``, ``in``, ``out``, ``batch``, ``refused``) or ``"text"``.
    """

    def __init__(self, format: Literal["json", "text"] = "json") -> None:
        if format not in ("json", "text"):
            raise ValueError("access log format must be 'json' or 'text'")
        self.format = format
        self.logger = logging.getLogger(ACCESS_LOGGER)

    def __call__(self, record: CallRecord) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        ms = round(record.duration * 1000, 3)
        if self.format == "json":
            # json.dumps escapes control characters: a subject cannot break the line.
            line = json.dumps(
                {
                    "method": record.method,
                    "subject": record.subject,
                    "transport": record.transport,
                    "client": record.client,
                    "code": record.error_code,
                    "ms": ms,
                    "in": record.request_bytes,
                    "out": record.response_bytes,
                    "batch": record.batch_size,
                    "refused": record.refused,
                },
                separators=(",", ":"),
            )
        else:
            subject = log_safe(record.subject) if record.subject is not None else "-"
            client = log_safe(record.client) if record.client is not None else "-"
            code = "ok" if record.error_code is None else str(record.error_code)
            line = (
                f"{record.transport} {client} {subject} {record.method or '-'} {code} "
                f"{ms}ms in={record.request_bytes} out={record.response_bytes} "
                f"batch={record.batch_size}{' refused' if record.refused else ''}"
            )
        self.logger.info("%s", line)
