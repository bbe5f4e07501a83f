"""Transports, router, dispatcher, scheduler wiring, config and CLI."""
