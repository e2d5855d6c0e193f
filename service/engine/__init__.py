"""Engine processes: the wire format between front-end processes and one engine per device."""
