"""Which evidence stream evidences which control: the mapping written into manifest.json.

Owns the control catalogue of an export (NIST SP 800-53 Rev. 5 and ISO/IEC 27001:2022
Annex A) and, per stream, the record kinds it holds and a one-line rationale for every
control it supports. Data only; no IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pdp.store import LATE_COMMIT_KIND

NIST = "NIST SP 800-53 Rev. 5"
ISO = "ISO/IEC 27001:2022 Annex A"

CONTROLS: dict[str, dict[str, str]] = {
    NIST: {
        "AC-2": "Account Management",
        "AC-3": "Access Enforcement",
        "AC-6": "Least Privilege",
        "AU-2": "Event Logging",
        "AU-3": "Content of Audit Records",
        "AU-6": "Audit Record Review, Analysis, and Reporting",
        "AU-9": "Protection of Audit Information",
        "AU-10": "Non-repudiation",
        "AU-12": "Audit Record Generation",
        "IA-2": "Identification and Authentication (Organizational Users)",
        "SC-28": "Protection of Information at Rest",
    },
    ISO: {
        "5.15": "Access control",
        "5.18": "Access rights",
        "8.2": "Privileged access rights",
        "8.5": "Secure authentication",
        "8.15": "Logging",
        "8.16": "Monitoring activities",
    },
}


@dataclass(frozen=True)
class Stream:
    name: str
    file: str
    kinds: tuple[str, ...]  # record kinds copied into the file; () for derived streams
    description: str
    controls: tuple[tuple[str, str, str], ...]  # (framework, control id, rationale)


STREAMS: tuple[Stream, ...] = (
    Stream(
        "access",
        "access.jsonl",
        ("session.open", "session.close", "auth.rejected"),
        "Identity-bound access log: every session open/close and every rejected token",
        (
            (
                NIST,
                "AC-2",
                "shows which identity (subject, issuer, groups, token id) used "
                "which connection and when, so account use can be reviewed per account",
            ),
            (
                NIST,
                "AC-3",
                "each session.open carries the policy verdict and revision that "
                "let the session in or kept it out",
            ),
            (NIST, "AU-2", "session logon, logoff and failed logon are the logged event types"),
            (
                NIST,
                "AU-3",
                "records hold who, what, where (connection, zone, client address), "
                "when, and the outcome",
            ),
            (
                NIST,
                "AU-12",
                "the PDP generates these records itself on every OpenSession and "
                "CloseSession, outside the client and the proxy",
            ),
            (
                NIST,
                "IA-2",
                "every session is bound to a verified OIDC identity; rejected "
                "tokens are recorded with the reason",
            ),
            (
                ISO,
                "5.15",
                "access to each connection is granted only by the recorded policy decision",
            ),
            (
                ISO,
                "5.18",
                "the groups and the granted credential reference of each session "
                "show the access rights actually exercised",
            ),
            (
                ISO,
                "8.5",
                "authentication outcome (verified token or rejection reason) is "
                "recorded for every attempt",
            ),
            (ISO, "8.15", "logons and logoffs are logged in the tamper-evident chain"),
        ),
    ),
    Stream(
        "decisions",
        "decisions.jsonl",
        ("decision", LATE_COMMIT_KIND),
        "Every per-command policy decision with verdict, reasons and policy revision; an "
        f"{LATE_COMMIT_KIND} record names decisions committed after their deadline, which "
        "were answered as unrecorded (a deny)",
        (
            (
                NIST,
                "AC-3",
                "every command was allowed, denied, masked or held for approval by "
                "the recorded decision before reaching the upstream",
            ),
            (
                NIST,
                "AC-6",
                "denials and approval requirements show privileged statements "
                "(DDL, unbounded writes, file access) withheld from non-privileged groups",
            ),
            (NIST, "AU-2", "each command decision is a logged event"),
            (
                NIST,
                "AU-3",
                "records name subject, session, command text, parsed statements, "
                "verdict, reasons and policy revision",
            ),
            (NIST, "AU-12", "no verdict leaves the PDP unless its record is committed first"),
            (ISO, "5.15", "commands are checked against the access control policy one by one"),
            (
                ISO,
                "8.2",
                "privileged operations by dba members are decided and recorded individually",
            ),
            (ISO, "8.15", "every decision is logged with the policy revision that reproduces it"),
        ),
    ),
    Stream(
        "recordings",
        "recordings.jsonl",
        ("session.events",),
        "Session recordings: commands and responses (after masking) with timestamps; an"
        " event with repeat_us stands for statements in a row decided and answered alike,"
        " one per item: its gap in microseconds after the one before, [gap, text] where"
        " the command text differs",
        (
            (
                NIST,
                "AU-3",
                "each event carries time, direction, command, verdict and result "
                "summary (rows, bytes)",
            ),
            (
                NIST,
                "AU-6",
                "recordings replay as a timeline (`portcullis replay`) for review "
                "and investigation",
            ),
            (
                NIST,
                "AU-12",
                "proxies stream events to the PDP, so evidence lives outside the "
                "agent and the proxy",
            ),
            (ISO, "8.15", "user activities in each session are recorded"),
            (ISO, "8.16", "recorded activity supports monitoring for anomalous behaviour"),
        ),
    ),
    Stream(
        "approvals",
        "approvals.jsonl",
        ("approval.request", "approval.decision", "approval"),
        "Approval records: requester, justification, command, approvers, decision, times",
        (
            (NIST, "AC-3", "commands that require approval ran only after a recorded approval"),
            (NIST, "AC-6", "privileged actions need a second person (never the requester)"),
            (
                ISO,
                "5.18",
                "temporary elevation of access rights is requested and granted on record",
            ),
            (ISO, "8.2", "privileged access is granted per command, with the approver named"),
        ),
    ),
    Stream(
        "masking",
        "masking.jsonl",
        (),
        "Masking log derived from recordings: session, command, field or detector, count",
        (
            (NIST, "AC-3", "sensitive fields were redacted before results reached the client"),
            (NIST, "AC-6", "clients without pii-readers saw only masked values"),
            (
                NIST,
                "SC-28",
                "recordings at rest hold masked results and counts, never the "
                "original sensitive values",
            ),
            (ISO, "8.16", "masking counts show where sensitive data was requested"),
        ),
    ),
    Stream(
        "credential_statements",
        "credential_statements.jsonl",
        ("credential.statement",),
        "Signed statements that the upstream credential never reached the client",
        (
            (
                NIST,
                "AC-6",
                "agents work through the proxy without ever holding the upstream credential",
            ),
            (
                NIST,
                "AU-10",
                "each statement is signed with the PDP's ed25519 key and verifies "
                "with the public key alone",
            ),
            (
                NIST,
                "IA-2",
                "the upstream secret stays with the gateway, so only the verified "
                "identity authenticates the user",
            ),
            (
                NIST,
                "SC-28",
                "secrets are held in memory for the session only and are never "
                "written to the client or the evidence",
            ),
            (ISO, "8.5", "authentication secrets are never disclosed to the client"),
            (ISO, "8.2", "privileged credentials are used on behalf of users, not handed out"),
        ),
    ),
    Stream(
        "checkpoints",
        "checkpoints.jsonl",
        ("checkpoint",),
        "Signed checkpoints of the audit chain head",
        (
            (
                NIST,
                "AU-9",
                "signed chain heads expose any later change, deletion or "
                "reordering of records, including truncation of the tail",
            ),
            (NIST, "AU-10", "checkpoints are signed with the PDP's ed25519 key"),
            (ISO, "8.15", "logs are protected against tampering and unauthorized change"),
        ),
    ),
    Stream(
        "records",
        "records.jsonl",
        (),
        "Every record of the window, hash-chained; the source of every other stream",
        (
            (
                NIST,
                "AU-9",
                "each record carries the hash of its predecessor; the chain "
                "re-verifies offline from this file",
            ),
            (NIST, "AU-6", "the complete, ordered record set supports review and correlation"),
            (ISO, "8.15", "complete log of the period in a verifiable form"),
        ),
    ),
)


def manifest_streams(counts: dict[str, int]) -> dict[str, Any]:
    """The `streams` section: per stream its file, kinds, record count and controls."""
    return {
        s.name: {
            "file": s.file,
            "kinds": list(s.kinds),
            "description": s.description,
            "records": counts.get(s.name, 0),
            "controls": [
                {"framework": fw, "control": cid, "title": CONTROLS[fw][cid], "rationale": why}
                for fw, cid, why in s.controls
            ],
        }
        for s in STREAMS
    }


def manifest_controls() -> dict[str, Any]:
    """The `controls` section: per framework and control, its title and evidencing streams."""
    out: dict[str, Any] = {}
    for framework, catalogue in CONTROLS.items():
        out[framework] = {
            cid: {
                "title": title,
                "streams": [
                    s.name
                    for s in STREAMS
                    if any(c[1] == cid and c[0] == framework for c in s.controls)
                ],
            }
            for cid, title in catalogue.items()
        }
    return out
