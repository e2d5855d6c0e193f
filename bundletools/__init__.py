"""Offline bundle tools (graph optimisation, fp16/int8 variants): run by `fusionserve optimize`, never by a server."""
