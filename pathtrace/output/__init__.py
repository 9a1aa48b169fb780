"""Output: a RunResult as text, markdown, JSON, a packet view, a diff, or a bundle."""
