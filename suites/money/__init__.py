"""Money rules M1–M4 measured with real orders against an independent oracle."""
