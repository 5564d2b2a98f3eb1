"""docs/ARCHITECTURE.md's rooms and import rules, held against the code: every `ddrf.X` a room imports (at the top or
inside a function) must be named in the last column of its row, and every module of the package must belong to a
room. A new import across rooms then means updating the table, or finding that it runs the wrong way."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "ddrf"


def rooms() -> dict[str, str]:
    """Room (a folder `ddrf/X/` or a file `ddrf/X.py`) -> the text of its "may import" column."""
    table: dict[str, str] = {}
    for line in (ROOT / "docs" / "ARCHITECTURE.md").read_text().splitlines():
        match = re.match(r"\| `(ddrf/[^`]*)` \|.*\| ([^|]*) \|$", line)
        if match:
            table[match.group(1)] = match.group(2)
    return table


def room_of(module: Path, table: dict[str, str]) -> str | None:
    relative = module.relative_to(ROOT).as_posix()
    folder = relative.rsplit("/", 1)[0] + "/"
    for key in (relative, folder, *(k for k in table if k.endswith("/") and relative.startswith(k))):
        if key in table:
            return key
    return None


def name_of(room: str) -> str:
    """`ddrf/scenes/` -> scenes, `ddrf/card.py` -> card, `ddrf/assets/__init__.py` -> assets."""
    parts = room.removeprefix("ddrf/").removesuffix("/").removesuffix(".py").split("/")
    return parts[0]


def imported_rooms(module: Path) -> set[str]:
    """The `ddrf.X` (first component) that a module imports anywhere in it; relative imports stay in their room."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ddrf.")}
            names |= {"__init__" for a in node.names if a.name == "ddrf"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "ddrf":
                names |= {a.name for a in node.names}
            elif node.module.startswith("ddrf."):
                names.add(node.module.split(".")[1])
    return names


def test_every_module_has_a_room_and_imports_only_what_its_row_allows() -> None:
    table = rooms()
    assert len(table) > 20, "the table of rooms was not found in docs/ARCHITECTURE.md"
    known = {name_of(room) for room in table}
    homeless, breaches = [], []
    for module in sorted(PACKAGE.rglob("*.py")):
        room = room_of(module, table)
        if room is None:
            homeless.append(module.relative_to(ROOT).as_posix())
            continue
        allowed = table[room]
        if allowed.startswith("everything"):
            continue
        words = set(re.findall(r"[a-z_]+", allowed))
        own = name_of(room)
        for name in sorted(imported_rooms(module) - {own}):
            target = name if name in known else None
            if target is None or target not in words:
                breaches.append(f"{module.relative_to(ROOT)} imports ddrf.{name}, not in the row of {room}")
    assert not homeless, f"modules in no room of docs/ARCHITECTURE.md: {homeless}"
    assert not breaches, "\n".join(breaches)


def test_the_check_sees_an_import_the_table_does_not_allow(tmp_path: Path) -> None:
    """The parser finds imports inside functions and `from ddrf import X` too (else the test above could not fail)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from ddrf.scenes.tiling import round_up\n    from ddrf import card\n"
                      "import ddrf.files\n")
    assert imported_rooms(module) == {"scenes", "card", "files"}
