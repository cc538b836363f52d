#!/usr/bin/env python3
"""Check that every relative link in README.md and docs/**/*.md resolves.

For each Markdown link `[text](target)` outside fenced code blocks and inline code, skip
http(s) and mailto targets; resolve the path part relative to the linking file (a bare
`#anchor` means the same file); fail when the file does not exist, or when a `#anchor` on a
.md target names no heading of that file (GitHub-style slugs: lowercase, punctuation other
than hyphens and spaces removed, spaces to hyphens, duplicates suffixed -1, -2, ...).
Prints each broken link as `file:line: target: reason` and exits 1, else `ok: N links checked`.
Standard library only.
"""
import os
import re
import sys
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
INLINE_CODE = re.compile(r"(`+)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.S)
# [text](target) or [text](<target> "title"); the text may hold one level of brackets (badges).
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
SKIP_SCHEMES = ("http://", "https://", "mailto:")
# A reference definition: [label]: target
REFDEF = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(<[^>]*>|\S+)")


def markdown_files():
    files = [os.path.join(ROOT, "README.md")]
    for base, dirs, names in os.walk(os.path.join(ROOT, "docs")):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [os.path.join(base, n) for n in sorted(names) if n.endswith(".md")]
    return [f for f in files if os.path.isfile(f)]


def prose_lines(text):
    """Yield (line number, line) outside fenced code blocks, with inline code blanked out.

    Code spans may continue over a line break (not over a blank line), so they are blanked in
    the whole text at once; newlines are kept, so line numbers stay right.
    """
    outside = {number: line for number, line in prose_lines_raw(text)}
    lines = text.split("\n")
    prose = "\n".join(outside.get(n, "") for n in range(1, len(lines) + 1))
    prose = INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), prose)
    yield from enumerate(prose.split("\n"), 1)


def slug(heading):
    text = heading.strip()
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links: keep their text
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)  # punctuation, except hyphens and spaces
    return text.replace(" ", "-")


_anchor_cache = {}


def anchors(path):
    if path not in _anchor_cache:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        seen, result = {}, set()
        previous = None
        for _, line in prose_lines_raw(text):
            m = HEADING.match(line)
            title = None
            if m:
                title = m.group(2)
            elif previous is not None and previous.strip() and SETEXT.match(line) and not HEADING.match(previous):
                title = previous
            previous = line
            if title is None:
                continue
            base = slug(title.replace("`", ""))
            n = seen.get(base, 0)
            seen[base] = n + 1
            result.add(base if n == 0 else f"{base}-{n}")
        # Explicit anchors: <a name="x"> / id="x".
        result.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", text))
        _anchor_cache[path] = result
    return _anchor_cache[path]


def prose_lines_raw(text):
    """Lines outside fenced code blocks, inline code kept (for headings)."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):].strip():
                fence = None
            continue
        yield number, line


def check(path):
    broken, count = [], 0
    with open(path, encoding="utf-8") as f:
        text = f.read()
    rel = os.path.relpath(path, ROOT)
    lines = [line for _, line in prose_lines(text)]
    prose = "\n".join(lines)
    found = []  # (line number, target); a link's text may run over a line break
    for m in LINK.finditer(prose):
        found.append((prose.count("\n", 0, m.start(1)) + 1, m.group(1)))
    for number, line in enumerate(lines, 1):
        d = REFDEF.match(line)
        if d:
            found.append((number, d.group(1)))
    for number, target in sorted(found, key=lambda f: f[0]):
        target = target.strip()
        if target.startswith("<") and target.endswith(">"):
            target = target[1:-1].strip()
        if not target or target.lower().startswith(SKIP_SCHEMES):
            continue
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # another scheme (ftp:, data:, ...): not a relative link
        count += 1
        part, _, anchor = target.partition("#")
        part = urllib.parse.unquote(part.split("?", 1)[0])
        anchor = urllib.parse.unquote(anchor)
        if part.startswith("/"):
            resolved = os.path.normpath(os.path.join(ROOT, part.lstrip("/")))
        elif part:
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), part))
        else:
            resolved = path
        if not os.path.exists(resolved):
            broken.append(f"{rel}:{number}: {target}: {os.path.relpath(resolved, ROOT)} does not exist")
            continue
        if anchor and resolved.endswith(".md") and os.path.isfile(resolved):
            if anchor not in anchors(resolved):
                broken.append(f"{rel}:{number}: {target}: no heading #{anchor} in {os.path.relpath(resolved, ROOT)}")
    return broken, count


def main():
    broken, total = [], 0
    for path in markdown_files():
        b, n = check(path)
        broken += b
        total += n
    for line in broken:
        print(line)
    if broken:
        print(f"{len(broken)} broken of {total} links checked", file=sys.stderr)
        return 1
    print(f"ok: {total} links checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
