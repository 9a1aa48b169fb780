"""Messages that cross widgets and screens (small dataclasses, past tense)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from pathtrace.model.result import RunResult


@dataclass
class RunFinished(Message):
    result: RunResult


@dataclass
class RunFailed(Message):
    error: str


@dataclass
class LabChanged(Message):
    """The lab was made, removed, broken or fixed: the topology pane refreshes."""

    what: str
