"""Which relations show rows of which others, as the server's catalog says: what the PDP's
row filters (issue 30) must know to deny a read of a filtered table's rows through another
name.

Owns RELATION_SOURCES_SQL, asked once per session on its own connection before the client
is let in, and reading its answer: relation → the relations whose rows it may show. A
view or materialized view shows the relations its query reads (pg_depend of its rewrite
rule; and, for a rule made after initdb, every relation its stored tree names by OID, since
the server records no dependency on a pinned catalog: a view over pg_authid or
pg_statistic has no pg_depend row naming it), a parent table its children's rows
(inheritance, partitions), a child or partition the rows of its parent's table; followed
transitively. The PDP's policy also denies readers a relation showing a secret catalog
(rego/portcullis/postgres.rego pg_shown_relations). Sent to the PDP as
input.command.postgres.relation_sources, only when there are any. No IO here.
"""

from __future__ import annotations

import json

RELATION_SOURCES_SQL = """WITH RECURSIVE edges(rel, src) AS (
  SELECT r.ev_class, d.refobjid FROM pg_catalog.pg_rewrite r
  JOIN pg_catalog.pg_depend d ON d.classid
    = 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid
   AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
   AND d.refobjid <> r.ev_class
  UNION SELECT r.ev_class, pg_catalog.oidin(pg_catalog.textout(m[1])) FROM pg_catalog.pg_rewrite r,
   pg_catalog.regexp_matches(r.ev_action::pg_catalog.text, ':relid ([0-9]+)', 'g') AS m
   WHERE r.oid >= '16384'::pg_catalog.oid
     AND pg_catalog.oidin(pg_catalog.textout(m[1])) <> r.ev_class
  UNION SELECT inhparent, inhrelid FROM pg_catalog.pg_inherits
  UNION SELECT inhrelid, inhparent FROM pg_catalog.pg_inherits
), reach(rel, src) AS (
  SELECT rel, src FROM edges
  UNION SELECT reach.rel, edges.src FROM reach JOIN edges ON edges.rel = reach.src
)
SELECT pg_catalog.textin(pg_catalog.json_out(
  coalesce(json_object_agg(name, sources), '{}'::pg_catalog.json))) FROM (
  SELECT rn.nspname::pg_catalog.text || '.' || rc.relname::pg_catalog.text AS name,
    json_agg(DISTINCT sn.nspname::pg_catalog.text || '.' || sc.relname::pg_catalog.text) AS sources
  FROM reach
  JOIN pg_catalog.pg_class rc ON rc.oid = reach.rel
  JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
  JOIN pg_catalog.pg_class sc ON sc.oid = reach.src AND sc.relkind IN ('r', 'p', 'v', 'm', 'f', 't')
  JOIN pg_catalog.pg_namespace sn ON sn.oid = sc.relnamespace
  WHERE reach.rel <> reach.src
  AND rn.nspname NOT IN ('pg_catalog', 'information_schema')
  GROUP BY 1
) s"""


def relation_sources(rows: list[str]) -> dict[str, list[str]]:
    """RELATION_SOURCES_SQL's one row → {"schema.relation": ["schema.table", ...]}, with
    names as the catalog spells them and as the PDP reads them (as_the_pdp_reads)."""
    if not rows:
        return {}
    found = json.loads(rows[0] or "{}")
    if not isinstance(found, dict):
        raise ValueError("relation sources are not an object")
    return as_the_pdp_reads({str(k): sorted(str(s) for s in v) for k, v in found.items()})


def as_the_pdp_reads(by_relation: dict[str, list[str]]) -> dict[str, list[str]]:
    """`by_relation` with each name also under the spelling the PDP's classifier gives a
    statement's relation (folded to lower case, a quoted name's capitals too): a view
    "PwView" is named `pwview` in the statement's tables, so keyed only as the catalog
    spells it, its facts would never be met. Both spellings stay, the lists of names that
    fold alike joined (more to judge, never less). A name with a dot inside its schema's or
    its own name ("public.x.dotted": the view "x.dotted", which a statement names as
    `"x.dotted"`, read by the PDP as x.dotted) is also keyed by each of its dotted tails
    ("x.dotted", "dotted"): "schema.name" cannot say where the schema ends."""
    folded: dict[str, set[str]] = {}
    for name, values in by_relation.items():
        for spelling in read_as(name):
            folded.setdefault(spelling, set()).update(values)
    return {name: sorted(values) for name, values in folded.items()}


def read_as(name: str) -> set[str]:
    """The keys a relation's "schema.name" goes under (as_the_pdp_reads): itself and folded
    to lower case, and, with more than one dot, each dotted tail of both."""
    spellings = {name, name.lower()}
    if name.count(".") > 1:
        parts = name.split(".")
        for i in range(1, len(parts)):
            tail = ".".join(parts[i:])
            spellings |= {tail, tail.lower()}
    return spellings
