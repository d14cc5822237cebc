// mcp_sdk_check.mjs - drives the Calseta MCP server with the official TypeScript SDK over one
// transport (argv: base URL, transport "streamable"|"sse", then a JSON file of fixtures made by
// test_mcp_sdk.py). Prints one JSON line per check; exits non-zero on the first failure.
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";

const [base, kind, fixturesPath] = process.argv.slice(2);
const fx = JSON.parse(readFileSync(fixturesPath, "utf8"));

function fail(msg, extra) {
  console.log(JSON.stringify({ ok: false, msg, extra }));
  process.exit(1);
}
function check(cond, msg, extra) {
  if (!cond) fail(msg, extra);
  console.log(JSON.stringify({ ok: true, msg }));
}

async function connect(key) {
  const headers = { Authorization: `Bearer ${key}` };
  const transport =
    kind === "sse"
      ? new SSEClientTransport(new URL(base + "/sse"), {
          requestInit: { headers },
          eventSourceInit: {
            fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers || {}), ...headers } }),
          },
        })
      : new StreamableHTTPClientTransport(new URL(base + "/mcp"), { requestInit: { headers } });
  const client = new Client({ name: "calseta-sdk-test", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

async function expectReject(p, msg) {
  try {
    await p;
  } catch (e) {
    check(true, msg);
    return e;
  }
  fail(msg + ": no error");
}

const text = (r) => r.content[0].text;
const parse = (r) => JSON.parse(text(r));

async function main() {
  const c = await connect(fx.admin);
  check(c.getServerVersion().name === "Calseta", "serverInfo");
  check((c.getInstructions() || "").includes("post_alert_finding"), "instructions");

  const tools = (await c.listTools()).tools.map((t) => t.name).sort();
  check(
    JSON.stringify(tools) ===
      JSON.stringify([
        "enrich_indicator", "execute_workflow", "post_alert_finding", "search_alerts",
        "search_detection_rules", "update_alert_malice", "update_alert_status", "update_indicator_malice",
      ]),
    "tools/list", tools
  );
  const res = (await c.listResources()).resources.map((r) => r.uri).sort();
  check(res.length === 5 && res.includes("calseta://alerts"), "resources/list", res);
  const tpl = (await c.listResourceTemplates()).resourceTemplates.map((r) => r.uriTemplate);
  check(tpl.length === 7 && tpl.includes("calseta://enrichments/{type}/{value}"), "templates", tpl);

  // Every resource.
  const read = async (uri) => JSON.parse((await c.readResource({ uri })).contents[0].text);
  const alerts = await read("calseta://alerts");
  check(alerts.count >= 1 && alerts.alerts.some((a) => a.uuid === fx.alert), "calseta://alerts", alerts);
  const one = await read(`calseta://alerts/${fx.alert}`);
  check(one.uuid === fx.alert && Array.isArray(one.indicators), "alert detail", one);
  check(one.detection_rule && one.detection_rule.name === "Brute force", "alert rule", one.detection_rule);
  check(one.context_documents.some((d) => d.title === "Global runbook"), "alert context docs", one.context_documents);
  const ctx = await read(`calseta://alerts/${fx.alert}/context`);
  check(ctx.count === ctx.context_documents.length && ctx.count >= 1, "alert context", ctx);
  const act = await read(`calseta://alerts/${fx.alert}/activity`);
  check(Array.isArray(act.activity), "alert activity", act);
  const rules = await read("calseta://detection-rules");
  check(rules.detection_rules.some((r) => r.uuid === fx.rule), "detection rules", rules);
  const rule = await read(`calseta://detection-rules/${fx.rule}`);
  check(rule.name === "Brute force" && rule.documentation.length > 200, "detection rule", rule);
  const docs = await read("calseta://context-documents");
  check(docs.count >= 1 && !("content" in docs.context_documents[0]), "context documents", docs);
  const doc = await read(`calseta://context-documents/${fx.doc}`);
  check(doc.content === "Escalate brute force.", "context document", doc);
  const wfs = await read("calseta://workflows");
  check(wfs.workflows.some((w) => w.uuid === fx.workflow) && !("code" in wfs.workflows[0]), "workflows", wfs);
  const wf = await read(`calseta://workflows/${fx.workflow}`);
  check(typeof wf.code === "string", "workflow", wf);
  const m = await read("calseta://metrics/summary");
  check(m.period === "last_30_days" && m.alerts.total >= 1 && "platform" in m, "metrics", m);
  const en = await read("calseta://enrichments/ip/10.0.0.1");
  check(en.type === "ip" && en.results._validation, "enrichment resource", en);
  await expectReject(c.readResource({ uri: "calseta://alerts/not-a-uuid" }), "invalid uuid resource");
  await expectReject(c.readResource({ uri: "calseta://alerts/00000000-0000-4000-8000-000000000000" }), "missing alert resource");
  await expectReject(c.readResource({ uri: "calseta://enrichments/bogus/x" }), "bad enrichment type");

  // Every tool, success and error.
  const call = (name, args) => c.callTool({ name, arguments: args });
  let r = await call("post_alert_finding", { alert_uuid: fx.alert, summary: "Looks like brute force", confidence: "high", recommended_action: "Block the IP" });
  check(!r.isError && parse(r).alert_uuid === fx.alert && parse(r).finding_id, "post_alert_finding", r);
  r = await call("post_alert_finding", { alert_uuid: fx.alert, summary: "x", confidence: "certain" });
  check(r.isError && text(r).includes("Invalid confidence"), "post_alert_finding bad confidence", r);
  r = await call("post_alert_finding", { alert_uuid: fx.alert, summary: "x".repeat(50001), confidence: "low" });
  check(r.isError, "post_alert_finding too long", r);
  r = await call("post_alert_finding", { alert_uuid: "nope", summary: "x", confidence: "low" });
  check(r.isError && text(r).startsWith("Invalid UUID"), "post_alert_finding bad uuid", r);

  r = await call("search_alerts", { severity: "High", page_size: 5 });
  check(!r.isError && parse(r).total >= 1 && parse(r).page_size === 5, "search_alerts", r);
  r = await call("search_alerts", { page: 0 });
  check(r.isError, "search_alerts page 0", r);
  r = await call("search_alerts", { page_size: -1 });
  check(r.isError, "search_alerts negative page_size", r);
  r = await call("search_alerts", { from_time: "yesterday" });
  check(r.isError && text(r).includes("Invalid from_time"), "search_alerts bad time", r);

  r = await call("update_alert_status", { alert_uuid: fx.alert, status: "Triaging" });
  check(!r.isError && parse(r).previous_status === "Open" && parse(r).status === "Triaging", "update_alert_status", r);
  r = await call("update_alert_status", { alert_uuid: fx.alert, status: "Closed", close_classification: "Made up" });
  check(r.isError && text(r).includes("Invalid close_classification"), "close_classification checked", r);
  r = await call("update_alert_status", { alert_uuid: fx.alert, status: "Closed" });
  check(r.isError && text(r).includes("required"), "Closed needs classification", r);

  r = await call("update_alert_malice", { alert_uuid: fx.alert, malice: "Malicious" });
  check(!r.isError && parse(r).effective_malice === "Malicious", "update_alert_malice", r);
  r = await call("update_alert_malice", { alert_uuid: fx.alert, malice: null });
  check(!r.isError && parse(r).malice_override === null && parse(r).effective_malice === "Pending", "update_alert_malice reset", r);
  r = await call("update_alert_malice", { alert_uuid: fx.alert, malice: "Evil" });
  check(r.isError, "update_alert_malice bad", r);

  r = await call("update_indicator_malice", { indicator_uuid: fx.indicator, malice: "Suspicious" });
  check(!r.isError && parse(r).malice === "Suspicious" && parse(r).malice_source === "analyst", "update_indicator_malice", r);
  r = await call("update_indicator_malice", { indicator_uuid: "00000000-0000-4000-8000-000000000000", malice: "Benign" });
  check(r.isError && text(r).includes("Indicator not found"), "update_indicator_malice missing", r);

  r = await call("search_detection_rules", { name: "brute", mitre_tactic: "TA0006" });
  check(!r.isError && parse(r).total === 1 && parse(r).detection_rules[0].documentation.endsWith("..."), "search_detection_rules", r);
  r = await call("search_detection_rules", { name: "%" });
  check(!r.isError && parse(r).total === 0, "LIKE wildcards literal", r);
  r = await call("search_detection_rules", { sort_by: "password" });
  check(r.isError, "search_detection_rules bad sort", r);

  r = await call("enrich_indicator", { type: "ip", value: " 10.0.0.1 " });
  check(!r.isError && parse(r).value === "10.0.0.1" && parse(r).results._validation, "enrich_indicator", r);
  r = await call("enrich_indicator", { type: "ipv9", value: "x" });
  check(r.isError && text(r).includes("Invalid indicator type"), "enrich_indicator bad type", r);
  r = await call("enrich_indicator", { type: "ip", value: "   " });
  check(r.isError && text(r).includes("must not be empty"), "enrich_indicator empty", r);

  r = await call("execute_workflow", { workflow_uuid: fx.workflow, indicator_type: "ip", indicator_value: "203.0.113.5", alert_uuid: fx.alert, reason: "brute force source", confidence: 0.9 });
  check(!r.isError && parse(r).status === "pending_approval" && parse(r).approval_request_uuid, "execute_workflow gate", r);
  r = await call("execute_workflow", { workflow_uuid: fx.workflow, indicator_type: "ip", indicator_value: "203.0.113.5", confidence: 1.5 });
  check(r.isError && text(r).includes("between 0 and 1"), "execute_workflow confidence range", r);
  r = await call("execute_workflow", { workflow_uuid: "00000000-0000-4000-8000-000000000000", indicator_type: "ip", indicator_value: "1.2.3.4" });
  check(r.isError && text(r).includes("Workflow not found"), "execute_workflow missing", r);
  await expectReject(call("no_such_tool", {}), "unknown tool");
  await c.close();

  // Scopes: a read-only key is refused writes and foreign reads, even naming an admin prefix.
  const ro = await connect(fx.reader);
  r = await ro.callTool({ name: "post_alert_finding", arguments: { alert_uuid: fx.alert, summary: "s", confidence: "low" }, _meta: { client_id: fx.admin.slice(0, 8) } });
  check(r.isError && text(r).includes("Insufficient scope. Required: alerts:write"), "spoofed client_id refused", r);
  r = await ro.callTool({ name: "enrich_indicator", arguments: { type: "ip", value: "8.8.8.8" } });
  check(r.isError && text(r).includes("enrichments:read"), "tool scope", r);
  await expectReject(ro.readResource({ uri: "calseta://workflows" }), "resource scope");
  await ro.close();

  // Revoked mid-session: the next message fails.
  const rv = await connect(fx.revokable);
  await rv.listTools();
  const resp = await fetch(fx.revoke_url, { method: "DELETE", headers: { Authorization: `Bearer ${fx.admin}` } });
  check(resp.status === 204, "revoke key", resp.status);
  await expectReject(rv.listTools(), "revoked mid-session");
  await rv.close().catch(() => {});

  // Unknown and expired keys cannot connect.
  await expectReject(connect("cai_" + "A".repeat(43)), "unknown key");
  await expectReject(connect(fx.expired), "expired key");

  // A message over the size limit is refused without hurting the session.
  const big = await connect(fx.admin);
  await expectReject(big.callTool({ name: "search_alerts", arguments: { tags: "x".repeat(2 * 1024 * 1024) } }), "oversized message");
  const ok = await big.callTool({ name: "search_alerts", arguments: {} });
  check(!ok.isError, "session usable after oversized message");
  await big.close();
  console.log(JSON.stringify({ ok: true, msg: "done" }));
}

main().catch((e) => fail("exception: " + (e && e.stack ? e.stack : e)));
