"""The shipped rego/ library passes its own test_* rules with coverage, and
`portcullis policy test` (pdp.cli.policytest) fails when it should."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from pdp.cli.policytest import discover_tests, run_policy_tests

REGO = Path(__file__).resolve().parent.parent / "rego"


def run(root: Path, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    code = run_policy_tests(root, out=out, **kwargs)
    return code, out.getvalue()


def test_shipped_library_passes_with_coverage():
    code, output = run(REGO, threshold=90, verbose=True)
    assert code == 0, output
    assert "FAIL" not in output and "ERROR:" not in output
    assert "coverage: " in output
    total = len(discover_tests({p.name: p.read_text() for p in REGO.rglob("*_test.rego")}))
    assert f"PASS: {total}/{total}" in output
    assert total >= 40


def test_failing_test_fails_the_run(tmp_path):
    root = tmp_path / "rego"
    shutil.copytree(REGO, root)
    with (root / "portcullis" / "ssh_test.rego").open("a") as f:
        f.write('\ntest_wrong if {\n\tdata.portcullis.decision.verdict == "allow"\n}\n')
    code, output = run(root, run="test_wrong")  # the whole library passes in the test above
    assert code != 0
    assert "FAIL: data.portcullis_test.test_wrong" in output


def test_erroring_test_is_reported(tmp_path):
    root = tmp_path / "rego"
    shutil.copytree(REGO, root)
    (root / "extra_test.rego").write_text(
        'package extra_test\n\ntest_error if {\n\tto_number("x") == 1\n}\n'
    )
    code, output = run(root, run="extra_test")
    assert code != 0
    assert "ERROR: data.extra_test.test_error" in output


def test_compile_error_fails(tmp_path):
    root = tmp_path / "rego"
    shutil.copytree(REGO, root)
    (root / "broken_test.rego").write_text("package broken_test\n\ntest_unsafe if {\n\tx == y\n}\n")
    code, output = run(root)
    assert code != 0
    assert "does not compile" in output


def test_no_tests_fails(tmp_path):
    (tmp_path / "p.rego").write_text("package p\n\nallow := true\n")
    code, output = run(tmp_path)
    assert code != 0
    assert "no test_* rules" in output


def test_coverage_threshold_enforced():
    code, output = run(REGO, threshold=90, run=r"test_http_")
    assert code != 0
    assert "below the threshold" in output


def test_discovery_dedupes_incremental_rules_and_skips_functions():
    source = (
        "package a.b\n\ntest_x if true\n\ntest_x if false\n\n"
        "test_helper(y) := y\n\nnot_a_test if true\n"
    )
    tests = discover_tests({"a.rego": source})
    assert [t.ref for t in tests] == ["data.a.b.test_x"]


def test_revision_names_the_commit_only_for_exactly_the_committed_policy(tmp_path):
    """`git:<commit>` only when every loaded file is as committed: a modified, untracked
    or git-ignored module (loaded all the same) makes the revision the content hash."""
    import subprocess

    from pdp.engine.bundle import load_bundle

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "p.rego").write_text("package portcullis\n\nx := 1\n")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", "p.rego")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "policy")
    clean = load_bundle(tmp_path).revision
    assert clean.startswith("git:")
    (tmp_path / ".gitignore").write_text("local.rego\n")
    (tmp_path / "local.rego").write_text("package portcullis\n\ny := 2\n")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".gitignore")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ignore")
    ignored = load_bundle(tmp_path)
    assert "local.rego" in ignored.modules
    assert ignored.revision.startswith("sha256:") and ignored.revision.endswith("-dirty")
