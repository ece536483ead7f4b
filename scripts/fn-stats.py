#!/usr/bin/env python3
"""Lines per function and parameters per function in src/ (test modules excluded).

Usage: fn-stats.py [--root DIR] [--over N] [--list] [--check]

Prints how many functions exceed 80 and 100 lines and take five or more parameters, and with
--list the longest ones. --check fails (exit 1) when a function in src/controller/ or
src/rollout/ is over --over lines (default 80) without a comment saying why: a line
`// long:` (the reason follows) within the three lines above it.

A reading by brace counting, not a parser: strings, chars and comments are skipped so braces in
them do not count, which is enough for rustfmt-formatted code.
"""

import argparse
import pathlib
import re
import signal
import sys

FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def code_only(text):
    """The text with strings, chars and comments blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    """(name, first line, lines, parameters, reason given) of each non-test function."""
    raw = path.read_text().splitlines()
    lines = code_only(path.read_text()).splitlines()
    found, i = [], 0
    while i < len(lines):
        if lines[i].strip().startswith("#[cfg(test)]"):
            break  # test modules sit at the end of a file
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        # The signature: up to the body's `{` (or a `;` for a declaration without body).
        sig, j = "", i
        while j < len(lines):
            sig += lines[j] + "\n"
            if "{" in lines[j] or lines[j].rstrip().endswith(";"):
                break
            j += 1
        if "{" not in sig:
            i = j + 1
            continue
        params = count_params(sig[sig.find("(", sig.find(m.group(1))):])
        depth, k = 0, j
        start_col = lines[j].find("{")
        for k in range(j, len(lines)):
            seg = lines[k][start_col:] if k == j else lines[k]
            depth += seg.count("{") - seg.count("}")
            if depth <= 0:
                break
        reason = any("// long:" in raw[r] for r in range(max(0, i - 3), i))
        found.append((m.group(1), i + 1, k - i + 1, params, reason))
        i = k + 1 if k > i else i + 1
    return found


def count_params(s):
    depth, params, seen = 0, 0, False
    for c in s:
        if c in "(<[":
            depth += 1
            if depth == 1 and c == "(":
                continue
        elif c in ")>]":
            depth -= 1
            if depth == 0:
                break
        if depth == 1 and c == ",":
            params += 1
            seen = False
        elif depth >= 1 and not c.isspace():
            seen = True
    params += 1 if seen else 0
    self_param = re.match(r"\(\s*(&\s*('\w+\s+)?(mut\s+)?)?(mut\s+)?self\b", s)
    return params - (1 if self_param else 0)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the listing quietly
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(pathlib.Path(__file__).resolve().parent.parent))
    ap.add_argument("--over", type=int, default=80)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    src = pathlib.Path(args.root) / "src"
    rows = []
    for p in sorted(src.rglob("*.rs")):
        for name, line, n, params, reason in functions(p):
            rows.append((str(p.relative_to(args.root)), name, line, n, params, reason))
    strict = [r for r in rows if r[0].startswith(("src/controller/", "src/rollout/"))]
    print(f"functions in src/: {len(rows)}")
    for label, subset in (("src/", rows), ("src/controller/ + src/rollout/", strict)):
        print(
            f"{label}: over 80 lines {sum(r[3] > 80 for r in subset)}, over 100 lines "
            f"{sum(r[3] > 100 for r in subset)}, five or more parameters {sum(r[4] >= 5 for r in subset)}, "
            f"longest {max((r[3] for r in subset), default=0)}"
        )
    if args.list:
        for r in sorted(rows, key=lambda r: -r[3])[:25]:
            print(f"  {r[3]:4d} lines {r[4]} params  {r[0]}:{r[2]} {r[1]}{'  (reason given)' if r[5] else ''}")
    if args.check:
        bad = [r for r in strict if r[3] > args.over and not r[5]]
        for r in bad:
            print(f"{r[0]}:{r[2]}: {r[1]} is {r[3]} lines (over {args.over}) with no `// long:` reason", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
