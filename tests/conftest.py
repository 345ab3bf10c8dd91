"""Shared by the project's own tests."""
