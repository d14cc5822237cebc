#!/usr/bin/env python3
"""test_intake_links.py - the internet-facing intake links no enricher code, and no code that
decrypts workflow secrets or talks to a workflow runner.

Provider credentials are decrypted only in the enrichment workers; the intake shares with them
only libcommon/providers (definitions, defaults, result objects, the SSRF guard). This test reads
the symbol tables with `nm`:

- every global symbol defined by the enricher's own objects (libsvc_enricher.a: credentials,
  engine, steps, templates, caches, limiters, claims) must be absent from calseta-intake;
- the list must hold the credential and engine entry points (so the check cannot pass on an
  empty or renamed archive), and calseta-enricher must define them;
- the intake must not define any global creds_/engine_/step_/template_/limiter_ symbol;
- workflow secrets are decrypted only by workflowd, which runs tests and checks code for the
  intake: the intake defines no runner-client, run-request or Fernet-decryption symbol, while
  calseta-workflowd defines every one of them (so the check cannot pass on renamed symbols).
"""
import os
import re
import subprocess
import sys

SRC = os.path.abspath(os.environ.get("CALSETA_SOURCE_DIR",
                                     os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.path.abspath(os.environ.get("CALSETA_BIN_DIR", os.path.join(SRC, "build", "bin")))
ARCHIVE = os.path.join(os.path.dirname(BIN), "libsvc_enricher.a")
MUST_LIST = ("creds_open", "creds_ctx_new", "step_build", "template_render")
FORBIDDEN = re.compile(r"^(creds|engine|step|template|limiter|ssrfcache|enricher)_")
# what opens a workflow secret and hands it to a runner
WORKFLOW_SECRET_CODE = ("fernet_decrypt", "run_request_init", "run_request_destroy", "runner_run",
                        "runner_validate", "runner_client_new", "runner_encode_run")


def global_defined(path):
    """Global symbols defined in a binary or archive (T, D, B, R, ...: upper-case types)."""
    out = subprocess.run(["nm", "--defined-only", path], capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError("nm %s failed: %s" % (path, out.stderr.strip()))
    names = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isupper() and parts[1] not in ("U", "W", "V"):
            names.add(parts[2])
    return names


def test_intake_has_no_enricher_symbol():
    for p in (ARCHIVE, os.path.join(BIN, "calseta-intake"), os.path.join(BIN, "calseta-enricher")):
        assert os.path.exists(p), "missing %s (build first)" % p
    enricher_own = global_defined(ARCHIVE)
    for name in MUST_LIST:
        assert name in enricher_own, "%s is not defined by the enricher's objects" % name
    engine = [n for n in enricher_own if n.startswith("engine_")]
    assert engine, "the enricher's objects define no engine_* symbol"
    in_enricher = global_defined(os.path.join(BIN, "calseta-enricher"))
    missing = sorted(n for n in MUST_LIST if n not in in_enricher)
    assert not missing, "calseta-enricher lacks %s" % missing
    intake = global_defined(os.path.join(BIN, "calseta-intake"))
    shared = sorted(enricher_own & intake)
    assert not shared, "calseta-intake links enricher code: %s" % ", ".join(shared)
    bad = sorted(n for n in intake if FORBIDDEN.match(n))
    assert not bad, "calseta-intake defines enricher-side symbols: %s" % ", ".join(bad)
    print("intake: %d global symbols, none of the enricher's %d" % (len(intake), len(enricher_own)))


def test_intake_has_no_workflow_secret_code():
    intake_bin = os.path.join(BIN, "calseta-intake")
    wfd_bin = os.path.join(BIN, "calseta-workflowd")
    for p in (intake_bin, wfd_bin):
        assert os.path.exists(p), "missing %s (build first)" % p
    wfd = global_defined(wfd_bin)
    missing = sorted(n for n in WORKFLOW_SECRET_CODE if n not in wfd)
    assert not missing, "calseta-workflowd lacks %s" % missing
    intake = global_defined(intake_bin)
    assert "workflow_client_new" in intake, "the intake has no workflowd client"
    assert "fernet_encrypt" in intake, "the intake no longer encrypts secrets it is given"
    linked = sorted(n for n in WORKFLOW_SECRET_CODE if n in intake)
    assert not linked, "calseta-intake links workflow-secret code: %s" % ", ".join(linked)
    print("intake: none of %d workflow-secret symbols; workflowd: all" % len(WORKFLOW_SECRET_CODE))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    from harness import run_tests
    run_tests(globals())
