"""The Open Inference Protocol (KServe V2): core.py (transport-free), REST (rest.py, rest_codec.py), gRPC."""
