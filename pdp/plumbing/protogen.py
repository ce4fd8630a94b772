"""Generates the Python gRPC stubs from proto/ — the one command behind the committed stubs.

Run `python -m pdp.plumbing.protogen` from the repository root after editing a .proto file;
`tests/test_protogen.py` fails when the committed stubs differ from a fresh generation.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"
PROTO_FILES = ("portcullis/v1/pdp.proto",)


def generate(out_dir: Path = PROTO_ROOT) -> None:
    """Run protoc (from grpcio-tools) over every API file, writing stubs into out_dir."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(PROTO_ROOT / name) for name in PROTO_FILES),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT)
