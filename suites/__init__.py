"""The readiness checklist as tests; ``suites.limits`` holds the schemas of their thresholds."""
