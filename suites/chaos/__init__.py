"""Chaos scenarios C1–C6 (gate ``chaos``, nightly): faults injected through the Toxiproxy API."""
