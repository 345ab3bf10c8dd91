"""GO/NO-GO checklist items measured on the release candidate."""
