#!/usr/bin/env python3
"""Checks that the Rust crate in src/ has no import cycle between its files.

A file A depends on a file B when code in A names an item (fn, struct, enum, trait,
type, const, static, union) that B defines: through a `use` (crate::, super::, self::,
a name in scope, or the library's name from the binary crate), through a path in code
(`crate::a::b::f()`, `super::routes::blocking(..)`, `state::AppState::new()`), or through
a glob import whose names A uses. Each name is resolved to the file that DEFINES it,
following `use` and `pub use` re-exports, so a mod.rs that only re-exports its children
does not depend on them; a `pub use` counts as a dependency only when the file itself
uses the name. `mod x;` is ownership, not a dependency.

The files and their dependencies form a directed graph; each strongly connected component
of more than one file (Tarjan) is an import cycle, printed with its elementary cycles and
the lines that make each edge. Exit status 1 if there is a cycle, 0 if none, 2 on error.
Stdlib only (python3 >= 3.10). Edges from `#[cfg(test)]` code are marked [test];
--ignore-tests drops them.

    scripts/check-import-cycles.py               (checks ./src of the package in .)
    scripts/check-import-cycles.py --graph       (also prints every edge)
    scripts/check-import-cycles.py --self-test   (runs the built-in examples)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------
# Lexer: identifiers, `::`, single-character punctuation and opaque literals, with line
# numbers. Comments (nested block comments too), strings, raw strings and char literals
# are dropped or made opaque, so nothing inside them counts.

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*)
  | (?P<raw_string>[bc]?r(?P<hashes>\#*)")
  | (?P<string>[bc]?"(?:[^"\\]|\\.)*")
  | (?P<char>b?'(?:[^'\\\n]|\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]*\}|.))')
  | (?P<lifetime>'[^\W\d]\w*)
  | (?P<raw_ident>r\#[^\W\d]\w*)
  | (?P<ident>[^\W\d]\w*)
  | (?P<number>\d\w*(?:\.\d\w*)?)
  | (?P<path_sep>::)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass
class Tok:
    kind: str  # 'id', 'p' (punctuation), 'lit', 'life'
    text: str
    line: int


class LexError(Exception):
    pass


def lex(src: str) -> list[Tok]:
    toks: list[Tok] = []
    pos, line, n = 0, 1, len(src)
    while pos < n:
        m = _TOKEN.match(src, pos)
        assert m is not None  # `punct` matches any character
        kind = "raw_string" if m.group("raw_string") is not None else m.lastgroup
        text = m.group(0)
        if kind == "block_comment":
            depth, j = 1, pos + 2
            while depth and j < n:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise LexError(f"line {line}: unterminated block comment")
            text = src[pos:j]
        elif kind == "raw_string":
            end = src.find('"' + m.group("hashes"), m.end())
            if end < 0:
                raise LexError(f"line {line}: unterminated raw string")
            text = src[pos : end + 1 + len(m.group("hashes"))]
            toks.append(Tok("lit", "<str>", line))
        elif kind in ("string", "char", "number"):
            toks.append(Tok("lit", "<lit>", line))
        elif kind == "lifetime":
            toks.append(Tok("life", text, line))
        elif kind == "raw_ident":
            toks.append(Tok("id", text[2:], line))
        elif kind == "ident":
            toks.append(Tok("id", text, line))
        elif kind in ("path_sep", "punct"):
            toks.append(Tok("p", text, line))
        line += text.count("\n")
        pos += len(text)
    toks.append(Tok("p", "<eof>", line))
    return toks


# ---------------------------------------------------------------------------------------
# Model: modules (file or inline), the items they define and the names they import.


@dataclass
class Binding:
    """One leaf of a `use` tree: `alias` is bound to `segs` in `module`."""

    module: "Module"
    segs: list[str]
    alias: str | None  # None for a glob
    is_pub: bool
    module_level: bool  # False for a `use` inside a fn body or block
    line: int
    in_test: bool


@dataclass
class CodePath:
    """A path of two or more segments in code (not in a `use`)."""

    module: "Module"
    segs: list[str]
    line: int
    in_test: bool


@dataclass(eq=False)
class Module:
    crate: str
    path: tuple[str, ...]
    file: str
    parent: "Module | None"
    dir: str  # where `mod x;` inside this module looks for x.rs / x/mod.rs
    in_test: bool
    children: dict[str, "Module"] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)  # name -> line
    bindings: dict[str, list[Binding]] = field(default_factory=dict)  # module-level
    block_bindings: dict[str, list[Binding]] = field(default_factory=dict)
    globs: list[Binding] = field(default_factory=list)  # module-level globs
    all_uses: list[Binding] = field(default_factory=list)
    code_paths: list[CodePath] = field(default_factory=list)
    used: set[str] = field(default_factory=set)  # identifiers in code, outside `use`

    def display(self) -> str:
        return "::".join((self.crate,) + self.path)


@dataclass(frozen=True)
class Item:
    file: str
    name: str


_ITEM_KEYWORDS = {"fn", "struct", "enum", "trait", "type", "const", "static", "union"}
# Tokens that may come right before an item keyword at module level.
_BEFORE_ITEM = {";", "}", "{", "]", "pub", "unsafe", "async", "const", "extern", "default", "auto"}
_KEYWORDS = {
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum",
    "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move",
    "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true",
    "type", "unsafe", "use", "where", "while",
}


class SourceError(Exception):
    pass


def _matching_open(toks: list[Tok], j: int, open_: str, close: str) -> int:
    """Index of the `open_` matching the `close` at j (scanning backwards), or -1."""
    depth = 0
    while j >= 0:
        if toks[j].text == close:
            depth += 1
        elif toks[j].text == open_:
            depth -= 1
            if depth == 0:
                return j
        j -= 1
    return -1


def _prefix_info(toks: list[Tok], i: int) -> tuple[bool, list[str], int]:
    """For the item keyword at i: (is pub, outer attributes, index before them)."""
    j, is_pub = i - 1, False
    if toks[j].text == ")":
        k = _matching_open(toks, j, "(", ")")
        if k > 0 and toks[k - 1].text == "pub":
            is_pub, j = True, k - 2
    elif toks[j].text == "pub":
        is_pub, j = True, j - 1
    attrs = []
    while j >= 0 and toks[j].text == "]":
        k = _matching_open(toks, j, "[", "]")
        if k <= 0 or toks[k - 1].text != "#":
            break
        attrs.append("".join(t.text for t in toks[k + 1 : j]))
        j = k - 2
    return is_pub, attrs, j


def _is_cfg_test(attrs: list[str]) -> bool:
    return any(re.match(r"cfg\((all\()?test\b", a) for a in attrs)


class Crates:
    """Every module of the library and binary crates, read from `files` (path -> text)."""

    def __init__(self, files: dict[str, str], roots: dict[str, str], lib_name: str | None):
        self.files = files
        self.lib_name = lib_name
        self.roots: dict[str, Module] = {}
        self.modules: list[Module] = []
        self.file_module: dict[str, Module] = {}
        self.child_files: dict[str, set[str]] = {}  # file -> files it owns via `mod x;`
        self.warnings: list[str] = []
        for crate, root in roots.items():
            if root in self.files:
                m = Module(crate, (), root, None, os.path.dirname(root), False)
                self.roots[crate] = m
                self._load_file(m)

    # -- reading ------------------------------------------------------------------------

    def _load_file(self, module: Module) -> None:
        if module.file in self.file_module:
            raise SourceError(f"{module.file} is a module twice")
        self.modules.append(module)
        self.file_module[module.file] = module
        try:
            toks = lex(self.files[module.file])
        except LexError as e:
            raise SourceError(f"{module.file}: {e}") from e
        self._parse(module, toks)

    def _new_child(self, parent: Module, name: str, file: str, dir_: str, in_test: bool) -> Module:
        child = Module(parent.crate, parent.path + (name,), file, parent, dir_, in_test)
        parent.children[name] = child
        return child

    def _parse(self, file_module: Module, toks: list[Tok]) -> None:
        stack: list[tuple[Module, int]] = [(file_module, 0)]
        depth, i, n = 0, 0, len(toks) - 1
        while i < n:
            t = toks[i]
            cur, body = stack[-1]
            if t.text == "{":
                depth += 1
            elif t.text == "}":
                depth -= 1
                if depth < body:
                    stack.pop()
            elif t.kind == "id" and t.text == "use" and toks[i + 1].text != "<":
                i = self._parse_use(cur, toks, i, depth == body)
                continue
            elif (
                t.kind == "id" and t.text == "mod" and depth == body
                and toks[i + 1].kind == "id" and toks[i + 2].text in (";", "{")
            ):
                name = toks[i + 1].text
                _, attrs, _ = _prefix_info(toks, i)
                in_test = cur.in_test or _is_cfg_test(attrs)
                path_attr = next((a for a in attrs if a.startswith("path=")), None)
                if path_attr is not None:
                    raise SourceError(f"{cur.file}:{t.line}: #[path] on `mod {name}` is not supported")
                if toks[i + 2].text == "{":
                    child = self._new_child(cur, name, cur.file, os.path.join(cur.dir, name), in_test)
                    self.modules.append(child)
                    stack.append((child, depth + 1))
                else:
                    base = os.path.join(cur.dir, name)
                    cands = [base + ".rs", os.path.join(base, "mod.rs")]
                    found = [c for c in cands if c in self.files]
                    if not found:
                        raise SourceError(f"{cur.file}:{t.line}: no file for `mod {name};` ({' or '.join(cands)})")
                    f = found[0]
                    dir_ = base if f.endswith(".rs") and not f.endswith("/mod.rs") else os.path.dirname(f)
                    child = self._new_child(cur, name, f, dir_, in_test)
                    self.child_files.setdefault(cur.file, set()).add(f)
                    self._load_file(child)
                i += 2
                continue
            elif t.kind == "id" and t.text in _ITEM_KEYWORDS and depth == body:
                self._maybe_item(cur, toks, i)
            elif t.kind == "id" and t.text == "macro_rules" and depth == body and toks[i + 1].text == "!":
                if toks[i + 2].kind == "id":
                    cur.items.setdefault(toks[i + 2].text, toks[i + 2].line)
            if t.kind == "id" and toks[i + 1].text == "::" and (i == 0 or toks[i - 1].text != "::"):
                segs, j = [t.text], i
                while toks[j + 1].text == "::" and toks[j + 2].kind == "id":
                    segs.append(toks[j + 2].text)
                    j += 2
                if len(segs) > 1:
                    cur.code_paths.append(CodePath(cur, segs, t.line, cur.in_test))
                    cur.used.add(segs[0])
                    i = j + 1
                    continue
            if (
                t.kind == "id" and t.text not in _KEYWORDS
                and toks[i - 1].text != "."  # a method or a field, not an item
                and toks[i + 1].text != ":"  # a field or binding being declared or set
            ):
                cur.used.add(t.text)
            i += 1

    def _maybe_item(self, cur: Module, toks: list[Tok], i: int) -> None:
        kw, prev = toks[i].text, toks[i - 1] if i else Tok("p", ";", 0)
        ok = prev.text in _BEFORE_ITEM or prev.kind == "lit"  # extern "C" fn
        if prev.text == ")":
            k = _matching_open(toks, i - 1, "(", ")")
            ok = k > 0 and toks[k - 1].text == "pub"
        if prev.text == "const" and kw != "fn":
            ok = False
        if not ok:
            return
        j = i + 1
        if kw == "static" and toks[j].text == "mut":
            j += 1
        name = toks[j]
        if name.kind != "id" or name.text in _KEYWORDS or name.text == "_":
            return
        if kw == "union" and toks[j + 1].text not in ("{", "<"):
            return
        cur.items.setdefault(name.text, name.line)

    def _parse_use(self, cur: Module, toks: list[Tok], i: int, module_level: bool) -> int:
        is_pub, attrs, _ = _prefix_info(toks, i)
        in_test = cur.in_test or _is_cfg_test(attrs)
        leaves: list[tuple[list[str], str | None, int]] = []
        try:
            j = self._use_tree(toks, i + 1, [], leaves)
        except (IndexError, SourceError) as e:
            raise SourceError(f"{cur.file}:{toks[i].line}: cannot parse `use`") from e
        if toks[j].text != ";":
            raise SourceError(f"{cur.file}:{toks[i].line}: cannot parse `use` (no `;`)")
        for segs, alias, line in leaves:
            b = Binding(cur, segs, alias, is_pub, module_level, line, in_test)
            cur.all_uses.append(b)
            if alias is None:
                if module_level:
                    cur.globs.append(b)
            elif alias != "_":
                target = cur.bindings if module_level else cur.block_bindings
                target.setdefault(alias, []).append(b)
        return j + 1

    def _use_tree(self, toks: list[Tok], i: int, prefix: list[str], out: list) -> int:
        segs = list(prefix)
        if toks[i].text == "::":
            if not segs:
                segs = ["::"]
            i += 1
        while True:
            t = toks[i]
            if t.text == "{":
                i += 1
                while toks[i].text != "}":
                    i = self._use_tree(toks, i, segs, out)
                    if toks[i].text == ",":
                        i += 1
                    elif toks[i].text != "}":
                        raise SourceError("bad use list")
                return i + 1
            if t.text == "*":
                out.append((segs, None, t.line))
                return i + 1
            if t.kind != "id":
                raise SourceError("bad use path")
            i += 1
            if toks[i].text == "::":
                segs = segs + [t.text]
                i += 1
                continue
            alias = t.text
            if toks[i].text == "as":
                alias = toks[i + 1].text
                i += 2
            if t.text == "self":
                out.append((segs, segs[-1] if alias == "self" else alias, t.line))
            else:
                out.append((segs + [t.text], alias, t.line))
            return i

    # -- name resolution ----------------------------------------------------------------

    def lookup(self, m: Module, name: str, guard: set, block: bool = False, item_first: bool = False):
        """What `name` means in module m: a Module, an Item, or None (not ours / unknown).
        A name can be a module and a fn at once (`mod identify; pub use identify::identify;`):
        item_first picks the item (a path's last segment in code), else the module wins."""
        key = (id(m), name, block, item_first)
        if key in guard:
            return None
        guard.add(key)
        try:
            module = None
            for r in self._meanings(m, name, guard, block, item_first):
                if isinstance(r, Item) or not item_first:
                    return r
                if isinstance(r, Module) and module is None:
                    module = r
            return module
        finally:
            guard.discard(key)

    def _meanings(self, m: Module, name: str, guard: set, block: bool, item_first: bool):
        if block:
            for b in m.block_bindings.get(name, []):
                r = self.resolve(m, b.segs, guard, final_item=item_first)
                if isinstance(r, (Module, Item)):
                    yield r
        if name in m.children:
            yield m.children[name]
        if name in m.items:
            yield Item(m.file, name)
        for b in m.bindings.get(name, []):
            r = self.resolve(m, b.segs, guard, final_item=item_first)
            if isinstance(r, (Module, Item)):
                yield r
        for g in m.globs:
            t = self.resolve(m, g.segs, guard)
            if isinstance(t, Module):
                r = self.lookup(t, name, guard, item_first=item_first)
                if r is not None:
                    yield r

    def names(self, m: Module, guard: set | None = None) -> set[str]:
        guard = set() if guard is None else guard
        if id(m) in guard:
            return set()
        guard.add(id(m))
        out = set(m.children) | set(m.items) | set(m.bindings)
        for g in m.globs:
            t = self.resolve(m, g.segs, set())
            if isinstance(t, Module):
                out |= self.names(t, guard)
        return out

    def resolve(self, m: Module, segs: list[str], guard: set, block: bool = False, final_item: bool = False):
        """Resolves a path used in module m. Returns a Module, an Item, None when the path
        is not this package's (std, a dependency, a local variable's type...), or a str
        saying why a path into this package does not resolve."""
        if segs[0] == "::":
            segs = segs[1:]
            if not segs or segs[0] != self.lib_name or m.crate == "lib":
                return None
        s0, rest = segs[0], segs[1:]
        if s0 == "crate":
            cur = self.roots[m.crate]
        elif s0 == "self":
            cur = m
        elif s0 == "super":
            cur, k = m, 0
            while k < len(segs) and segs[k] == "super":
                if cur.parent is None:
                    return f"`{'::'.join(segs)}` goes above the crate root"
                cur, k = cur.parent, k + 1
            rest = segs[k:]
        elif s0 == self.lib_name and m.crate != "lib" and "lib" in self.roots and s0 not in m.children:
            cur = self.roots["lib"]
        else:
            cur = self.lookup(m, s0, guard, block, final_item and not rest)
            if cur is None:
                return None
        for k, seg in enumerate(rest):
            if isinstance(cur, Item):
                return cur  # Enum::Variant, Type::method, Trait::CONST ...
            nxt = self.lookup(cur, seg, guard, item_first=final_item and k == len(rest) - 1)
            if nxt is None:
                return f"no `{seg}` in module {cur.display()}"
            cur = nxt
        return cur


# ---------------------------------------------------------------------------------------
# The file graph.


@dataclass
class Evidence:
    line: int
    names: set[str]
    in_test: bool
    kind: str  # 'use', 'glob use', 'path'


def build_graph(crates: Crates, ignore_tests: bool) -> dict[tuple[str, str], dict[int, Evidence]]:
    edges: dict[tuple[str, str], dict[int, Evidence]] = {}

    def add(src: str, target, line: int, name: str, in_test: bool, kind: str) -> None:
        if not isinstance(target, Item) or target.file == src or (in_test and ignore_tests):
            return
        ev = edges.setdefault((src, target.file), {}).setdefault(line, Evidence(line, set(), True, kind))
        ev.names.add(name)
        ev.in_test = ev.in_test and in_test

    def warn(m: Module, line: int, what: str) -> None:
        crates.warnings.append(f"{m.file}:{line}: cannot resolve {what}")

    for m in crates.modules:
        for b in m.all_uses:
            r = crates.resolve(m, b.segs, set(), final_item=b.alias is not None)
            if isinstance(r, str):
                warn(m, b.line, f"`use {'::'.join(b.segs)}`: {r}")
                continue
            if b.alias is None:  # glob: the names m uses from it
                if isinstance(r, Module):
                    for name in sorted(crates.names(r) & m.used):
                        add(m.file, crates.lookup(r, name, set(), item_first=True), b.line, name, b.in_test, "glob use")
                else:  # `use Enum::*`: the variants live where the enum does
                    add(m.file, r, b.line, b.segs[-1] + "::*", b.in_test, "glob use")
                continue
            if b.is_pub and b.alias not in m.used:
                continue  # a re-export the file does not use itself
            add(m.file, r, b.line, b.alias if b.alias != "_" else b.segs[-1], b.in_test, "use")
        for p in m.code_paths:
            r = crates.resolve(m, p.segs, set(), block=True, final_item=True)
            if isinstance(r, str):
                local = p.segs[0] in ("crate", "self", "super") or crates.lookup(m, p.segs[0], set(), True)
                if local:
                    warn(m, p.line, f"`{'::'.join(p.segs)}`: {r}")
                continue
            add(m.file, r, p.line, "::".join(p.segs), p.in_test, "path")
    return edges


def tarjan(nodes: list[str], succ: dict[str, list[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    sccs: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        # Iterative DFS: (node, iterator over successors).
        work = [(root, iter(succ.get(root, [])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(succ.get(w, []))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                scc = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    scc.append(w)
                    if w == v:
                        break
                sccs.append(sorted(scc))
    return sccs


def elementary_cycles(scc: list[str], succ: dict[str, list[str]], limit: int) -> list[list[str]]:
    """Simple cycles inside one SCC, each starting at its smallest file, at most `limit`."""
    members = set(scc)
    out: list[list[str]] = []
    for s in scc:
        path, on_path = [s], {s}

        def dfs(v: str) -> None:
            for w in succ.get(v, []):
                if len(out) >= limit or w not in members or w < s:
                    continue
                if w == s:
                    out.append(path + [s])
                elif w not in on_path:
                    path.append(w)
                    on_path.add(w)
                    dfs(w)
                    on_path.discard(w)
                    path.pop()

        dfs(s)
    return out


@dataclass
class Report:
    cycles: list[list[str]]  # SCCs of two or more files
    text: str
    edges: dict
    files: set[str]  # the files that are modules of a crate


def check(files: dict[str, str], roots: dict[str, str], lib_name: str | None,
          ignore_tests: bool = False, show_graph: bool = False, cycle_limit: int = 100,
          all_lines: bool = False, max_lines: int = 3) -> Report:
    crates = Crates(files, roots, lib_name)
    edges = build_graph(crates, ignore_tests)
    nodes = sorted(crates.file_module)
    succ: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        succ.setdefault(a, []).append(b)
    sccs = sorted((c for c in tarjan(nodes, succ) if len(c) > 1), key=lambda c: c[0])
    lines: list[str] = []
    for w in crates.warnings:
        lines.append(f"warning: {w}")
    src_lines = {f: t.splitlines() for f, t in files.items()}

    def relation(a: str, b: str) -> str:
        if b in crates.child_files.get(a, ()):
            return "  (parent -> child)"
        if a in crates.child_files.get(b, ()):
            return "  (child -> parent)"
        return ""

    def describe_edge(a: str, b: str, indent: str) -> None:
        evs = edges[(a, b)]
        test = " [test]" if all(e.in_test for e in evs.values()) else ""
        lines.append(f"{indent}{a} -> {b}{relation(a, b)}{test}")
        # `use` lines first, then paths in code, each in line order.
        shown = sorted(evs.values(), key=lambda e: (e.kind == "path", e.line))
        for e in shown if all_lines else shown[:max_lines]:
            text = src_lines[a][e.line - 1].strip() if e.line - 1 < len(src_lines[a]) else ""
            tag = " [test]" if e.in_test else ""
            lines.append(f"{indent}    {a}:{e.line}: {text}    ({e.kind}: {', '.join(sorted(e.names))}){tag}")
        if len(shown) > max_lines and not all_lines:
            lines.append(f"{indent}    ... and {len(shown) - max_lines} more line(s) (--all-lines shows them)")

    if show_graph:
        lines.append(f"{len(edges)} file dependencies:")
        for a, b in sorted(edges):
            describe_edge(a, b, "  ")
    for k, scc in enumerate(sccs, 1):
        lines.append(f"import cycle {k}: {len(scc)} files: {', '.join(scc)}")
        members = set(scc)
        lines.append("  edges inside it:")
        for a in scc:
            for b in succ.get(a, []):
                if b in members:
                    describe_edge(a, b, "    ")
        cyc = elementary_cycles(scc, succ, cycle_limit)
        more = f" (first {cycle_limit})" if len(cyc) >= cycle_limit else ""
        lines.append(f"  elementary cycles{more}:")
        for c in cyc:
            pc = ""
            if len(c) == 3 and relation(c[0], c[1]):
                pc = "    [parent/child pair]"
            lines.append("    " + " -> ".join(c) + pc)
    if sccs:
        lines.append(f"check-import-cycles: {len(sccs)} import cycle(s) among {len(nodes)} files")
    else:
        lines.append(f"check-import-cycles: no import cycle among {len(nodes)} files ({len(edges)} dependencies)")
    return Report(sccs, "\n".join(lines), edges, set(crates.file_module))


# ---------------------------------------------------------------------------------------
# Self-test: small in-memory crates.

LIB = {"lib": "src/lib.rs"}
BOTH = {"lib": "src/lib.rs", "bin": "src/main.rs"}

SELF_TESTS: list[tuple[str, dict[str, str], dict, list[list[str]], list[tuple[str, str]], list[tuple[str, str]]]] = [
    # (name, files, roots, expected cycles, edges that must exist, edges that must not)
    (
        "two files that use each other form a cycle (one through `use Enum::*`)",
        {
            "src/lib.rs": "mod a;\nmod b;\n",
            "src/a.rs": "use crate::b::B;\npub struct A(B);\npub enum E { X }\n",
            "src/b.rs": "pub struct B;\nfn f() {\n    use crate::a::E::*;\n    let _ = X;\n}\n",
        },
        LIB,
        [["src/a.rs", "src/b.rs"]],
        [("src/a.rs", "src/b.rs"), ("src/b.rs", "src/a.rs")],
        [],
    ),
    (
        "a mod.rs that re-exports its child is not in a cycle with it",
        {
            "src/lib.rs": "mod p;\nmod q;\n",
            "src/p/mod.rs": (
                "mod c;\npub use c::{identify, Thing};\npub(crate) use self::c::Other as Renamed;\n"
                "pub struct Base { identify: bool }\nfn f(g: G) -> Base { g.identify(); Base { identify: true } }\n"
            ),
            "src/p/c.rs": "use super::Base;\npub struct Thing(Base);\npub struct Other;\npub fn identify() {}\n",
            "src/q.rs": "use crate::p::{Renamed, Thing};\nfn f(_: Thing, _: Renamed) {}\n",
        },
        LIB,
        [],
        [("src/p/c.rs", "src/p/mod.rs"), ("src/q.rs", "src/p/c.rs")],
        [("src/p/mod.rs", "src/p/c.rs"), ("src/q.rs", "src/p/mod.rs")],
    ),
    (
        "super:: paths and a block-level use make a cycle; comments and strings do not count",
        {
            "src/lib.rs": "mod s;\n",
            "src/s/mod.rs": "mod x;\nmod y;\n",
            "src/s/x.rs": "pub fn f() -> u8 {\n    use super::y as why;\n    why::g()\n}\n",
            "src/s/y.rs": (
                "// use super::z::Z;\n/* nested /* super::z::h() */ */\n"
                "pub fn g() -> u8 { let _ = \"super::z::h()\"; let _ = r#\"crate::s::z::h\"#; 1 }\n"
                "pub fn h() -> u8 { super::x::f() }\nfn l<'a>(c: &'a str) -> char { 'x' }\n"
            ),
            "src/s/z.rs": "pub fn h() {}\n",
        },
        LIB,
        [["src/s/x.rs", "src/s/y.rs"]],
        [("src/s/x.rs", "src/s/y.rs"), ("src/s/y.rs", "src/s/x.rs")],
        [],
    ),
    (
        "a parent that uses its child's item while the child uses the parent's is a cycle",
        {
            "src/lib.rs": "pub mod app;\n",
            "src/app/mod.rs": "pub mod state;\nuse state::AppState;\npub struct Settings;\npub fn run(_: AppState) {}\n",
            "src/app/state.rs": "use super::Settings;\npub struct AppState(Settings);\n",
        },
        LIB,
        [["src/app/mod.rs", "src/app/state.rs"]],
        [("src/app/mod.rs", "src/app/state.rs"), ("src/app/state.rs", "src/app/mod.rs")],
        [],
    ),
    (
        "an imported module used in a path, a glob import, an inline test module",
        {
            "src/lib.rs": "mod server;\n",
            "src/server/mod.rs": "mod admin;\nmod routes;\npub struct AppState;\nconst UNUSED: u8 = 0;\n",
            "src/server/routes.rs": (
                "use super::*;\npub fn blocking(_: &AppState) {}\n"
                "#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::server::admin::helper;\n"
                "    #[test]\n    fn t() { blocking(&AppState); helper(); }\n}\n"
            ),
            "src/server/admin.rs": "use super::routes;\npub fn helper() {}\nfn f() { routes::blocking(&super::AppState) }\n",
        },
        LIB,
        [["src/server/admin.rs", "src/server/routes.rs"]],
        [
            ("src/server/admin.rs", "src/server/routes.rs"),
            ("src/server/admin.rs", "src/server/mod.rs"),
            ("src/server/routes.rs", "src/server/mod.rs"),
            ("src/server/routes.rs", "src/server/admin.rs"),
        ],
        [("src/server/mod.rs", "src/server/routes.rs"), ("src/server/mod.rs", "src/server/admin.rs")],
    ),
    (
        "the binary uses the library by its name; a pub use the file uses itself counts",
        {
            "src/lib.rs": "pub mod a;\npub mod b;\npub use b::B;\npub fn top(_: B) {}\n",
            "src/a.rs": "pub struct A;\n",
            "src/b.rs": "pub struct B;\n",
            "src/main.rs": "mod cli;\nfn main() { cli::run() }\n",
            "src/cli.rs": "use blindface::a::A;\npub fn run() { let _ = blindface::B; let _: A = A; }\n",
        },
        BOTH,
        [],
        [("src/lib.rs", "src/b.rs"), ("src/cli.rs", "src/a.rs"), ("src/cli.rs", "src/b.rs"), ("src/main.rs", "src/cli.rs")],
        [("src/lib.rs", "src/a.rs")],
    ),
    (
        "re-exports chained through two mod.rs files resolve to the defining file; a fn named like a module",
        {
            "src/lib.rs": "pub mod he;\npub mod app;\npub use he::Key;\n",
            "src/he/mod.rs": "mod keys;\nmod gen;\npub use keys::*;\npub use gen::keys;\n",
            "src/he/keys.rs": "pub struct Key;\n",
            "src/he/gen.rs": "pub fn keys() {}\n",
            "src/app.rs": "use crate::Key;\nfn f() -> Key { crate::he::keys(); crate::he::Key }\n",
        },
        LIB,
        [],
        [("src/app.rs", "src/he/keys.rs"), ("src/app.rs", "src/he/gen.rs")],
        [("src/app.rs", "src/lib.rs"), ("src/app.rs", "src/he/mod.rs"), ("src/he/mod.rs", "src/he/keys.rs")],
    ),
]


def self_test() -> int:
    failures = 0
    for name, files, roots, want_cycles, must, must_not in SELF_TESTS:
        try:
            rep = check(files, roots, "blindface")
        except SourceError as e:
            print(f"FAIL {name}: {e}")
            failures += 1
            continue
        problems = []
        if rep.cycles != want_cycles:
            problems.append(f"cycles {rep.cycles}, want {want_cycles}")
        problems += [f"missing edge {a} -> {b}" for a, b in must if (a, b) not in rep.edges]
        problems += [f"unexpected edge {a} -> {b}" for a, b in must_not if (a, b) in rep.edges]
        if "warning:" in rep.text:
            problems.append("warnings: " + rep.text)
        if problems:
            failures += 1
            print(f"FAIL {name}:\n  " + "\n  ".join(problems))
            print("  report:\n    " + rep.text.replace("\n", "\n    "))
        else:
            print(f"ok   {name}")
    # The parent/child marking and the [test] marking appear in the report.
    rep = check(SELF_TESTS[3][1], LIB, None)
    if "(parent -> child)" not in rep.text or "[parent/child pair]" not in rep.text:
        failures += 1
        print("FAIL parent/child cycle is not marked as such:\n" + rep.text)
    else:
        print("ok   parent/child cycle is marked as such")
    test_only = {
        "src/lib.rs": "mod a;\nmod b;\n",
        "src/a.rs": "pub fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::b::g;\n    #[test]\n    fn t() { g() }\n}\n",
        "src/b.rs": "pub fn g() { crate::a::f() }\n",
    }
    full, lean = check(test_only, LIB, None), check(test_only, LIB, None, ignore_tests=True)
    if full.cycles != [["src/a.rs", "src/b.rs"]] or "[test]" not in full.text or lean.cycles:
        failures += 1
        print("FAIL test-only edge: marked [test], dropped by --ignore-tests:\n" + full.text + "\n" + lean.text)
    else:
        print("ok   test-only edge is marked [test] and dropped by --ignore-tests")
    print("self-test: " + ("all passed" if not failures else f"{failures} failed"))
    return 1 if failures else 0


# ---------------------------------------------------------------------------------------


def read_manifest(path: str) -> dict:
    """Cargo.toml's [package], [lib] and [[bin]] tables (tomllib where Python has it)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        import tomllib  # Python >= 3.11

        return tomllib.loads(raw.decode("utf-8"))
    except ImportError:
        pass
    manifest: dict = {}
    table: dict | None = None
    for line in raw.decode("utf-8").splitlines():
        line = line.strip()
        if line.startswith("[["):
            table = {} if line == "[[bin]]" else None
            if table is not None:
                manifest.setdefault("bin", []).append(table)
        elif line.startswith("["):
            name = line.strip("[] ")
            table = manifest.setdefault(name, {}) if name in ("package", "lib") else None
        elif table is not None:
            m = re.match(r'(name|path)\s*=\s*"([^"]*)"', line)
            if m:
                table[m.group(1)] = m.group(2)
    return manifest


def load_package(root: str) -> tuple[dict[str, str], dict[str, str], str | None]:
    """Reads Cargo.toml in `root` for the library and binary roots, and every .rs under src/."""
    manifest = read_manifest(os.path.join(root, "Cargo.toml"))
    pkg = manifest.get("package", {}).get("name", "")
    lib = manifest.get("lib", {})
    lib_name = lib.get("name", pkg.replace("-", "_")) or None
    roots: dict[str, str] = {}
    lib_path = lib.get("path", "src/lib.rs")
    if os.path.exists(os.path.join(root, lib_path)):
        roots["lib"] = os.path.normpath(lib_path)
    bins = manifest.get("bin", [])
    if not bins and os.path.exists(os.path.join(root, "src/main.rs")):
        bins = [{"name": pkg, "path": "src/main.rs"}]
    for b in bins:
        path = os.path.normpath(b.get("path", f"src/bin/{b['name']}.rs"))
        roots[f"bin {b['name']}" if len(bins) > 1 else "bin"] = path
    files: dict[str, str] = {}
    for dirpath, _, names in os.walk(os.path.join(root, "src")):
        for n in names:
            if n.endswith(".rs"):
                full = os.path.join(dirpath, n)
                with open(full, encoding="utf-8") as f:
                    files[os.path.relpath(full, root)] = f.read()
    return files, roots, lib_name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", nargs="?", default=".", help="directory holding Cargo.toml (default .)")
    ap.add_argument("--graph", action="store_true", help="also print every file dependency")
    ap.add_argument("--all-lines", action="store_true", help="print every line behind an edge, not the first 3")
    ap.add_argument("--ignore-tests", action="store_true", help="ignore dependencies from #[cfg(test)] code")
    ap.add_argument("--self-test", action="store_true", help="run the built-in examples and exit")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    start = time.monotonic()
    try:
        files, roots, lib_name = load_package(args.package)
        rep = check(files, roots, lib_name, args.ignore_tests, args.graph, all_lines=args.all_lines)
    except (OSError, ValueError, SourceError) as e:
        print(f"check-import-cycles: error: {e}", file=sys.stderr)
        return 2
    for orphan in sorted(set(files) - rep.files):
        print(f"warning: {orphan} is not a module of any crate (no `mod` reaches it)")
    print(rep.text)
    print(f"check-import-cycles: {time.monotonic() - start:.2f} s", file=sys.stderr)
    return 1 if rep.cycles else 0


if __name__ == "__main__":
    sys.exit(main())
