"""A generated block of a hand-written page (docs/BENCHMARKS.md): each benchmark script owns the text between its
own two markers and leaves the rest of the page alone."""
from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def write_block(path: Path, name: str, body: str) -> None:
    """Put `body` between `name`'s markers in `path`, replacing what was there; appended when the page has none.
    Written to a temporary file and renamed, so an interrupted run leaves the page as it was."""
    begin, end = markers(name)
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.is_file() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + block
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
