#!/usr/bin/env python3
"""test_settings_doc.py - the configuration reference cannot drift from the code.

- docs/configuration.md must equal what `calseta settings-doc` prints from the settings table
  (libcommon/config/settings_table.c); regenerate it with scripts/config-doc.sh.
- Every setting name the C sources read (settings_get, setting_value/dup/ll/bool, config.c's
  INT/BOOL/get/get_str, the secrets backends' env_get, getenv) must have a row in the table.
- Every row of the table must be read somewhere (no documentation of settings that do nothing).
"""
import os
import re
import subprocess
import sys

SRC = os.path.abspath(os.environ.get("CALSETA_SOURCE_DIR",
                                     os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.path.abspath(os.environ.get("CALSETA_BIN_DIR", os.path.join(SRC, "build", "bin")))

READERS = (r"settings_get|setting_value|setting_dup|setting_ll|setting_bool|setting_int"
           r"|setting_integer|setting|get_str|get_int|get_ll|get_bool|get_rate|get|env_get|INT|BOOL|getenv")
CALL = re.compile(r"\b(?:%s)\((?:[^;\"()]*,\s*)?\"([A-Z][A-Z0-9_]{2,})\"" % READERS)
# Settings read through a list rather than one call per name.
LISTED = re.compile(r"\"([A-Z][A-Z0-9_]{2,})\"")
LIST_FILES = {
    "services/runner/main.c",        # the runner's clean environment
    "services/intake/workflows_api.c",  # built-in integrations' activation
    "services/intake/signature.c",   # webhook secrets by source
    "libcommon/config/settings.c",   # secrets backend triggers
    "libcommon/config/config.c",     # internal endpoints (defaults in the data folder)
    "libcommon/bus/bus_curve.c",     # CURVE keys per link
}


def table_names():
    text = open(os.path.join(SRC, "libcommon", "config", "settings_table.c")).read()
    return set(re.findall(r"\{[A-Z]+, \"([A-Z][A-Z0-9_]+)\"", text))


def read_names():
    """name -> first file:line that reads it."""
    found = {}
    for top in ("libcommon", "services"):
        for root, _, files in os.walk(os.path.join(SRC, top)):
            for f in files:
                if not f.endswith(".c") or f == "settings_table.c":
                    continue
                path = os.path.join(root, f)
                rel = os.path.relpath(path, SRC)
                for n, line in enumerate(open(path, encoding="utf-8"), 1):
                    names = CALL.findall(line)
                    if rel in LIST_FILES:
                        names += [x for x in LISTED.findall(line) if x in table_names()]
                    for name in names:
                        found.setdefault(name, "%s:%d" % (rel, n))
    return found


def main():
    failures = []
    doc_path = os.path.join(SRC, "docs", "configuration.md")
    out = subprocess.run([os.path.join(BIN, "calseta"), "settings-doc"], capture_output=True,
                         text=True, check=True).stdout
    try:
        doc = open(doc_path, encoding="utf-8").read()
    except OSError as e:
        doc = ""
        failures.append("cannot read %s: %s" % (doc_path, e))
    if doc != out:
        failures.append("docs/configuration.md is stale: run scripts/config-doc.sh")
    table = table_names()
    if len(table) < 50:
        failures.append("settings table parse found only %d rows" % len(table))
    reads = read_names()
    for name, where in sorted(reads.items()):
        if name not in table:
            failures.append("%s is read at %s but has no row in libcommon/config/settings_table.c"
                            % (name, where))
    for name in sorted(table - set(reads)):
        failures.append("%s has a row in the settings table but nothing reads it" % name)
    for name in table:
        if "`%s`" % name not in out:
            failures.append("%s missing from the generated reference" % name)
    for f in failures:
        print("FAIL", f)
    print("%d settings documented, %d read names checked, %d failures"
          % (len(table), len(reads), len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
