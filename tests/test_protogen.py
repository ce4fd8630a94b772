"""The committed gRPC stubs are exactly what `python -m pdp.plumbing.protogen` generates."""

from __future__ import annotations

from pdp.plumbing.protogen import PROTO_ROOT, generate


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*.py*"))
    assert generated, "protoc produced nothing"
    for rel in generated:
        committed = PROTO_ROOT / rel
        assert committed.exists(), f"{rel} is not committed; run python -m pdp.plumbing.protogen"
        assert committed.read_text() == (tmp_path / rel).read_text(), (
            f"{rel} differs from a fresh generation; run python -m pdp.plumbing.protogen"
        )
