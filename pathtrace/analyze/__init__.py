"""Analysis: events and saved state -> hops, series and verdicts. Pure functions over
the model; no I/O, so live runs and bundles read back give the same answers."""
