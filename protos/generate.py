"""Regenerate the Python modules of the Clara Platform API from the .proto files beside this script.

    python -m protos.generate          # rewrite protos/nvidia/**/*_pb2*.py(i)
    python -m protos.generate --check  # exit 1 when the checked-in modules are stale

protoc writes ``from nvidia.clara.platform import x_pb2``; the imports are rewritten to
``protos.nvidia.clara.platform`` so the generated code lives inside our own package and never
shadows a ``nvidia`` namespace package (CUDA wheels install one).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMPORT = re.compile(r"^from nvidia\.clara\.platform(\.node_monitor)? import", re.MULTILINE)


def proto_sources() -> list[Path]:
    return sorted(HERE.glob("nvidia/**/*.proto"))


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
            text = IMPORT.sub(lambda m: f"from protos.nvidia.clara.platform{m.group(1) or ''} import", path.read_text())
            out[HERE / path.relative_to(scratch)] = text
        return out


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
    for package in {p.parent for p in HERE.glob("nvidia/**/*.proto")} | {HERE / "nvidia", HERE / "nvidia/clara"}:
        init = package / "__init__.py"
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
