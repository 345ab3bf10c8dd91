"""``python -m spark_sandbox [sandbox] up|status|down``: the sandbox CLI on its own."""

from __future__ import annotations

from spark_sandbox.cli import main

raise SystemExit(main())
