"""test_enricher.py - the enrichment worker against real PostgreSQL and stand-in providers.

Stand-ins (threads in this process, one standin.StandIn HTTP server) speak the real request formats of the four
built-in providers: VirusTotal v3 (x-apikey header, /api/v3/ip_addresses|domains|files/{v}),
AbuseIPDB v2 (Key header, /api/v2/check?ipAddress=&maxAgeInDays=90), Okta (SSWS token,
/api/v1/users/{login}, groups, manager) and Microsoft Entra (client-credentials token POST, then
Graph /v1.0/users/{upn}). The seeded providers are pointed at them by rewriting their URL
templates in the test database; credentials are stored as Fernet tokens made here (AES by the
openssl command, HMAC by Python). Loopback is admitted with the test-only setting
ENRICHER_ALLOW_LOOPBACK=true.

Checks: results, extracted fields and malice written, job done, alert Enriched, pass-3
indicators; 429 then 200 is retried; a hanging provider times out while the others complete;
kill -9 mid-job -> the lease expires and another worker completes the job; a job run again
changes no row (shared cache: no provider call either); hostile and huge provider bodies;
SIGTERM drains the job in flight; wrong/missing/invalid ENCRYPTION_KEY -> a start-up error naming
it; loopback blocked without the test setting; credentials never in logs or audit events.
"""
import json
import re
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Stack, assert_eq, fernet_encrypt, fernet_key, wait_for  # noqa: E402
from standin import StandIn  # noqa: E402

VT_KEY = "vt-secret-7f3a9c1e55d2"
ABUSE_KEY = "abuse-secret-0b8e4d2a91"
OKTA_TOKEN = "okta-ssws-secret-4411aa"
ENTRA_SECRET = "entra-client-secret-9c9c"
ENTRA_TOKEN = "graph-access-token-x1y2"
SECRETS = [VT_KEY, ABUSE_KEY, OKTA_TOKEN, ENTRA_SECRET]


# ---- Fernet (the original's token format) -------------------------------------------------

# ---- stand-in providers ---------------------------------------------------------------------

JSON = {"Content-Type": "application/json"}


class Providers:
    """The four providers' answers, for one standin.StandIn (handle(req) -> (status, body[,
    headers])); the state a test steers or reads is kept here."""

    def __init__(self):
        self.lock = threading.Lock()
        self.abuse_429_left = {"9.9.9.9": 1}
        self.slow_now = 0   # concurrent requests for the 31.13.x.x addresses
        self.slow_max = 0

    def handle(self, req):
        p = req.route
        if p.startswith("/vt/"):
            return self.vt(req, p[3:])
        if p.startswith("/abuse/"):
            return self.abuse(req, p[6:])
        if p.startswith("/okta/"):
            return self.okta(req, p[5:])
        if p.startswith("/entra/"):
            return self.entra_token(req, p[6:])
        if p.startswith("/graph/"):
            return self.graph(req, p[6:])
        return 404, {"error": "no route"}

    def vt(self, req, p):
        if req.h("x-apikey") != VT_KEY:
            return 401, {"error": {"code": "WrongCredentialsError"}}
        value = urllib.parse.unquote(p.rsplit("/", 1)[-1])
        kind = p.split("/")[3] if p.count("/") >= 4 else ""
        if value == "93.184.216.34":      # slow (the thing under test): kill -9 and drain scenarios
            time.sleep(3)
        if value.startswith("31.13."):     # slow, to observe the concurrency cap
            with self.lock:
                self.slow_now += 1
                self.slow_max = max(self.slow_max, self.slow_now)
            time.sleep(0.4)  # a slow answer is the thing under test
            with self.lock:
                self.slow_now -= 1
            return 404, {"error": {"code": "NotFoundError"}}
        if value == "7.7.7.7":            # huge body
            return 200, b'{"data":"' + b"A" * (3 << 20) + b'"}', JSON
        if value == "6.6.6.6":            # hostile shapes and types
            return 200, {"data": {"attributes": {
                "last_analysis_stats": {"malicious": "lots", "suspicious": [1]},
                "asn": "AS-not-a-number", "tags": {"x": 1}, "country": ["a", "b"],
                "\u0000weird": 1, "reputation": 1e300}}}
        if kind not in ("ip_addresses", "domains", "files"):
            return 400, {"error": "bad kind %s" % kind}
        table = {
            "185.220.101.34": (5, 1, ["tor"]),
            "evil-c2.com": (0, 2, []),
            "1.1.1.1": (0, 0, ["cdn"]),
            "9.9.9.9": (0, 0, []),
            "45.33.32.156": (0, 0, []),
            "93.184.216.34": (0, 0, []),
        }
        if value not in table:
            return 404, {"error": {"code": "NotFoundError"}}
        mal, sus, tags = table[value]
        return 200, {"data": {"id": value, "type": kind[:-1] if kind != "ip_addresses" else "ip_address",
                              "attributes": {
                                  "last_analysis_stats": {"malicious": mal, "suspicious": sus,
                                                          "harmless": 60, "undetected": 10},
                                  "reputation": -12 if mal else 3, "tags": tags,
                                  "country": "DE", "as_owner": "Example AS", "asn": 64500,
                                  "network": "185.220.100.0/22",
                                  "registrar": "Example Registrar",
                                  "creation_date": 1500000000,
                                  "categories": {"vendor": "malware"}}}}

    def abuse(self, req, p):
        if p != "/api/v2/check" or req.h("Key") != ABUSE_KEY or req.h("Accept") != "application/json":
            return 401, {"errors": [{"detail": "Authentication failed."}]}
        ip = req.query.get("ipAddress", "")
        if req.query.get("maxAgeInDays") != "90":
            return 422, {"errors": [{"detail": "maxAgeInDays"}]}
        with self.lock:
            left = self.abuse_429_left.get(ip, 0)
            if left:
                self.abuse_429_left[ip] = left - 1
        if left:
            return 429, {"errors": [{"detail": "Daily rate limit exceeded"}]}, {"Retry-After": "1"}
        if ip == "45.33.32.156":          # hangs past the step timeout (the thing under test)
            time.sleep(8)
            return 200, {"data": {"abuseConfidenceScore": 0}}
        if ip == "6.6.6.6":               # invalid JSON with a NUL escape and bad UTF-8
            return 200, b'{"data": {"isp": "\\u0000"}, \xff\xfe' + b"[" * 5000, JSON
        score = {"185.220.101.34": 100, "9.9.9.9": 30}.get(ip, 0)
        return 200, {"data": {"ipAddress": ip, "isPublic": True, "abuseConfidenceScore": score,
                              "countryCode": "DE", "usageType": "Data Center", "isp": "Example",
                              "totalReports": 12, "numDistinctUsers": 4, "isTor": score == 100,
                              "isWhitelisted": False, "lastReportedAt": "2026-01-01T00:00:00+00:00"}}

    def okta(self, req, p):
        if req.h("Authorization") != "SSWS " + OKTA_TOKEN:
            return 401, {"errorCode": "E0000011"}
        parts = p.split("/")  # /api/v1/users/{x}[/groups|/linkedObjects/manager]
        who = urllib.parse.unquote(parts[4]) if len(parts) > 4 else ""
        if len(parts) == 5:
            if who != "alice@contoso.com":
                return 404, {"errorCode": "E0000007"}
            return 200, {"id": "00u1alice", "status": "ACTIVE",
                         "created": "2024-01-01T00:00:00.000Z",
                         "lastLogin": "2026-01-01T00:00:00.000Z",
                         "passwordChanged": "2025-06-01T00:00:00.000Z",
                         "profile": {"login": who, "email": who, "firstName": "Alice",
                                     "lastName": "Doe", "department": "Finance",
                                     "title": "Analyst"}}
        if who != "00u1alice":
            return 404, {"errorCode": "E0000007"}
        if parts[5] == "groups":
            return 200, [{"id": "g1", "profile": {"name": "Everyone"}}]
        return 200, [{"id": "00u1boss"}]

    def entra_token(self, req, p):
        form = urllib.parse.parse_qs(req.body.decode())
        ok = (req.method == "POST"
              and p == "/tenant-123/oauth2/v2.0/token"
              and form.get("client_id") == ["client-abc"]
              and form.get("client_secret") == [ENTRA_SECRET]
              and form.get("grant_type") == ["client_credentials"]
              and form.get("scope") == ["https://graph.microsoft.com/.default"])
        if not ok:
            return 401, {"error": "invalid_client"}
        return 200, {"token_type": "Bearer", "expires_in": 3599, "access_token": ENTRA_TOKEN}

    def graph(self, req, p):
        if req.h("Authorization") != "Bearer " + ENTRA_TOKEN:
            return 401, {"error": {"code": "InvalidAuthenticationToken"}}
        parts = p.split("/")  # /v1.0/users/{x}[/memberOf|/manager]
        who = urllib.parse.unquote(parts[3])
        if len(parts) == 4:
            if who != "alice@contoso.com" or "$select" not in req.query:
                return 404, {"error": {"code": "Request_ResourceNotFound"}}
            return 200, {"id": "obj-alice", "displayName": "Alice Doe",
                         "userPrincipalName": who, "mail": who, "accountEnabled": True,
                         "department": "Finance", "jobTitle": "Analyst",
                         "lastPasswordChangeDateTime": "2025-06-01T00:00:00Z"}
        if parts[4] == "memberOf":
            return 200, {"value": [{"displayName": "GlobalAdmins"}]}
        return 404, {"error": {"code": "Request_ResourceNotFound"}}  # no manager


def seen(needle):
    """Requests whose path (query included) contains needle."""
    with STANDIN.lock:
        return sum(1 for r in STANDIN.requests if needle in r.path)


# ---- fixture ---------------------------------------------------------------------------------

PROVIDERS = Providers()
STANDIN = StandIn(PROVIDERS.handle)
KEY = fernet_key()
STACK = None


def configure_providers(stack):
    base = STANDIN.url
    for old, new in (("https://www.virustotal.com", base + "/vt"),
                     ("https://api.abuseipdb.com", base + "/abuse"),
                     ("https://{{auth.domain}}", base + "/okta"),
                     ("https://login.microsoftonline.com", base + "/entra"),
                     ("https://graph.microsoft.com/v1.0", base + "/graph/v1.0")):
        stack.sql("UPDATE enrichment_providers SET http_config = replace(http_config::text, '%s', '%s')::jsonb"
                  % (old, new))
    # AbuseIPDB answers within 2 s or not at all (the hanging stand-in takes 8)
    stack.sql("UPDATE enrichment_providers SET http_config = jsonb_set(http_config, '{steps,0,timeout_seconds}', '2') "
              "WHERE provider_name = 'abuseipdb'")
    creds = {
        "virustotal": {"api_key": VT_KEY},
        "abuseipdb": {"api_key": ABUSE_KEY},
        "okta": {"api_token": OKTA_TOKEN, "domain": "contoso.okta.com"},
        "entra": {"tenant_id": "tenant-123", "client_id": "client-abc", "client_secret": ENTRA_SECRET},
    }
    for name, c in creds.items():
        tok = fernet_encrypt(KEY, json.dumps(c).encode())  # json.dumps separators, as the original
        stack.sql("UPDATE enrichment_providers SET auth_config = '%s'::jsonb WHERE provider_name = '%s'"
                  % (json.dumps({"_encrypted": tok}), name))


WORKER_ENV = {
    "ENCRYPTION_KEY": KEY,
    "ENRICHER_ALLOW_LOOPBACK": "true",
    "ENRICHER_POLL_INTERVAL_MS": "200",
    "ENRICH_JOB_DEADLINE_SECONDS": "60",
    "LOG_LEVEL": "DEBUG",
}


def setup():
    global STACK
    STACK = Stack("enricher", services=(), env=WORKER_ENV)
    configure_providers(STACK)
    # a pass-3 mapping: raw payload field -> indicator
    STACK.sql("INSERT INTO indicator_field_mappings (source_name, field_path, indicator_type, extraction_target, "
              "is_system, description) VALUES (NULL, 'detail.attacker.ip', 'ip', 'raw_payload', false, 'test')")


def new_alert(indicators, raw=None, title="test alert"):
    """Inserts an alert, its indicators and its job as the intake would; returns (alert_id, job_id)."""
    vals = ",".join("('%s','%s',now(),now())" % (t, v) for t, v in indicators) or None
    sql = "WITH "
    ids = "'{}'::bigint[]"
    if vals:  # the alert's links are the ids it holds (alerts.indicator_ids)
        sql += ("i AS (INSERT INTO indicators (type, value, first_seen, last_seen) VALUES %s "
                "ON CONFLICT (type, value) DO UPDATE SET last_seen = now() RETURNING id), " % vals)
        ids = "(SELECT array_agg(DISTINCT id ORDER BY id) FROM i)"
    sql += ("a AS (INSERT INTO alerts (title, severity, source_name, occurred_at, raw_payload, indicator_ids) "
            "SELECT '%s', 'High', 'generic', now(), '%s'::jsonb, %s RETURNING id)" % (title, json.dumps(raw or {}), ids))
    sql += " INSERT INTO enrichment_jobs (alert_id) SELECT id FROM a RETURNING alert_id, id"
    # the upsert locks the indicator rows a running worker may be writing in another order: a
    # deadlock the server breaks by failing this statement, which is then simply run again
    for attempt in range(5):
        try:
            row = STACK.sql(sql)[0]
            break
        except RuntimeError as e:
            if "deadlock detected" not in str(e) or attempt == 4:
                raise
            time.sleep(0.1)
    return int(row[0]), int(row[1])


def wait_job(job_id, status="done", timeout=30):
    try:
        wait_for(lambda: STACK.sql_value("SELECT status FROM enrichment_jobs WHERE id = %d"
                                         % job_id) == status, timeout, 0.1,
                 "job %d to be %s" % (job_id, status))
    except AssertionError as e:
        raise AssertionError("%s\n%s" % (e, STACK.logs()))


def indicator(t, v):
    row = STACK.sql("SELECT malice, is_enriched, enrichment_results::text FROM indicators "
                    "WHERE type = '%s' AND value = '%s'" % (t, v))
    assert row, "no indicator %s %s" % (t, v)
    return row[0][0], row[0][1], json.loads(row[0][2] or "null")


def start_worker(**env):
    p = STACK.start("enricher", env)
    return p


def stop_all_workers():
    for p in STACK.procs:
        if p.name == "enricher" and p.alive():
            rc = p.stop()
            assert_eq(rc, 0, "worker exit code\n" + p.text()[-3000:])


# ---- tests -----------------------------------------------------------------------------------

def test_enriches_all_providers():
    setup()
    alert, job = new_alert([("ip", "185.220.101.34"), ("domain", "evil-c2.com"),
                            ("account", "alice@contoso.com"), ("ip", "10.0.0.5")],
                           raw={"detail": {"attacker": {"ip": " 1.1.1.1 "}}})
    start_worker()
    wait_job(job)
    assert_eq(STACK.sql_value("SELECT enrichment_status || ' ' || is_enriched FROM alerts WHERE id = %d" % alert),
              "Enriched true")
    malice, enriched, res = indicator("ip", "185.220.101.34")
    assert_eq((malice, enriched), ("Malicious", "t"))
    vt = res["virustotal"]
    assert_eq((vt["status"], vt["success"], vt["provider_name"]), ("success", True, "virustotal"))
    assert_eq(vt["extracted"]["malicious_count"], 5)
    assert_eq(vt["extracted"]["asn"], 64500)
    assert_eq(vt["extracted"]["tags"], ["tor"])
    assert_eq(vt["extracted"]["malice"], "Malicious")
    assert_eq(vt["raw"]["data"]["id"], "185.220.101.34")
    ab = res["abuseipdb"]
    assert_eq(ab["extracted"]["abuse_confidence_score"], 100)
    assert_eq(ab["extracted"]["is_tor"], True)
    assert_eq(ab["extracted"]["malice"], "Malicious")
    # domain: suspicious by VT
    malice, _, res = indicator("domain", "evil-c2.com")
    assert_eq(malice, "Suspicious")
    assert_eq(res["virustotal"]["extracted"]["registrar"], "Example Registrar")
    # account: both identity providers, multi-step raw, no malice rules -> Pending
    malice, _, res = indicator("account", "alice@contoso.com")
    assert_eq(malice, "Pending")
    okta = res["okta"]
    assert_eq(okta["extracted"]["user_id"], "00u1alice")
    assert_eq(okta["extracted"]["department"], "Finance")
    assert_eq(sorted(okta["raw"].keys()), ["user_groups", "user_lookup", "user_manager"])
    entra = res["entra"]
    assert_eq(entra["status"], "success", entra)
    assert_eq(entra["extracted"]["display_name"], "Alice Doe")
    assert_eq(entra["extracted"]["account_enabled"], True)
    assert "user_manager" not in entra["raw"]  # optional step, 404 skipped
    # private IP: validation only, no provider called
    malice, _, res = indicator("ip", "10.0.0.5")
    assert_eq(list(res.keys()), ["_validation"])
    assert_eq(res["_validation"]["status"], "skipped")
    # pass 3: found in the raw payload, trimmed, linked and enriched
    malice, _, res = indicator("ip", "1.1.1.1")
    assert_eq(malice, "Benign")
    assert_eq(STACK.sql_value("SELECT count(*) FROM alert_indicators ai JOIN indicators i ON i.id = ai.indicator_id "
                              "WHERE ai.alert_id = %d" % alert), "5")
    # one completion event with the original's counters
    ev = json.loads(STACK.sql_value("SELECT \"references\"::text FROM activity_events WHERE alert_id = %d "
                                    "AND event_type = 'alert_enrichment_completed'" % alert))
    assert_eq(ev["indicator_count"], 5)
    assert_eq(ev["providers_failed"], 0)
    assert ev["providers_succeeded"] >= 6, ev
    # real request formats reached the stand-ins
    assert seen("/vt/api/v3/ip_addresses/185.220.101.34") == 1
    assert seen("/vt/api/v3/domains/evil-c2.com") == 1
    assert seen("/abuse/api/v2/check?ipAddress=185.220.101.34&maxAgeInDays=90") == 1
    assert seen("/okta/api/v1/users/alice%40contoso.com") == 1
    assert seen("/okta/api/v1/users/00u1alice/groups") == 1
    assert seen("/entra/tenant-123/oauth2/v2.0/token") == 1
    assert seen("/graph/v1.0/users/alice%40contoso.com?$select=") == 1
    assert seen("/10.0.0.5") == 0
    assert_eq(STACK.sql_value("SELECT count(*) FROM enrichment_cache"), "7")


def test_rerun_changes_nothing():
    alert = int(STACK.sql_value("SELECT min(id) FROM alerts"))
    snap_sql = ("SELECT i.id, i.type, i.value, i.malice, i.is_enriched, i.enrichment_results::text, "
                "i.updated_at, i.last_seen FROM indicators i JOIN alert_indicators ai ON ai.indicator_id = i.id "
                "WHERE ai.alert_id = %d ORDER BY i.id" % alert)
    alert_sql = ("SELECT enrichment_status, enriched_at, updated_at, is_enriched, "
                 "(SELECT count(*) FROM alert_activity WHERE alert_id = %d), "
                 "(SELECT count(*) FROM alert_indicators WHERE alert_id = %d) FROM alerts WHERE id = %d"
                 % (alert, alert, alert))
    before = (STACK.sql(snap_sql), STACK.sql(alert_sql))
    calls = len(STANDIN.requests)
    # a fresh worker (empty in-process cache) does the same job again: shared cache, no change
    stop_all_workers()
    start_worker()
    job = int(STACK.sql_value("INSERT INTO enrichment_jobs (alert_id) VALUES (%d) RETURNING id" % alert))
    wait_job(job)
    after = (STACK.sql(snap_sql), STACK.sql(alert_sql))
    assert_eq(after, before)
    assert_eq(len(STANDIN.requests), calls, "providers called again instead of the shared cache")


def test_429_then_200_is_retried():
    alert, job = new_alert([("ip", "9.9.9.9")])
    t0 = time.time()
    wait_job(job)
    assert time.time() - t0 >= 0.9, "Retry-After not honoured"
    assert_eq(seen("ipAddress=9.9.9.9&"), 2)
    malice, _, res = indicator("ip", "9.9.9.9")
    assert_eq(res["abuseipdb"]["status"], "success", res["abuseipdb"])
    assert_eq(res["abuseipdb"]["extracted"]["abuse_confidence_score"], 30)
    assert_eq(malice, "Suspicious")


def test_hanging_provider_times_out_others_complete():
    alert, job = new_alert([("ip", "45.33.32.156"), ("domain", "evil-c2.com")])
    t0 = time.time()
    wait_job(job, timeout=20)
    took = time.time() - t0
    assert took < 7, "job waited for the hanging provider (%.1fs)" % took
    malice, _, res = indicator("ip", "45.33.32.156")
    assert_eq(res["abuseipdb"]["status"], "failed")
    assert "abuseipdb" not in STACK.sql_value("SELECT string_agg(provider_name, ',') FROM enrichment_cache "
                                              "WHERE indicator_value = '45.33.32.156'") or ""
    assert_eq(res["virustotal"]["status"], "success")
    assert_eq(malice, "Benign")
    ev = json.loads(STACK.sql_value("SELECT \"references\"::text FROM activity_events WHERE alert_id = %d "
                                    "AND event_type = 'alert_enrichment_completed'" % alert))
    assert_eq(ev["providers_failed"], 1)


def test_hostile_provider_bodies():
    alert, job = new_alert([("ip", "7.7.7.7"), ("ip", "6.6.6.6")])
    wait_job(job)
    _, _, res = indicator("ip", "7.7.7.7")
    assert_eq(res["virustotal"]["status"], "failed")
    assert "larger than" in res["virustotal"]["error_message"], res["virustotal"]
    _, _, res = indicator("ip", "6.6.6.6")
    vt = res["virustotal"]
    assert_eq(vt["status"], "success")
    assert "asn" not in vt["extracted"]  # "AS-not-a-number" does not coerce to int
    assert_eq(vt["extracted"]["malice"], "Benign")  # "lots" > 0 is no match
    ab = res["abuseipdb"]
    assert_eq(ab["status"], "success")
    assert "_raw_text" in ab["raw"]
    assert "\u0000" not in ab["raw"]["_raw_text"]
    workers = [p for p in STACK.procs if p.name == "enricher"]
    assert all(p.p.returncode in (None, 0) for p in workers), "a worker died"
    assert any(p.alive() for p in workers)


def change_providers(sql):
    """Runs sql and waits until every running worker has reloaded its providers (NOTIFY)."""
    workers = [p for p in STACK.procs if p.name == "enricher" and p.alive()]
    before = [p.text().count("providers reloaded") for p in workers]
    STACK.sql(sql)
    wait_for(lambda: all(p.text().count("providers reloaded") > n for p, n in zip(workers, before)),
             15, what="every worker to reload its providers")


def test_provider_concurrency_cap_and_reload():
    # a provider change reaches the running workers by NOTIFY: cap VirusTotal at 2 in flight
    change_providers("UPDATE enrichment_providers SET http_config = http_config || '{\"max_concurrency\": 2}' "
                     "WHERE provider_name = 'virustotal'")
    ips = ["31.13.0.%d" % i for i in range(1, 7)]
    alert, job = new_alert([("ip", ip) for ip in ips])
    wait_job(job)
    assert_eq(seen("/vt/api/v3/ip_addresses/31.13."), 6)
    assert PROVIDERS.slow_max <= 2, "cap not applied: %d in flight" % PROVIDERS.slow_max
    assert_eq(PROVIDERS.slow_max, 2)
    _, _, res = indicator("ip", "31.13.0.1")
    assert_eq(res["virustotal"]["extracted"], {"found": False, "malice": "Pending"})
    # deactivating a provider is picked up without a restart
    change_providers("UPDATE enrichment_providers SET is_active = false WHERE provider_name = 'abuseipdb'")
    alert, job = new_alert([("ip", "31.13.1.1")])
    wait_job(job)
    _, _, res = indicator("ip", "31.13.1.1")
    assert "abuseipdb" not in res and "virustotal" in res, res
    change_providers("UPDATE enrichment_providers SET is_active = true WHERE provider_name = 'abuseipdb'")


def test_kill9_mid_job_lease_taken_over():
    stop_all_workers()
    w1 = start_worker(ENRICH_JOB_LEASE_SECONDS=2)
    asked = seen("/vt/api/v3/ip_addresses/93.184.216.34")
    alert, job = new_alert([("ip", "93.184.216.34")])  # VT answers after 3 s
    wait_job(job, status="running")
    owner1 = STACK.sql_value("SELECT lease_owner FROM enrichment_jobs WHERE id = %d" % job)
    # the kill lands while the worker waits for VirusTotal's answer
    wait_for(lambda: seen("/vt/api/v3/ip_addresses/93.184.216.34") > asked, 10,
             what="the worker's request to VirusTotal")
    w1.p.kill()
    w1.p.wait()
    assert_eq(STACK.sql_value("SELECT status FROM enrichment_jobs WHERE id = %d" % job), "running")
    start_worker(ENRICH_JOB_LEASE_SECONDS=2)
    wait_job(job, timeout=30)
    row = STACK.sql("SELECT attempts, lease_owner IS NULL FROM enrichment_jobs WHERE id = %d" % job)[0]
    assert_eq(row, ["2", "t"])
    assert_eq(STACK.sql_value("SELECT enrichment_status FROM alerts WHERE id = %d" % alert), "Enriched")
    _, _, res = indicator("ip", "93.184.216.34")
    assert_eq(res["virustotal"]["status"], "success")
    assert owner1
    assert_eq(STACK.sql_value("SELECT count(*) FROM activity_events WHERE alert_id = %d "
                              "AND event_type = 'alert_enrichment_completed'" % alert), "1")


def test_many_jobs_two_workers():
    start_worker()
    jobs = [new_alert([("ip", "1.1.1.1"), ("domain", "evil-c2.com")], title="bulk %d" % i)[1] for i in range(30)]
    for j in jobs:
        wait_job(j)
    assert_eq(STACK.sql_value("SELECT count(*) FROM activity_events e JOIN enrichment_jobs j ON j.alert_id = e.alert_id "
                              "WHERE e.event_type = 'alert_enrichment_completed' AND j.id IN (%s)"
                              % ",".join(map(str, jobs))), "30")


def test_sigterm_drains_job_in_flight():
    stop_all_workers()
    STACK.sql("DELETE FROM enrichment_cache WHERE indicator_value = '93.184.216.34'")
    w = start_worker()
    alert, job = new_alert([("ip", "93.184.216.34")])
    wait_job(job, status="running")
    w.p.send_signal(signal.SIGTERM)
    rc = w.p.wait(30)
    assert_eq(rc, 0, w.text()[-2000:])
    assert_eq(STACK.sql_value("SELECT status FROM enrichment_jobs WHERE id = %d" % job), "done")


def test_failed_batch_completed_one_by_one():
    """A completing statement for several jobs that fails sends each job again on its own; the
    worker keeps running and a job that fails alone is released."""
    stop_all_workers()
    # every completion of a 'poison' alert fails, after holding its statement long enough for the
    # other finished jobs to queue up behind it and go out as one batch
    STACK.sql("CREATE OR REPLACE FUNCTION t_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
              "IF NEW.title LIKE 'poison%' THEN PERFORM pg_sleep(0.3); "
              "RAISE EXCEPTION 'poisoned alert %', NEW.id; END IF; RETURN NEW; END $$")
    STACK.sql("CREATE TRIGGER t_poison BEFORE UPDATE ON alerts FOR EACH ROW EXECUTE FUNCTION t_poison()")
    try:
        jobs = [new_alert([("ip", "1.1.1.1")], title="poison %d" % i)[1] for i in range(6)]
        w = start_worker(ENRICHER_DB_CONNECTIONS="2")
        wait_for(lambda: re.search(r"completing [2-9] jobs failed", w.text()), 30, 0.1,
                 "a batch of several jobs to fail")
        wait_for(lambda: w.text().count("poisoned alert") >= 7, 30, 0.1,
                 "each job of the batch to be tried on its own")
        assert w.alive(), w.text()[-3000:]
    finally:
        STACK.sql("DROP TRIGGER t_poison ON alerts")
    # the same worker goes on: released jobs are taken again (up to their attempt cap) and a
    # new job completes
    wait_for(lambda: STACK.sql_value("SELECT count(*) FROM enrichment_jobs WHERE id IN (%s) AND status IN "
                                     "('done', 'failed')" % ",".join(map(str, jobs))) == "6", 30, 0.1,
             "the poisoned jobs to be finished")
    _, job = new_alert([("ip", "1.1.1.1")], title="after poison")
    wait_job(job)
    assert w.alive(), w.text()[-3000:]
    stop_all_workers()


def test_loopback_blocked_without_test_setting():
    stop_all_workers()
    STACK.sql("DELETE FROM enrichment_cache")
    w = start_worker(ENRICHER_ALLOW_LOOPBACK="false")
    alert, job = new_alert([("ip", "8.8.4.4")])
    wait_job(job)
    _, _, res = indicator("ip", "8.8.4.4")
    assert_eq(res["virustotal"]["status"], "failed")
    assert "SSRF" in res["virustotal"]["error_message"], res["virustotal"]
    assert_eq(seen("8.8.4.4"), 0)
    assert_eq(w.stop(), 0)


def test_mock_mode():
    stop_all_workers()
    w = start_worker(ENRICHMENT_MOCK_MODE="true")
    alert, job = new_alert([("ip", "2.2.2.2"), ("account", "nobody@contoso.com"), ("hash_md5", "d41d8cd98f00b204e9800998ecf8427e")])
    wait_job(job)
    malice, _, res = indicator("ip", "2.2.2.2")
    assert_eq(malice, "Malicious")
    assert_eq(res["virustotal"]["extracted"]["malicious_count"], 14)
    assert_eq(res["abuseipdb"]["extracted"]["is_tor"], True)
    _, _, res = indicator("account", "nobody@contoso.com")
    assert_eq(res["okta"]["extracted"]["login"], "j.martinez@contoso.com")  # static per type, as the original
    assert_eq(res["entra"]["extracted"]["malice"], "Pending")
    malice, _, res = indicator("hash_md5", "d41d8cd98f00b204e9800998ecf8427e")
    assert_eq((malice, res["virustotal"]["extracted"]["meaningful_name"]), ("Malicious", "svchost_update.exe"))
    assert_eq(seen("2.2.2.2"), 0)
    assert_eq(seen("nobody"), 0)
    assert_eq(w.stop(), 0)


def test_bad_encryption_key_is_a_startup_error():
    for key in ("", "short", fernet_key()):
        p = start_worker(ENCRYPTION_KEY=key)
        try:
            p.p.wait(15)
        except subprocess.TimeoutExpired:
            p.p.kill()
            raise AssertionError("worker with ENCRYPTION_KEY=%r kept running" % key)
        assert p.p.returncode != 0
        assert "ENCRYPTION_KEY" in p.text(), p.text()[-2000:]


def test_credentials_never_logged():
    stop_all_workers()
    texts = [p.text() for p in STACK.procs]
    spool = os.path.join(STACK.data_dir, "spool")
    spooled = ""
    for root, _, files in os.walk(spool):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                spooled += fh.read().decode("latin-1")
    for s in SECRETS + [ENTRA_TOKEN, KEY]:
        for t in texts:
            assert s not in t, "secret in a worker log"
        assert s not in spooled, "secret in the audit spool"
    assert "credentials_decrypted" in spooled, "no credentials_decrypted audit event"


def test_pipeline_intake_jobbus_worker():
    """The real path: ingest over HTTP -> commit -> JOB_READY through calseta-jobbus -> worker.
    The worker's poll is 60 s, so a quick completion can only come from the bus message."""
    env = dict(WORKER_ENV, ENRICHER_POLL_INTERVAL_MS="60000")
    s = Stack("enricher_pipeline", services=(), env=env)
    try:
        configure_providers(s)
        s.start("jobbus")
        w = s.start("enricher")
        wait_for(lambda: "providers loaded" in w.text(), 10, what="the worker's providers")
        # past the worker's first (start-up) poll, which finds no job and leaves no trace to
        # wait for: a job it found would not prove the bus path
        time.sleep(0.3)
        s.start_intake()
        s.wait_healthy()
        k = s.create_key("alerts:write,alerts:read")
        r = s.request("POST", "/v1/alerts", key=k, body={"source_name": "generic", "payload": {
            "title": "Tor login", "severity": "high", "src_ip": "185.220.101.34"}})
        assert_eq(r.status, 202, r)
        uuid = r.json()["data"]["alert_uuid"]
        try:
            wait_for(lambda: s.sql_value("SELECT enrichment_status FROM alerts WHERE uuid = '%s'"
                                         % uuid) == "Enriched", 10, 0.1, "the alert to be enriched")
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, s.logs()))
        assert_eq(s.sql_value("SELECT malice FROM indicators WHERE type = 'ip' AND value = '185.220.101.34'"),
                  "Malicious")
    finally:
        s.stop()


if __name__ == "__main__":
    from enricher_stack import main
    main(globals(), STANDIN)
