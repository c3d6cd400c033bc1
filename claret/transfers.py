"""What to send and where to write: local files to payload names, payload names (or globs) to local paths.

Pure functions over paths and names, so the rules are testable without a platform:

* upload: a file goes up under its own name; a directory's files under their names relative to it
  (``DIR/a/b.txt`` becomes ``a/b.txt``).
* download: ``JOB:/PATH`` where PATH is one file, a folder of the payload (every file under it), or a
  glob matched segment by segment against the payload's file list (``*``, ``?`` and ``[...]`` stay within
  one segment; ``**`` spans any number). Files land in DEST relative to the pattern's fixed leading
  folders, so ``/operators/*/*.upper`` into ``out`` gives ``out/shouter/a.upper`` and two operators'
  same-named files never collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from claret.errors import ClientError

__all__ = [
    "Transfer",
    "dest_is_folder",
    "download_plan",
    "glob_match",
    "is_glob",
    "select",
    "split_remote",
    "upload_plan",
    "zip_folder",
]

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Transfer:
    """One file to move: its name in the payload and its path on this machine."""

    name: str
    local: Path
    size: int


def upload_plan(sources: Sequence[Path]) -> list[Transfer]:
    """Every file to upload with its payload name; two sources giving one name is an error."""
    plan: dict[str, Transfer] = {}
    for source in sources:
        if source.is_dir():
            found = [(f.relative_to(source).as_posix(), f) for f in sorted(source.rglob("*")) if f.is_file()]
        elif source.is_file():
            found = [(source.name, source)]
        else:
            raise ClientError(f"no file or directory {str(source)!r}")
        for name, path in found:
            if name.casefold() in plan:
                raise ClientError(f"{path} and {plan[name.casefold()].local} would both be uploaded as {name!r}")
            plan[name.casefold()] = Transfer(name, path, path.stat().st_size)
    return list(plan.values())


def split_remote(spec: str) -> tuple[str, str]:
    """``JOB:/PATH`` into the job (or payload) reference and the path, given a leading ``/``."""
    ref, colon, path = spec.partition(":")
    if not colon or not ref or not path.strip("/"):
        raise ClientError(f"{spec!r} is not JOB:/PATH (for example 1a2b:/operators/shouter/*)")
    return ref, "/" + "/".join(part for part in path.split("/") if part not in ("", "."))


def is_glob(path: str) -> bool:
    return any(c in GLOB_CHARACTERS for c in path)


def glob_match(pattern: str, name: str) -> bool:
    """Whether a payload file name matches a glob, segment by segment (``**`` spans segments)."""
    return _segments_match(pattern.strip("/").split("/"), name.strip("/").split("/"))


def _segments_match(pattern: list[str], name: list[str]) -> bool:
    if not pattern:
        return not name
    if pattern[0] == "**":
        return any(_segments_match(pattern[1:], name[skip:]) for skip in range(len(name) + 1))
    return bool(name) and fnmatchcase(name[0], pattern[0]) and _segments_match(pattern[1:], name[1:])


def select(path: str, names: Sequence[str]) -> tuple[list[str], str]:
    """The payload files ``path`` means, and the folder their local names are relative to.

    A path that is neither a glob nor a folder of the payload is one file, even when it is not listed
    (names resolve case-insensitively on the platform, which also answers for a missing file).
    """
    if is_glob(path):
        segments = path.strip("/").split("/")
        fixed = next(i for i, segment in enumerate(segments) if is_glob(segment))
        return [n for n in names if glob_match(path, n)], "/" + "/".join(segments[:fixed])
    key = path.casefold()
    if any(n.casefold() == key for n in names):
        return [path], path.rpartition("/")[0] or "/"
    inside = [n for n in names if n.casefold().startswith(key + "/")]
    if inside:
        return inside, path
    return [path], path.rpartition("/")[0] or "/"


def dest_is_folder(names: Sequence[str], path: str, dest: str) -> bool:
    """Whether DEST is a folder to put the files in, rather than the name of the one file: it is unless
    ``path`` meant one file (neither a glob nor a folder) and DEST is no directory and does not end with /."""
    return names != [path] or Path(dest).is_dir() or dest.endswith("/")


def download_plan(names: Sequence[str], base: str, dest: Path, into_folder: bool) -> list[tuple[str, Path]]:
    """Local targets: DEST itself for one file unless ``into_folder``, else DEST/<name from base>."""
    if len(names) == 1 and not into_folder:
        return [(names[0], dest)]
    if dest.exists() and not dest.is_dir():
        raise ClientError(f"{dest} is a file; give a directory for {len(names)} matching file(s)")
    prefix = len(base.rstrip("/")) + 1
    plan = []
    for name in names:
        parts = name[prefix:].split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ClientError(f"payload file name {name!r} would be written outside {dest}")
        plan.append((name, dest.joinpath(*parts)))
    return plan


def zip_folder(folder: Path, archive: Path) -> Path:
    """The folder's files (a model's) in a zip at ``archive``, at their paths relative to the folder (a link to
    a file is stored as that file's content: zipfile follows it)."""
    import zipfile  # here: only ``create model`` zips, and the module costs every other verb's start-up

    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.rglob("*")):
            zipped.write(path, path.relative_to(folder).as_posix())
    return archive
