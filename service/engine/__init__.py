"""Engine processes (issue 20 §1): the wire format between front-end processes and one engine per device."""
