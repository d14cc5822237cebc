#!/bin/sh
# run.sh - brings the compose stack up for real with docker-compose on podman, and checks it.
#
# Run by hand, as root, from a clone (about 5 minutes; the first run also builds a Debian base
# image with debootstrap from the mirror apt uses, and a local stand-in for postgres:15):
#
#     tests/compose/run.sh
#
# Steps: install podman/docker-compose/debootstrap/runc when missing; build the local images;
# start a private `podman system service` and point docker-compose at it; bring the stack up
# with three enricher replicas; wait for every healthcheck (podman runs none by itself without
# systemd, so this script runs them in a loop it owns); create an admin key with
# `docker-compose exec`; configure VirusTotal against a stand-in on the compose network's
# gateway; ingest the five fixtures (signed) and a load of generic alerts; kill one enricher
# mid-load and check that every job still completes; check that all three replicas claimed
# work; restart the whole stack and check that the data survived; tear everything down
# (containers, volumes, network, the podman service and the healthcheck loop, by their own
# ids and pids). Exits non-zero on any failure; prints timings.
#
# Settings (environment): CALSETA_COMPOSE_LOAD (generic alerts, default 300), KEEP=1 (leave
# the stack up on failure for inspection).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
T0=$(date +%s)
step() { echo "[$(($(date +%s) - T0))s] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (podman's rootful mode is what this machine supports)"

# --- 1. what it needs ---------------------------------------------------------------------
need=""
for p in podman:podman docker-compose:docker-compose debootstrap:debootstrap runc:runc \
         openssl:openssl psql:postgresql-client; do
    command -v "${p%%:*}" >/dev/null 2>&1 || need="$need ${p#*:}"
done
[ -e /usr/lib/cni/dnsname ] || need="$need golang-github-containernetworking-plugin-dnsname"
[ -e /usr/lib/cni/bridge ] || need="$need containernetworking-plugins"
if [ -n "$need" ]; then
    step "installing:$need"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

WORK=$(mktemp -d /var/tmp/calseta-compose-test.XXXXXX)
CACHE=/var/tmp/calseta-compose
mkdir -p "$CACHE"
# This VM refuses raised rlimits and crun's cgroup handling: runc, and limits no higher than ours.
HARD=$(ulimit -Hn)
sed "s/@NOFILE@/$HARD/g" tests/compose/containers.conf.in >"$WORK/containers.conf"
export CONTAINERS_CONF="$WORK/containers.conf"

# --- 2. images ----------------------------------------------------------------------------
if ! podman image exists localhost/debian:12; then
    MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    [ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
    [ -n "$MIRROR" ] || fail "cannot find the Debian mirror apt uses"
    step "building the Debian 12 base image with debootstrap"
    rm -rf "$CACHE/rootfs"
    debootstrap --variant=minbase bookworm "$CACHE/rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
        fail "debootstrap failed (see $CACHE/debootstrap.log)"
    tar -C "$CACHE/rootfs" -c . | podman import -q - localhost/debian:12 >/dev/null
    rm -rf "$CACHE/rootfs"
fi
for t in localhost/debian:12-slim docker.io/library/debian:12 docker.io/library/debian:12-slim; do
    podman tag localhost/debian:12 "$t"
done
if ! podman image exists docker.io/library/postgres:15; then
    step "building the local postgres:15 stand-in"
    podman build -q -t docker.io/library/postgres:15 tests/compose/postgres >/dev/null
fi

# --- 3. podman's Docker API, private to this run --------------------------------------------
SOCK="$WORK/podman.sock"
podman system service --time=0 "unix://$SOCK" >"$WORK/podman-service.log" 2>&1 &
SVC_PID=$!
export DOCKER_HOST="unix://$SOCK"
i=0
until [ -S "$SOCK" ]; do i=$((i + 1)); [ $i -lt 100 ] || fail "podman service did not start"; sleep 0.1; done

PROJECT="calsetatest$$"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
VTPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])')
SUBNET_OCTET=$((200 + $$ % 50))
GATEWAY="10.231.$SUBNET_OCTET.1"
ENVF="$WORK/calseta.env"
PGPW='p@ss:w/rd#%?&x'"$$"   # every character that breaks an unescaped URL
ENCKEY=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
cat >"$ENVF" <<EOF
POSTGRES_PASSWORD=$PGPW
ENCRYPTION_KEY=$ENCKEY
CALSETA_PORT=$PORT
LOG_FORMAT=json
INTAKE_PROCESSES=2
SENTINEL_WEBHOOK_SECRET=compose-sentinel-secret
ELASTIC_WEBHOOK_SECRET=compose-elastic-secret
SPLUNK_WEBHOOK_SECRET=compose-splunk-secret
WEBHOOK_SIGNATURE_REQUIRED=false
RATE_LIMIT_INGEST_PER_MINUTE=100000
RATE_LIMIT_DEFAULT_PER_MINUTE=100000
SSRF_ALLOWED_HOSTS=$GATEWAY
EOF
cp "$ENVF" compose/calseta.env.test-$$
cat >"$WORK/override.yml" <<EOF
networks:
  default:
    ipam:
      config:
        - subnet: 10.231.$SUBNET_OCTET.0/24
          gateway: $GATEWAY
EOF
# env_file in the compose file is relative to it: give it this run's file under a private name.
sed "s#env_file: calseta.env#env_file: calseta.env.test-$$#" compose/docker-compose.yml >compose/docker-compose.test-$$.yml
DC="docker-compose -p $PROJECT -f compose/docker-compose.test-$$.yml -f $WORK/override.yml --env-file $ENVF"

HC_PID=""
VT_PID=""
cleanup() {
    rc=$?
    set +e
    if [ $rc -ne 0 ]; then
        echo "--- logs (last lines per service) ---"
        $DC logs --no-color --tail=30 2>/dev/null | tail -n 200
    fi
    [ -n "$HC_PID" ] && kill "$HC_PID" 2>/dev/null
    [ -n "$VT_PID" ] && kill "$VT_PID" 2>/dev/null
    if [ "${KEEP:-0}" = 1 ] && [ $rc -ne 0 ]; then
        echo "KEEP=1: stack $PROJECT left up; DOCKER_HOST=$DOCKER_HOST CONTAINERS_CONF=$CONTAINERS_CONF"
        exit $rc
    fi
    $DC down -v --remove-orphans >/dev/null 2>&1
    for c in $(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do podman rm -f "$c" >/dev/null 2>&1; done
    for v in $(podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT"); do podman volume rm -f "$v" >/dev/null 2>&1; done
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
    kill "$SVC_PID" 2>/dev/null
    wait "$SVC_PID" 2>/dev/null
    rm -f "compose/calseta.env.test-$$" "compose/docker-compose.test-$$.yml"
    rm -rf "$WORK"
    step "torn down (exit $rc)"
    exit $rc
}
trap cleanup EXIT INT TERM

$DC config -q || fail "docker-compose config rejected the file"

# --- 4. build and start -----------------------------------------------------------------------
step "building the calseta image"
$DC build -q migrate >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; fail "image build failed"; }

# Healthchecks: podman runs them only under systemd, so this loop does it for every container
# of the project that declares one.
(
    while :; do
        for c in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT"); do
            podman healthcheck run "$c" >/dev/null 2>&1 || true
        done
        sleep 2
    done
) &
HC_PID=$!

step "starting the stack with 3 enrichers"
$DC up -d --scale enricher=3 >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "docker-compose up failed"; }
python3 tests/compose/drive.py wait-health "http://127.0.0.1:$PORT" 180
step "intake healthy on 127.0.0.1:$PORT"

sql() { $DC exec -T -e PGPASSWORD="$PGPW" db psql -h 127.0.0.1 -U calseta -d calseta -XtAc "$1"; }

# --- 5. a key, a provider stand-in -------------------------------------------------------------
KEY=$($DC exec -T intake calseta create-api-key --name compose-test --scopes admin 2>/dev/null |
      grep -o 'cai_[A-Za-z0-9_-]*' | head -n 1)
[ -n "$KEY" ] || fail "create-api-key through docker-compose exec gave no key"
step "admin key created through docker-compose exec"

WF=$(python3 tests/compose/drive.py workflow "http://127.0.0.1:$PORT" "$KEY") ||
    fail "a workflow could not be saved or test-run through workflowd"
step "workflow saved (code checked) and test-run through workflowd: $WF"

python3 tests/compose/drive.py standin "$VTPORT" &
VT_PID=$!
TOKEN=$(python3 tests/compose/drive.py fernet "$ENCKEY" '{"api_key": "compose-vt-key-5b1e"}')
sql "UPDATE enrichment_providers SET is_active = (provider_name = 'virustotal');
     UPDATE enrichment_providers SET http_config = replace(http_config::text, 'https://www.virustotal.com', 'http://$GATEWAY:$VTPORT')::jsonb,
            auth_config = jsonb_build_object('_encrypted', '$TOKEN')
      WHERE provider_name = 'virustotal';" >/dev/null
sleep 3   # providers are re-read by the enrichers on change notifications and every few seconds

# --- 6. load, one enricher killed mid-way -------------------------------------------------------
LOAD=${CALSETA_COMPOSE_LOAD:-300}
step "ingesting 5 signed fixtures + $LOAD generic alerts"
N=$(python3 tests/compose/drive.py ingest "http://127.0.0.1:$PORT" "$KEY" "$LOAD")
[ "$N" -eq $((LOAD + 5)) ] || fail "expected $((LOAD + 5)) accepted alerts, got $N"
sleep 2
VICTIM=$(podman ps -q --filter "label=com.docker.compose.project=$PROJECT" \
         --filter "label=com.docker.compose.service=enricher" | head -n 1)
[ -n "$VICTIM" ] || fail "no enricher container found"
podman kill "$VICTIM" >/dev/null
step "killed enricher container $VICTIM mid-load"

DEADLINE=$(($(date +%s) + 240))
while :; do
    LEFT=$(sql "SELECT count(*) FROM enrichment_jobs WHERE status <> 'done'")
    [ "$LEFT" = 0 ] && break
    [ "$(date +%s)" -lt "$DEADLINE" ] || fail "$LEFT enrichment jobs not done after 240 s"
    sleep 2
done
ALERTS=$(sql "SELECT count(*) FROM alerts")
JOBS=$(sql "SELECT count(*) FROM enrichment_jobs WHERE status = 'done'")
[ "$ALERTS" -eq "$N" ] || fail "$N alerts acknowledged but $ALERTS stored"
[ "$JOBS" -ge "$N" ] || fail "only $JOBS enrichment jobs done for $N alerts"
ENRICHED=$(sql "SELECT count(*) FROM alerts WHERE is_enriched")
step "all $JOBS jobs done, $ENRICHED alerts enriched, none lost after the kill"

# Each replica logs the jobs it claims; all three must have taken work.
REPLICAS=0
for c in $(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
           --filter "label=com.docker.compose.service=enricher"); do
    n=$(podman logs "$c" 2>&1 | grep -c 'done in [0-9]* ms' || true)
    echo "    enricher $c: $n job log lines"
    [ "$n" -gt 0 ] && REPLICAS=$((REPLICAS + 1))
done
[ "$REPLICAS" -ge 3 ] || fail "only $REPLICAS enricher replicas claimed work"

# --- 7. restart: the data survives ---------------------------------------------------------------
step "restarting the whole stack"
$DC down >/dev/null 2>&1
$DC up -d --scale enricher=3 >"$WORK/up2.log" 2>&1 || { cat "$WORK/up2.log"; fail "second up failed"; }
python3 tests/compose/drive.py wait-health "http://127.0.0.1:$PORT" 180
AFTER=$(sql "SELECT count(*) FROM alerts")
[ "$AFTER" -eq "$ALERTS" ] || fail "alerts after restart: $AFTER, before: $ALERTS"
python3 - "$PORT" "$KEY" <<'EOF' || fail "the key created before the restart no longer works"
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", "/v1/alerts?page_size=1", headers={"Authorization": "Bearer " + sys.argv[2]})
r = c.getresponse()
doc = json.loads(r.read())
assert r.status == 200 and doc["meta"]["total"] > 0, (r.status, doc)
EOF
AUDIT=$($DC exec -T auditd sh -c 'wc -l < /var/lib/calseta/audit/audit.log' | tr -d ' \r')
[ "${AUDIT:-0}" -gt 0 ] || fail "the audit log volume is empty"
step "data survived the restart ($AFTER alerts, key still valid, $AUDIT audit lines)"
step "PASS"
