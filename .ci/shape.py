#!/usr/bin/env python3
"""The shape check: import circles and long files in a crate's source.

    python3 .ci/shape.py [--report] [--explain] [ROOT ...]   (ROOT: src)
    python3 .ci/shape.py --edges FOLDER [--explain]        (e.g. src/server)
    python3 .ci/shape.py --pending FOLDER ... [ROOT ...]
    python3 .ci/shape.py --self-test

For every folder of the module tree under ROOT it prints the import graph:
one line per file of the folder and the files of the same folder it
imports. It fails (status 1) on

  (a) a non-test source file over 700 lines, or
  (b) an import circle between files of one folder: two that import each
      other, or a longer ring.

With --report it prints the same graph, every file's line count and the
findings, and exits 0: the "before and after" of a restructuring.
--pending FOLDER prints the circles in FOLDER and below as PENDING and
does not count them: a folder whose restructuring is under way
elsewhere, named in .ci/run until it lands (line counts still count).
--edges FOLDER prints only that folder's graph and its circles (found
in the crate FOLDER belongs to), and exits 0. --explain adds, under
each edge, the paths that make it.

What it counts, and why:

- A folder is a module with child modules. Its nodes are its children
  (a child with children of its own, `meta/` or `binary.rs` with
  `binary/`, is one node, its whole subtree) and the module's own file
  (`mod.rs`, or `server.rs` beside `server/`), the latter only where it
  does more than declare modules and import or re-export names.
- An import is any path to another file's item: `use super::x::Y`,
  `use crate::a::b::Y`, and the same paths written inline in code
  (`super::op::outcome(..)`, `crate::storage::Shard`), a module imported
  by `use` and then used as `op::outcome`, and `self::`/`super::super::`.
  A name is followed through `use` and `pub use` to the file that defines
  it, so `use super::Router` from a sibling of `router.rs` is an edge to
  `router.rs`, not to the `mod.rs` that re-exports it.
- Test code does not count: an item under `#[cfg(test)]` (a file's own
  `mod tests`, a test-only method) is skipped, and files only test code
  reaches are not source files for the line limit either.
- Comments, strings and character literals are removed before any of
  this, so a doc comment naming `crate::x` is not an import.

It reads Rust as tokens, not as a full grammar: enough for `use` trees,
paths, attributes and item boundaries, which is all the question needs.
No dependency beyond Python 3's standard library.
"""

import os
import re
import sys
from collections import defaultdict

MAX_LINES = 700

# ---------------------------------------------------------------- tokens

_IDENT = re.compile(r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9][0-9A-Za-z_]*(?:\.[0-9][0-9A-Za-z_]*)?")


def tokenize(text):
    """Rust source to a list of (kind, value) tokens: 'id' identifiers
    (with `$crate` as one), 'p' punctuation (`::` as one); comments,
    string, byte-string, raw-string, char and number literals dropped,
    lifetimes kept as 'lt' so they are not mistaken for chars."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("//", i):
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
        elif c in "rb" and re.match(r'(?:b?r#*")', text[i:]):
            m = re.match(r'b?r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            i = n if j < 0 else j + len(end)
        elif c == '"' or text.startswith('b"', i) or text.startswith('c"', i):
            i = text.index('"', i) + 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif c == "'" or text.startswith("b'", i):
            start = i + (2 if c == "b" else 1)
            m = re.match(r"\\(?:u\{[0-9a-fA-F_]*\}|x..|.)'|[^\\']'", text[start:], re.S)
            if m:  # a char literal
                i = start + m.end()
            else:  # a lifetime or label
                m = _IDENT.match(text, start)
                out.append(("lt", m.group(0) if m else ""))
                i = m.end() if m else start
        elif text.startswith("$crate", i):
            out.append(("id", "$crate"))
            i += len("$crate")
        elif c.isalpha() or c == "_":
            m = _IDENT.match(text, i)
            word = m.group(0)
            out.append(("id", word[2:] if word.startswith("r#") else word))
            i = m.end()
        elif c.isdigit():
            i = _NUMBER.match(text, i).end()
        elif text.startswith("::", i):
            out.append(("p", "::"))
            i += 2
        else:
            out.append(("p", c))
            i += 1
    return out


# ---------------------------------------------------------------- modules

ITEM_WORDS = {"fn", "struct", "enum", "const", "static", "type", "trait", "union"}
QUALIFIERS = {"pub", "unsafe", "async", "extern", "default", "auto"}
OPEN, CLOSE = "([{", ")]}"
# What a name imported from another crate (std, tokio, ...) resolves to.
FOREIGN = ("foreign",)


class Module:
    """A module: its file, its children, the names it defines and the
    names it imports, and the paths its code refers to."""

    def __init__(self, name, file, parent, child_dir, inline=False):
        self.name = name
        self.file = file
        self.parent = parent
        self.child_dir = child_dir  # where `mod x;` looks for x.rs / x/mod.rs
        self.inline = inline
        self.children = {}  # name -> Module
        self.items = set()  # names defined here
        self.uses = {}  # name -> path (list of segments) it imports
        self.globs = []  # paths imported with `*`
        self.refs = []  # paths referred to in code (use trees included)
        self.substantive = False  # defines or implements anything

    def path(self):
        names = []
        m = self
        while m.parent is not None:
            names.append(m.name)
            m = m.parent
        return "::".join(reversed(names)) or "crate"


def _skip_group(toks, i):
    """Index past the bracketed group opening at toks[i]."""
    depth = 0
    while i < len(toks):
        kind, v = toks[i]
        if kind == "p" and v in OPEN:
            depth += 1
        elif kind == "p" and v in CLOSE:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _item_end(toks, i):
    """Index past the item starting at toks[i]: its first `;` outside
    brackets, or the end of its first top-level `{...}` block."""
    while i < len(toks):
        kind, v = toks[i]
        if kind == "p" and v == ";":
            return i + 1
        if kind == "p" and v == "{":
            return _skip_group(toks, i)
        if kind == "p" and v in "([":
            i = _skip_group(toks, i)
            continue
        i += 1
    return i


def _is_cfg_test(attr):
    """`#[cfg(test)]`, the only attribute that makes an item test code."""
    return [v for _, v in attr] == ["cfg", "(", "test", ")"]


def parse_use_tree(toks, i, prefix, out):
    """Parses one use tree at toks[i]; appends (path, alias) pairs to out
    (alias '*' for a glob, None for `self`-less module groups). Returns
    the index after the tree."""
    path = list(prefix)
    while i < len(toks):
        kind, v = toks[i]
        if kind == "id":
            path.append(v)
            i += 1
            if i < len(toks) and toks[i] == ("p", "::"):
                i += 1
                continue
            alias = path[-1]
            if i < len(toks) and toks[i] == ("id", "as"):
                alias = toks[i + 1][1]
                i += 2
            if path[-1] == "self":
                path = path[:-1]
                alias = path[-1] if alias == "self" else alias
            out.append((path, alias))
            return i
        if v == "*":
            out.append((path, "*"))
            return i + 1
        if v == "{":
            i += 1
            while i < len(toks) and toks[i] != ("p", "}"):
                if toks[i] == ("p", ","):
                    i += 1
                    continue
                i = parse_use_tree(toks, i, path, out)
            return i + 1
        if v == "::":  # a leading `::` (extern path)
            i += 1
            continue
        return i + 1
    return i


def code_paths(toks, start, end):
    """Every path of two or more segments in toks[start:end] that starts
    at an identifier not itself after a `::` (so `a::b::c` once), leaving
    out what a `#[cfg(test)]` inside the range marks as test code."""
    paths = []
    i = start
    while i < end:
        kind, v = toks[i]
        if toks[i] == ("p", "#") and i + 1 < end and toks[i + 1] == ("p", "["):
            close = _skip_group(toks, i + 1)
            if _is_cfg_test(toks[i + 2 : close - 1]):
                close = _item_end(toks, close)
            i = close
            continue
        after_colons = i > 0 and toks[i - 1] == ("p", "::")
        if kind == "id" and not after_colons and i + 1 < end and toks[i + 1] == ("p", "::"):
            path = [v]
            j = i + 1
            while j + 1 < end and toks[j] == ("p", "::") and toks[j + 1][0] == "id":
                path.append(toks[j + 1][1])
                j += 2
            paths.append(path)
            i = j
        else:
            i += 1
    return paths


class Crate:
    """The module tree of one crate root, test code left out."""

    def __init__(self, root_file):
        self.files = {}  # file -> Module (the file's top module)
        self.root = self._load("crate", root_file, None, is_mod_rs=True)

    def _load(self, name, file, parent, is_mod_rs):
        base = os.path.dirname(file)
        stem = os.path.splitext(os.path.basename(file))[0]
        child_dir = base if is_mod_rs else os.path.join(base, stem)
        module = Module(name, file, parent, child_dir)
        self.files[file] = module
        with open(file, encoding="utf-8") as f:
            text = f.read()
        toks = tokenize(text)
        self._parse_items(module, toks, 0, len(toks), self._path_attrs(text))
        return module

    @staticmethod
    def _path_attrs(text):
        """`#[path = "x"] mod name;` pairs, read from the raw text since
        the tokenizer drops strings."""
        found = {}
        for m in re.finditer(r'#\[path\s*=\s*"([^"]+)"\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)', text):
            found[m.group(2)] = m.group(1)
        return found

    def _parse_items(self, module, toks, i, end, path_attrs):
        attrs = []
        while i < end:
            kind, v = toks[i]
            if toks[i] == ("p", "#"):
                j = i + 1
                inner = j < end and toks[j] == ("p", "!")
                if inner:
                    j += 1
                close = _skip_group(toks, j)
                if not inner:
                    attrs.append(toks[j + 1 : close - 1])
                i = close
                continue
            if any(_is_cfg_test(a) for a in attrs):
                i = _item_end(toks, i)
                attrs = []
                continue
            attrs = []
            # Visibility and qualifiers.
            j = i
            while j < end and toks[j][0] == "id" and toks[j][1] in QUALIFIERS:
                j += 1
                if toks[j - 1][1] == "pub" and j < end and toks[j] == ("p", "("):
                    j = _skip_group(toks, j)
            word = toks[j][1] if j < end else None
            if word == "mod":
                name = toks[j + 1][1]
                if toks[j + 2] == ("p", ";"):
                    child = self._child_file(module, name, path_attrs.get(name))
                    is_mod_rs = os.path.basename(child) == "mod.rs" or name in path_attrs
                    module.children[name] = self._load(name, child, module, is_mod_rs)
                    i = j + 3
                else:
                    block_end = _skip_group(toks, j + 2)
                    inline = Module(name, module.file, module, os.path.join(module.child_dir, name), True)
                    module.children[name] = inline
                    self._parse_items(inline, toks, j + 3, block_end - 1, {})
                    i = block_end
                continue
            if word == "use":
                stop = _item_end(toks, j)
                found = []
                parse_use_tree(toks, j + 1, [], found)
                for path, alias in found:
                    if alias == "*":
                        module.globs.append(path)
                    elif alias != "_":
                        module.uses[alias] = path
                    # A re-export (`pub use`, `pub(crate) use`) only
                    # declares a name for others: where they use it, the
                    # edge goes to the file that defines it.
                    if toks[i] != ("id", "pub"):
                        module.refs.append(("use", path))
                i = stop
                continue
            if word == "extern" and j + 1 < end and toks[j + 1] == ("id", "crate"):
                i = _item_end(toks, j)
                continue
            if word == "macro_rules":
                module.items.add(toks[j + 2][1])
            stop = _item_end(toks, j if j < end else i)
            if word in ITEM_WORDS and j + 1 < end and toks[j + 1][0] == "id":
                module.items.add(toks[j + 1][1])
            if kind == "p" and v == ";":
                i += 1
                continue
            module.substantive = True
            for path in code_paths(toks, i, stop):
                module.refs.append(("code", path))
            i = max(stop, i + 1)

    @staticmethod
    def _child_file(module, name, path_attr):
        if path_attr:
            return os.path.normpath(os.path.join(os.path.dirname(module.file), path_attr))
        flat = os.path.join(module.child_dir, name + ".rs")
        nested = os.path.join(module.child_dir, name, "mod.rs")
        if os.path.exists(flat):
            return flat
        if os.path.exists(nested):
            return nested
        raise SystemExit(f"shape: {module.file}: no file for `mod {name};`")

    # -------------------------------------------------------- resolution

    def lookup(self, module, name, seen):
        """What `name` means inside `module`: ('mod', Module), ('item',
        file), FOREIGN (imported from another crate) or None (std's
        prelude, a macro, a name only a glob or a test brings)."""
        if name in module.children:
            return ("mod", module.children[name])
        if name in module.items:
            return ("item", module.file)
        if name in module.uses:
            key = (id(module), name)
            if key in seen:
                return None
            # An import from another crate is a name known to be foreign.
            return self.resolve(module, module.uses[name], seen | {key}) or FOREIGN
        for glob in module.globs:
            # A glob whose own path goes through a glob (`use a::*; use
            # b::*;` where `b` may come from `a`) is followed once.
            key = (id(module), "*", tuple(glob))
            if key in seen:
                continue
            target = self.resolve(module, glob, seen | {key})
            if target and target[0] == "mod":
                found = self.lookup(target[1], name, seen | {key})
                if found:
                    return found
        return None

    def resolve(self, module, path, seen=frozenset()):
        """Follows `path` from `module` to a module or an item's file."""
        first, rest = path[0], path[1:]
        if first in ("crate", "$crate"):
            current = ("mod", self.root)
        elif first == "self":
            current = ("mod", module)
        elif first == "super":
            current = ("mod", module.parent)
        else:
            current = self.lookup(module, first, seen)
        for segment in rest:
            if current is None or current[0] != "mod":
                break
            here = current[1]
            if segment == "super":
                current = ("mod", here.parent)
            elif segment == "self":
                continue
            else:
                found = self.lookup(here, segment, seen)
                # A name the module neither defines nor imports (an enum
                # variant through a glob, say) is the module's own.
                current = found or ("item", here.file)
        return None if current == FOREIGN else current

    def references(self):
        """(from file, to file) -> the paths that make it, for every path
        in the crate's code."""
        edges = defaultdict(set)
        for module in self.modules():
            for how, path in module.refs:
                target = self.resolve(module, path)
                if target is None:
                    continue
                if how == "use" and target[0] == "mod":
                    continue  # counted where the module is used
                to = target[1].file if target[0] == "mod" else target[1]
                if to != module.file:
                    edges[(module.file, to)].add("::".join(path))
        return edges

    def modules(self, module=None):
        module = module or self.root
        yield module
        for child in module.children.values():
            yield from self.modules(child)


# ---------------------------------------------------------------- graph


def folders(crate):
    """Each module with file children, as (module, nodes) where nodes
    maps a file to the node (child name or the module's own file) it
    belongs to in that folder."""
    out = []
    for module in crate.modules():
        children = {n: c for n, c in module.children.items() if not c.inline}
        if not children:
            continue
        nodes = {}
        for name, child in children.items():
            label = name + "/" if os.path.basename(child.file) == "mod.rs" else os.path.basename(child.file)
            for sub in crate.modules(child):
                nodes[sub.file] = label
        if module.substantive:
            nodes[module.file] = os.path.basename(module.file)
        out.append((module, nodes))
    return out


def circles(edges):
    """Pairs that import each other, and larger strongly connected sets
    (rings of three or more) with one of their rings spelled out."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    pairs = sorted({tuple(sorted((a, b))) for a, b in edges if a in graph[b]})
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            sccs.append(sorted(scc))

    for v in sorted(set(graph) | {b for _, b in edges}):
        if v not in index:
            visit(v)
    rings = []
    for scc in sccs:
        if len(scc) < 3:
            continue
        ring = shortest_long_ring(graph, set(scc))
        if ring:
            rings.append((scc, ring))
    return pairs, rings


def shortest_long_ring(graph, members):
    """The shortest cycle of three or more nodes inside `members`, if the
    set has one (a set may be held together by pairs alone)."""
    best = None
    for start in sorted(members):
        frontier = [[start]]
        while frontier and (best is None or len(frontier[0]) < len(best)):
            grown = []
            for path in frontier:
                for w in sorted(graph[path[-1]] & members):
                    if w == start:
                        if len(path) >= 3 and (best is None or len(path) < len(best)):
                            best = path
                    elif w not in path:
                        grown.append(path + [w])
            frontier = grown[:20000]
    return best


def check(root, report, explain, only=None, pending=()):
    """Prints root's graph and findings; returns the number of findings.
    With `only` (a folder path), prints that folder's graph alone. Circles
    in a `pending` folder (or below it) are printed as PENDING and not
    counted."""
    findings = 0
    crates = []
    for entry in ("lib.rs", "main.rs"):
        path = os.path.join(root, entry)
        if os.path.exists(path):
            crates.append(Crate(path))
    if only is None:
        print(f"== {root}: import graph (file -> files of its folder it imports)")
    for crate in crates:
        edges = crate.references()
        for module, nodes in folders(crate):
            folder = module.child_dir + "/"
            if only is not None and os.path.normpath(module.child_dir) != only:
                continue
            own = f" (with {os.path.basename(module.file)})" if module.file in nodes else ""
            graph = defaultdict(set)
            why = defaultdict(set)
            for (a, b), paths in edges.items():
                if a in nodes and b in nodes and nodes[a] != nodes[b]:
                    graph[nodes[a]].add(nodes[b])
                    source = os.path.relpath(a, module.child_dir)
                    why[(nodes[a], nodes[b])] |= {f"{source}: {p}" for p in paths}
            print(f"{folder}{own}")
            for node in sorted(set(nodes.values())):
                targets = ", ".join(sorted(graph[node])) or "-"
                print(f"  {node} -> {targets}")
                if explain:
                    for target in sorted(graph[node]):
                        print(f"      {target}: {'; '.join(sorted(why[(node, target)]))}")
            pairs, rings = circles({(a, b) for a in graph for b in graph[a]})
            held = any(folder.startswith(p.rstrip("/") + "/") for p in pending)
            mark = "PENDING " if held else ""
            for a, b in pairs:
                print(f"  {mark}CIRCLE {folder}: {a} <-> {b}")
                findings += not held
            for scc, ring in rings:
                print(f"  {mark}RING {folder}: {' -> '.join(ring + ring[:1])}  (of {', '.join(scc)})")
                findings += not held
    if only is not None:
        return findings
    source = sorted({f for crate in crates for f in crate.files})
    print(f"== {root}: non-test source files, lines (limit {MAX_LINES})")
    for file in source:
        with open(file, encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        over = lines > MAX_LINES
        if over:
            findings += 1
        if report or over:
            print(f"  {lines:5d} {file}{'  OVER ' + str(MAX_LINES) if over else ''}")
    return findings


# ---------------------------------------------------------------- self-test


def self_test():
    """Checks the checker on a small crate made for it."""
    import tempfile

    files = {
        "lib.rs": "//! `crate::b::B` in a doc comment is no import.\npub mod a;\npub mod b;\npub mod c;\n",
        "a.rs": 'use crate::b::B;\n/// super::c::C\npub struct A(B);\nconst S: &str = "super::c::C";\n'
        "#[cfg(test)]\nmod tests { use super::super::c::C; }\n",
        "b.rs": "pub struct B;\nimpl B { fn f() -> super::a::A { todo!() } }\n",
        "c/mod.rs": "mod inner;\npub use inner::C;\n",
        "c/inner.rs": "pub struct C;\npub fn g(_: char) { let _ = '\"'; let _l: &'static str = \"\"; }\n"
        "pub fn h() -> super::super::a::A { todo!() }\n",
    }
    with tempfile.TemporaryDirectory() as root:
        for name, text in files.items():
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        crate = Crate(os.path.join(root, "lib.rs"))
        rel = {(os.path.relpath(a, root), os.path.relpath(b, root)) for a, b in crate.references()}
        assert crate.references()[(os.path.join(root, "b.rs"), os.path.join(root, "a.rs"))] == {"super::a::A"}
        # c/mod.rs re-exports inner.rs: no edge, and no node of its folder.
        want = {("a.rs", "b.rs"), ("b.rs", "a.rs"), ("c/inner.rs", "a.rs")}
        assert rel == want, rel
        assert not crate.files[os.path.join(root, "c/mod.rs")].substantive
        (module, nodes), = [(m, n) for m, n in folders(crate) if m is crate.root]
        assert sorted(set(nodes.values())) == ["a.rs", "b.rs", "c/"], nodes
        pairs, rings = circles({("a", "b"), ("b", "a"), ("b", "c"), ("c", "d"), ("d", "b")})
        assert pairs == [("a", "b")], pairs
        assert [ring for _, ring in rings] == [["b", "c", "d"]], rings
    print("shape: self-test passed")


def main(argv):
    if "--self-test" in argv:
        self_test()
        return 0
    report = "--report" in argv
    explain = "--explain" in argv
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if "--edges" in argv:
        at = argv.index("--edges")
        if at + 1 >= len(argv):
            print("shape: --edges needs a folder, e.g. --edges src/server")
            return 2
        folder = os.path.normpath(argv[at + 1])
        # The crate root: the nearest folder above with a lib.rs or main.rs.
        root = folder
        while root and not any(os.path.exists(os.path.join(root, f)) for f in ("lib.rs", "main.rs")):
            root = os.path.dirname(root)
        if not root:
            print(f"shape: {folder} is in no crate (no lib.rs or main.rs above it)")
            return 2
        found = check(root, True, explain, only=folder)
        print(f"shape: {found} circle(s) in {folder}/")
        return 0
    pending = []
    while "--pending" in argv:
        at = argv.index("--pending")
        pending.append(os.path.normpath(argv[at + 1]))
        argv = argv[:at] + argv[at + 2 :]
    roots = [a for a in argv if not a.startswith("--")] or ["src"]
    findings = sum(check(root.rstrip("/"), report, explain, pending=pending) for root in roots)
    if findings and not report:
        print(f"shape: {findings} finding(s): see CIRCLE, RING and OVER above")
        return 1
    print(f"shape: {findings} finding(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
