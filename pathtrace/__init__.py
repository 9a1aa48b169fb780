"""pathtrace: a packet path tracer and debugger for container networking."""

__version__ = "0.1.0"
