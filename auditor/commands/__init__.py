"""CLI commands, one module per command family; ``auditor.cli`` registers them."""
