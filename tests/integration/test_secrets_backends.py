"""test_secrets_backends.py - settings sources and the two secrets backends, end to end.

Runs the real `calseta config-check NAME...` (prints `backend=<name>` then, per name,
`NAME=set sha256=<hex>` or `NAME=unset`; exit 1 with the reason on stderr when loading fails)
against local stand-ins that speak the real protocols:

  * Azure instance metadata token endpoint (requires `Metadata: true`),
  * the App Service / Container Apps identity endpoint (requires X-IDENTITY-HEADER),
  * Azure Key Vault REST API 7.4 (bearer token checked, listing paged with nextLink, a
    disabled secret that must never be read),
  * AWS EC2 instance metadata, IMDSv2 only (every GET needs the session token),
  * the ECS/EKS container credentials endpoint (checks the Authorization token),
  * AWS Secrets Manager GetSecretValue, which re-computes the SigV4 signature of every request
    in Python (hmac/hashlib) and answers like AWS for unknown, expired or badly signed
    credentials.

Every request the program sends is recorded and checked. No secret value may appear on
stdout or stderr of any run. Standard library only.
"""
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, SANITIZER_MARKERS, assert_eq, free_port, run_tests  # noqa: E402
from standin import StandIn  # noqa: E402

CALSETA = os.environ.get("CALSETA_CONFIG_CHECK_BIN", os.path.join(BIN, "calseta"))

# Secret values: none of them may ever be printed.
KV_SECRETS = {
    "encryption-key": "kv-Encryption-Key-0001=",
    "database-url": "postgresql://kvuser:kv-db-pass-0002@db.internal:5432/calseta",
    "sentinel-webhook-secret": "kv-sentinel-0003 with spaces",
    "disabled-thing": "kv-must-never-be-read-0004",
}
AWS_SECRET = {
    "ENCRYPTION_KEY": "sm-Encryption-Key-0005=",
    "DATABASE_URL": "postgresql://smuser:sm-db-pass-0006@db.internal/calseta",
    "HTTP_PORT": 8123,
    "WEBHOOK_SIGNATURE_REQUIRED": True,
    "OPTIONAL_THING": None,
}
ENV_ONLY_KEY = "env-Encryption-Key-0007"
IMDS_TOKEN = "azure-imds-access-token-0008"
APP_TOKEN = "azure-app-service-token-0009"
IDENTITY_HEADER = "identity-header-secret-0010"
AWS_KEYS = {  # access key -> (secret key, session token or None, state)
    "AKIDENVEXAMPLE": ("env/Secret+Key/0011", None, "ok"),
    "ASIASESSIONEXAMPLE": ("session/Secret+Key/0012", "session-token-0013//+=", "ok"),
    "ASIACONTAINEREXAMPLE": ("container/Secret+Key/0014", "container-token-0015", "ok"),
    "ASIAIMDSEXAMPLE": ("imds/Secret+Key/0016", "imds-session-token-0017", "ok"),
    "ASIAEXPIREDEXAMPLE": ("expired/Secret+Key/0018", "expired-token-0019", "expired"),
}
CONTAINER_AUTH = "container-auth-token-0020"
IMDSV2_TOKEN = "imdsv2-session-0021"
ALL_SECRETS = (list(KV_SECRETS.values()) + [v for v in AWS_SECRET.values() if isinstance(v, str)]
               + [ENV_ONLY_KEY, IMDS_TOKEN, APP_TOKEN, IDENTITY_HEADER, CONTAINER_AUTH, IMDSV2_TOKEN]
               + [k[0] for k in AWS_KEYS.values()] + [k[1] for k in AWS_KEYS.values() if k[1]])


def sha(v):
    return hashlib.sha256(v.encode()).hexdigest()


# ---- stand-in servers ------------------------------------------------------------------------

class Backend(StandIn):
    """A stand-in whose handle(srv, req) -> (status, headers, body) reads the mode a test sets."""

    def __init__(self, handle):
        self.mode, self.state = "ok", {}
        super().__init__(lambda req: self._answer(handle, req))

    def _answer(self, handle, req):
        status, headers, body = handle(self, req)
        return status, body, headers

    def reset(self, mode="ok"):
        super().reset()
        self.mode = mode
        self.state = {}


def azure_imds(srv, req):
    if req.route != "/metadata/identity/oauth2/token" or req.method != "GET":
        return 404, {}, {"error": "not_found"}
    if req.h("Metadata") != "true":
        return 400, {}, {"error": "invalid_request", "error_description": "Required metadata header not specified"}
    if req.query.get("api-version") != "2018-02-01" or req.query.get("resource") != "https://vault.azure.net":
        return 400, {}, {"error": "invalid_request", "error_description": "bad api-version or resource"}
    if srv.mode == "no_identity":
        return 400, {}, {"error": "invalid_request", "error_description": "Identity not found"}
    if srv.mode == "flaky" and not srv.state.get("failed"):
        srv.state["failed"] = True
        return 500, {}, {"error": "unknown", "error_description": "IMDS busy"}
    token = "wrong-token" if srv.mode == "wrong_token" else IMDS_TOKEN
    return 200, {}, {"access_token": token, "expires_in": "3599", "token_type": "Bearer",
                     "resource": "https://vault.azure.net"}


def app_service_identity(srv, req):
    if req.route != "/msi/token":
        return 404, {}, {}
    if req.h("X-IDENTITY-HEADER") != IDENTITY_HEADER:
        return 401, {}, {"statusCode": 401, "message": "Unauthorized"}
    if req.query.get("api-version") != "2019-08-01" or req.query.get("resource") != "https://vault.azure.net":
        return 400, {}, {"error": "invalid_request", "error_description": "bad api-version or resource"}
    return 200, {}, {"access_token": APP_TOKEN, "expires_on": "1900000000", "token_type": "Bearer",
                     "resource": "https://vault.azure.net"}


def key_vault(srv, req):
    if req.h("Authorization") not in ("Bearer " + IMDS_TOKEN, "Bearer " + APP_TOKEN):
        return 401, {"WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/x", '
                                          'resource="https://vault.azure.net"'}, \
            {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}
    if req.query.get("api-version") != "7.4":
        return 400, {}, {"error": {"code": "BadParameter", "message": "api-version"}}
    base = srv.url
    if req.route == "/secrets":
        if srv.mode == "list_error":
            return 403, {}, {"error": {"code": "Forbidden", "message": "The user does not have secrets list permission"}}
        item = lambda n, en=True: {"id": "%s/secrets/%s" % (base, n), "attributes": {"enabled": en}}  # noqa: E731
        if req.query.get("$skiptoken") == "page2":
            return 200, {}, {"value": [item("sentinel-webhook-secret"), item("disabled-thing", False)],
                             "nextLink": None}
        nxt = "%s:443/secrets?api-version=7.4&$skiptoken=page2" % "https://evil.example" \
            if srv.mode == "evil_next" else "%s/secrets?api-version=7.4&$skiptoken=page2" % base
        return 200, {}, {"value": [item("encryption-key"), item("database-url")], "nextLink": nxt}
    m = re.fullmatch(r"/secrets/([A-Za-z0-9-]+)", req.route)
    if m and m.group(1) in KV_SECRETS:
        if m.group(1) == "disabled-thing":
            return 403, {}, {"error": {"code": "Forbidden", "message": "Operation get is not allowed on a disabled secret."}}
        if srv.mode == "get_error" and m.group(1) == "database-url":
            return 500, {}, {"error": {"code": "InternalError", "message": "vault hiccup"}}
        return 200, {}, {"value": KV_SECRETS[m.group(1)], "id": "%s/secrets/%s/abc" % (base, m.group(1)),
                         "attributes": {"enabled": True}}
    return 404, {}, {"error": {"code": "SecretNotFound", "message": "not found"}}


def aws_imds(srv, req):
    if req.method == "PUT" and req.route == "/latest/api/token":
        if not req.h("X-aws-ec2-metadata-token-ttl-seconds"):
            return 400, {}, ""
        return 200, {"Content-Type": "text/plain"}, IMDSV2_TOKEN
    if req.method != "GET":
        return 405, {}, ""
    if req.h("X-aws-ec2-metadata-token") != IMDSV2_TOKEN:
        return 401, {}, ""
    if req.route == "/latest/meta-data/iam/security-credentials/":
        return 200, {"Content-Type": "text/plain"}, "calseta-role\n"
    if req.route == "/latest/meta-data/iam/security-credentials/calseta-role":
        sk, tok, _ = AWS_KEYS["ASIAIMDSEXAMPLE"]
        return 200, {}, {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAIMDSEXAMPLE",
                         "SecretAccessKey": sk, "Token": tok, "Expiration": "2099-01-01T00:00:00Z"}
    return 404, {}, ""


def container_creds(srv, req):
    want = srv.state.get("auth")
    if want and req.h("Authorization") != want:
        return 401, {}, {"code": "AccessDenied", "message": "bad token"}
    if req.route != "/v2/credentials/task-1234":
        return 404, {}, {"code": "NotFound", "message": "no such credentials"}
    key = "ASIAEXPIREDEXAMPLE" if srv.mode == "expired" else "ASIACONTAINEREXAMPLE"
    sk, tok, _ = AWS_KEYS[key]
    return 200, {}, {"AccessKeyId": key, "SecretAccessKey": sk, "Token": tok,
                     "Expiration": "2099-01-01T00:00:00Z", "RoleArn": "arn:aws:iam::1:role/x"}


def sigv4_check(req, region, service):
    """Re-computes the request's SigV4 signature; returns (access_key, None) or (key, error)."""
    auth = req.h("Authorization") or ""
    m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)/(\d{8})/([a-z0-9-]+)/([a-z]+)/aws4_request, "
                     r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", auth)
    if not m:
        return None, ("IncompleteSignatureException", "malformed Authorization header")
    akid, date8, reg, svc, signed, sig = m.groups()
    if akid not in AWS_KEYS:
        return akid, ("UnrecognizedClientException", "The security token included in the request is invalid.")
    secret, token, state = AWS_KEYS[akid]
    signed_list = signed.split(";")
    needed = {"host", "x-amz-date", "x-amz-target", "content-type"} | ({"x-amz-security-token"} if token else set())
    if signed_list != sorted(signed_list) or not needed <= set(signed_list):
        return akid, ("IncompleteSignatureException", "signed headers %s" % signed)
    if (reg, svc) != (region, service):
        return akid, ("InvalidSignatureException", "scope %s/%s" % (reg, svc))
    amz_date = req.h("X-Amz-Date") or ""
    try:
        t = time.mktime(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")) - time.timezone
    except ValueError:
        return akid, ("IncompleteSignatureException", "bad X-Amz-Date")
    if abs(t - time.time()) > 300 or amz_date[:8] != date8:
        return akid, ("InvalidSignatureException", "Signature expired or date mismatch")
    if token and req.h("X-Amz-Security-Token") != token:
        return akid, ("UnrecognizedClientException", "The security token included in the request is invalid.")
    path, _, query = req.path.partition("?")
    cq = "&".join(sorted(p if "=" in p else p + "=" for p in query.split("&") if p))
    ch = "".join("%s:%s\n" % (h, " ".join((req.h(h) or "").split())) for h in signed_list)
    creq = "\n".join([req.method, path, cq, ch, signed, hashlib.sha256(req.body).hexdigest()])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, "%s/%s/%s/aws4_request" % (date8, reg, svc),
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date8, reg, svc, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        return akid, ("InvalidSignatureException", "The request signature we calculated does not match")
    if state == "expired":
        return akid, ("ExpiredTokenException", "The security token included in the request is expired")
    return akid, None


def secrets_manager(srv, req):
    err = lambda st, typ, msg: (st, {"x-amzn-ErrorType": typ}, {"__type": typ, "message": msg})  # noqa: E731
    if req.method != "POST" or req.route != "/":
        return 404, {}, ""
    if req.h("X-Amz-Target") != "secretsmanager.GetSecretValue":
        return err(400, "UnknownOperationException", "target")
    if req.h("Content-Type") != "application/x-amz-json-1.1":
        return err(400, "SerializationException", "content type")
    if req.h("Host") != "127.0.0.1:%d" % srv.port:
        return err(400, "InvalidSignatureException", "host")
    akid, problem = sigv4_check(req, "eu-west-2", "secretsmanager")
    req.akid = akid
    if problem:
        st = 400 if problem[0] in ("UnrecognizedClientException", "ExpiredTokenException") else 403
        return err(st, problem[0], problem[1])
    body = json.loads(req.body)
    if set(body) != {"SecretId"}:
        return err(400, "InvalidParameterException", "body")
    name = body["SecretId"]
    if name == "calseta/prod":
        secret = AWS_SECRET
    elif name == "calseta/nested":
        secret = {"ENCRYPTION_KEY": "sm-nested-0022", "NESTED": {"a": 1}}
    elif name == "calseta/not-object":
        secret = ["sm-list-0023"]
    else:
        return err(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
    return 200, {}, {"ARN": "arn:aws:secretsmanager:eu-west-2:1:secret:%s-AbCdEf" % name, "Name": name,
                     "VersionId": "v1", "SecretString": json.dumps(secret), "VersionStages": ["AWSCURRENT"],
                     "CreatedDate": 1700000000.0}


SERVERS = {}


def servers(reset=True):
    """Starts the stand-ins once; by default forgets their requests and modes."""
    if not SERVERS:
        for name, fn in (("imds", azure_imds), ("appsvc", app_service_identity), ("kv", key_vault),
                         ("awsimds", aws_imds), ("ecs", container_creds), ("sm", secrets_manager)):
            SERVERS[name] = Backend(fn)
    for s in SERVERS.values() if reset else ():
        s.reset()
    return SERVERS


# ---- running the program ---------------------------------------------------------------------

class Run:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err
        lines = out.splitlines()
        self.backend = lines[0][len("backend="):] if lines and lines[0].startswith("backend=") else None
        self.values = {}
        for line in lines[1:]:
            name, _, rest = line.partition("=")
            self.values[name] = rest[len("set sha256="):] if rest.startswith("set sha256=") else None

    def __repr__(self):
        return "<rc=%d out=%r err=%r>" % (self.rc, self.out, self.err[-2000:])


def check(env, names=("ENCRYPTION_KEY", "DATABASE_URL"), dotenv=None, timeout=60):
    """Runs `calseta config-check names...` with exactly env (plus PATH) in a fresh directory."""
    cwd = tempfile.mkdtemp(prefix="calseta-secrets-")
    if dotenv is not None:
        with open(os.path.join(cwd, ".env"), "w") as f:
            f.write(dotenv)
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOG_FORMAT": "json",
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")}
    full.update(env)
    p = subprocess.run([CALSETA, "config-check"] + list(names), cwd=cwd, env=full, capture_output=True,
                       text=True, timeout=timeout)
    r = Run(p.returncode, p.stdout, p.stderr)
    for marker in SANITIZER_MARKERS:
        if marker in p.stderr:
            raise AssertionError("sanitizer report:\n" + p.stderr)
    for s in ALL_SECRETS:
        if s in p.stdout or s in p.stderr:
            raise AssertionError("a secret value was printed: %r in %r" % (s, r))
    if p.returncode == 2 and "usage" in p.stderr:
        raise AssertionError("`calseta config-check` is not wired into the master command table")
    return r


def ok(r, backend):
    if r.rc != 0 or r.backend != backend:
        raise AssertionError("expected success with backend %s, got %r" % (backend, r))


def failed(r, *needles):
    if r.rc != 1:
        raise AssertionError("expected exit 1, got %r" % r)
    for n in needles:
        if n not in r.err:
            raise AssertionError("stderr lacks %r: %r" % (n, r.err))


def azure_env(**extra):
    s = servers(reset=False)
    env = {"AZURE_KEY_VAULT_URL": s["kv"].url, "AZURE_IMDS_ENDPOINT": s["imds"].url,
           "ENCRYPTION_KEY": ENV_ONLY_KEY, "APP_VERSION": "from-env"}
    env.update(extra)
    return env


def aws_env(**extra):
    s = servers(reset=False)
    env = {"AWS_SECRETS_MANAGER_SECRET_NAME": "calseta/prod", "AWS_REGION": "eu-west-2",
           "AWS_SECRETS_MANAGER_ENDPOINT": s["sm"].url,
           "AWS_EC2_METADATA_SERVICE_ENDPOINT": s["awsimds"].url,  # never used unless IMDS is the source
           "ENCRYPTION_KEY": ENV_ONLY_KEY, "APP_VERSION": "from-env"}
    env.update(extra)
    return env


def no_requests(*names):
    for n in names:
        assert_eq(SERVERS[n].requests, [], "server %s was contacted" % n)


# ---- tests: environment and .env ------------------------------------------------------------

def test_environment_only():
    servers()
    r = check({"ENCRYPTION_KEY": ENV_ONLY_KEY}, names=("ENCRYPTION_KEY", "DATABASE_URL"))
    ok(r, "environment")
    assert_eq(r.values, {"ENCRYPTION_KEY": sha(ENV_ONLY_KEY), "DATABASE_URL": None})
    no_requests(*SERVERS)


def test_dotenv_syntax_and_priority():
    dotenv = "\n".join([
        "# a comment",
        "",
        "PLAIN=plain value   # trailing comment",
        "export EXPORTED=exp",
        "SINGLE='single $HOME \\n # kept' # dropped",
        "SQ_ESC='it\\'s'",
        'DOUBLE="a\\nb\\t\\"q\\" \\\\ \\$x"',
        "EMPTY=",
        "EMPTY_QUOTED=\"\"",
        '  SPACED  =  " padded "  ',
        'MULTI="line1',
        'line2"',
        "HASH=abc#def",
        "BARE_NAME",
        "OVERRIDDEN=from-dotenv",
        "ENCRYPTION_KEY=dotenv-key",
    ]) + "\n"
    names = ("PLAIN", "EXPORTED", "SINGLE", "SQ_ESC", "DOUBLE", "EMPTY", "EMPTY_QUOTED", "SPACED", "MULTI",
             "HASH", "BARE_NAME", "OVERRIDDEN", "ENCRYPTION_KEY")
    r = check({"OVERRIDDEN": "from-env"}, names=names, dotenv=dotenv)
    ok(r, "environment")
    want = {"PLAIN": "plain value", "SINGLE": "single $HOME \\n # kept", "EXPORTED": "exp", "DOUBLE": 'a\nb\t"q" \\ $x', "EMPTY": "",
            "SQ_ESC": "it's", "EMPTY_QUOTED": "", "SPACED": " padded ", "MULTI": "line1\nline2",
            "HASH": "abc#def", "OVERRIDDEN": "from-env", "ENCRYPTION_KEY": "dotenv-key"}
    for k, v in want.items():
        assert_eq(r.values.get(k), sha(v), k)
    assert_eq(r.values["BARE_NAME"], None)


def test_dotenv_adjacent_quotes_are_an_error():
    r = check({}, names=("A",), dotenv="A=1\nSINGLE='it''s'\n")
    failed(r, ".env", "line 2", "after the closing quote")


def test_dotenv_malformed_line_names_the_line():
    r = check({}, names=("A",), dotenv="A=1\n# ok\nB=\"never closed-secret-ish\nC=3\n")
    failed(r, ".env", "line 3", "unterminated double-quoted value")
    assert "never closed" not in r.err
    r = check({}, names=("A",), dotenv="A=1\n\n\nBAD-NAME=1\n")
    failed(r, "line 4", "expected '='")


def test_trigger_variables_in_dotenv_do_not_activate_a_backend():
    s = servers()
    dotenv = "AZURE_KEY_VAULT_URL=%s\nAWS_SECRETS_MANAGER_SECRET_NAME=calseta/prod\nAWS_REGION=eu-west-2\n" \
             "AWS_SECRETS_MANAGER_ENDPOINT=%s\nAZURE_IMDS_ENDPOINT=%s\nENCRYPTION_KEY=from-dotenv\n" % (
                 s["kv"].url, s["sm"].url, s["imds"].url)
    r = check({}, names=("ENCRYPTION_KEY", "AZURE_KEY_VAULT_URL"), dotenv=dotenv)
    ok(r, "environment")
    assert_eq(r.values["ENCRYPTION_KEY"], sha("from-dotenv"))
    assert r.values["AZURE_KEY_VAULT_URL"] is not None
    no_requests(*SERVERS)


def test_empty_trigger_variable_is_not_configured():
    servers()
    r = check({"AZURE_KEY_VAULT_URL": "", "AWS_SECRETS_MANAGER_SECRET_NAME": "", "ENCRYPTION_KEY": "x"})
    ok(r, "environment")
    no_requests(*SERVERS)


# ---- tests: Azure Key Vault -----------------------------------------------------------------

def test_azure_imds_paging_disabled_and_override():
    s = servers()
    r = check(azure_env(), names=("ENCRYPTION_KEY", "DATABASE_URL", "SENTINEL_WEBHOOK_SECRET",
                                  "DISABLED_THING", "APP_VERSION"))
    ok(r, "azure_key_vault")
    assert_eq(r.values, {"ENCRYPTION_KEY": sha(KV_SECRETS["encryption-key"]),
                         "DATABASE_URL": sha(KV_SECRETS["database-url"]),
                         "SENTINEL_WEBHOOK_SECRET": sha(KV_SECRETS["sentinel-webhook-secret"]),
                         "DISABLED_THING": None, "APP_VERSION": sha("from-env")})
    [tok] = s["imds"].requests
    assert_eq((tok.method, tok.h("Metadata")), ("GET", "true"))
    assert_eq(tok.query, {"api-version": "2018-02-01", "resource": "https://vault.azure.net"})
    assert "resource=https%3A%2F%2Fvault.azure.net" in tok.path, tok.path
    paths = [(q.method, q.route, q.query.get("$skiptoken")) for q in s["kv"].requests]
    assert_eq(paths, [("GET", "/secrets", None), ("GET", "/secrets/encryption-key", None),
                      ("GET", "/secrets/database-url", None), ("GET", "/secrets", "page2"),
                      ("GET", "/secrets/sentinel-webhook-secret", None)])
    for q in s["kv"].requests:
        assert_eq(q.h("Authorization"), "Bearer " + IMDS_TOKEN)
        assert_eq(q.query.get("api-version"), "7.4")
    no_requests("appsvc", "awsimds", "ecs", "sm")
    assert '"secrets_source":"azure_key_vault"' in r.err.replace(" ", ""), r.err


def test_azure_user_assigned_identity_client_id():
    s = servers()
    r = check(azure_env(AZURE_CLIENT_ID="1111-2222 &x=y"))
    ok(r, "azure_key_vault")
    assert_eq(s["imds"].requests[0].query.get("client_id"), "1111-2222 &x=y")
    assert "x" not in s["imds"].requests[0].query


def test_azure_app_service_identity_endpoint():
    s = servers()
    r = check(azure_env(IDENTITY_ENDPOINT=s["appsvc"].url + "/msi/token", IDENTITY_HEADER=IDENTITY_HEADER))
    ok(r, "azure_key_vault")
    assert_eq(r.values["ENCRYPTION_KEY"], sha(KV_SECRETS["encryption-key"]))
    [tok] = s["appsvc"].requests
    assert_eq(tok.h("X-IDENTITY-HEADER"), IDENTITY_HEADER)
    assert_eq(tok.query["api-version"], "2019-08-01")
    no_requests("imds")
    assert all(q.h("Authorization") == "Bearer " + APP_TOKEN for q in s["kv"].requests)


def test_azure_app_service_without_header_is_an_error():
    s = servers()
    r = check(azure_env(IDENTITY_ENDPOINT=s["appsvc"].url + "/msi/token"))
    failed(r, "Azure Key Vault", "IDENTITY_HEADER")
    no_requests("appsvc", "imds", "kv")
    s["appsvc"].reset()
    r = check(azure_env(IDENTITY_ENDPOINT=s["appsvc"].url + "/msi/token", IDENTITY_HEADER="wrong"))
    failed(r, "Azure Key Vault", "HTTP 401")


def test_azure_wrong_token_is_a_clear_error():
    s = servers()
    s["imds"].mode = "wrong_token"
    r = check(azure_env())
    failed(r, "Azure Key Vault", "HTTP 401", "Unauthorized")
    assert_eq(r.backend, None)


def test_azure_identity_not_found():
    s = servers()
    s["imds"].mode = "no_identity"
    r = check(azure_env())
    failed(r, "Azure Key Vault", "HTTP 400", "Identity not found")
    no_requests("kv")


def test_azure_imds_transient_error_is_retried():
    s = servers()
    s["imds"].mode = "flaky"
    r = check(azure_env())
    ok(r, "azure_key_vault")
    assert_eq(len(s["imds"].requests), 2)


def test_azure_listing_and_read_errors():
    s = servers()
    s["kv"].mode = "list_error"
    r = check(azure_env())
    failed(r, "Azure Key Vault", "listing secrets", "HTTP 403", "list permission")
    s["kv"].reset("get_error")
    r = check(azure_env())
    failed(r, "Azure Key Vault", "database-url", "HTTP 500")


def test_azure_next_link_to_another_host_is_refused():
    s = servers()
    s["kv"].mode = "evil_next"
    r = check(azure_env())
    failed(r, "Azure Key Vault", "nextLink")


def test_azure_unreachable_vault_and_bad_urls():
    s = servers()
    dead = "http://127.0.0.1:%d" % free_port()
    r = check(azure_env(AZURE_KEY_VAULT_URL=dead))
    failed(r, "Azure Key Vault", "listing secrets")
    r = check(azure_env(AZURE_KEY_VAULT_URL="http://myvault.vault.azure.net"))
    failed(r, "Azure Key Vault", "https")
    r = check(azure_env(AZURE_KEY_VAULT_URL=s["kv"].url + "/some/path"))
    failed(r, "Azure Key Vault", "base URL")
    r = check(azure_env(AZURE_KEY_VAULT_URL="not a url"))
    failed(r, "Azure Key Vault", "AZURE_KEY_VAULT_URL")
    r = check(azure_env(AZURE_IMDS_ENDPOINT=dead))
    failed(r, "Azure Key Vault", "token request")


def test_both_triggers_azure_wins_with_warning():
    s = servers()
    r = check(dict(aws_env(), **azure_env()))
    ok(r, "azure_key_vault")
    no_requests("sm")
    assert "ignoring AWS Secrets Manager" in r.err, r.err


# ---- tests: AWS Secrets Manager -------------------------------------------------------------

def aws_values_ok(r):
    ok(r, "aws_secrets_manager")
    assert_eq(r.values["ENCRYPTION_KEY"], sha(AWS_SECRET["ENCRYPTION_KEY"]))
    assert_eq(r.values["DATABASE_URL"], sha(AWS_SECRET["DATABASE_URL"]))
    assert_eq(r.values["HTTP_PORT"], sha("8123"))
    assert_eq(r.values["WEBHOOK_SIGNATURE_REQUIRED"], sha("true"))
    assert_eq(r.values["OPTIONAL_THING"], None)
    assert_eq(r.values["APP_VERSION"], sha("from-env"))


AWS_NAMES = ("ENCRYPTION_KEY", "DATABASE_URL", "HTTP_PORT", "WEBHOOK_SIGNATURE_REQUIRED", "OPTIONAL_THING",
             "APP_VERSION")


def the_sm_request(s, akid, token):
    [q] = s["sm"].requests
    assert_eq(getattr(q, "akid", None), akid)
    assert_eq(json.loads(q.body), {"SecretId": "calseta/prod"})
    assert_eq(q.h("X-Amz-Security-Token"), token)
    assert q.h("Authorization").startswith("AWS4-HMAC-SHA256 Credential=%s/" % akid)
    assert "/eu-west-2/secretsmanager/aws4_request" in q.h("Authorization")


def test_aws_environment_credentials():
    s = servers()
    r = check(aws_env(AWS_ACCESS_KEY_ID="AKIDENVEXAMPLE", AWS_SECRET_ACCESS_KEY=AWS_KEYS["AKIDENVEXAMPLE"][0]),
              names=AWS_NAMES)
    aws_values_ok(r)
    the_sm_request(s, "AKIDENVEXAMPLE", None)
    no_requests("awsimds", "ecs", "imds", "kv")
    assert '"secrets_source":"aws_secrets_manager"' in r.err.replace(" ", ""), r.err


def test_aws_environment_session_credentials_and_default_region():
    s = servers()
    env = aws_env(AWS_ACCESS_KEY_ID="ASIASESSIONEXAMPLE", AWS_SECRET_ACCESS_KEY=AWS_KEYS["ASIASESSIONEXAMPLE"][0],
                  AWS_SESSION_TOKEN=AWS_KEYS["ASIASESSIONEXAMPLE"][1], AWS_DEFAULT_REGION="eu-west-2")
    del env["AWS_REGION"]
    r = check(env, names=AWS_NAMES)
    aws_values_ok(r)
    the_sm_request(s, "ASIASESSIONEXAMPLE", AWS_KEYS["ASIASESSIONEXAMPLE"][1])


def test_aws_container_relative_uri():
    s = servers()
    s["ecs"].state["auth"] = None
    r = check(aws_env(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="/v2/credentials/task-1234",
                      AWS_CONTAINER_CREDENTIALS_ENDPOINT=s["ecs"].url), names=AWS_NAMES)
    aws_values_ok(r)
    [c] = s["ecs"].requests
    assert_eq((c.method, c.route, c.h("Authorization")), ("GET", "/v2/credentials/task-1234", None))
    the_sm_request(s, "ASIACONTAINEREXAMPLE", AWS_KEYS["ASIACONTAINEREXAMPLE"][1])
    no_requests("awsimds")


def test_aws_container_full_uri_with_token_and_token_file():
    s = servers()
    s["ecs"].state["auth"] = CONTAINER_AUTH
    full = s["ecs"].url + "/v2/credentials/task-1234"
    r = check(aws_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=full, AWS_CONTAINER_AUTHORIZATION_TOKEN=CONTAINER_AUTH),
              names=AWS_NAMES)
    aws_values_ok(r)
    assert_eq(s["ecs"].requests[0].h("Authorization"), CONTAINER_AUTH)
    s["ecs"].requests, s["sm"].requests = [], []
    tf = tempfile.NamedTemporaryFile("w", delete=False)
    tf.write(CONTAINER_AUTH + "\n")
    tf.close()
    r = check(aws_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=full, AWS_CONTAINER_AUTHORIZATION_TOKEN="stale",
                      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=tf.name), names=AWS_NAMES)
    aws_values_ok(r)
    os.unlink(tf.name)
    s["ecs"].requests = []
    r = check(aws_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=full, AWS_CONTAINER_AUTHORIZATION_TOKEN="wrong"))
    failed(r, "AWS Secrets Manager", "container credentials endpoint", "HTTP 401")
    r = check(aws_env(AWS_CONTAINER_CREDENTIALS_FULL_URI="http://203.0.113.9/creds"))
    failed(r, "AWS Secrets Manager", "FULL_URI must be https")


def test_aws_instance_metadata_imdsv2():
    s = servers()
    r = check(aws_env(), names=AWS_NAMES)
    aws_values_ok(r)
    reqs = [(q.method, q.route, q.h("X-aws-ec2-metadata-token")) for q in s["awsimds"].requests]
    assert_eq(reqs, [("PUT", "/latest/api/token", None),
                     ("GET", "/latest/meta-data/iam/security-credentials/", IMDSV2_TOKEN),
                     ("GET", "/latest/meta-data/iam/security-credentials/calseta-role", IMDSV2_TOKEN)])
    assert int(s["awsimds"].requests[0].h("X-aws-ec2-metadata-token-ttl-seconds")) > 0
    the_sm_request(s, "ASIAIMDSEXAMPLE", AWS_KEYS["ASIAIMDSEXAMPLE"][1])


def test_aws_imds_disabled_or_unreachable():
    servers()
    r = check(aws_env(AWS_EC2_METADATA_DISABLED="true"))
    failed(r, "AWS Secrets Manager", "no credentials")
    r = check(aws_env(AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:%d" % free_port()))
    failed(r, "AWS Secrets Manager", "IMDSv2 token")
    no_requests("sm")


def test_aws_expired_and_unknown_credentials():
    s = servers()
    s["ecs"].mode = "expired"
    r = check(aws_env(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="/v2/credentials/task-1234",
                      AWS_CONTAINER_CREDENTIALS_ENDPOINT=s["ecs"].url))
    failed(r, "AWS Secrets Manager", "HTTP 400", "ExpiredTokenException", "expired")
    r = check(aws_env(AWS_ACCESS_KEY_ID="AKIDUNKNOWN", AWS_SECRET_ACCESS_KEY="whatever"))
    failed(r, "AWS Secrets Manager", "HTTP 400", "UnrecognizedClientException")
    r = check(aws_env(AWS_ACCESS_KEY_ID="AKIDENVEXAMPLE", AWS_SECRET_ACCESS_KEY="not-the-right-secret"))
    failed(r, "AWS Secrets Manager", "HTTP 403", "InvalidSignatureException")
    r = check(aws_env(AWS_ACCESS_KEY_ID="AKIDENVEXAMPLE"))
    failed(r, "AWS Secrets Manager", "must be set together")


def test_aws_secret_shape_errors():
    servers()
    creds = {"AWS_ACCESS_KEY_ID": "AKIDENVEXAMPLE", "AWS_SECRET_ACCESS_KEY": AWS_KEYS["AKIDENVEXAMPLE"][0]}
    r = check(aws_env(AWS_SECRETS_MANAGER_SECRET_NAME="calseta/nested", **creds))
    failed(r, "AWS Secrets Manager", "NESTED", "object or array")
    assert "sm-nested-0022" not in r.err
    r = check(aws_env(AWS_SECRETS_MANAGER_SECRET_NAME="calseta/not-object", **creds))
    failed(r, "AWS Secrets Manager", "not a JSON object")
    r = check(aws_env(AWS_SECRETS_MANAGER_SECRET_NAME="calseta/missing", **creds))
    failed(r, "AWS Secrets Manager", "ResourceNotFoundException")


def test_aws_configuration_errors():
    s = servers()
    env = aws_env(AWS_ACCESS_KEY_ID="AKIDENVEXAMPLE", AWS_SECRET_ACCESS_KEY="x")
    del env["AWS_REGION"]
    failed(check(env), "AWS Secrets Manager", "AWS_REGION")
    failed(check(aws_env(AWS_REGION="eu-west-2/../x", AWS_ACCESS_KEY_ID="AKIDENVEXAMPLE",
                         AWS_SECRET_ACCESS_KEY="x")), "AWS Secrets Manager", "AWS_REGION")
    failed(check(aws_env(AWS_SECRETS_MANAGER_ENDPOINT="http://secretsmanager.example.com",
                         AWS_ACCESS_KEY_ID="AKIDENVEXAMPLE", AWS_SECRET_ACCESS_KEY="x")),
           "AWS Secrets Manager", "https")
    no_requests("sm")
    assert_eq(len(s["awsimds"].requests), 0)


if __name__ == "__main__":
    if not os.access(CALSETA, os.X_OK):
        print("calseta binary not found at %s" % CALSETA)
        sys.exit(1)
    run_tests(globals())
