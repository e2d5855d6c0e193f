"""The messages between front-end processes and engine processes (pure data, no sockets)."""
