"""De-duplication off (ALERT_DEDUP_WINDOW_HOURS=0) and on store the same rows.

calseta_ingest_batch() writes a batch with a statement of its own when de-duplication is off;
this posts the same requests (the five fixtures, numbers beyond 64 bits sent to both routes, a
generic alert, a payload with whitespace around it, a number PostgreSQL cannot hold) to a stack
of each kind and compares everything stored per alert: fields, payload text, tags, rule,
indicators, enrichment job and activity event. With de-duplication off a repeated alert is a
new alert, with its own job and event."""
import json

import ingest_columns  # noqa: E402
from harness import Stack, assert_eq, fixture, run_tests

U64 = 18446744073709551615
BIG = ('{"title": "u64 counters", "severity": "low", "bytes": 1e19, "counter": %d, '
       '"src_ip": "198.51.100.7", "nested": {"n": [%d, 1]}}' % (U64, 2 ** 64 + 1))
GENERIC = {"title": "Suspicious login", "severity": "high", "src_ip": "203.0.113.7",
           "indicators": [{"type": "domain", "value": "evil.example"}]}
FIXTURES = [("sentinel", "01_sentinel_brute_force_tor.json"), ("elastic", "02_elastic_malware_hash.json"),
            ("splunk", "03_splunk_anomalous_data_transfer.json"),
            ("sentinel", "04_sentinel_impossible_travel.json"),
            ("elastic", "05_elastic_suspicious_powershell.json")]
JSON = {"Content-Type": "application/json"}

# Everything an alert's ingest stores, without ids, uuids and times (an alert without a time of
# its own occurred about now).
DUMP = """
SELECT a.title, a.severity, a.source_name, md5(coalesce(a.description, '<null>')),
       CASE WHEN a.occurred_at > a.created_at - interval '5 minutes' THEN 'about now' ELSE a.occurred_at::text END,
       md5(a.raw_payload::text), a.tags::text, a.fingerprint, coalesce(d.source_name || '/' || d.source_rule_id, '<none>'),
       (SELECT coalesce(string_agg(i.type || '=' || i.value, ' ' ORDER BY i.type, i.value), '')
          FROM unnest(a.indicator_ids) l(id) JOIN indicators i ON i.id = l.id),
       a.indicator_ids = ARRAY(SELECT DISTINCT x FROM unnest(a.indicator_ids) x ORDER BY x),
       a.duplicate_count, a.last_seen_at IS NULL, a.status, a.enrichment_status, a.is_enriched,
       (SELECT string_agg(j.status || ':' || j.attempts, ' ') FROM enrichment_jobs j WHERE j.alert_id = a.id),
       (SELECT string_agg(e.event_type || ' ' || e.actor_type || ' '
                          || CASE WHEN starts_with('%s', e.actor_key_prefix) THEN 'the key' ELSE 'another' END
                          || ' ' || e."references"::text, ' | ' ORDER BY e.created_at, e.id)
          FROM alert_activity e WHERE e.alert_id = a.id)
  FROM alerts a LEFT JOIN detection_rules d ON d.id = a.detection_rule_id
 WHERE a.uuid = '%s'
"""


def dump(s, key, uuids):
    return [s.sql(DUMP % (key, u))[0] for u in uuids]


def post_all(s, key):
    """The same requests to either stack; the uuid of each accepted alert, in order."""
    uuids = []

    def ok(r):
        assert_eq(r.status, 202, r.body)
        uuids.append(r.json()["data"]["alert_uuid"])
        return r.json()["data"]

    for src, name in FIXTURES:
        ok(s.request("POST", "/v1/ingest/" + src, key=key, body=fixture(name)))
    ok(s.request("POST", "/v1/ingest/generic", key=key, body=BIG.encode(), headers=JSON))
    ok(s.request("POST", "/v1/alerts", key=key, headers=JSON,
                 body=('{"source_name": "generic", "payload": %s}' % BIG.replace("u64", "wide")).encode()))
    ok(s.request("POST", "/v1/alerts", key=key, body={"source_name": "generic", "payload": GENERIC}))
    ok(s.request("POST", "/v1/ingest/generic", key=key, headers=JSON,
                 body=b' \r\n\t{"title": "spaced",  "src_ip": "192.0.2.9"}\n \t'))
    # a number numeric cannot hold: refused, nothing stored
    r = s.request("POST", "/v1/ingest/generic", key=key, headers=JSON, body=b'{"title": "tiny", "v": 1e-20000}')
    assert_eq((r.status, r.json()["error"]["code"]), (422, "INVALID_PAYLOAD"), r.body)
    return uuids


def again(s, key):
    """The first fixture again."""
    r = s.request("POST", "/v1/ingest/" + FIXTURES[0][0], key=key, body=fixture(FIXTURES[0][1]))
    assert_eq(r.status, 202, r.body)
    return r.json()["data"]


def test_dedup_off_stores_what_dedup_on_stores():
    off = Stack("dedup_off", env={"ALERT_DEDUP_WINDOW_HOURS": 0})
    on = Stack("dedup_on")
    try:
        koff, kon = off.create_key("alerts:write,alerts:read"), on.create_key("alerts:write,alerts:read")
        uoff, uon = post_all(off, koff), post_all(on, kon)
        doff, don = dump(off, koff, uoff), dump(on, kon, uon)
        assert_eq(len(doff), 9)
        for a, b in zip(doff, don):
            assert_eq(a, b)
        # with de-duplication on a repeat is the first alert counted again; off, a new alert,
        # the first one's twin
        a_on, a_off = again(on, kon), again(off, koff)
        assert_eq((a_on["is_duplicate"], a_on["alert_uuid"]), (True, uon[0]))
        assert_eq(a_off["is_duplicate"], False)
        uoff.append(a_off["alert_uuid"])
        assert_eq(len(set(uoff)), len(uoff))
        assert_eq(dump(off, koff, [uoff[-1]]), [doff[0]])
        for t in ("alerts", "enrichment_jobs", "alert_activity"):
            assert_eq(off.sql_value("SELECT count(*) FROM " + t), str(len(uoff)))
        # the payload kept as sent, without the whitespace around it
        assert_eq(off.sql_value("SELECT raw_payload::text FROM alerts WHERE uuid = '%s'" % uoff[8]),
                  '{"title": "spaced",  "src_ip": "192.0.2.9"}')
        for u in uoff[5:7]:
            assert_eq(off.sql_value("SELECT raw_payload->>'counter' FROM alerts WHERE uuid = '%s'" % u), str(U64))
        # what the API reads back is the same
        for u in uoff[:-1]:
            r = off.request("GET", "/v1/alerts/" + u, key=koff)
            assert_eq(r.status, 200, r.body)
        assert_eq(off.request("GET", "/v1/alerts/" + uoff[5], key=koff).json()["data"]["raw_payload"]["counter"], U64)
    finally:
        off.stop()
        on.stop()


def test_dedup_off_batch_with_new_rule_and_indicators_from_sql():
    """Straight calls of the functions (de-duplication off), as columns and as a document:
    a rule missing until this batch gets its stub, new and known indicators get linked, the
    known ones are sighted once per batch, and a payload count that does not match the batch
    stores nothing."""
    s = Stack("dedup_off_sql", services=("auditd",))
    try:
        el = ('{"title": "t%d", "severity": "High", "source_name": "generic", "occurred_at": "2026-01-01T00:00:00Z", '
              '"tags": ["a", "b"], "fingerprint": "fp%d", "rule_ref": "rule-x", "actor_key_prefix": "cai_t", '
              '"indicators": [{"type": "ip", "value": "192.0.2.%d"}, {"type": "ip", "value": "192.0.2.200"}]}')
        batch = "[" + ",".join(el % (i, i, i) for i in range(3)) + "]"
        pays = ['{"n": %d}' % i for i in range(3)]
        elems = json.loads(batch)
        q = "SELECT count(*) FROM (%s) c"
        assert_eq(s.sql_value(q % ingest_columns.call_sql(elems, pays, 0)), "3")
        # every indicator was new: nothing sighted again
        assert_eq(s.sql_value("SELECT count(*) FROM indicator_sightings"), "0")
        q2 = "SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 0, $p$%s$p$::json)"
        assert_eq(s.sql_value(q2 % (batch, "[" + ",".join(pays) + "]")), "3")
        # the second batch sighted all four again: one row, their ids sorted
        assert_eq(s.sql("SELECT indicator_ids::text FROM indicator_sightings"),
                  [[s.sql_value("SELECT array_agg(id ORDER BY id)::text FROM indicators")]])
        rows = s.sql("SELECT a.title, a.raw_payload::text, a.tags::text, d.source_rule_id, cardinality(a.indicator_ids) "
                     "FROM alerts a JOIN detection_rules d ON d.id = a.detection_rule_id ORDER BY a.id")
        assert_eq(rows, [["t%d" % i, '{"n": %d}' % i, "{a,b}", "rule-x", "2"] for i in range(3)] * 2)
        assert_eq(s.sql_value("SELECT count(*) FROM detection_rules WHERE source_rule_id = 'rule-x'"), "1")
        assert_eq(s.sql_value("SELECT count(*) FROM indicators"), "4")
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_jobs"), "6")
        try:
            s.sql(q % ingest_columns.call_sql(elems, pays[:2], 0))
            raise AssertionError("a batch with a payload missing was accepted")
        except RuntimeError as e:
            assert "2 payloads, columns of other lengths" in str(e), e
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "6")
    finally:
        s.stop()


# Succeeds only when the call is refused with invalid_parameter_value (22023); the block's
# writes are rolled back either way.
REFUSED = """DO $do$ BEGIN
    PERFORM count(*) FROM %s;
    RAISE EXCEPTION 'accepted';
EXCEPTION WHEN invalid_parameter_value THEN NULL;
END $do$"""


def test_payload_forms_from_sql():
    """The payloads as a json array, as columns, or omitted, from straight calls: an untyped
    array reaches the json form (not the text one), a payload array of the wrong length is
    refused whatever its length (an empty one too), omitted payloads fall back to each element's
    raw_payload, the columns' payloads are stored exactly as given, and the json array's
    elements without the whitespace around them."""
    s = Stack("payload_forms", services=("auditd",))
    try:
        el = ('{"title": "%s", "severity": "Low", "source_name": "generic", "occurred_at": "2026-01-01T00:00:00Z",'
              ' "fingerprint": "%s"%s}')
        one = "[" + el % ("one", "f1", ', "raw_payload": {"r": 1}') + "]"
        two = "[" + el % ("a", "f2", "") + ", " + el % ("b", "f3", "") + "]"
        # only the json form is left under the old name: no text overload to fall into
        assert_eq(s.sql_value("SELECT string_agg(pg_get_function_identity_arguments(oid), ' | ') FROM pg_proc "
                              "WHERE proname = 'calseta_ingest_batch'"),
                  "batch jsonb, dedup_hours integer, payloads json")
        # untyped literals, as a driver sends an untyped parameter: the array's element is the payload
        for hours in (0, 24):
            aid = s.sql_value("SELECT alert_id FROM calseta_ingest_batch('%s', %d, '[{\"a\":1}]')"
                              % (one.replace("f1", "f1-%d" % hours), hours))
            assert_eq(s.sql_value("SELECT raw_payload::text FROM alerts WHERE id = %s" % aid), '{"a":1}')
        n = s.sql_value("SELECT count(*) FROM alerts")
        # a payload array of the wrong length is refused, empty or not, with either window
        for hours in (0, 24):
            for pays in ("[]", '[{"a": 1}]', '[{"a": 1}, {"b": 2}, {"c": 3}]'):
                s.sql(REFUSED % ("calseta_ingest_batch('%s', %d, '%s')" % (two, hours, pays)))
            s.sql(REFUSED % ("calseta_ingest_batch('%s', %d, '[]')" % (one, hours)))
            s.sql(REFUSED % ("calseta_ingest_columns(%s)" % ingest_columns.columns(json.loads(two), ["{}"], hours)))
            s.sql(REFUSED % ("calseta_ingest_columns(%s)" % ingest_columns.columns(json.loads(two), ["{}"] * 3, hours)))
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), n)
        # omitted payloads: each element's raw_payload, or {}
        for hours in (0, 24):
            ids = s.sql("SELECT alert_id FROM calseta_ingest_batch('%s', %d) ORDER BY idx"
                        % (one.replace("f1", "f1-omit-%d" % hours), hours))
            assert_eq(s.sql_value("SELECT raw_payload::text FROM alerts WHERE id = %s" % ids[0][0]), '{"r": 1}')
            ids = s.sql("SELECT alert_id FROM calseta_ingest_batch('%s', %d, NULL) ORDER BY idx"
                        % (two.replace('": "f', '": "omit-%d-f' % hours), hours))
            assert_eq([s.sql_value("SELECT raw_payload::text FROM alerts WHERE id = %s" % i[0]) for i in ids],
                      ["{}", "{}"])
        # the columns' payloads are stored exactly as given (trimming is the caller's: the intake trims)
        for hours in (0, 24):
            elems = json.loads(two.replace('": "f', '": "ws-%d-f' % hours))
            ids = s.sql("SELECT alert_id FROM (%s) c ORDER BY idx"
                        % ingest_columns.call_sql(elems, [' \n{"n": 1}\t\r', "\r\n [1,  2] "], hours))
            # read back as a JSON string: psql's rows cannot carry the tabs and line breaks
            assert_eq([json.loads(s.sql_value("SELECT to_json(raw_payload::text) FROM alerts WHERE id = %s" % i[0]))
                       for i in ids],
                      [' \n{"n": 1}\t\r', "\r\n [1,  2] "])
        # the json array's elements are stored without the whitespace around each
        for hours in (0, 24):
            ids = s.sql("SELECT alert_id FROM calseta_ingest_batch('%s', %d, E'[ \\n{\"n\": 1}\\t\\r,"
                        " \\r\\n [1,  2] \\n]') ORDER BY idx"
                        % (two.replace('": "f', '": "wsarr-%d-f' % hours), hours))
            assert_eq([s.sql_value("SELECT raw_payload::text FROM alerts WHERE id = %s" % i[0]) for i in ids],
                      ['{"n": 1}', "[1,  2]"])
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
