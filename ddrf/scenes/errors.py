"""The one error type of scene handling: a ValueError whose message is one line naming the file at fault."""
from __future__ import annotations


class SceneError(ValueError):
    """Bad scene input: `str(err)` is one line, `path: what is wrong`."""

    def __init__(self, path: object, problem: str) -> None:
        self.path, self.problem = str(path), " ".join(str(problem).split())  # force one line
        super().__init__(f"{self.path}: {self.problem}")
