"""ingest_columns.py - calls calseta_ingest_columns() from a test: a batch given as element dicts
(the keys of calseta_ingest_batch()'s document) and payload texts, written as the columns the
intake sends (each indicator pair once, the elements naming theirs by position).

The arrays go as text literals (array_in), the intake sends them binary (array_recv): the same
values either way. Strings are written as E'' literals of arrays whose elements are double-quoted,
so any character but NUL reaches the function as given."""


def array_literal(values):
    """A text-format array literal of strings (None: NULL), as array_in reads it."""
    out = []
    for v in values:
        if v is None:
            out.append("NULL")
        else:
            out.append('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(out) + "}"


def arr(values):
    """A SQL expression of a text array literal: None is NULL."""
    return "E'" + array_literal(values).replace("\\", "\\\\").replace("'", "''") + "'"


def columns(elems, payloads, dedup_hours, raw_members=None, check_numbers=None, uuids=None):
    """The call's argument list (SQL text)."""
    return ", ".join(column_list(elems, payloads, dedup_hours, raw_members, check_numbers, uuids))


def column_list(elems, payloads, dedup_hours, raw_members=None, check_numbers=None, uuids=None):
    """The call's 18 arguments, each as SQL text, in order (titles ... dedup_hours); with uuids
    (alert uuids, pair uuids: lists of strings, or None for a NULL column), 20: the uuids of the
    new alerts and of the new indicators after them, as the intake sends them. The pairs are
    numbered in the order the elements first name them."""
    pairs, refs, ind_offs, tags, tag_offs = [], [], [0], [], [0]
    for e in elems:
        for x in e.get("indicators") or []:
            k = (x.get("type"), x.get("value"))
            if k not in pairs:
                pairs.append(k)
            refs.append(pairs.index(k) + 1)
        ind_offs.append(len(refs))
        tags += e.get("tags") or []
        tag_offs.append(len(tags))

    def col(key):
        return arr([e.get(key) for e in elems])

    return [
        col("title") + "::text[]", col("severity") + "::text[]", col("source_name") + "::text[]",
        col("description") + "::text[]", col("occurred_at") + "::timestamptz[]",
        col("fingerprint") + "::text[]", col("rule_ref") + "::text[]", col("actor_key_prefix") + "::text[]",
        (arr(raw_members) if raw_members is not None else "NULL") + "::text[]",
        ("'{%s}'" % ",".join("t" if c else "f" for c in check_numbers) if check_numbers is not None else "NULL")
        + "::bool[]",
        arr(payloads) + "::text[]",
        "'{%s}'::int4[]" % ",".join(map(str, tag_offs)), arr(tags) + "::text[]",
        arr([t for t, _ in pairs]) + "::text[]", arr([v for _, v in pairs]) + "::text[]",
        "'{%s}'::int4[]" % ",".join(map(str, ind_offs)), "'{%s}'::int4[]" % ",".join(map(str, refs)),
        str(int(dedup_hours))] + ([] if uuids is None else [
            (arr(u) if u is not None else "NULL") + "::uuid[]" for u in uuids])


def pairs_of(elems):
    """The batch's distinct (type, value) pairs, in the order column_list numbers them."""
    pairs = []
    for e in elems:
        for x in e.get("indicators") or []:
            k = (x.get("type"), x.get("value"))
            if k not in pairs:
                pairs.append(k)
    return pairs


def call_sql(elems, payloads, dedup_hours, **kw):
    """SELECT * FROM calseta_ingest_columns(...) for the batch."""
    return "SELECT * FROM calseta_ingest_columns(%s)" % columns(elems, payloads, dedup_hours, **kw)
