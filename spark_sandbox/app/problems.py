"""RFC 7807 problem responses with a stable machine-readable ``code``."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

PROBLEM_TYPE_BASE = "https://spark.example/problems/"
RETRY_AFTER_S = 1


class Problem(Exception):
    """An error answer: raise it anywhere in a request; the app renders it as problem+json."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra

    def body(self) -> bytes:
        doc: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code.replace("_", "-"),
            "title": self.code.replace("_", " ").capitalize(),
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
            **self.extra,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    def response(self) -> Response:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if self.status == 503 else None
        return problem_response(self.status, self.body(), headers)


def problem_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def service_unavailable(detail: str) -> Problem:
    return Problem(503, "service_unavailable", detail)
