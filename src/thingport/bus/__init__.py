"""Forwarding to applications: sinks behind one base class (bus/base.py), the way httpx keeps transports."""
