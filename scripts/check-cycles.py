#!/usr/bin/env python3
"""Fail when the modules of src/ import each other in a cycle.

Layers whose dependencies point one way are what lets a stage be read, tested and changed alone,
so `make lint` runs this. It checks two granularities (issue 20):

- the crate's top-level modules (`controller`, `appset`, `rollout`, `diff`, ...), each counted as
  one node with everything under it;
- the submodules inside each of SPLIT (`controller/sync/`, `controller/sync/plan.rs`,
  `rollout/canary.rs`, ...), with the
  parent's `mod.rs` as a node of its own. A name the parent re-exports (`pub use context::Context`)
  counts as the submodule it comes from.

A dependency is any path in code that names a module: `use crate::x::...`, `use super::...`,
`crate::x::y` and `super::y` in expressions, and a parent naming its own child (`sync::run`).
Comments, string literals and `#[cfg(test)]` items (the `mod tests` blocks and files) are ignored:
a test may reach anywhere. Python 3 standard library only.

Usage: scripts/check-cycles.py [SRC_DIR]   (default: src next to this script's parent)
Prints each cycle found and exits 1 if there is any, 0 otherwise.
       scripts/check-cycles.py --self-test   checks the checker on a small planted crate
"""

import re
import sys
from pathlib import Path

# Top-level modules whose submodules are checked against each other too.
SPLIT = ("controller", "controller/sync", "rollout")

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text):
    """Blank out comments and string/char literals, keeping line structure and braces honest."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif c == "r" and re.match(r'r#*"', text[i:]) and not re.match(r"[A-Za-z0-9_]", text[i - 1 : i] or " "):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == "b" and text.startswith('b"', i) and not re.match(r"[A-Za-z0-9_]", text[i - 1 : i] or " "):
            i = skip_string(text, i + 1)
            out.append('""')
        elif c == '"':
            i = skip_string(text, i)
            out.append('""')
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a): only the former closes.
            m = re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", text[i:], re.S)
            if m:
                i += m.end()
                out.append("' '")
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def skip_string(text, i):
    """Index just past the string literal whose opening quote is at i."""
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return i


CFG_TEST = re.compile(r"#\[cfg\(test\)\]")


def strip_test_items(code):
    """Remove each `#[cfg(test)]` item; return the code and the names of `mod x;` test files."""
    test_files = []
    while True:
        m = CFG_TEST.search(code)
        if not m:
            return code, test_files
        i = m.end()
        # Further attributes before the item.
        while True:
            a = re.match(r"\s*#\[", code[i:])
            if not a:
                break
            i = match_close(code, i + a.end() - 1, "[", "]")
        decl = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code[i:])
        if decl:
            test_files.append(decl.group(1))
        end = item_end(code, i)
        code = code[: m.start()] + code[end:]


def match_close(code, i, open_c, close_c):
    """Index just past the bracket matching the one at i."""
    depth = 0
    while i < len(code):
        if code[i] == open_c:
            depth += 1
        elif code[i] == close_c:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def item_end(code, i):
    """End of the item starting at i: its first `;` or its `{ ... }` block, whichever ends it."""
    while i < len(code):
        if code[i] == ";":
            return i + 1
        if code[i] == "{":
            return match_close(code, i, "{", "}")
        i += 1
    return i


def expand_use_tree(tree):
    """`a::{b, c::{d, e as f}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+" + IDENT, "", tree))
    paths = []

    def walk(prefix, t):
        for part in split_top(t):
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0 and part.endswith("}"):
                walk(prefix + part[:brace].rstrip(":").split("::") if part[:brace] else prefix, part[brace + 1 : -1])
            else:
                segs = prefix + [s for s in part.split("::") if s]
                if len(segs) > 1 and segs[-1] == "self":
                    segs = segs[:-1]
                paths.append(segs)

    walk([], tree)
    return paths


def split_top(t):
    """Split on commas outside braces."""
    parts, depth, cur = [], 0, ""
    for c in t:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return parts


USE = re.compile(r"\buse\s+([^;]+);")
PATH = re.compile(r"(?<![A-Za-z0-9_:])((?:" + IDENT + r"\s*::\s*)+" + IDENT + r")")


def module_path(src, file):
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def resolve(segs, here, children):
    """Absolute module path segments for a path written in module `here`, or None if external."""
    if not segs:
        return None
    head = segs[0]
    if head == "crate":
        return segs[1:]
    if head in ("super", "self"):
        base = list(here)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
        return base + segs
    if head in children:
        return here + segs
    return None


def load(src):
    """{module path tuple: (code without tests/comments/strings)}, plus re-exports per module."""
    files = [f for f in sorted(src.rglob("*.rs")) if f.name not in ("main.rs",) and "bin" not in f.relative_to(src).parts]
    modules, test_files = {}, set()
    for f in files:
        path = tuple(module_path(src, f))
        code, tests = strip_test_items(strip_comments_and_strings(f.read_text()))
        modules[path] = code
        test_files.update(path + (t,) for t in tests)
    for t in test_files:
        modules.pop(t, None)
    return modules


def children_of(modules, here):
    return {p[-1] for p in modules if len(p) == len(here) + 1 and p[: len(here)] == here}


def reexports(modules):
    """{(module, name): child} for `pub use child::...name` in a module with children."""
    out = {}
    for here, code in modules.items():
        kids = children_of(modules, here)
        for m in USE.finditer(code):
            for segs in expand_use_tree(m.group(1)):
                if segs and segs[0] == "self":
                    segs = segs[1:]
                if len(segs) >= 2 and segs[0] in kids:
                    out[(here, segs[-1])] = segs[0]
    return out


def dependencies(modules):
    """{module path: set of absolute paths it names}."""
    deps = {}
    for here, code in modules.items():
        kids = children_of(modules, here)
        found = set()
        for m in USE.finditer(code):
            for segs in expand_use_tree(m.group(1)):
                r = resolve(segs, list(here), kids)
                if r:
                    found.add(tuple(r))
        for m in PATH.finditer(USE.sub(";", code)):
            segs = [s.strip() for s in m.group(1).split("::")]
            r = resolve(segs, list(here), kids)
            if r:
                found.add(tuple(r))
        deps[here] = found
    return deps


def node_of(path, modules, exports, parent):
    """The node a module path falls on inside `parent` (a tuple), or None if outside it."""
    if path[: len(parent)] != parent:
        return None
    rest = path[len(parent) :]
    if not rest:
        return "::".join(parent) or "crate"
    name = rest[0]
    if parent + (name,) in modules:
        return "::".join(parent + (name,))
    child = exports.get((parent, name))
    if child:
        return "::".join(parent + (child,))
    return "::".join(parent) or "crate"


def graph(modules, deps, exports, parent):
    """Edges between the direct children of `parent` (and `parent` itself), each with the paths
    that make it: {a: {b: {"crate::b::Name", ...}}}."""
    edges = {}
    for here, targets in deps.items():
        a = node_of(here, modules, exports, parent)
        if a is None:
            continue
        for t in targets:
            b = node_of(t, modules, exports, parent)
            if b is not None and b != a:
                edges.setdefault(a, {}).setdefault(b, set()).add("::".join(t))
    return edges


def cycles(edges):
    """Each strongly connected component with more than one node, with one cycle through it."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    nodes = set(edges) | {w for ws in edges.values() for w in ws}
    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return comps


def describe(comp, edges, shown=4):
    """The edges among the component's nodes, each with (some of) the names that make it."""
    lines = []
    for v in sorted(comp):
        for w in sorted(w for w in edges.get(v, ()) if w in comp):
            names = sorted(edges[v][w])
            more = f" (+{len(names) - shown})" if len(names) > shown else ""
            lines.append(f"    {v} -> {w}: {', '.join(names[:shown])}{more}")
    return "\n".join(lines)


def find_cycles(src, split=SPLIT):
    """[(scope, component, edges)] for every cycle, scope `()` being the top-level modules."""
    modules = load(src)
    deps = dependencies(modules)
    exports = reexports(modules)
    found = []
    for parent in [()] + [tuple(m.split("/")) for m in split]:
        edges = graph(modules, deps, exports, parent)
        found += [(parent, comp, edges) for comp in cycles(edges)]
    return found


# A crate in which only `b <-> c` (top level) and `a <-> a::y` (inside `a`) are cycles: the
# other references back are in a comment, a string, a test module, or through a re-export.
SELF_TEST = {
    "lib.rs": "pub mod a; pub mod b; pub mod c; pub mod d;\n",
    "a/mod.rs": "//! uses crate::b in a comment\nmod x; mod y;\npub use x::Thing;\n"
    'fn f() { let s = "crate::d::z"; y::g(); }\n#[cfg(test)]\nmod tests { use crate::b::Q; }\n',
    "a/x.rs": "pub struct Thing<'a>(&'a str);\nfn h() -> char { '{' }\n",
    "a/y.rs": "use super::{Thing as T};\npub fn g() { super::f() }\n",
    "b/mod.rs": "pub fn q() { crate::a::Thing; crate::c::x(); }\n",
    "c.rs": "use crate::{b::{self, q}};\npub fn x() {}\n",
    "d.rs": "use crate::a::Thing;\n",
}


def self_test():
    """Checks the checker on SELF_TEST; exit status 0 when it finds exactly the planted cycles."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        for name, text in SELF_TEST.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text)
        got = sorted((parent, sorted(comp)) for parent, comp, _ in find_cycles(src, split=("a",)))
    want = [((), ["b", "c"]), (("a",), ["a", "a::y"])]
    if got != want:
        print(f"self-test failed: found {got}, expected {want}")
        return 1
    print("self-test passed")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    found = find_cycles(src)
    for parent, comp, edges in found:
        where = "::".join(parent) or "top-level modules"
        print(f"import cycle among {where}: {', '.join(sorted(comp))}")
        print(describe(comp, edges))
    if found:
        print(f"{len(found)} import cycle(s); make the dependencies point one way.")
        return 1
    scopes = ["top-level modules"] + list(SPLIT)
    print("no import cycles in " + ", ".join(scopes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
