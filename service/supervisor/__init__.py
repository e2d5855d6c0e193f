"""The supervisor process: starts, watches and restarts the front-ends and engines."""
