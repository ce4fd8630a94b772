"""SQL text → what the policy sees of it: one entry per statement, nested writes after their
parent (`input.command.postgres.statements`).

The API: classify() and split() (pdp.sql.classify), Findings and Entry (pdp.sql.entries,
the fields a statement's walk finds, also used for a fast-path function call). Inside:
the walk over the parser's JSON (classify), the reference walk over pglast.ast
(reference), DO blocks (plpgsql). The statement shape that keys verdict reuse is not here:
proxies compute it too, so it lives in the neutral package (portcullis.shape).
"""

from pdp.sql.classify import classify, classify_fast, split
from pdp.sql.entries import Entry, Findings
from pdp.sql.reference import classify_reference

__all__ = ["Entry", "Findings", "classify", "classify_fast", "classify_reference", "split"]
