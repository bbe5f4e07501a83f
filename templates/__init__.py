"""Jinja2 templates for every message, post, page and export header (data only)."""
