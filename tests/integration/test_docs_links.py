"""The operator documentation holds together: every relative link of README.md and docs/*.md
names a file of the repository, every #anchor names a heading of its target (GitHub's slugs),
and no page, source file or comment points outside the repository or at a tracker number.
(That every setting has its row in docs/configuration.md is test_settings_doc.py's.)"""
import os
import re
import sys

ROOT = os.environ.get("CALSETA_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")


def pages():
    docs = sorted(f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    return ["README.md"] + ["docs/" + f for f in docs]


def prose(path):
    """The page without its fenced code blocks and inline code (links there are examples)."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", s)
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = re.sub(r"^```.*?^```", "", f.read(), flags=re.S | re.M)
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.M):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else "%s-%d" % (base, n))
    return out


def test_links_resolve():
    bad = []
    for page in pages():
        for m in re.finditer(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(page)):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # an absolute URL
            path, _, frag = target.partition("#")
            full = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else \
                os.path.join(ROOT, page)
            if not os.path.exists(full):
                bad.append("%s: %s (no such file)" % (page, target))
            elif frag and full.endswith(".md") and frag not in anchors(os.path.relpath(full, ROOT)):
                bad.append("%s: %s (no such heading)" % (page, target))
    assert not bad, "broken links:\n  " + "\n  ".join(bad)


OUTSIDE = re.compile(r"\.\./shared|shared/(spec|reference)|\bSPEC\.md\b|\bissue #?\d+|\(#\d+\)", re.I)
SOURCE_DIRS = ("libcommon", "services", "proto", "migrations", "scripts", "tests", "compose", "docs")
SOURCE_ENDINGS = (".c", ".h", ".py", ".sql", ".sh", ".md", ".yml", ".yaml", ".txt", ".example")


def sources():
    """The repository's own text files (build folders and installed packages left out)."""
    yield "README.md"
    yield "CMakeLists.txt"
    yield "Makefile"
    for top in SOURCE_DIRS:
        for d, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [x for x in dirs if x not in ("node_modules", "__pycache__") and
                       not x.startswith("build")]
            for f in files:
                if f.endswith(SOURCE_ENDINGS):
                    yield os.path.relpath(os.path.join(d, f), ROOT)


def test_no_outside_references():
    bad = []
    me = os.path.relpath(os.path.abspath(__file__), os.path.abspath(ROOT))
    for path in sources():
        if path == me:
            continue
        with open(os.path.join(ROOT, path), encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if OUTSIDE.search(line):
                    bad.append("%s:%d: %s" % (path, n, line.strip()))
    assert not bad, "references to places an operator does not have:\n  " + "\n  ".join(bad)


def main():
    failed = 0
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
                print("PASS", name)
            except AssertionError as e:
                failed += 1
                print("FAIL", name, e)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
