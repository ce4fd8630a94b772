"""Masking probe, part 8: an IBAN in text.

`iban` is a sensitive column (data.portcullis.sensitive_columns), so a column or JSON field
so named is masked whole; but no detector read an IBAN in any other text: `GB82 WEST 1234
5698 7654 32` in a note column, an HTTP body or a file a reader cats went as it came. The
`iban` detector reads one (ISO 13616: its country's length, the mod-97 check; grouped by
four or written together), and partial keeps its last four characters. The shipped policy
runs it once data.portcullis.detectors names it (patch maskfix-2: data.json and the
pii_masks.rego generated from it); the real-stack test gives the stack such a policy.

Real components: sshd and the SSH proxy (a reader's `cat`), a PDP on the shipped policy
with `iban` among its detectors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_ssh_proxy import REGO, ssh_stack

from portcullis.masking import DETECTORS, Masker, detect
from portcullis.verdict import MaskRule

IBANS = [
    "GB82 WEST 1234 5698 7654 32",
    "GB82WEST12345698765432",
    "DE89 3704 0044 0532 0130 00",
    "DE89370400440532013000",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NO93 8601 1117 947",
    "GB82-WEST-1234-5698-7654-32",
    "gb82 west 1234 5698 7654 32",
]
NOT_IBANS = [
    "DE89 3704 0044 0532 0130 01",  # the check fails
    "GB82 WEST 1234 5698 7654",  # too short for GB
    "sha AB12CDEF0123456789ABCDEF",
    "id 550e8400-e29b-41d4-a716-446655440000",
    "ORDER-2023-11-07-0042 AB12 3456 7890",
    "XX82WEST12345698765432",  # no such country
]


def masker(strategy: str = "partial") -> Masker:
    return Masker([MaskRule(detector=d, strategy=strategy) for d in DETECTORS], b"k" * 32)


@pytest.mark.parametrize("iban", IBANS)
def test_an_iban_in_text_is_found_and_masked(iban: str) -> None:
    text = f"pay to {iban}, thanks"
    assert detect("iban", text) == [(7, 7 + len(iban))]
    masked, counts = masker().mask_text(text)
    assert counts["iban"] == 1, counts
    assert masked == f"pay to {masked[7 : 7 + len(iban)]}, thanks"
    shown = masked[7 : 7 + len(iban)]
    kept = [c for c in shown if c.isalnum()]
    assert kept == [c for c in iban if c.isalnum()][-4:], shown
    assert masker("redact").mask_text(text)[0] == "pay to [REDACTED:iban], thanks"
    assert masker().mask_text(masked)[0] == masked


@pytest.mark.parametrize("text", NOT_IBANS)
def test_what_is_no_iban_is_left(text: str) -> None:
    assert detect("iban", text) == []


def test_the_bytes_gate_lets_an_iban_through() -> None:
    assert masker().may_detect(b"GB82WEST12345698765432")
    assert masker().may_detect(b"NO9386011117947")


@pytest.mark.integration
async def test_a_readers_cat_shows_no_iban(tmp_path: Path) -> None:
    """A reader outside pii-readers cats a payments file through the SSH proxy (asyncssh
    client, sshd upstream) under the shipped policy with `iban` among its detectors."""
    policies = tmp_path / "rego"
    shutil.copytree(REGO, policies, ignore=shutil.ignore_patterns("*_test.rego"))
    data = json.loads((policies / "data.json").read_text())
    pay = tmp_path / "pay"
    pay.mkdir()
    data["portcullis"]["ssh"]["allowed_commands"].append(f"cat {pay}/*")
    if "iban" not in data["portcullis"]["detectors"]:
        data["portcullis"]["detectors"].append("iban")
    (policies / "data.json").write_text(json.dumps(data))
    (pay / "out.csv").write_text("2023-11-07,ann,GB82 WEST 1234 5698 7654 32,120.00\n")
    async with ssh_stack(tmp_path, extra={"policies": str(policies)}) as s:  # noqa: SIM117
        async with await s.connect(("readonly",)) as conn:
            result = await conn.run(f"cat {pay}/out.csv")
    assert result.exit_status == 0, result
    assert str(result.stdout) == "2023-11-07,ann,**** **** **** **** **54 32,120.00\n"
