"""Whole files or nothing: every file ddrf publishes is first written beside its final name, then renamed onto it.

A temporary is `.<final name>.<random>.ddrf-part` in the final folder (same filesystem, so the rename is atomic). A
killed process leaves only such files, never a half-written one under a final name; `clean_stale` removes them.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import secrets
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator, Sequence

PART_SUFFIX = ".ddrf-part"


def temp_path(final: str | os.PathLike[str]) -> Path:
    """A fresh temporary name beside `final` (the file is not created)."""
    final = Path(final)
    return final.parent / f".{final.name}.{secrets.token_hex(4)}{PART_SUFFIX}"


def name_too_long(final: str | os.PathLike[str]) -> str | None:
    """Why `final` cannot be written through its temporary (the longest name ddrf gives a file beside it; the
    lock's is shorter): that name is over the bytes a name may have on the folder's file system (NAME_MAX, 255 on
    most: its nearest existing folder is asked), or None when it fits."""
    final = Path(final)
    own, temporary = (len(os.fsencode(name)) for name in (final.name, temp_path(final).name))
    try:
        limit = os.pathconf(nearest_existing(final.parent), "PC_NAME_MAX")
    except (OSError, ValueError):  # no answer: the usual limit
        limit = 255
    if temporary <= limit:
        return None
    return (f"{final}: a name of {own} bytes, written first as a temporary of {temporary}, over the {limit} bytes a "
            f"file name may have there; shorten it by {temporary - limit} bytes")


def clean_stale(final: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries a killed run left for `final`; returns what was removed."""
    final = Path(final)
    removed = []
    # the name escaped, and a random part without a dot: scene `a[1]` or `a*` cleans its own temporaries, and
    # scene `a` none of scene `a.tif.b`'s (`.a.tif.b.tif.<random>.ddrf-part` also starts `.a.tif.`)
    prefix = f".{final.name}."
    for path in final.parent.glob(f"{glob.escape(prefix)}*{PART_SUFFIX}"):
        if "." in path.name[len(prefix):-len(PART_SUFFIX)]:
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def publish(temp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Rename a finished temporary onto its final name (atomic on one filesystem)."""
    os.replace(temp, final)


def publish_all(pending: list[tuple[Path, Path]]) -> None:
    """Rename (temporary, final) pairs in the order given; on any failure the temporaries left are removed, and so
    are the files this call already renamed: a report must not claim a raster that never came.

    Put last the file whose presence says the set is complete (a scene's raster, an engine's sidecar).
    """
    renamed: list[Path] = []
    try:
        for temp, final in pending:
            try:
                publish(temp, final)
            except OSError as exc:  # name the final file, not its temporary
                raise OSError(exc.errno, exc.strerror, str(final)) from exc
            renamed.append(Path(final))
    except BaseException:
        for final in renamed:
            final.unlink(missing_ok=True)
        raise
    finally:
        for temp, _ in pending:
            Path(temp).unlink(missing_ok=True)


def stage_bytes(final: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to a new temporary beside `final` (usual permissions); returns the temporary's path."""
    temp = temp_path(final)
    try:
        with open(temp, "xb") as f:
            f.write(data)
    except OSError as exc:  # disk full, file-size limit: name the file being written, not its temporary
        temp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(final)) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_files_atomic(items: list[tuple[Path, bytes]]) -> None:
    """Several files, all or none: each staged beside its target, then renamed in the order given."""
    pending: list[tuple[Path, Path]] = []
    try:
        for final, data in items:
            pending.append((stage_bytes(final, data), Path(final)))
    except BaseException:
        for temp, _ in pending:
            temp.unlink(missing_ok=True)
        raise
    publish_all(pending)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    write_files_atomic([(Path(path), data)])


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode())


def check_outputs(outputs: dict[str, Path | None], overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """A command's output files (option -> path), checked before any work: each a file name in a folder, no path
    given to two options, an existing file only with `overwrite`, and never one of `inputs` or a file inside an
    input folder (the data and models the command reads), with `overwrite` or without. A ValueError names the
    file."""
    given: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        if path.absolute() in given:
            raise ValueError(f"{path}: given to both {given[path.absolute()]} and {option}; each output needs its "
                             f"own file")
        given[path.absolute()] = option
        if path.is_dir():
            raise ValueError(f"{path}: is a folder, expected a file name ({option})")
        if path.parent.exists() and not path.parent.is_dir():
            raise ValueError(f"{path.parent}: not a folder ({option} {path})")
        if not path.exists():
            continue
        source = next((i for i in inputs if i.exists() and _is_or_holds(i, path)), None)
        if source is not None:
            raise ValueError(f"{path}: is an input of this command ({source}); {option} needs another path")
        if not overwrite:
            raise ValueError(f"{path}: exists; pass --overwrite to replace it")


def _is_or_holds(source: Path, path: Path) -> bool:
    """`path` is the file `source` (also through a link), or lies in the folder `source`."""
    if source.is_dir():
        return source.resolve() in path.resolve().parents
    return same_file(source, path)


def first_repeated(paths: Sequence[str | os.PathLike[str]]) -> int | None:
    """The index of the first path that names a file or folder given before it (links resolved), or None: an
    input named twice would count twice (two bands, a doubled weight in a mean)."""
    seen: set[Path] = set()
    for index, path in enumerate(paths):
        resolved = Path(path).resolve()
        if resolved in seen:
            return index
        seen.add(resolved)
    return None


def same_file(a: Path, b: Path) -> bool:
    """The same file, also through a symbolic or hard link; where one does not exist (yet), the same path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def cannot_write(folder: str | os.PathLike[str]) -> str | None:
    """Why no file can be created in the existing `folder` (the OS's reason), or None when one can: probed with a
    named temporary file that is gone again."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ddrf-probe."):
            return None
    except OSError as exc:
        return str(exc.strerror or exc)


def folds_case(folder: str | os.PathLike[str]) -> bool:
    """Whether the file system `folder` (or its nearest existing parent) lies on takes two names that differ only in
    case for one file (FAT and exFAT USB disks, SMB shares, macOS): probed with a named temporary file (its random
    part lower case) looked up in upper case. False where no file can be made there (the write fails on its own)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=nearest_existing(folder), prefix=".ddrf-probe.") as probe:
            name = Path(probe.name)
            return name.with_name(name.name.upper()).exists()
    except OSError:
        return False


def unexpanded_home(path: str | os.PathLike[str]) -> str | None:
    """Why `path`, written `~/x` or `~user/x`, is no doubt meant for a home folder the shell did not expand (quoted
    on a command line, in a unit file or a script), or None: its `~` folder does not exist here, and making it would
    put the files under the current folder instead."""
    parts = Path(path).parts
    if not parts or not parts[0].startswith("~") or Path(parts[0]).exists():
        return None
    home = os.path.expanduser(parts[0])
    meant = f" ({Path(home, *parts[1:])}?)" if home != parts[0] else ""
    return (f"{parts[0]} is no folder here: the shell expands {parts[0]} only outside quotes, and ddrf would make a "
            f"folder named {parts[0]} in {Path.cwd()}; give the path it stands for{meant}")


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """`path` or its nearest existing parent (what a folder still to be made would be made in)."""
    absolute = Path(path).absolute()
    return next(p for p in (absolute, *absolute.parents) if p.exists())


def cannot_make(folder: str | os.PathLike[str]) -> str | None:
    """Why `folder`, existing or not, cannot come to hold files (the folders missing below its nearest existing one
    would be made), or None when it can: a file in the way, an unexpanded `~` (`unexpanded_home`), or the OS's reason
    for that existing folder (in /proc: No such file or directory)."""
    home = unexpanded_home(folder)
    if home:
        return home
    existing = nearest_existing(folder)
    return cannot_write(existing) if existing.is_dir() else f"Not a directory: {existing} is a file"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


LOCK_SUFFIX = ".ddrf-lock"
# the folder under an output directory where ddrf-run writes a STAC Item's band wrappers (VRTs over its assets), anew
# for each run: no input of record
STAC_WORK_DIR = ".ddrf-stac"


def open_lock(path: Path) -> int:
    """A descriptor of the lock file `path` (made with the user's umask, like any output) to flock. Read-only where
    it cannot be opened for writing: a lock file another user's run left (0644) in a shared folder would otherwise
    shut this user out of an output the folder lets them write; flock needs no write access (NFS's emulation by
    fcntl locks does, so writing is tried first)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)


class Busy(RuntimeError):
    """Another process holds the lock on an output."""


class NoLocks(Busy):
    """The output's file system gives no file locks (an NFS mount whose lock service is down or absent), so no run
    can tell whether another one writes the output: none does."""


@contextmanager
def exclusive(final: str | os.PathLike[str], wait: bool = False) -> Iterator[None]:
    """Hold `.<final name>.ddrf-lock` beside `final` (flock, non-blocking); Busy when another process holds it, or
    with `wait`, once it lets go (a short read-modify-write of a shared file: the STAC catalogue).

    Concurrent runs on one output must not clean each other's temporaries. The lock file is removed on release;
    a killed holder leaves it unlocked (the kernel drops flocks), and the next holder takes it over. After locking,
    the path must still name the locked file, or a releaser unlinked it meanwhile and we lock afresh.
    """
    final = Path(final)
    path = final.parent / f".{final.name}{LOCK_SUFFIX}"
    while True:
        fd = open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(f"{final}: another process is writing this output (lock {path.name}); not touched") from None
        except OSError as exc:  # ENOLCK, EOPNOTSUPP: not "cannot write here", and no lock file left behind
            os.close(fd)
            with suppress(OSError):
                path.unlink()
            raise NoLocks(f"{final}: cannot lock the output ({exc.strerror}): its file system gives no file locks "
                          "(an NFS mount without its lock service?); mount it with locks or write elsewhere") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            path.unlink(missing_ok=True)
        except OSError:  # a folder made read-only meanwhile: the error of the work, if any, is the one to say, and
            pass  # the file left is free once closed (taken over as a killed holder's is)
        os.close(fd)
