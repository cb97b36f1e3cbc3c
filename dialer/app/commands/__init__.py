"""CLI command modules; each exposes ``COMMANDS`` (see ``dialer.app.cli``)."""
