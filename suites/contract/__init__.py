"""Contracts K1–K3: the web UI ↔ API pact, the order-event message pact, can-i-deploy.

The consumer tests here are the source of the pacts; the provider checks replay them against
the target in the same session. pact-python's FFI sends telemetry unless told not to, and it
reads the switch once at import: set it before any module of this package imports ``pact``.
"""

from __future__ import annotations

import os

os.environ["PACT_DO_NOT_TRACK"] = "true"
