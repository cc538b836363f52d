#!/usr/bin/env python3
"""Structure checks for the product crates, run by .ci/test.

1. No circle between modules. At every level of a crate's module tree the nodes are a module's
   own file and its child modules; there is an edge A -> B when code in A (or below it) names
   something in B (or below it) through `crate::` or `super::`. Re-exports (`pub use`) and `mod`
   declarations are not dependencies. Any strongly connected set of more than one node is a circle.
2. No function over 120 lines in product code, unless its body says why with a `// long:` comment.

Test code (`#[cfg(test)]` modules, tests/, benches/) is not checked. Prints what it finds and
exits 1 when anything is found. `--root DIR` checks another checkout.
"""

import argparse
import re
import sys
from pathlib import Path

PRODUCT_CRATES = ["crds", "engine", "runtime", "webhook", "cli", "controller"]
MAX_FN_LINES = 120


def strip_code(text: str) -> str:
    """Blanks comments, string and char literals (keeping newlines), so braces and paths in them
    are not read as code."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j == -1 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif (m := re.match(r'b?r(#*)"', text[i:i + 260])) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j == -1 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12])):
            out.append(" " * m.end())
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(code: str, start: int) -> int:
    """The index of the `}` closing the `{` at `start` (the end of `code` if it is not closed)."""
    depth = 0
    for j in range(start, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code)


def cut_tests(code: str) -> str:
    """Drops `#[cfg(test)]` items (a test module or a test-only item) by blanking their braces'
    contents."""
    result = list(code)
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        start = code.find("{", m.end())
        semi = code.find(";", m.end())
        if start == -1 or (semi != -1 and semi < start):
            continue
        j = matching_brace(code, start)
        for k in range(m.start(), min(j + 1, len(code))):
            if result[k] != "\n":
                result[k] = " "
    return "".join(result)


def module_of(src: Path, file: Path) -> tuple:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def crate_files(src: Path):
    for file in sorted(src.rglob("*.rs")):
        if "bin" in file.relative_to(src).parts:
            continue
        yield file


def references(code: str, module: tuple, is_mod_file: bool, modules: set) -> set:
    """Modules named by `crate::` and `super::` paths in `code`."""
    found = set()
    # `pub use` re-exports and `mod` declarations are not dependencies.
    code = re.sub(r"\bpub(\([^)]*\))?\s+use\b[^;]*;", " ", code)
    # Brace groups in `use` items: `use crate::a::{b, c::d}` names a::b and a::c::d.
    for m in re.finditer(r"\buse\s+((?:crate|super|self)(?:::\w+)*)::\{([^;]*)\};", code):
        base = m.group(1)
        for item in re.split(r"[,{}\s]+", m.group(2)):
            if item and item != "self":
                found.add(resolve(base + "::" + item.split("::")[0], module, is_mod_file, modules))
            elif item == "self":
                found.add(resolve(base, module, is_mod_file, modules))
    for m in re.finditer(r"\b((?:crate|super)(?:::(?:super|\w+))+)", code):
        found.add(resolve(m.group(1), module, is_mod_file, modules))
    found.discard(None)
    return found


def resolve(path: str, module: tuple, is_mod_file: bool, modules: set):
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    else:
        # In `a/b.rs` (module a::b), `super` is `a`; in `a/mod.rs` (module a), `super` is the root.
        base = module
        rest = parts
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    target = base
    for p in rest:
        if base + (p,) in modules or target + (p,) in modules:
            target = target + (p,)
        else:
            break
    return target


def sccs(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def circles(crate: str, src: Path) -> list:
    files = list(crate_files(src))
    modules = {module_of(src, f) for f in files}
    deps = {}
    for f in files:
        m = module_of(src, f)
        code = cut_tests(strip_code(f.read_text()))
        deps[m] = {t for t in references(code, m, f.name in ("mod.rs", "lib.rs", "main.rs"), modules) if t != m}
    problems = []
    for parent in sorted(modules):
        children = sorted(m for m in modules if len(m) == len(parent) + 1 and m[: len(parent)] == parent)
        if not children:
            continue
        self_node = parent + ("(own items)",)

        def node_of(m):
            if m[: len(parent)] != parent:
                return None
            if m == parent:
                return self_node
            return m[: len(parent) + 1]

        edges = {}
        for m, targets in deps.items():
            a = node_of(m)
            if a is None:
                continue
            for t in targets:
                b = node_of(t)
                if b is not None and b != a:
                    edges.setdefault(a, set()).add(b)
        for comp in sccs([self_node] + children, edges):
            if len(comp) > 1:
                names = sorted("::".join(c) if c != self_node else ("::".join(parent) or "lib") + " (own items)" for c in comp)
                problems.append(f"{crate}: module circle: {' <-> '.join(names)}")
    return problems


def long_functions(crate: str, src: Path, root: Path) -> list:
    problems = []
    for f in sorted(src.rglob("*.rs")):
        raw = f.read_text()
        code = cut_tests(strip_code(raw))
        raw_lines = raw.split("\n")
        for m in re.finditer(r"\bfn\s+(\w+)", code):
            brace = code.find("{", m.end())
            semi = code.find(";", m.end())
            if brace == -1 or (semi != -1 and semi < brace):
                continue
            j = matching_brace(code, brace)
            first = code.count("\n", 0, m.start())
            last = code.count("\n", 0, j)
            length = last - first + 1
            if length > MAX_FN_LINES:
                body = "\n".join(raw_lines[first : last + 1])
                if "// long:" not in body:
                    problems.append(f"{f.relative_to(root)}:{first + 1}: fn {m.group(1)} is {length} lines (over {MAX_FN_LINES}, and no `// long:` comment says why)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args()
    root = Path(args.root)
    problems = []
    for crate in PRODUCT_CRATES:
        src = root / crate / "src"
        if not src.is_dir():
            continue
        problems += circles(crate, src)
        problems += long_functions(crate, src, root)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} structure problem(s)", file=sys.stderr)
        return 1
    print("ok: no module circles, no function over", MAX_FN_LINES, "lines in", ", ".join(c for c in PRODUCT_CRATES if (root / c / "src").is_dir()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
