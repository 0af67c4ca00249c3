#!/usr/bin/env python3
"""Fails when a module of a workspace crate imports one that imports it back.

Fata's rule (docs/architecture.md): each module owns its errors and helpers, and no module uses
another that uses it, directly or through others. This reads every crate's `src/` as text: a module
uses another when its code outside `#[cfg(test)]` names it through `crate::`, `super::` or as a
child path. Uses of the crate root are left out, because the root declares every module and
re-exports their items. Usage: python3 scripts/module-cycles.py [WORKSPACE]
"""

import glob
import os
import re
import sys


def modules(src):
    """Maps each module path (`a::b`, `` for the root) to its file."""
    found = {}
    for path in glob.glob(os.path.join(src, "**", "*.rs"), recursive=True):
        parts = os.path.relpath(path, src)[:-3].split(os.sep)
        if parts[-1] in ("lib", "main", "mod"):
            parts = parts[:-1]
        found["::".join(parts)] = path
    return found


def uses(module, text, known):
    """The modules other than the root that `module`'s non-test code names."""
    text = re.sub(r"//[^\n]*", "", text.split("#[cfg(test)]")[0])
    own = [part for part in module.split("::") if part]
    refs = [([], path) for path in re.findall(r"\bcrate::([\w:]+)", text)]
    refs += [(own[:-1], path) for path in re.findall(r"\bsuper::([\w:]+)", text)]
    refs += [(own, name) for name in re.findall(r"\b(\w+)::", text) if "::".join(own + [name]) in known]
    targets = set()
    for base, path in refs:
        segments = path.split("::")
        for length in range(len(segments), 0, -1):
            candidate = "::".join(base + segments[:length])
            if candidate in known:
                targets.add(candidate)
                break
    targets.discard(module)
    targets.discard("")
    return targets


def cycles(src):
    """Each cycle among `src`'s modules, as a list of module paths."""
    known = modules(src)
    edges = {m: uses(m, open(f, encoding="utf-8").read(), known) for m, f in known.items() if m}
    found, state = [], {}

    def visit(module, stack):
        state[module] = "open"
        stack.append(module)
        for other in sorted(edges.get(module, ())):
            if state.get(other) == "open":
                found.append(stack[stack.index(other):] + [other])
            elif other not in state:
                visit(other, stack)
        stack.pop()
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    sources = sorted(glob.glob(os.path.join(root, pattern)) for pattern in ("crates/*/src", "apps/*/src", "bench/*/src"))
    failures = 0
    for src in (s for group in sources for s in group):
        for cycle in cycles(src):
            failures += 1
            print(f"error: {src}: {' -> '.join(cycle)}: a module imports one that imports it back; "
                  "move what both need into a module of its own, or let the caller wrap the "
                  "callee's error", file=sys.stderr)
    if failures:
        sys.exit(1)
    print("ok: no module imports one that imports it back")


if __name__ == "__main__":
    main()
