"""proxies.postgres.columns: a view's stored query read for where each output comes from,
and catalog rows resolved into ColumnOrigins (no IO: transcripts of catalog answers)."""

from __future__ import annotations

from proxies.postgres.columns import CatalogRows, ColumnOrigin, resolve, view_origins

# nodeToString of `SELECT id, phone AS "con tact", upper(phone) AS up FROM (SELECT ...) s`:
# a subquery's target list comes first, deeper; a backslash escapes a space in a name
ACTION = (
    "({QUERY :commandType 1 :rtable ({RANGETBLENTRY :subquery {QUERY :targetList "
    "({TARGETENTRY :expr {VAR} :resno 1 :resname x :ressortgroupref 0 :resorigtbl 999 "
    ":resorigcol 9})}}) :targetList ({TARGETENTRY :expr {VAR :varno 1} :resno 1 :resname id "
    ":ressortgroupref 0 :resorigtbl 500 :resorigcol 1 :resjunk false} {TARGETENTRY :expr "
    "{VAR :varno 1} :resno 2 :resname con\\ tact :ressortgroupref 0 :resorigtbl 500 "
    ":resorigcol 2 :resjunk false} {TARGETENTRY :expr {FUNCEXPR :args ({VAR})} :resno 3 "
    ":resname up :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false}) "
    ":override 0})"
)


def test_only_the_top_query_target_list_counts() -> None:
    assert view_origins(ACTION) == {1: (500, 1), 2: (500, 2), 3: (0, 0)}
    assert view_origins("") == {}
    assert view_origins("({QUERY :targetList <>})") == {}


def test_view_columns_resolve_to_their_base_columns_or_are_derived() -> None:
    rows = CatalogRows(
        attributes={
            (500, 1): ("id", "r", None),
            (500, 2): ("phone", "r", None),
            (600, 1): ("id", "v", ACTION),
            (600, 2): ("con tact", "v", ACTION),
            (600, 3): ("up", "v", ACTION),
        },
        dependencies={600: {"id", "phone"}},
        referenced=set(),
    )
    origins = resolve(rows, {})
    assert origins[(600, 2)] == ColumnOrigin("phone")  # renamed: the base column's name
    assert origins[(600, 3)] == ColumnOrigin("up", ("id", "phone"))  # computed: derived
    assert origins[(600, 3)].derived and not origins[(600, 1)].derived


def test_a_view_whose_reads_are_unknown_is_derived_from_everything() -> None:
    rows = CatalogRows(
        attributes={(700, 1): ("x", "v", "garbage")}, dependencies={}, referenced=set()
    )
    assert resolve(rows, {})[(700, 1)] == ColumnOrigin("x", ("*",))
