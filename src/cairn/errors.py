"""The exception tree. HTTP answers are made from these in one place (`cairn.web.errors`).

    CairnError                      code, message, status
    ├── BadRequest                  400: the request as a whole cannot be read
    │   ├── InvalidJSON             body is not JSON / not UTF-8 / nested too deep
    │   ├── InvalidEncoding         unknown Content-Encoding or a broken gzip stream
    │   └── InvalidBody             JSON of the wrong shape (not an object, batch not a list)
    ├── PayloadTooLarge             413: request body over `max_request_bytes`
    ├── Unauthorized                401
    │   ├── UnknownWriteKey         missing or unknown write key
    │   └── InvalidToken            missing or unknown admin token
    ├── Forbidden                   403
    │   └── SourceDisabled          the write key's source is disabled
    ├── NotFound                    404
    ├── Conflict                    409: e.g. a name already taken
    ├── Overloaded                  429: the writer is behind; retry after `retry_after` seconds
    └── StorageError                500: the database failed (never caused by client input)

Per-message problems inside an accepted request are not exceptions: they are `Rejection`s in the
answer (see `cairn.ingest.messages`).
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "CairnError",
    "Conflict",
    "Forbidden",
    "InvalidBody",
    "InvalidEncoding",
    "InvalidJSON",
    "InvalidToken",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "SourceDisabled",
    "StorageError",
    "Unauthorized",
    "UnknownWriteKey",
]


class CairnError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(CairnError):
    status = 400
    code = "bad_request"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class InvalidEncoding(BadRequest):
    code = "invalid_encoding"


class InvalidBody(BadRequest):
    code = "invalid_body"


class PayloadTooLarge(CairnError):
    status = 413
    code = "request_too_large"


class Unauthorized(CairnError):
    status = 401
    code = "unauthorized"


class UnknownWriteKey(Unauthorized):
    code = "invalid_write_key"


class InvalidToken(Unauthorized):
    code = "invalid_token"


class Forbidden(CairnError):
    status = 403
    code = "forbidden"


class SourceDisabled(Forbidden):
    code = "source_disabled"


class NotFound(CairnError):
    status = 404
    code = "not_found"


class Conflict(CairnError):
    status = 409
    code = "conflict"


class Overloaded(CairnError):
    status = 429
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageError(CairnError):
    status = 500
    code = "storage_error"
