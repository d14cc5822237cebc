#!/usr/bin/env python3
"""ingest_sql_bench.py - calseta_ingest_batch() alone: PostgreSQL CPU and WAL per alert.

The five fixtures are posted once through a real intake (de-duplication off); their stored rows
give back the batch elements the intake sent (normalised fields, indicators, rule, payload), so
the batches replayed here are the intake's own. pgbench then calls the function with batches of
--batch of them (fixtures round-robin, de-duplication off, so every element is a new alert, as in
ingest_bench.py's fixtures stream), the arguments read by every call from a one-row table
written once (see table_form: what the server does with the intake's binary columns, or with an
older body's document text, which it parses on every call). The element mixes of ingest_bench.py's other streams: --dedup 24 (the window the function is
called with) and the fixtures as they are: every alert after the first batch a duplicate of one of
five (fixtures-dedup); --unique --new-indicators: every alert new, with an IP and a domain of its
own (unique); --dup-share 0.3 besides: 30 % repeat an alert made before (dup30); --hot: one IP in
every alert (hot). Printed: the server's CPU (all its processes) and WAL bytes per alert, which hold on a loaded
machine where calls/s do not, and the ceiling: the same documents as plain alert + job rows
(as ingest_bench.py's, one statement per batch) on the same server in the same run.

Run by hand, release build, with the database migrated:
    export CALSETA_DATA_DIR=/tmp/calseta-bench; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build/bin/calseta migrate
    python3 tests/bench/ingest_sql_bench.py [--seconds 8] [--batch 15] [--clients 1] [--perf FILE]
                                            [--load FILE] [--dedup HOURS] [--unique] [--dup-share F]
                                            [--new-indicators] [--hot] [--callgrind]
                                            [--callgrind-keep DIR]
                                            [--form auto|columns|joined|batch]
                                            [--uuids auto|supplied|null|old]
With --perf, `perf record -g` samples the backend of the first client into FILE. With --load, the
SQL in FILE (say, an older body of the function) runs in the bench's database first: paired A/B
runs of two bodies on one server. The function called is the one the --load file defines (see
loaded_form: 0070's migration file is measured through calseta_ingest_batch_joined, the body it
holds, even on a cluster where calseta_ingest_columns exists), else the newest the database has;
--form names it instead.

calseta_ingest_columns() is called as the intake calls it (--uuids supplied): with the uuids of
the batch's new alerts and indicators, version 7, distinct for every call and each call's a
millisecond later than the one before's (as the intake's move with its clock): each call reads a
row of its own from a table (bench_uuids, numbered by a sequence) written before the run by the
database (random bits from gen_random_uuid()), as many rows as a short calibration run of the
same calls says the run can use (twice its rate; the run fails if it outruns them). The callgrind
runs write the same 40 rows, made here, in both. --uuids null sends NULL uuid columns (the function draws
them with calseta_uuid7(), as for direct callers); --uuids old calls the previous 18-argument
form (since 0084 a wrapper calling the 20-argument one with NULL columns; the body itself when
--load holds an older migration's calseta_ingest_columns(), which auto picks). Every mode reads
its call's bench_uuids row, so the modes differ only in the call.

On a shared box CPU time per call moves by several per cent with the others' load, more than
most changes to the function. --callgrind counts instructions instead, which do not move: the
same batches (from the same table, random draws seeded) are run 10 and 40 times by a single-user backend
of a throwaway cluster (migrated, then --load applied) under valgrind's callgrind, and the
difference over 30 calls is printed per call and per alert (the startup and the first call's
planning cancel out). Give --load OLD and --load NEW in two runs to compare two bodies.
--callgrind-keep DIR keeps the two profiles (cg10.out, cg40.out) for callgrind_annotate: a
function's count in the 40 calls' less its count in the 10's, over 30, is its cost per call.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("CALSETA_BIN_DIR", os.path.join(HERE, "..", "..", "build", "bin"))
import harness  # noqa: E402
import ingest_bench  # noqa: E402
from ingest_columns import array_literal as pg_array  # noqa: E402

ELEMENTS = """
SELECT json_build_object(
         'title', a.title, 'severity', a.severity, 'source_name', a.source_name,
         'description', a.description, 'occurred_at', a.occurred_at, 'tags', a.tags,
         'fingerprint', a.fingerprint,
         'indicators', (SELECT coalesce(json_agg(json_build_object('type', i.type, 'value', i.value)), '[]')
                          FROM unnest(a.indicator_ids) l(id) JOIN indicators i ON i.id = l.id),
         'rule_ref', d.source_rule_id, 'actor_key_prefix', 'cai_bench')::text || chr(1) || a.raw_payload::text
  FROM alerts a LEFT JOIN detection_rules d ON d.id = a.detection_rule_id ORDER BY a.id
"""

FUNCTION = {"columns": "calseta_ingest_columns", "joined": "calseta_ingest_batch_joined",
            "text": "calseta_ingest_batch", "json": "calseta_ingest_batch", None: "calseta_ingest_batch"}

DUPLICATES = "SELECT count(*) FROM activity_events WHERE event_type = 'alert_deduplicated'"


def loaded_form(path):
    """The form a --load file's own body takes, from the functions it defines: a file of
    calseta_ingest_columns() is measured through it; one that defines calseta_ingest_batch_joined()
    but not the columns (an older migration, e.g. 0070's, loaded on a cluster migrated past it,
    where calseta_ingest_columns() still exists) through calseta_ingest_batch_joined(); one of
    calseta_ingest_batch() alone through it. None: the file defines none of them (a setting, a
    table option): the database's newest form."""
    text = re.sub(r"--[^\n]*", "", open(path).read())
    defined = set(m.lower() for m in re.findall(r"FUNCTION\s+(\w+)\s*\(", text, re.I))
    if "calseta_ingest_columns" in defined:
        return "columns"
    if "calseta_ingest_batch_joined" in defined:
        return "joined"
    if "calseta_ingest_batch" in defined:
        return "batch"
    return None


def payloads_separate(s, form=None):
    """The form the bench calls: "columns" when the function takes the batch as typed columns
    (calseta_ingest_columns, as the intake sends it now), "joined" for the document and the
    payloads as text joined by U+0001 (calseta_ingest_batch_joined), and for calseta_ingest_batch
    with 3 arguments "text" (the same text under the older name) or "json" (a json array); None:
    the payloads inside the document. form ("columns", "joined" or "batch", from --form or
    loaded_form) picks the function; otherwise the newest the database has."""
    if form == "joined":
        return "joined"
    if form == "batch":
        return payloads_separate_batch(s)
    if form == "columns" or \
            s.sql_value("SELECT count(*) FROM pg_proc WHERE proname = 'calseta_ingest_columns'") != "0":
        return "columns"
    if s.sql_value("SELECT count(*) FROM pg_proc WHERE proname = 'calseta_ingest_batch_joined'") != "0":
        return "joined"
    return payloads_separate_batch(s)


def payloads_separate_batch(s):
    """calseta_ingest_batch()'s form: "text" or "json" for its third argument, None with 2."""
    if s.sql_value("SELECT max(pronargs) FROM pg_proc WHERE proname = 'calseta_ingest_batch'") != "3":
        return None
    return s.sql_value("SELECT max(format_type(proargtypes[2], NULL)) FROM pg_proc "
                       "WHERE proname = 'calseta_ingest_batch' AND pronargs = 3 "
                       "AND proargtypes[2] IN ('text'::regtype, 'json'::regtype)")


def element_sql(a):
    """The batch argument of the call: the intake's documents as they are (the fixtures), or each
    element given a fingerprint of its own ('u-' and a number from a sequence of the bench's
    database), a share of them (--dup-share) the fingerprint of an alert made before instead,
    and with --new-indicators an IP and a domain of its own (those of its number: a repeat
    carries its original's), as ingest_bench.py's generic streams; --hot, one IP in every
    alert."""
    if not (a.unique or a.dup_share > 0 or a.new_indicators or a.hot):
        return ":b::jsonb"
    ip = ("'203.0.113.7'" if a.hot else
          "'10.' || (k.k / 65536 % 256) || '.' || (k.k / 256 % 256) || '.' || (k.k % 256)")
    inds = ("jsonb_build_object('indicators', jsonb_build_array("
            "jsonb_build_object('type', 'ip', 'value', %s), "
            "jsonb_build_object('type', 'domain', 'value', 'h' || k.k || '.bench.example')))" % ip
            if a.new_indicators or a.hot else "'{}'::jsonb")
    return ("(SELECT jsonb_agg(x.e || jsonb_build_object('fingerprint', 'u-' || k.k) || %s ORDER BY x.o) "
            "FROM jsonb_array_elements(:b::jsonb) WITH ORDINALITY x(e, o) "
            "CROSS JOIN LATERAL (SELECT CASE WHEN random() < %r AND (SELECT last_value FROM bench_fp) > 20 "
            "THEN floor(random() * (SELECT last_value FROM bench_fp))::bigint + 1 "
            "ELSE nextval('bench_fp') END AS k WHERE x.o > 0) k)" % (inds, a.dup_share))


def columns_sql(docs, a):
    """calseta_ingest_columns()'s call and its variables: each field an array, as the intake sends
    them (the intake sends them in binary, which array_recv reads with no parsing: the text form
    here costs the server more). The indicators are the batch's distinct pairs, each element
    naming its own by position. The --unique modes' fingerprints (and indicators) are drawn by
    SQL expressions on every call, as element_sql's."""
    els = [(json.loads(e), p) for e, p in docs]
    pairs, refs, ind_offs, tags, tag_offs = [], [], [0], [], [0]
    for e, _ in els:
        for x in e.get("indicators") or []:
            k = (x["type"], x["value"])
            if k not in pairs:
                pairs.append(k)
            refs.append(pairs.index(k) + 1)
        ind_offs.append(len(refs))
        tags += e.get("tags") or []
        tag_offs.append(len(tags))
    cols = [("titles", "text", [e.get("title") for e, _ in els]),
            ("severities", "text", [e.get("severity") for e, _ in els]),
            ("source_names", "text", [e.get("source_name") for e, _ in els]),
            ("descriptions", "text", [e.get("description") for e, _ in els]),
            ("occurred", "timestamptz", [e.get("occurred_at") for e, _ in els]),
            ("fingerprints", "text", [e.get("fingerprint") for e, _ in els]),
            ("rule_refs", "text", [e.get("rule_ref") for e, _ in els]),
            ("key_prefixes", "text", [e.get("actor_key_prefix") for e, _ in els]),
            ("payloads", "text", [p for _, p in els]),
            ("tag_offs", "int4", tag_offs), ("tag_vals", "text", tags),
            ("ind_types", "text", [t for t, _ in pairs]), ("ind_values", "text", [v for _, v in pairs]),
            ("ind_offs", "int4", ind_offs), ("ind_refs", "int4", refs)]
    arg = {name: ":%s::%s[]" % (name, typ) for name, typ, _ in cols}
    variables = tuple("%s=%s" % (name, pg_array(vals)) for name, _, vals in cols)
    gen = ""
    if a.unique or a.dup_share > 0 or a.new_indicators or a.hot:
        gen = ("(SELECT array_agg(k.k ORDER BY g.o) AS ks FROM generate_series(1, %d) g(o) "
               "CROSS JOIN LATERAL (SELECT CASE WHEN random() < %r AND (SELECT last_value FROM bench_fp) > 20 "
               "THEN floor(random() * (SELECT last_value FROM bench_fp))::bigint + 1 "
               "ELSE nextval('bench_fp') END AS k WHERE g.o > 0) k) g, " % (a.batch, a.dup_share))
        arg["fingerprints"] = "(SELECT array_agg('u-' || k ORDER BY o) FROM unnest(g.ks) WITH ORDINALITY x(k, o))"
        n = a.batch
        if a.hot:
            arg["ind_types"] = "array_fill('domain'::text, ARRAY[%d]) || ARRAY['ip']" % n
            arg["ind_values"] = ("(SELECT array_agg('h' || k || '.bench.example' ORDER BY o) "
                                 "FROM unnest(g.ks) WITH ORDINALITY x(k, o)) || ARRAY['203.0.113.7']")
            arg["ind_offs"] = "'%s'::int4[]" % pg_array(range(0, 2 * n + 1, 2))
            arg["ind_refs"] = "'%s'::int4[]" % pg_array(x for i in range(n) for x in (n + 1, i + 1))
        elif a.new_indicators:
            arg["ind_types"] = "'%s'::text[]" % pg_array(["ip", "domain"] * n)
            arg["ind_values"] = ("(SELECT array_agg(v ORDER BY o, j) FROM unnest(g.ks) WITH ORDINALITY x(k, o) "
                                 "CROSS JOIN LATERAL (VALUES (1, '10.' || (k / 65536 % 256) || '.' || "
                                 "(k / 256 % 256) || '.' || (k % 256)), (2, 'h' || k || '.bench.example')) y(j, v))")
            arg["ind_offs"] = "'%s'::int4[]" % pg_array(range(0, 2 * n + 1, 2))
            arg["ind_refs"] = "'%s'::int4[]" % pg_array(range(1, 2 * n + 1))
    used = set(arg[name] for name, _, _ in cols)
    variables = tuple(v for v in variables if ":%s::" % v.split("=", 1)[0] in " ".join(used))
    npairs = 2 * a.batch if a.new_indicators and not a.hot else a.batch + 1 if a.hot else len(pairs)
    columns_sql.shape = (a.batch, npairs)
    # the call's uuids: a row of its own (see uuid_table), read in every mode, by a function (a
    # join of the table here was planned again by every call: ~250 k instructions per call)
    row = "bench_call_uuids() u, "
    uuids = {"supplied": ", u.au, u.iu", "null": ", NULL, NULL", "old": ""}[a.uuids]
    call = ("calseta_ingest_columns(%s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL, %s, %s, %s, %s, %s, %s, %s, %d%s)" %
            tuple([arg[k] for k in ("titles", "severities", "source_names", "descriptions", "occurred",
                                    "fingerprints", "rule_refs", "key_prefixes", "payloads", "tag_offs",
                                    "tag_vals", "ind_types", "ind_values", "ind_offs", "ind_refs")] + [a.dedup, uuids]))
    return "SELECT count(*) FROM %s%s%s;\n" % (row, gen, call), variables


def uuid7(ms, r):
    """A version-7 uuid (RFC 9562) as text, as the intake makes them: the millisecond ms, the
    version, 12 random bits, the variant, 62 random bits (from the 10 bytes r)."""
    b = bytearray(ms.to_bytes(6, "big") + r)
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    h = b.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


# bench_uuids: a row of uuids per call, k from 1, taken in order by bench_call_uuids() (the
# statement's plan kept by the session). Call k's uuids are all of the millisecond base + k,
# as a batch's are all of the millisecond the intake built it in: each call's later than the
# one before, so the uuid indexes take them at their right edge as they take the intake's
# (uuids of one millisecond in random order would land on random leaves). bench_uuids_add()
# writes more rows in the database, before a run: their random bits from gen_random_uuid(),
# which the run itself never calls.
UUID_TABLE = ["CREATE TABLE bench_uuids (k BIGINT PRIMARY KEY, au UUID[], iu UUID[])",
              "CREATE SEQUENCE bench_call",
              "CREATE FUNCTION bench_call_uuids(OUT au UUID[], OUT iu UUID[]) LANGUAGE plpgsql AS "
              "$f$ DECLARE c BIGINT := nextval('bench_call'); "
              "BEGIN SELECT x.au, x.iu INTO au, iu FROM bench_uuids x WHERE x.k = c; END $f$",
              "CREATE FUNCTION bench_uuid7(ms BIGINT) RETURNS UUID LANGUAGE sql AS "
              "$f$ SELECT encode(set_byte(b, 6, (get_byte(b, 6) & 15) | 112), 'hex')::uuid "
              "FROM (SELECT overlay(uuid_send(gen_random_uuid()) PLACING substr(int8send(ms), 3) "
              "FROM 1 FOR 6) AS b) x $f$",
              "CREATE FUNCTION bench_uuids_add(calls BIGINT, n INT, m INT, base BIGINT) RETURNS VOID "
              "LANGUAGE sql AS $f$ INSERT INTO bench_uuids SELECT k, "
              "ARRAY(SELECT bench_uuid7(base + k) FROM generate_series(1, n)), "
              "ARRAY(SELECT bench_uuid7(base + k) FROM generate_series(1, m)) "
              "FROM (SELECT coalesce(max(k), 0) AS k0 FROM bench_uuids) t, "
              "generate_series(t.k0 + 1, t.k0 + calls) k $f$"]


def uuid_rows(calls, shape):
    """calls rows of bench_uuids (k from 1) as COPY text, made here (the callgrind runs: the same
    rows, from seeded random bits, in both); shape = (alerts, pairs)."""
    n, m = shape
    if getattr(uuid_rows, "made", (None,))[0] != (calls, shape):
        rnd = __import__("random").Random(25)
        base = int(time.time() * 1000)
        lines = []
        for k in range(1, calls + 1):
            u = [uuid7(base + k, rnd.randbytes(10)) for _ in range(n + m)]
            lines.append("%d\t{%s}\t{%s}\n" % (k, ",".join(u[:n]), ",".join(u[n:])))
        uuid_rows.made = ((calls, shape), "".join(lines))
    return uuid_rows.made[1]


def uuid_table(url):
    """bench_uuids and its functions, empty (see uuid_add)."""
    for st in UUID_TABLE:
        harness.psql(url, st)
    uuid_table.base = int(time.time() * 1000)


def uuid_add(url, calls, shape):
    """calls more rows of bench_uuids, written by the database, a chunk per statement (one
    statement for a long run's rows outlasted psql's timeout)."""
    while calls > 0:
        k = min(calls, 20000)
        harness.psql(url, "SELECT bench_uuids_add(%d, %d, %d, %d)" % ((k,) + tuple(shape) + (uuid_table.base,)))
        calls -= k
    harness.psql(url, "VACUUM ANALYZE bench_uuids")


def uuid_rows_left(url):
    """Fails the run when its calls outran bench_uuids (a call past its rows sent NULL columns)."""
    used = int(harness.psql_value(url, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM bench_call"))
    have = int(harness.psql_value(url, "SELECT count(*) FROM bench_uuids"))
    if used > have:
        raise RuntimeError("%d calls, bench_uuids has %d rows: raise UUID_MARGIN" % (used, have))
    return have - used


# bench_uuids rows for a run: a calibration's calls per second, times the run's seconds, times
# UUID_MARGIN (the others' load on a shared box moves the rate), and UUID_SLACK more per client
UUID_CALIBRATE_CALLS = 100
UUID_MARGIN = 2.0
UUID_SLACK = 200


def call_sql(elems, a, separate):
    """The pgbench script and its variables: the batch (and payloads) go as parameters of a
    prepared statement, as the intake sends them, not as literals the server's SQL parser would
    scan on every call."""
    docs = [elems[i % len(elems)] for i in range(a.batch)]
    if separate == "columns":
        return columns_sql(docs, a)
    if separate:
        b = "[" + ",".join(e for e, _ in docs) + "]"
        p = "\x01".join(p for _, p in docs) if separate != "json" else "[" + ",".join(p for _, p in docs) + "]"
        arg = element_sql(a)
        if separate == "joined":
            return ("SELECT count(*) FROM calseta_ingest_batch_joined(%s, %d, :p::text);\n" % (arg, a.dedup),
                    ("b=" + b, "p=" + p))
        return ("SELECT count(*) FROM calseta_ingest_batch(%s, %d, :p::%s);\n" % (arg, a.dedup, separate),
                ("b=" + b, "p=" + p))
    b = "[" + ",".join(e[:-1] + ',"raw_payload":' + p + "}" for e, p in docs) + "]"
    return "SELECT count(*) FROM calseta_ingest_batch(:b::jsonb, %d);\n" % a.dedup, ("b=" + b,)


def pgbench(url, script, a, variables=(), transactions=0):
    f = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
    f.write(script)
    f.close()
    try:
        cpu0, wal0 = ingest_bench.server_cpu(url), ingest_bench.wal_lsn(url)
        harness.psql(url, "CHECKPOINT")  # as ingest_bench.py between streams: full-page images show
        argv = ["pgbench", "-n", "-M", "prepared", "-c", str(a.clients), "-j", str(a.clients), "-f", f.name]
        argv += ["-t", str(transactions)] if transactions else ["-T", str(a.seconds)]
        for v in variables:
            argv += ["-D", v]
        pb = subprocess.Popen(argv + [url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        perf = None
        pid = None
        t = time.time()
        while not transactions and pid is None and time.time() - t < 5:
            # once every client is connected: pgbench's own set-up connection, short-lived and
            # of the same name, is gone by then
            pid = harness.psql_value(url, "SELECT min(pid) FROM pg_stat_activity WHERE application_name = 'pgbench' "
                                     "HAVING count(*) = %d" % a.clients) or None
            if pid is None:
                time.sleep(0.05)
        if a.perf and pid:
            perf = subprocess.Popen(["perf", "record", "-g", "-o", a.perf, "-p", pid, "--", "sleep",
                                     str(max(1, a.seconds - 2))], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        # the first client's backend alone (its own CPU, polled until it exits): the server's
        # total also holds its background processes, whose share per alert grows as calls/s fall
        ticks = 0
        while pid and pb.poll() is None:
            try:
                ticks = max(ticks, ingest_bench.proc_ticks(int(pid)))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                break
            time.sleep(0.02)
        out, err = pb.communicate()
        if perf:
            perf.wait()
        pgbench.backend_cpu = ticks / os.sysconf("SC_CLK_TCK")
        cpu1, wal = ingest_bench.server_cpu(url), ingest_bench.wal_bytes_since(url, wal0)
        wal1 = ingest_bench.wal_lsn(url)
    finally:
        os.unlink(f.name)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if not m or pb.returncode != 0:
        raise RuntimeError("pgbench failed:\n" + out + err)
    t = re.search(r"number of transactions actually processed: (\d+)", out)
    pgbench.calls = int(t.group(1)) if t else 0
    pgbench.lsns = (wal0, wal1)
    return float(m.group(1)), cpu1 - cpu0, wal


def wal_stats(url, lsns, n):
    """Per resource manager: WAL records and full-page images per alert over the run's LSN range
    (pg_waldump --stats; the run is alone on the server, so every record is the bench's)."""
    datadir = harness.psql_value(url, "SHOW data_directory")
    waldump = os.path.join(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip(),
                           "pg_waldump")
    if not os.path.exists(waldump):
        waldump = "pg_waldump"
    harness.psql(url, "SELECT pg_switch_wal()", check=False)
    r = subprocess.run([waldump, "--stats", "-p", os.path.join(datadir, "pg_wal"), "-s", lsns[0], "-e", lsns[1]],
                       capture_output=True, text=True)
    rows, total = [], None
    for line in r.stdout.splitlines():
        m = re.match(r"(\S+)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)", line)
        if m and m.group(1) != "Total":
            rows.append((m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))))
        m = re.match(r"Total\s+(\d+)\s+(\d+)\s+\[[^]]*\]\s+(\d+)", line)
        if m:
            total = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if not rows or not total:
        print("  (pg_waldump gave no statistics: %s)" % r.stderr.strip()[:200])
        return
    print("  WAL per alert, largest kinds: records, record bytes, full-page-image bytes")
    for name, cnt, rec, fpi in sorted(rows, key=lambda x: -(x[2] + x[3]))[:8]:
        print("    %-28s %5.2f %6.0f B %6.0f B" % (name, cnt / n, rec / n, fpi / n))
    print("  FPI share of WAL: %.0f %% (%.0f B of %.0f B per alert)" %
          (100.0 * total[2] / max(1, total[1] + total[2]), total[2] / n, (total[1] + total[2]) / n))


def table_form(elems, a, separate):
    """The call with its arguments read from a one-row table written once (stored uncompressed,
    out of line), which every call reads: a text variable is cast where pgbench's is (a batch
    document is parsed by jsonb_in on every call, as the intake's text parameter is), an array is
    read as stored, as array_recv reads the intake's binary one. Sent as pgbench's text
    parameters or as literals, every call would also pay array_in over each array's text (which
    escapes every quote of every payload), dearer than array_recv, and as literals the SQL
    scanner's pass over each document. Returns (the statements that write the table, the call)."""
    script, variables = call_sql(elems, a, separate)
    q = script.strip().rstrip(";")
    cols, values = [], []
    for v in variables:
        name, value = v.split("=", 1)
        assert "$qv$" not in value
        m = re.search(r":%s::(\w+(?:\[\])?)" % name, q)
        typ = m.group(1)
        if typ.endswith("[]"):  # read as stored
            q = q.replace(m.group(0), "v.%s" % name)
            cols.append((name, typ))
        else:  # stored as text, converted on every call
            q = q.replace(":%s::" % name, "v.%s::" % name)
            cols.append((name, "text"))
        values.append("$qv$%s$qv$::%s" % (value, cols[-1][1]))
    q = q.replace("SELECT count(*) FROM ", "SELECT count(*) FROM bench_vars v, ", 1)
    setup = ["CREATE TABLE bench_vars (%s)" % ", ".join("%s %s" % c for c in cols)]
    setup += ["ALTER TABLE bench_vars ALTER COLUMN %s SET STORAGE EXTERNAL" % name for name, _ in cols]
    setup.append("INSERT INTO bench_vars VALUES (%s)" % ", ".join(values))
    return setup, q


def callgrind_script(path, elems, a, separate, calls, rows):
    """The calls (see table_form), each ended as a single-user backend's -j mode reads it (a
    semicolon and an empty line). bench_uuids gets rows rows whatever the calls, so its writing
    cancels out of the difference of two runs."""
    setup, q = table_form(elems, a, separate)
    with open(path, "w") as f:
        f.write("SELECT setseed(0.25);\n\nCREATE SEQUENCE bench_fp;\n\n")
        for st in setup:
            f.write(st + ";\n\n")
        if separate == "columns":
            for st in UUID_TABLE:
                f.write(st + ";\n\n")
            lines = uuid_rows(rows, columns_sql.shape).splitlines()
            f.write("INSERT INTO bench_uuids VALUES %s;\n\n" %
                    ", ".join("(%s, '%s', '%s')" % tuple(x.split("\t")) for x in lines))
        f.write((q + ";\n\n") * calls)


def callgrind(elems, a, separate):
    """Instructions per call of a single-user backend (see the module's text)."""
    src = os.path.join(HERE, "..", "..")
    work = tempfile.mkdtemp(prefix="ingsql-cg-")
    if os.getuid() == 0:  # pg.sh runs the server as postgres, which writes the cluster here
        pw = __import__("pwd").getpwnam("postgres")
        os.chown(work, pw.pw_uid, pw.pw_gid)
    env = dict(os.environ, CALSETA_DATA_DIR=work)
    env.pop("PG_FSYNC", None)
    pg = os.path.join(src, "scripts", "pg.sh")
    try:
        url = subprocess.run([pg, "start"], env=dict(env, PG_FSYNC="off"), capture_output=True, text=True,
                             check=True).stdout.strip()
        subprocess.run([os.path.join(os.environ["CALSETA_BIN_DIR"], "calseta"), "migrate"],
                       env=dict(env, DATABASE_URL=url), check=True, capture_output=True)
        if a.load:
            subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", a.load], check=True,
                           capture_output=True)
        pgdata = harness.psql_value(url, "SHOW data_directory")
        # the server pg.sh started: the newest installed major version
        bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)[-1]
        subprocess.run([pg, "stop"], env=env, check=True, capture_output=True)
        owner = os.stat(pgdata).st_uid
        runas = ["runuser", "-u", str(__import__("pwd").getpwuid(owner).pw_name), "--"] if os.getuid() == 0 else []
        counts = {}
        for calls in (10, 40):
            sql = os.path.join(work, "calls%d.sql" % calls)
            callgrind_script(sql, elems, a, separate, calls, 40)
            copy = os.path.join(work, "run%d" % calls)
            subprocess.run(["cp", "-a", pgdata, copy], check=True)
            out = os.path.join(work, "cg%d.out" % calls)
            with open(sql) as f:
                r = subprocess.run(runas + ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                                            os.path.join(bindir, "postgres"), "--single", "-j", "-D", copy,
                                            "-c", "autovacuum=off", "-c", "fsync=off", "calseta"],
                                   stdin=f, capture_output=True, text=True)
            if "ERROR" in r.stdout or "ERROR" in r.stderr or r.returncode != 0:
                raise RuntimeError("single-user run failed:\n" + (r.stdout + r.stderr)[-3000:])
            m = re.search(r"^summary: (\d+)", open(out).read(), re.M)
            counts[calls] = int(m.group(1))
            if a.callgrind_keep:  # for callgrind_annotate: the 40 calls' profile less the 10's
                os.makedirs(a.callgrind_keep, exist_ok=True)
                subprocess.run(["cp", out, a.callgrind_keep], check=True)
        per_call = (counts[40] - counts[10]) / 30.0
        print("%s under callgrind (batch %d, %s%s%s, de-duplication %s%s%s): "
              "%.3f M instructions per call, %.1f k per alert" %
              (FUNCTION[separate], a.batch, "own fingerprints" if (a.unique or a.dup_share or a.new_indicators or a.hot) else
               "fixture fingerprints", (", %.0f %% repeats" % (100 * a.dup_share)) if a.dup_share else "",
               ", own IP and domain" if a.new_indicators else ", one IP in all" if a.hot else "",
               ("%d h" % a.dedup) if a.dedup > 0 else "off", (", " + a.load) if a.load else "",
               (", uuids " + a.uuids) if separate == "columns" else "",
               per_call / 1e6, per_call / a.batch / 1e3))
    finally:
        subprocess.run([pg, "stop"], env=env, capture_output=True)
        subprocess.run(["rm", "-rf", work])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--batch", type=int, default=15)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--perf", default="", help="perf.data file for the first client's backend")
    ap.add_argument("--no-ceiling", action="store_true")
    ap.add_argument("--unique", action="store_true", help="a fingerprint of its own for every alert")
    ap.add_argument("--dedup", type=int, default=0,
                    help="the de-duplication window (hours) the function is called with; 0: off. With "
                         "the fixtures' own fingerprints every alert after the first batch is a duplicate")
    ap.add_argument("--dup-share", type=float, default=0.0,
                    help="share of alerts repeating the fingerprint of one made before (implies --unique)")
    ap.add_argument("--new-indicators", action="store_true",
                    help="every alert an IP and a domain of its own instead of the fixture's (implies --unique)")
    ap.add_argument("--hot", action="store_true",
                    help="every alert the same IP and a domain of its own (implies --unique)")
    ap.add_argument("--prefill", type=int, default=0,
                    help="alerts written before the measured run (then a checkpoint): a larger table")
    ap.add_argument("--callgrind", action="store_true",
                    help="count the instructions per call (valgrind) instead of timing pgbench")
    ap.add_argument("--callgrind-keep", default="", metavar="DIR",
                    help="with --callgrind, keep the two profiles (cg10.out, cg40.out) in DIR")
    ap.add_argument("--load", default="",
                    help="SQL file run in the bench database before anything is measured (another "
                         "body of the function, for A/B runs on one server)")
    ap.add_argument("--form", choices=("auto", "columns", "joined", "batch"), default="auto",
                    help="the function called: calseta_ingest_columns, calseta_ingest_batch_joined "
                         "or calseta_ingest_batch; auto: the one the --load file defines, else the "
                         "newest the database has")
    ap.add_argument("--uuids", choices=("auto", "supplied", "null", "old"), default="auto",
                    help="calseta_ingest_columns()'s uuid columns: supplied (made here, as the intake "
                         "does), null (drawn by the function), old (the 18-argument form); auto: old "
                         "when --load defines calseta_ingest_columns() without them, else supplied")
    a = ap.parse_args()
    if a.form == "auto":
        a.form = loaded_form(a.load) if a.load else None
    if a.uuids == "auto":
        a.uuids = "old" if a.load and loaded_form(a.load) == "columns" and \
            "alert_uuids" not in re.sub(r"--[^\n]*", "", open(a.load).read()) else "supplied"

    s = harness.Stack("ingsql", env={"ALERT_DEDUP_WINDOW_HOURS": 0, "LOG_LEVEL": "WARNING"})
    try:
        key = s.create_key("alerts:write")
        for src, name in ingest_bench.FIXTURES:
            r = s.request("POST", "/v1/ingest/" + src, key=key, body=harness.fixture(name))
            assert r.status == 202, r
        for p in list(s.procs):
            p.stop()
        # hex: a payload stored as sent may hold line breaks, which psql's output would split
        text = bytes.fromhex(harness.psql_value(s.db, "SELECT encode(convert_to(string_agg(x, chr(2)), 'UTF8'), "
                                                "'hex') FROM (%s) q(x)" % ELEMENTS)).decode()
        elems = [tuple(x.split("\x01", 1)) for x in text.split("\x02")]
        assert len(elems) == 5, len(elems)
        if a.load:
            r = subprocess.run(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", a.load],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("--load %s failed:\n%s" % (a.load, r.stderr))
            print("loaded %s" % a.load)
        separate = payloads_separate(s, a.form)
        print("calling %s" % FUNCTION[separate])
        if a.callgrind:
            callgrind(elems, a, separate)
            return
        s.sql("CREATE SEQUENCE bench_fp")
        setup, q = table_form(elems, a, separate)
        for st in setup:
            s.sql(st)
        prefill_calls = max(1, a.prefill // a.batch // a.clients) if a.prefill else 0
        if separate == "columns":
            # the calls a run can make, from a short calibration run of the same calls (its
            # alerts are stored before the measured run's, as --prefill's)
            uuid_table(s.db)
            uuid_add(s.db, UUID_CALIBRATE_CALLS * a.clients, columns_sql.shape)
            tps, _, _ = pgbench(s.db, q + ";\n", argparse.Namespace(**dict(vars(a), perf="")), (),
                                transactions=UUID_CALIBRATE_CALLS)
            rows = int(tps * a.seconds * UUID_MARGIN) + (UUID_SLACK + prefill_calls) * a.clients
            uuid_add(s.db, rows, columns_sql.shape)
            print("calibration: %.0f calls/s; %d more bench_uuids rows" % (tps, rows))
        if a.prefill:
            pgbench(s.db, q + ";\n", a, (), transactions=prefill_calls)
        n0 = int(s.sql_value("SELECT count(*) FROM alerts"))
        d0 = int(s.sql_value(DUPLICATES))
        load0 = open("/proc/loadavg").read().split()[0]
        tps, cpu, wal = pgbench(s.db, q + ";\n", a, ())
        if separate == "columns":
            print("  bench_uuids rows left unused: %d" % uuid_rows_left(s.db))
        n = int(s.sql_value("SELECT count(*) FROM alerts")) - n0
        load1 = open("/proc/loadavg").read().split()[0]
        made = n
        n = n + int(s.sql_value(DUPLICATES)) - d0
        own = a.unique or a.dup_share > 0 or a.new_indicators or a.hot
        print("%s: %.0f alerts/s (%d clients, batch %d, payloads %s, %s fingerprints%s%s, "
              "de-duplication %s%s, %d alerts before, load %s->%s)" %
              (FUNCTION[separate], tps * a.batch, a.clients, a.batch, ("separate (%s)" % separate) if separate else "in the batch",
               "own" if own else "fixture", (", %.0f %% repeats" % (100 * a.dup_share)) if a.dup_share else "",
               ", own IP and domain" if a.new_indicators else ", one IP in all" if a.hot else "",
               ("%d h" % a.dedup) if a.dedup > 0 else "off", (", uuids " + a.uuids) if separate == "columns" else "",
               n0, load0, load1))
        print("  per alert: PostgreSQL CPU %.0f us, WAL %.0f B (%d alerts: %d new, %d duplicates)" %
              (1e6 * cpu / n, wal / n, n, made, n - made))
        if pgbench.backend_cpu and pgbench.calls:
            print("  per alert: first client's backend CPU %.1f us (%.0f us per call)" %
                  (1e6 * pgbench.backend_cpu / (pgbench.calls * a.batch / a.clients),
                   1e6 * pgbench.backend_cpu / (pgbench.calls / a.clients)))
        wal_stats(s.db, pgbench.lsns, n)
        if not a.no_ceiling:
            scratch = s.dbname + "_ceiling"
            harness.psql(harness.db_url_for("postgres"), "CREATE DATABASE %s" % scratch)
            url = harness.db_url_for(scratch)
            try:
                harness.psql(url, ingest_bench.CEILING_DDL)
                typ, _ = ingest_bench.ceiling_storage(s, url)
                docs = s.sql_value("SELECT jsonb_agg(d) FROM (SELECT (row_number() OVER () - 1)::int AS i, title, "
                                   "severity, source_name, description, occurred_at, raw_payload, tags, fingerprint "
                                   "FROM alerts ORDER BY id LIMIT 5) d")
                harness.psql(url, "INSERT INTO scratch_docs SELECT * FROM json_populate_recordset(NULL::scratch_docs, "
                             "$$%s$$)" % docs)
                harness.psql(url, "UPDATE scratch_docs SET raw_text = raw_payload::text")
                tps, cpu, wal = pgbench(url, ingest_bench.CEILING_SQL % ingest_bench.CEILINGS[0][1].format(type=typ), a,
                                        ("batch=%d" % a.batch,))
                n = int(harness.psql_value(url, "SELECT count(*) FROM scratch_alerts"))
                print("ceiling (plain INSERTs): %.0f alerts/s" % (tps * a.batch))
                print("  per alert: PostgreSQL CPU %.0f us, WAL %.0f B (%d alerts)" % (1e6 * cpu / n, wal / n, n))
                if pgbench.backend_cpu and pgbench.calls:
                    print("  per alert: first client's backend CPU %.1f us (%.0f us per call)" %
                          (1e6 * pgbench.backend_cpu / (pgbench.calls * a.batch / a.clients),
                           1e6 * pgbench.backend_cpu / (pgbench.calls / a.clients)))
                wal_stats(url, pgbench.lsns, n)
            finally:
                harness.psql(harness.db_url_for("postgres"), "DROP DATABASE IF EXISTS %s" % scratch, check=False)
    finally:
        s.stop()


if __name__ == "__main__":
    main()
