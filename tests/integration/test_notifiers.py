"""Approval notifications (Slack and Teams, as the original sends them) against a real intake,
workflowd (which sends them), runner, auditd and PostgreSQL, with local stand-ins for Slack's
Web API (chat.postMessage / chat.update) and a Teams incoming webhook: the approval message (Block Kit / Adaptive Card) and its decide link, the
stored Slack ts, chat.update after a Slack decision, the result message after an approved run
and none after a rejection, retries ({"ok":false}, 500), an unreachable or SSRF-blocked API,
APPROVAL_NOTIFIER=none, secrets kept out of logs and audit events, and a clean stop of
workflowd with a retry pending."""
import base64
import hashlib
import hmac
import json
import os
import re
import time
import urllib.parse

from harness import Stack, assert_eq, free_port, run_tests, wait_for
from standin import StandIn

SERVICES = ("auditd", "runner", "workflowd", "intake")
SLACK_SECRET = "1b2c3d4e5f60718293a4b5c6d7e8f901"
BOT_TOKEN = "xoxb-111-222-notifiertesttoken"
TEAMS_SECRET = "sig-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
BASE = "https://calseta.example"

OK_CODE = ("from calseta.workflows import WorkflowResult\n"
           "async def run(ctx):\n"
           "    return WorkflowResult.ok('done for ' + ctx.indicator.value)\n")
FAIL_CODE = ("from calseta.workflows import WorkflowResult\n"
             "async def run(ctx):\n"
             "    return WorkflowResult.fail('could not do it')\n")


class SlackTeams(StandIn):
    """Slack Web API + Teams webhook on one loopback port. `script` holds the answers of the
    next requests as (status, body); when empty Slack answers ok with a fresh ts."""

    def __init__(self):
        self.script = []
        super().__init__(self.answer)

    def answer(self, req):
        with self.lock:
            scripted = self.script.pop(0) if self.script else None
        if scripted:
            return scripted[0], scripted[1], {"Content-Type": "application/json"}
        if req.path.startswith("/teams/"):
            return 200, "1", {"Content-Type": "application/json"}
        if req.headers.get("authorization") != "Bearer " + BOT_TOKEN:
            return 200, {"ok": False, "error": "invalid_auth"}
        return 200, {"ok": True, "channel": "C0TESTCHAN", "ts": "1700000000.%06d" % req.seq}

    def wait(self, path, count, timeout=20):
        def enough():
            got = self.of(path)
            return got if len(got) >= count else None
        try:
            return wait_for(enough, timeout, 0.1, "%d requests to %s" % (count, path))
        except AssertionError as e:
            raise AssertionError("%s; got %d: %r" % (e, len(self.of(path)), self.requests))



def slack_env(si, **extra):
    env = {"APPROVAL_NOTIFIER": "Slack", "SLACK_BOT_TOKEN": BOT_TOKEN,
           "SLACK_API_URL": "http://localhost:%d/api/" % si.port,
           "SLACK_SIGNING_SECRET": SLACK_SECRET, "SSRF_ALLOWED_HOSTS": "localhost",
           "CALSETA_BASE_URL": BASE + "/", "NOTIFIER_RETRY_SECONDS": "1",
           "APPROVAL_DEFAULT_CHANNEL": "C0DEFAULT"}
    env.update(extra)
    return env


def create(s, k, code=OK_CODE, **kw):
    b = {"name": "Block user", "code": code, "state": "active", "approval_mode": "always",
         "timeout_seconds": 10, "indicator_types": ["ip"], "risk_level": "high"}
    b.update(kw)
    r = s.request("POST", "/v1/workflows", key=k, body=b)
    assert_eq(r.status, 201, r.body)
    return r.json()["data"]["uuid"]


def add_indicator(s, value):
    s.sql("INSERT INTO indicators (type, value, first_seen, last_seen, malice) VALUES "
          "('ip', '%s', now(), now(), 'Pending') ON CONFLICT DO NOTHING" % value.replace("'", "''"))


def execute(s, k, u, value="198.51.100.7", **extra):
    body = {"indicator_type": "ip", "indicator_value": value}
    body.update(extra)
    r = s.request("POST", "/v1/workflows/%s/execute" % u, key=k, body=body)
    assert_eq(r.status, 202, r.body)
    d = r.json()["data"]
    assert_eq(d["status"], "pending_approval", d)
    return d["approval_request_uuid"]


def approval_row(s, a):
    rows = s.sql("SELECT status, notifier_type, coalesce(notifier_channel, ''), "
                 "coalesce(external_message_id, ''), decide_token FROM workflow_approval_requests "
                 "WHERE uuid = '%s'" % a)
    return rows[0]


def slack_callback(s, action, user="U0APPROVER"):
    body = "payload=" + urllib.parse.quote(json.dumps(
        {"type": "block_actions", "actions": [{"action_id": action}], "user": {"id": user}}))
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(SLACK_SECRET.encode(), ("v0:%s:%s" % (ts, body)).encode(),
                           hashlib.sha256).hexdigest()
    r = s.request("POST", "/v1/approvals/callback/slack", body=body,
                  headers={"Content-Type": "application/x-www-form-urlencoded",
                           "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})
    assert_eq(r.status, 200, r.body)


def decide_link_works(s, url, a):
    """The decide link, taken to this stack, opens the pending page with its token."""
    assert url.startswith(BASE + "/v1/approvals/%s/decide?token=" % a), url
    path = url[len(BASE):]
    r = s.request("GET", path)
    assert_eq(r.status, 200, r.body)
    assert b"Approve" in r.body and b"Reject" in r.body, r.body
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]
    assert_eq(token, approval_row(s, a)[4])
    bad = s.request("GET", path[:-2] + ("AA" if not path.endswith("AA") else "BB"))
    assert_eq(bad.status, 403)


def no_secrets_leaked(s, *secrets):
    logs = s.logs() + "".join(p.text() for p in s.procs)
    audit = json.dumps(s.sql("SELECT event_type, fields::text FROM audit_events"))
    for x in secrets:
        assert x and x not in logs, "secret in a log"
        assert x not in audit, "secret in an audit event"


def blocks_of(rec):
    return rec.json()["blocks"]


def test_slack_request_decision_result():
    si = SlackTeams()
    s = Stack("notif_slack", services=SERVICES, env=slack_env(si))
    try:
        k = s.create_key("admin")
        nasty = "10.0.0.1<@U0BOSS>&"
        esc = "10.0.0.1&lt;@U0BOSS&gt;&amp;"
        add_indicator(s, nasty)
        u = create(s, k, approval_channel="#sec-approvals")
        reason = "<!channel> see <https://evil.example|here> & " + "é" * 1900
        a = execute(s, k, u, value=nasty, reason=reason, confidence=0.87)
        post = si.wait("/api/chat.postMessage", 1)[0]
        h = post.headers
        assert_eq(h.get("authorization"), "Bearer " + BOT_TOKEN)
        assert h.get("content-type", "").startswith("application/json"), h
        m = post.json()
        assert_eq(m["channel"], "#sec-approvals")
        bl = m["blocks"]
        assert_eq(bl[0]["type"], "header")
        assert_eq(bl[0]["text"]["text"], "[HIGH] Workflow Approval: Block user")
        fields = " ".join(f["text"] for f in bl[1]["fields"])
        for want in ("*Indicator:*\nip: " + esc, "*Trigger:*\nhuman", "*Confidence:*\n87%",
                     "*Expires:*\n"):
            assert want in fields, fields
        rtext = bl[2]["text"]["text"]
        assert rtext.startswith("*Reason:*\n&lt;!channel&gt; see &lt;https://evil.example|here&gt; &amp; "), rtext
        assert "<!channel>" not in post.body.decode() and len(rtext.encode()) < 3000, len(rtext)
        rtext.encode("utf-8")  # cut on a character boundary (json.loads already refused bad UTF-8)
        acts = [b for b in bl if b["type"] == "actions"]
        assert_eq(len(acts), 1)
        assert_eq(acts[0]["block_id"], "approval:" + a)
        els = acts[0]["elements"]
        assert_eq([(e["text"]["text"], e["style"], e["action_id"]) for e in els],
                  [("Approve", "primary", "approve:" + a), ("Reject", "danger", "reject:" + a)])
        ctx = [b for b in bl if b["type"] == "context"][0]["elements"][0]["text"]
        url = re.match(r"^<([^|>]+)\|", ctx).group(1)
        decide_link_works(s, url, a)
        # the ts and the channel id are stored, notifier_type says slack
        row = wait_for(lambda: (lambda r: r if r[3] else None)(approval_row(s, a)), what="stored ts")
        assert_eq(row[:4], ["pending", "slack", "C0TESTCHAN", "1700000000.%06d" % post.seq])
        api = s.request("GET", "/v1/workflow-approvals/" + a, key=k).json()["data"]
        assert_eq((api["notifier_type"], api["external_message_id"]), ("slack", row[3]))

        # approve from Slack: chat.update replaces the buttons, then the result is posted
        slack_callback(s, "approve:" + a)
        upd = si.wait("/api/chat.update", 1)[0]
        assert_eq(upd.headers.get("authorization"), "Bearer " + BOT_TOKEN)
        um = upd.json()
        assert_eq((um["channel"], um["ts"]), ("C0TESTCHAN", row[3]))
        assert not [b for b in um["blocks"] if b["type"] == "actions"], um
        assert "decide?token=" not in upd.body.decode()
        out = [b for b in um["blocks"] if b.get("block_id") == "approval:" + a][0]["text"]["text"]
        assert "*Approved* by <@U0APPROVER>" in out, out
        res = si.wait("/api/chat.postMessage", 2)[1].json()
        assert_eq((res["channel"], res["thread_ts"]), ("C0TESTCHAN", row[3]))
        rt = res["blocks"][0]["text"]["text"]
        assert "finished: *success*" in rt and "done for " + esc in rt, rt
        # approvals decided elsewhere update the message too; a rejection sends no result
        b = execute(s, k, u, value=nasty)
        si.wait("/api/chat.postMessage", 3)
        wait_for(lambda: approval_row(s, b)[3], what="stored ts of b")
        slack_callback(s, "reject:" + b, user="U0REJECTER")
        upd2 = si.wait("/api/chat.update", 2)[1].json()
        out2 = [x for x in upd2["blocks"] if x.get("block_id") == "approval:" + b][0]["text"]["text"]
        assert "*Rejected* by <@U0REJECTER>" in out2, out2
        c = execute(s, k, u, value=nasty)
        si.wait("/api/chat.postMessage", 4)
        wait_for(lambda: approval_row(s, c)[3], what="stored ts of c")
        r = s.request("POST", "/v1/workflow-approvals/%s/reject" % c, key=k, body={})
        assert_eq(r.status, 200, r.body)
        upd3 = si.wait("/api/chat.update", 3)[2].json()
        assert "*Rejected* by " in json.dumps(upd3), upd3
        # what must not happen has no event to wait for: the sleep is the window it is watched in
        time.sleep(2.5)
        assert_eq(len(si.of("/api/chat.postMessage")), 4)  # no result after rejections
        # a decision on an already decided request changes nothing
        slack_callback(s, "approve:" + b)
        time.sleep(1)  # the window in which no update may follow (nothing to wait for)
        assert_eq(len(si.of("/api/chat.update")), 3)
        ev = s.sql("SELECT fields->>'kind', fields->>'notifier' FROM audit_events "
                   "WHERE event_type = 'approval_notification_sent'")
        assert ["approval_request", "slack"] in ev and ["result", "slack"] in ev, ev
        no_secrets_leaked(s, BOT_TOKEN, approval_row(s, a)[4], approval_row(s, b)[4])
    finally:
        s.stop()
        si.close()


def test_slack_retries():
    si = SlackTeams()
    si.script = [(200, {"ok": False, "error": "ratelimited"}), (500, "oops")]
    s = Stack("notif_retry", services=SERVICES, env=slack_env(si))
    try:
        k = s.create_key("admin")
        add_indicator(s, "198.51.100.7")
        u = create(s, k)
        a = execute(s, k, u)
        posts = si.wait("/api/chat.postMessage", 3, timeout=30)
        assert_eq(posts[0].json()["channel"], "C0DEFAULT")  # APPROVAL_DEFAULT_CHANNEL
        assert_eq(posts[0].body, posts[2].body)
        row = wait_for(lambda: (lambda r: r if r[3] else None)(approval_row(s, a)), what="stored ts")
        assert_eq(row[3], "1700000000.%06d" % posts[2].seq)
        log = s.proc("workflowd").text()
        assert log.count("approval_notification_attempt_failed") == 2, log[-3000:]
        assert "slack: ratelimited" in log and "HTTP 500" in log
        # every attempt fails: three tries, then the failure is audited; the request stays usable
        si.script = [(500, "x"), (200, {"ok": False, "error": "channel_not_found"}), (503, "x")]
        b = execute(s, k, u)
        si.wait("/api/chat.postMessage", 6, timeout=30)
        wait_for(lambda: s.sql_value("SELECT count(*) FROM audit_events WHERE event_type = "
                                     "'approval_notification_failed'") == "1", what="failure audit")
        f = json.loads(s.sql_value("SELECT fields::text FROM audit_events WHERE event_type = "
                                   "'approval_notification_failed'"))
        assert_eq((f["approval_uuid"], f["attempts"], f["error"]), (b, 3, "HTTP 503"))
        time.sleep(1.5)  # the window in which no fourth attempt may come (nothing to wait for)
        assert_eq(len(si.of("/api/chat.postMessage")), 6)
        assert_eq(approval_row(s, b)[:2], ["pending", "slack"])
        assert_eq(s.request("POST", "/v1/workflow-approvals/%s/approve" % b, key=k, body={}).status, 200)
        # a wrong token is Slack's invalid_auth: failed, and the token is in no log
        no_secrets_leaked(s, BOT_TOKEN)
    finally:
        s.stop()
        si.close()


def test_slack_unreachable_and_ssrf():
    dead = free_port()
    si = SlackTeams()
    s = Stack("notif_down", services=SERVICES,
              env=slack_env(si, SLACK_API_URL="http://localhost:%d/api" % dead))
    # same stand-in, but loopback is not allowlisted: the SSRF guard stops it
    s2 = Stack("notif_ssrf", services=SERVICES, env=slack_env(si, SSRF_ALLOWED_HOSTS=""))
    try:
        for st in (s, s2):
            k = st.create_key("admin")
            add_indicator(st, "198.51.100.7")
            u = create(st, k)
            t0 = time.time()
            a = execute(st, k, u)
            assert time.time() - t0 < 5
            wait_for(lambda: "approval_notification_failed" in st.proc("workflowd").text(),
                     what="final failure", timeout=30)
            assert_eq(approval_row(st, a)[:4], ["pending", "slack", "", ""])
            ap = st.request("GET", "/v1/workflow-approvals/" + a, key=k).json()["data"]
            assert_eq(ap["status"], "pending")
            r = st.request("POST", "/v1/workflow-approvals/%s/approve" % a, key=k, body={})
            assert_eq(r.status, 200, r.body)
            no_secrets_leaked(st, BOT_TOKEN, approval_row(st, a)[4])
        assert "blocked by SSRF protection" in s2.proc("workflowd").text()
        assert "Couldn't connect" in s.proc("workflowd").text() or "connect" in s.proc("workflowd").text()
        assert_eq(si.requests, [])
    finally:
        s.stop()
        s2.stop()
        si.close()


def test_teams_cards():
    si = SlackTeams()
    hook = "/teams/webhook/" + TEAMS_SECRET
    s = Stack("notif_teams", services=SERVICES,
              env={"APPROVAL_NOTIFIER": "TEAMS", "TEAMS_WEBHOOK_URL": "http://localhost:%d%s" % (si.port, hook),
                   "SSRF_ALLOWED_HOSTS": "localhost", "CALSETA_BASE_URL": BASE,
                   "NOTIFIER_RETRY_SECONDS": "1", "SLACK_BOT_TOKEN": BOT_TOKEN})
    try:
        k = s.create_key("admin")
        add_indicator(s, "198.51.100.7")
        u = create(s, k, risk_level="critical")
        a = execute(s, k, u, reason="suspicious", confidence=0.5)
        rec = si.wait(hook, 1)[0]
        assert rec.headers.get("content-type", "").startswith("application/json")
        assert "authorization" not in rec.headers
        m = rec.json()
        assert_eq(m["type"], "message")
        att = m["attachments"][0]
        assert_eq(att["contentType"], "application/vnd.microsoft.card.adaptive")
        card = att["content"]
        assert_eq((card["type"], card["version"]), ("AdaptiveCard", "1.4"))
        assert_eq(card["body"][0]["text"], "[CRITICAL] Workflow Approval: Block user")
        facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
        assert_eq((facts["Indicator"], facts["Confidence"]), ("ip: 198.51.100.7", "50%"))
        assert_eq([x["type"] for x in card["actions"]], ["Action.OpenUrl"] * 3)
        assert_eq([x["title"] for x in card["actions"]],
                  ["Review & Decide", "Approve via API", "Reject via API"])
        decide_link_works(s, card["actions"][0]["url"], a)
        assert_eq(card["actions"][1]["url"], BASE + "/v1/workflow-approvals/%s/approve" % a)
        assert_eq(card["actions"][2]["url"], BASE + "/v1/workflow-approvals/%s/reject" % a)
        wait_for(lambda: approval_row(s, a)[1] == "teams", what="notifier_type")
        # approve via the decide page: a result card, colour Good
        token = approval_row(s, a)[4]
        r = s.request("POST", "/v1/approvals/%s/decide" % a,
                      headers={"Content-Type": "application/x-www-form-urlencoded"},
                      body="token=%s&decision=approve" % token)
        assert_eq(r.status, 200, r.body)
        res = si.wait(hook, 2)[1].json()["attachments"][0]["content"]
        assert_eq((res["body"][0]["color"], res["body"][0]["text"]),
                  ("Good", "[CRITICAL] Workflow Result: Block user"))
        assert "done for 198.51.100.7" in json.dumps(res)
        # a failing workflow: Attention; a rejection: nothing
        f = create(s, k, code=FAIL_CODE, name="Fails")
        b = execute(s, k, f)
        si.wait(hook, 3)
        assert_eq(s.request("POST", "/v1/workflow-approvals/%s/approve" % b, key=k, body={}).status, 200)
        res2 = si.wait(hook, 4)[3].json()["attachments"][0]["content"]
        assert_eq(res2["body"][0]["color"], "Attention")
        assert "could not do it" in json.dumps(res2)
        c = execute(s, k, f)
        si.wait(hook, 5)
        assert_eq(s.request("POST", "/v1/workflow-approvals/%s/reject" % c, key=k, body={}).status, 200)
        time.sleep(2.5)  # the window in which no result card may follow the rejection
        assert_eq(len(si.requests), 5)
        no_secrets_leaked(s, TEAMS_SECRET, token)
    finally:
        s.stop()
        si.close()


def test_none_sends_nothing():
    si = SlackTeams()
    base = slack_env(si)
    s = Stack("notif_none", services=SERVICES, env=dict(base, APPROVAL_NOTIFIER="none"))
    s2 = Stack("notif_bogus", services=SERVICES, env=dict(base, APPROVAL_NOTIFIER="carrier-pigeon"))
    try:
        for st in (s, s2):
            k = st.create_key("admin")
            add_indicator(st, "198.51.100.7")
            u = create(st, k)
            a = execute(st, k, u)
            slack_callback(st, "approve:" + a)
            wait_for(lambda: st.sql_value("SELECT r.status FROM workflow_runs r JOIN "
                                          "workflow_approval_requests a ON a.workflow_run_id = r.id "
                                          "WHERE a.uuid = '%s'" % a) in ("success", "failed"),
                     what="run finished")
            assert_eq(approval_row(st, a)[1], "none")
        time.sleep(1)  # the window in which nothing may be sent (nothing to wait for)
        assert_eq(si.requests, [])
        assert "APPROVAL_NOTIFIER=carrier-pigeon is not one of none, slack, teams" in s2.proc("workflowd").text()
    finally:
        s.stop()
        s2.stop()
        si.close()


def test_stop_with_retry_pending():
    si = SlackTeams()
    si.script = [(500, "down")]
    s = Stack("notif_stop", services=SERVICES, env=slack_env(si, NOTIFIER_RETRY_SECONDS="600"))
    try:
        k = s.create_key("admin")
        add_indicator(s, "198.51.100.7")
        u = create(s, k)
        execute(s, k, u)
        si.wait("/api/chat.postMessage", 1)
        wait_for(lambda: "approval_notification_attempt_failed" in s.proc("workflowd").text(), what="1st failure")
        t0 = time.time()
        rc = s.proc("workflowd").stop()
        assert_eq(rc, 0, s.proc("workflowd").text()[-3000:])
        assert time.time() - t0 < 10, time.time() - t0
        assert "approval_notification_abandoned" in s.proc("workflowd").text()
    finally:
        s.stop()
        si.close()


if __name__ == "__main__":
    run_tests(globals())
