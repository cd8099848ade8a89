"""Conformance tests over adapters, usable from any project through the refconv pytest plugin."""
