"""CLI commands kept in modules of their own; ``harness.cli`` calls each module's ``register``."""
