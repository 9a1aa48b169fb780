"""The reference lab: topology, build, status, break scenarios, the lab's own rules."""

# Puts a lab back as described (`lab fix` is `lab up`); verdicts of lab runs cite it.
RESTORE_COMMAND = "pathtrace lab fix"
# Where runs start when no source is named: the reference lab's first container.
DEFAULT_SOURCE = "container1"
# The namespaces of a lab are this prefix + the node's name, unless its file says otherwise.
DEFAULT_PREFIX = "pt-"
