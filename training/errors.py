"""Mistakes a user can fix: `fusionserve-train` prints them as one message and exits with code 2, no traceback.

Everything else (a bug, a crashed backbone) still raises with its traceback: it is ours to fix, not theirs.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user gave (dataset, config, checkpoint, version); the message says how to fix it."""


class ConfigError(UserError, ValueError):
    """A config file or value that cannot be used (names the file or the field)."""


class CheckpointError(UserError):
    """No checkpoint where the command looks, or one made for another model, dataset or config."""


class PublishError(UserError):
    """The bundle version cannot be published (it exists and --overwrite was not given, or a race lost)."""
