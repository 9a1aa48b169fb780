"""The model: plain data every stage shares (events, state, rulesets, hops, runs).

It imports nothing from pathtrace but ``pathtrace.errors``, does no I/O, and can
be read and tested without root or a kernel.
"""
