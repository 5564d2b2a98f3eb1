"""Every command the docs give (README, docs/*.md, the bundled models' READMEs, the configs' comments, the benchmarks'
docstrings) uses only options its program still has: a figure in a doc comes from a command anyone can rerun.

Commands are taken from code blocks and inline code (continuation lines joined; placeholders such as DIR, MODEL,
`[--steps K]` and `...` are words, so only the flag names count). Each flag is checked against the real parser: the
CLIs' Typer apps, the benchmarks' argparse parsers (taken from their main() at the moment it parses), and for
`ddrf-train CONFIG key=value` the config file and the dotted keys of ddrf/train/config.py's sections.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any, Iterator
from unittest.mock import patch

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

# console script -> the module whose Typer `app` it runs (ddrf/cli.py); `python -m MODULE` runs the same app
CLIS = {"ddrf-run": "ddrf.scenes.command", "ddrf-export": "ddrf.export.command",
        "ddrf-eval": "ddrf.evaluate.command", "ddrf-train": "ddrf.train.command",
        "ddrf-profile": "ddrf.profile.command", "ddrf-finetune": "ddrf.finetune.command"}
MODULES = {**{module: name for name, module in CLIS.items()}, "ddrf.evaluate": "ddrf-eval"}

PROGRAM = re.compile(r"(?<![\w.-])(?:(?P<cli>ddrf-(?:run|export|eval|train|profile|finetune))(?![\w-])"
                     r"|-m\s+(?P<module>ddrf(?:\.\w+)+)"
                     r"|(?:benchmarks/|(?<!/))(?P<bench>\w+)\.py\b)")
FLAG = re.compile(r"(?<![\w.-])(--[A-Za-z0-9][\w-]*|-[A-Za-z](?![\w-]))")
ENDS = {"&&", "||", ";", "|"}  # shell separators: the command ends there
FENCE = re.compile(r"^\s*(```|~~~)")
# what may come before a program that starts a line of free text: a prompt, `Usage:`, `then:`, variables, python or
# torchrun
SHELL_PREFIX = re.compile(r"\s*\(?(?:\$\s*|[Uu]sage:\s*|(?:\.\.\.[^:]*)?then:\s*)?"
                          r"(?:\w+=\S*\s+)*(?:\S*(?:python3?|torchrun)\b.*?\s)?")
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


@dataclass
class Command:
    where: str  # file:line
    program: str  # a console script or benchmarks/NAME.py
    words: list[str]  # what follows the program name, up to the end of the command

    def __str__(self) -> str:
        return f"{self.where}: {self.program} {' '.join(self.words)}"


# ---------------------------------------------------------------------------------------------------- extraction


def joined(lines: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Shell lines with their continuations joined, each with the number of its first line: a line ending in `\\`
    or in `|` (alternatives of a placeholder) goes on, and so does an indented line that starts with an option or
    `[` (a synopsis wrapped without `\\`)."""
    start, parts = 0, list[str]()
    for number, line in lines:
        stripped = line.rstrip()
        wrapped = re.match(r"\s+[-\[]", line) is not None
        if parts and not wrapped and not parts[-1].endswith("\\") and not parts[-1].endswith("|"):
            yield start, " ".join(part.removesuffix("\\") for part in parts)
            parts = []
        if not parts:
            start = number
        if stripped:
            parts.append(stripped)
    if parts:
        yield start, " ".join(part.removesuffix("\\") for part in parts)


def inline_spans(text: str, first_line: int = 1) -> Iterator[tuple[int, str]]:
    """Inline code spans (`...`) of prose, newlines inside them made spaces."""
    for match in INLINE.finditer(text):
        yield first_line + text.count("\n", 0, match.start()), " ".join(match.group(2).split())


def blank_spans(text: str) -> str:
    """The text with its inline code spans blanked (newlines kept), so the rest can be read line by line."""
    return INLINE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


Piece = tuple[int, str, bool]  # line number, text, whether a program named in it must start a line to count


def markdown_pieces(text: str) -> Iterator[Piece]:
    """Code-block lines (continuations joined) and the inline code of the prose around them."""
    prose, block, fenced = list[str](), list[tuple[int, str]](), False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            if fenced:
                yield from ((n, piece, False) for n, piece in joined(block))
                block = []
            fenced = not fenced
            prose.append("")
        elif fenced:
            block.append((number, line))
            prose.append("")
        else:
            prose.append(line)
    yield from ((n, piece, False) for n, piece in joined(block))
    yield from ((n, span, False) for n, span in inline_spans("\n".join(prose)))


def free_text_pieces(text: str, first_line: int = 1) -> Iterator[Piece]:
    """Text that mixes prose and commands (a docstring, YAML comments): its inline code, then its lines, where only
    a program that starts a line (after `$`, `Usage:`, variables, `python`) is a command: `ddrf-run in this process`
    in a sentence is not."""
    yield from ((n, span, False) for n, span in inline_spans(text, first_line))
    lines = [(first_line + i, line) for i, line in enumerate(blank_spans(text).splitlines())]
    yield from ((n, piece, True) for n, piece in joined(lines))


def yaml_pieces(text: str) -> Iterator[Piece]:
    comments = [re.sub(r"^\s*#\s?", "", line) if line.lstrip().startswith("#") else "" for line in text.splitlines()]
    yield from free_text_pieces("\n".join(comments))


def docstring_pieces(text: str) -> Iterator[Piece]:
    """A benchmark's module docstring, where its usage is (its functions' docstrings describe code, not commands)."""
    module = ast.parse(text)
    first = module.body[0] if module.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        yield from free_text_pieces(first.value.value, first.lineno)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "ddrf" / "assets" / "models").glob("**/README.md")),
            *sorted((ROOT / "configs").glob("*.yaml")), *sorted(BENCHMARKS.glob("*.py"))]


def pieces(path: Path) -> Iterator[Piece]:
    text = path.read_text()
    if path.suffix == ".md":
        return markdown_pieces(text)
    if path.suffix == ".yaml":
        return yaml_pieces(text)
    return docstring_pieces(text)


def commands_in(piece: str, where: str, line_start: bool = False) -> Iterator[Command]:
    """The commands in one line of shell (or one inline span): each runs from its program's name to the next
    program's name, a shell separator (`|` only outside `[...]`, where it separates alternatives), a `#` comment or
    the `)` closing a parenthesis it was named in. `line_start`: only programs at the start of the line or after a
    separator count."""
    starts = [m for m in PROGRAM.finditer(piece) if program_of(m)]
    for i, match in enumerate(starts):
        if line_start and not SHELL_PREFIX.fullmatch(re.split(r"&&|\|\||;", piece[:match.start()])[-1]):
            continue
        end = starts[i + 1].start() if i + 1 < len(starts) else len(piece)
        yield Command(where, program_of(match), command_words(piece[match.end():end]))


def command_words(text: str) -> list[str]:
    words: list[str] = []
    brackets = parentheses = 0
    for word in text.split():
        if word in ENDS and not (word == "|" and brackets > 0) or word.startswith("#"):
            break
        brackets += word.count("[") - word.count("]")
        parentheses += word.count("(") - word.count(")")
        if parentheses < 0:  # `(... ddrf-train ...)`: the command ends with the parenthesis
            words.append(word.split(")")[0])
            break
        words.append(word.strip("'\"`"))
    return [word for word in words if word]


def program_of(match: re.Match[str]) -> str:
    if match.group("cli"):
        return match.group("cli")
    if match.group("module"):
        return MODULES.get(match.group("module"), "")
    name = match.group("bench")
    return f"benchmarks/{name}.py" if (BENCHMARKS / f"{name}.py").is_file() else ""


def doc_commands(paths: list[Path] | None = None) -> list[Command]:
    found: list[Command] = []
    for path in paths or doc_files():
        for line, piece, line_start in pieces(path):
            name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            found.extend(commands_in(piece, f"{name}:{line}", line_start))
    return found


def flags(words: list[str]) -> list[str]:
    """The option names among a command's words: `--tile 256`, `--tile=256`, `[--steps K]`, `-o` all count."""
    return [flag for word in words for flag in FLAG.findall(word)]


# ------------------------------------------------------------------------------------------------------- parsers

Options = dict[str | None, set[str]]  # subcommand (None: the program itself) -> its option names


class _Parsed(Exception):
    """Raised in place of parsing: carries the parser a benchmark's main() built."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__("parser built")
        self.parser = parser


def _refuse_to_parse(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
    raise _Parsed(parser)


def cli_options(program: str) -> Options:
    """The options of a console script's Typer app and of each of its subcommands (ddrf-export onnx, ...)."""
    import typer

    command = typer.main.get_command(importlib.import_module(CLIS[program]).app)
    table: Options = {None: click_options(command)}
    for name, sub in getattr(command, "commands", {}).items():
        table[name] = click_options(sub)
    return table


def click_options(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(name for name in [*param.opts, *getattr(param, "secondary_opts", [])] if name.startswith("-"))
    return names


def benchmark_options(program: str) -> Options:
    """A benchmark's argparse options, taken from its main() at the moment it parses (nothing after that runs), and
    of each of its subcommands; a script that reads sys.argv itself: the `--` words its source compares."""
    path = ROOT / program
    source = path.read_text()
    if "ArgumentParser(" not in source:
        return {None: {node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant)
                       and isinstance(node.value, str) and re.fullmatch(r"--[a-z][\w-]*", node.value)}}
    saved = list(sys.path)
    sys.path.insert(0, str(BENCHMARKS))  # as when run as a script: its folder first, for sibling modules
    try:
        spec = importlib.util.spec_from_file_location(f"doc_commands_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        main = module.main
        arguments: list[list[str]] = [[]] if inspect.signature(main).parameters else []  # main(argv)
        with patch.object(argparse.ArgumentParser, "parse_args", _refuse_to_parse), \
                patch.object(argparse.ArgumentParser, "parse_known_args", _refuse_to_parse):
            try:
                main(*arguments)
            except _Parsed as parsed:
                return argparse_options(parsed.parser)
        raise AssertionError(f"{program}: main() returned without parsing its arguments")
    finally:
        sys.path[:] = saved  # what the script put there too


def argparse_options(parser: argparse.ArgumentParser) -> Options:
    own = {name for action in parser._actions for name in action.option_strings}
    table: Options = {None: own}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                table[name] = own | argparse_options(sub)[None]
    return table


@cache
def options_of(program: str) -> Options | str:
    """A program's options; a string where this install cannot load it: the optional dependency it lacks (torch in
    the runtime-only install), never a module of ddrf or of the benchmarks that is gone."""
    try:
        return cli_options(program) if program in CLIS else benchmark_options(program)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top == "ddrf" or (BENCHMARKS / f"{top}.py").exists():
            raise
        return f"needs {exc.name}"


# -------------------------------------------------------------------------------------------------------- checks


def problems(command: Command) -> list[str]:
    """What a reader rerunning `command` would meet: an option its program (or subcommand) lacks, a config that is
    not there, a `ddrf-train` override naming no key of the config's sections."""
    words = [word.strip("[]()") for word in command.words]
    if words and words[0].startswith(":"):  # `ddrf-run: error: ...`: a message it prints, not a command
        return []
    table = options_of(command.program)
    if isinstance(table, str):
        return []
    subcommands = [name for name in table if name is not None]
    first = next((word for word in words if not word.startswith("-")), None)
    allowed = table.get(first) or (set().union(*table.values()) if subcommands else table[None])
    found = [f"{flag} is not an option of {command.program}{f' {first}' if first in table else ''}"
             for flag in flags(words) if flag not in allowed]
    if subcommands and words and re.fullmatch(r"[a-z]{2,}", words[0]) and words[0] not in table:
        found.append(f"{command.program} has no subcommand {words[0]} (it has {', '.join(subcommands)})")
    found += [f"{word}: no such config" for word in words if re.fullmatch(r"configs/[\w.-]+\.yaml", word)
              and not (ROOT / word).is_file()]
    if command.program == "ddrf-train":
        found += [problem for word in words if (problem := override_problem(word))]
    return [f"{command}\n    {problem}" for problem in found]


def override_problem(word: str) -> str | None:
    """A `section.key=value` override of ddrf-train naming a key its config sections lack (None: it names one)."""
    match = re.fullmatch(r"([a-z_]+(?:\.[a-z_]+)+)=.*", word)
    if not match:
        return None
    from ddrf.train.config import SECTIONS, SERVING_FIELDS
    from ddrf.model.config import DDRFConfig

    section, *keys = match.group(1).split(".")
    if section not in SECTIONS:
        return f"{match.group(1)}: no config section {section!r}"
    known = {f.name for f in fields(SECTIONS[section])}
    if keys[0] not in known:
        return f"{match.group(1)}: {section} has no key {keys[0]!r}"
    nested = {("model", "overrides"): {f.name for f in fields(DDRFConfig)}, ("model", "serving"): SERVING_FIELDS}
    inner = nested.get((section, keys[0]))
    if len(keys) > 1 and (inner is None or keys[1] not in inner or len(keys) > 2):
        return f"{match.group(1)}: no such key"
    return None


# --------------------------------------------------------------------------------------------------------- tests


def test_the_console_scripts_are_those_the_package_installs() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(CLIS) == set(scripts)


@pytest.mark.parametrize("path", doc_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_documented_command_uses_options_its_program_has(path: Path) -> None:
    commands = doc_commands([path])
    found = [problem for command in commands for problem in problems(command)]
    assert not found, "stale commands (rename the option, or say next to the command that it is gone):\n" + \
        "\n".join(found)
    unchecked = sorted({f"{c.program} ({why})" for c in commands if isinstance(why := options_of(c.program), str)})
    if unchecked:
        pytest.skip(f"not checked here: {', '.join(unchecked)}")


def test_the_docs_name_every_program() -> None:
    """The extraction finds the commands: every console script is used somewhere, and so are the benchmarks the
    docs cite most."""
    programs = {command.program for command in doc_commands()}
    assert set(CLIS) <= programs
    assert {f"benchmarks/{name}.py" for name in ("steps_samples", "scene_throughput", "tile_invariance")} <= programs


def test_a_stale_option_in_any_form_is_found(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Run `ddrf-run SCENE -o OUT [--tiles T]` or `ddrf-export onnx RUN --halo 96 --fp8`.\n\n"
        "```\n"
        "PYTHONPATH=. python benchmarks/steps_samples.py ddrf:MODEL --steps 1 \\\n"
        "    --sample 8 && ddrf-eval DATA --methods ddrf:MODEL --samples 8 --fit-spread  # --not-an-option\n"
        "ddrf-eval DATASET [--mode auto|reduced] [--tile T |\n"
        "    --whole-tile] (ddrf-finetune SCENE --out RUN) --base-mean\n"
        "```\n")
    found = [problem.splitlines()[1].strip() for command in doc_commands([doc]) for problem in problems(command)]
    assert sorted(found) == ["--fp8 is not an option of ddrf-export onnx",
                             "--sample is not an option of benchmarks/steps_samples.py",
                             "--tiles is not an option of ddrf-run", "--whole-tile is not an option of ddrf-eval"]


def test_a_training_command_names_an_existing_config_and_its_keys(tmp_path: Path) -> None:
    pytest.importorskip("torch")  # ddrf.train (its config too) comes with torch
    doc = tmp_path / "config.yaml"
    doc.write_text("# train it:\n"
                   "#   ddrf-train configs/landsat7_bundled.yaml optim.steps=10 optim.stepz=10 \\\n"
                   "#       model.overrides.base_width=8 model.overrides.width=8 model.serving.halo=96 \\\n"
                   "#       data.nope=1 train.steps=1 --out RUN\n"
                   "#   ddrf-train configs/no_such.yaml --out RUN\n"
                   "optim: {}\n")
    found = [problem.splitlines()[1].strip() for command in doc_commands([doc]) for problem in problems(command)]
    assert found == ["optim.stepz: optim has no key 'stepz'", "model.overrides.width: no such key",
                     "data.nope: data has no key 'nope'", "train.steps: no config section 'train'",
                     "configs/no_such.yaml: no such config"]


def test_prose_that_names_a_program_is_no_command(tmp_path: Path) -> None:
    script = tmp_path / "bench.py"
    script.write_text('"""Times ddrf-run with --tiles of 256 (prose), as ddrf-run does.\n\n'
                      '    PYTHONPATH=. python benchmarks/spinning.py --windows 4\n"""\n')
    commands = doc_commands([script])
    assert [(c.program, c.words) for c in commands] == [("benchmarks/spinning.py", ["--windows", "4"])]
