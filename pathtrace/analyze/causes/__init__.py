"""Why a packet stopped, one module per kind of evidence.

Each reads the saved state (``Network``) and the trace and returns a ``Finding``
(code, objects, sentence, fix, evidence) or None: it does not know the others' faults.
``analyze.drops`` picks which to ask from the kernel's drop reason and location.
"""
