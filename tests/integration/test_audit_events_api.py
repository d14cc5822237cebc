"""GET /v1/audit-events: filters, meta.total and pages over a few thousand rows. Every page is
the slice of the whole ordered list (newest first, ties by id), walking all pages yields every
row once, and a page is read without copying the matching rows: the intake's sessions may not
write temporary files and have the smallest work_mem (the route used to materialise every
matching event, with its fields, before cutting the page)."""
import json

from harness import Stack, assert_eq, run_tests

N = 6000
# Old enough that no event the stack writes while the test runs falls inside to_time.
TO = "2021-01-01T00:00:00Z"


def load(s):
    # 40 events share each second (ties ordered by id), four types, three key prefixes, and a
    # fields document large enough that a copy of the rows would not fit in work_mem.
    s.sql("INSERT INTO audit_events (event_id, occurred_at, service, pid, event_type, request_id, "
          "actor_key_prefix, client_ip, fields) SELECT gen_random_uuid(), "
          "timestamptz '2020-06-01 00:00:00+00' + (g / 40) * interval '1 second', 'intake', g, "
          "'bulk.' || (g %% 4), 'req-' || g, 'cai_p' || (g %% 3), '10.0.0.' || (g %% 250), "
          "jsonb_build_object('n', g, 'pad', repeat('x', 300)) FROM generate_series(1, %d) g" % N)
    s.sql("ANALYZE audit_events")


def expected(s, where, limit, offset):
    return [r[0] for r in s.sql("SELECT event_id FROM audit_events WHERE %s ORDER BY occurred_at "
                                "DESC, id DESC LIMIT %d OFFSET %d" % (where, limit, offset))]


def get(s, k, query):
    r = s.request("GET", "/v1/audit-events?to_time=%s&%s" % (TO, query), key=k)
    assert_eq(r.status, 200, (query, r.body[:300]))
    return r.json()


def test_pages_filters_and_total():
    s = Stack("audit_events_pages", env={"PGOPTIONS": "-c temp_file_limit=0 -c work_mem=1MB"})
    try:
        k = s.create_key("admin")
        load(s)
        old = "occurred_at <= '%s'" % TO
        b = get(s, k, "page=1&page_size=50")
        assert_eq(b["meta"], {"total": N, "page": 1, "page_size": 50, "total_pages": N // 50})
        assert_eq([e["event_id"] for e in b["data"]], expected(s, old, 50, 0))
        # one item whole, as the table holds it
        first = b["data"][0]
        row = s.sql("SELECT event_id, event_type, service, pid, request_id, actor_key_prefix, "
                    "client_ip, fields::text, to_char(occurred_at AT TIME ZONE 'UTC', "
                    "'YYYY-MM-DD\"T\"HH24:MI:SS') FROM audit_events WHERE event_id = '%s'"
                    % first["event_id"])[0]
        assert_eq(first["event_type"], row[1])
        assert_eq(first["service"], row[2])
        assert_eq(first["pid"], int(row[3]))
        assert_eq(first["request_id"], row[4])
        assert_eq(first["actor_key_prefix"], row[5])
        assert_eq(first["client_ip"], row[6])
        assert_eq(first["fields"], json.loads(row[7]))
        assert first["occurred_at"].startswith(row[8]), (first["occurred_at"], row[8])
        assert_eq(sorted(first), sorted(["event_id", "event_type", "occurred_at", "service", "pid",
                                         "request_id", "actor_key_prefix", "client_ip", "fields"]))

        # deep pages are the same slice of the ordered list
        for page in (2, 17, 60, 120):
            b = get(s, k, "page=%d&page_size=50" % page)
            assert_eq([e["event_id"] for e in b["data"]], expected(s, old, 50, (page - 1) * 50), page)
        assert_eq(get(s, k, "page=121&page_size=50")["data"], [])

        # walking every page yields every row once, in order
        seen = []
        for page in range(1, N // 500 + 1):
            seen += [e["event_id"] for e in get(s, k, "page=%d&page_size=500" % page)["data"]]
        assert_eq(len(seen), N)
        assert_eq(len(set(seen)), N)
        assert_eq(seen, expected(s, old, N, 0))

        # filters narrow both the page and the total
        cases = [
            ("event_type=bulk.1", "event_type = 'bulk.1'"),
            ("event_type=bulk.1,bulk.3", "event_type IN ('bulk.1', 'bulk.3')"),
            ("key_prefix=cai_p2", "actor_key_prefix = 'cai_p2'"),
            ("from_time=2020-06-01T00:01:00Z", "occurred_at >= '2020-06-01T00:01:00Z'"),
            ("event_type=bulk.2&key_prefix=cai_p0&from_time=2020-06-01T00:00:30Z",
             "event_type = 'bulk.2' AND actor_key_prefix = 'cai_p0' AND "
             "occurred_at >= '2020-06-01T00:00:30Z'"),
        ]
        for query, where in cases:
            where = "%s AND %s" % (old, where)
            total = int(s.sql_value("SELECT count(*) FROM audit_events WHERE " + where))
            b = get(s, k, query + "&page=3&page_size=25")
            assert_eq(b["meta"]["total"], total, query)
            assert_eq([e["event_id"] for e in b["data"]], expected(s, where, 25, 50), query)
        assert_eq(get(s, k, "event_type=nothing.here")["meta"]["total"], 0)

        # bad input is refused and changes nothing
        r = s.request("GET", "/v1/audit-events?page_size=0", key=k)
        assert_eq(r.status, 422, r.body)
        for bad in ("from_time=yesterday", "to_time=2020-13-01T00:00:00Z", "from_time=garbage"):
            r = s.request("GET", "/v1/audit-events?" + bad, key=k)
            assert_eq(r.status, 422, (bad, r.body))
            assert_eq(r.json()["error"]["code"], "VALIDATION_ERROR", r.body)
        # a naive time is UTC, an offset is honoured
        where = "occurred_at >= '2020-06-01T00:02:00Z' AND " + old
        total = int(s.sql_value("SELECT count(*) FROM audit_events WHERE " + where))
        for t in ("2020-06-01T00:02:00", "2020-06-01T02:02:00%2B02:00"):
            assert_eq(get(s, k, "from_time=" + t)["meta"]["total"], total, t)
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
