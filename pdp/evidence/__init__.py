"""Audit evidence: signatures, checkpoints, credential statements, exports and their checks.

Owns what turns the hash-chained audit store into evidence an auditor can check without
trusting the PDP: ed25519 signatures over canonical JSON (`signing`), signed checkpoints
of the chain head and signed credential statements (`checkpoints`), the verification of
a live store and of an exported bundle (`verify`, `bundle`), and the mapping of evidence
streams to NIST SP 800-53 and ISO/IEC 27001 controls (`controls`). It never writes to
the store except by `AuditStore.append()`.
"""

from pdp.evidence.signing import Signer, key_id_of, load_public_pem, verify_signed

__all__ = ["Signer", "key_id_of", "load_public_pem", "verify_signed"]
