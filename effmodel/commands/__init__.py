"""CLI commands, one module per group; attached to the app in :mod:`effmodel.cli`."""
