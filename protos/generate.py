"""Regenerate the Python modules of the gRPC APIs from the .proto files beside this script.

    python -m protos.generate          # rewrite protos/{nvidia,claret_api}/**/*_pb2*.py(i)
    python -m protos.generate --check  # exit 1 when the checked-in modules are stale

Two trees of .proto files: ``nvidia/`` is the Clara Platform API (the wire API, as Clara defines it), and
``claret_api/`` is Claret's own API beside it (the DICOM service's, package ``claret.dicom``).

protoc writes imports from the proto's folder (``from nvidia.clara.platform import x_pb2``, ``from claret_api
import dicom_pb2``); they are rewritten to ``protos.nvidia.clara.platform`` and ``protos.claret_api`` so the
generated code lives inside our own package: it never shadows a ``nvidia`` namespace package (CUDA wheels
install one), and a generated import never says ``from claret``, which is the CLI's package.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREES = ("nvidia", "claret_api")
"""The folders of .proto files under protos/, each also the top of the Python package generated from it."""
IMPORT = re.compile(rf"^from ((?:{'|'.join(TREES)})(?:\.\w+)*) import", re.MULTILINE)


def proto_sources() -> list[Path]:
    return sorted(path for tree in TREES for path in HERE.glob(f"{tree}/**/*.proto"))


def generate() -> dict[Path, str]:
    """Run protoc into a scratch folder; return {path under protos/: text} with imports rewritten."""
    from grpc_tools import protoc  # build-time tool, only needed here

    with tempfile.TemporaryDirectory() as scratch:
        args = [
            "protoc",
            f"-I{HERE}",
            f"--python_out={scratch}",
            f"--pyi_out={scratch}",
            f"--grpc_python_out={scratch}",
            *(str(p.relative_to(HERE)) for p in proto_sources()),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out = {}
        for path in sorted(Path(scratch).rglob("*_pb2*.py*")):
            text = IMPORT.sub(lambda m: f"from protos.{m.group(1)} import", path.read_text())
            out[HERE / path.relative_to(scratch)] = text
        return out


def packages() -> set[Path]:
    """Every folder from a tree's top down to each .proto file: each needs an ``__init__.py``."""
    return {folder for path in proto_sources() for folder in path.relative_to(HERE).parents if folder != Path(".")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale modules")
    check = parser.parse_args(argv).check
    stale = []
    for path, text in generate().items():
        if not path.exists() or path.read_text() != text:
            stale.append(path.relative_to(HERE.parent))
            if not check:
                path.write_text(text)
    for package in sorted(packages()):
        init = HERE / package / "__init__.py"
        if not init.exists():
            stale.append(init.relative_to(HERE.parent))
            if not check:
                init.write_text("")
    if check and stale:
        print("stale generated modules (run `python -m protos.generate`):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
