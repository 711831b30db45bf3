#!/usr/bin/env bash
# Fails when SQL handed to SQLite in the given sources is built at run time.
#
# Usage: scripts/check_sql.sh [DIR_OR_FILE...]   (default: src/)
#
# Every call that prepares or executes SQL -- Db::prepare, Db::exec,
# Db::prepare_once (member or unqualified calls), sqlite3_prepare*,
# sqlite3_exec, sqlite3_get_table -- must receive as its SQL argument:
#   - one or more adjacent string literals (raw strings included), or
#   - a named constant kName whose definition in the scanned sources is a
#     string literal (e.g. `const char *kClaimSql = "UPDATE ...";`), or
#   - `cond ? A : B` where A and B are themselves acceptable.
# Anything else -- `+`, std::string, .c_str()/.data() of a built string,
# snprintf/format/sqlite3_mprintf results, plain variables -- is reported as
# file:line with the offending argument. Comments are ignored; calls may span
# lines.
#
# Deliberate exceptions (ALLOWED below, matched by file name + exact argument
# text, never by line number):
#   - store.cpp: the Db wrappers themselves forward their `sql` parameter to
#     sqlite3_exec / sqlite3_prepare_v3 / sqlite3_prepare_v2; their callers are
#     what this script checks.
#   - outbox.cpp: wf_tx_exec prepares the host's own statement verbatim (it is
#     never assembled by the engine; parameters are bound, and the authorizer
#     confines it).
set -euo pipefail
if [ $# -eq 0 ]; then
  set -- "$(dirname "$0")/../src"
fi
exec python3 - "$@" <<'PY'
import os
import re
import sys

CALL_MEMBER = {"prepare", "exec", "prepare_once"}  # Db methods: SQL is argument 0
CALL_SQLITE = re.compile(r"sqlite3_(prepare\w*|exec|get_table)$")  # SQL is argument 1
NOT_A_CALL_BEFORE = {"*", "&", "::", "~", "&&"}  # declarations, definitions, addresses
CALL_KEYWORDS = {"return", "else", "do", "case", "throw", "co_return"}
ALLOWED = {
    ("store.cpp", "sqlite3_exec", "sql"),
    ("store.cpp", "sqlite3_prepare_v3", "sql"),
    ("store.cpp", "sqlite3_prepare_v2", "sql.data()"),
    ("outbox.cpp", "prepare_once", "sql"),
}
VERBOSE = os.environ.get("CHECK_SQL_VERBOSE") == "1"
EXTS = (".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp")


def strip_comments(text):
    """Blanks comments (keeping newlines) and leaves literals intact."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        m = re.match(r'(?:u8|u|U|L)?R"([^()\\ \t\n]{0,16})\(', text[i:i + 40])
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = text.find(")" + m.group(1) + '"', i + m.end())
            end = n if end < 0 else end + len(m.group(1)) + 2
            out.append(text[i:end])
            i = end
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


TOKEN = re.compile(
    r'(?P<raw>(?:u8|u|U|L)?R"(?P<d>[^()\\ \t\n]{0,16})\((?:.|\n)*?\)(?P=d)")'
    r'|(?P<str>(?:u8|u|U|L)?"(?:[^"\\\n]|\\.)*")'
    r"|(?P<chr>(?:u8|u|U|L)?'(?:[^'\\\n]|\\.)*')"
    r"|(?P<id>[A-Za-z_]\w*)"
    r"|(?P<num>\d[\w.']*)"
    r"|(?P<op>->|::|&&|\|\||[-+*/%<>=!&|^~?:;,.()\[\]{}#]=?)"
    r"|(?P<ws>\s+)"
    r"|(?P<other>.)",
    re.S,
)


def tokenize(text):
    toks = []
    line = 1
    for m in TOKEN.finditer(text):
        kind = m.lastgroup
        if kind in ("d",):
            kind = "raw"
        s = m.group(0)
        if kind == "raw":
            kind = "str"
        if kind != "ws":
            toks.append((kind, s, line))
        line += s.count("\n")
    return toks


def split_args(toks, start):
    """toks[start] is '('. Returns (list of token lists, index after ')')."""
    depth = 0
    args, cur = [], []
    i = start
    while i < len(toks):
        kind, s, _ = toks[i]
        if s in ("(", "[", "{"):
            depth += 1
            if depth > 1:
                cur.append(toks[i])
        elif s in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                if cur or args:
                    args.append(cur)
                return args, i + 1
            cur.append(toks[i])
        elif s == "," and depth == 1:
            args.append(cur)
            cur = []
        else:
            cur.append(toks[i])
        i += 1
    return args, i


def top_level_split(arg, sep):
    depth = 0
    for k, (_, s, _) in enumerate(arg):
        if s in ("(", "[", "{"):
            depth += 1
        elif s in (")", "]", "}"):
            depth -= 1
        elif s == sep and depth == 0:
            return arg[:k], arg[k + 1:]
    return None


def strip_parens(arg):
    while len(arg) >= 2 and arg[0][1] == "(" and arg[-1][1] == ")":
        inner, end = split_args(arg, 0)
        if end != len(arg) or len(inner) != 1:
            break
        arg = inner[0]
    return arg


def acceptable(arg, constants):
    """None when `arg` is a literal SQL expression, else the reason."""
    arg = strip_parens(arg)
    if not arg:
        return "empty SQL argument"
    q = top_level_split(arg, "?")
    if q:
        branches = top_level_split(q[1], ":")
        if not branches:
            return "malformed conditional"
        for b in branches:
            why = acceptable(b, constants)
            if why:
                return why
        return None
    if all(k == "str" for k, _, _ in arg):
        return None
    if len(arg) == 1 and arg[0][0] == "id" and re.fullmatch(r"k[A-Z]\w*", arg[0][1]):
        name = arg[0][1]
        if name in constants:
            return None
        return "constant %s is not defined as a string literal in the scanned sources" % name
    return "SQL is not a string literal or a literal constant"


def is_declaration(arg):
    """A parameter declaration has a type name followed by a name."""
    ids = [t for t in arg if t[1] not in ("*", "&", "&&", "const")]
    return any(a[0] == "id" and b[0] == "id" for a, b in zip(ids, ids[1:]))


def constant_defs(toks):
    """Names k* whose initializer is only string literals."""
    found = {}
    for i, (kind, s, _) in enumerate(toks):
        if kind != "id" or not re.fullmatch(r"k[A-Z]\w*", s):
            continue
        j = i + 1
        if j < len(toks) and toks[j][1] == "[":  # kName[] = "..."
            while j < len(toks) and toks[j][1] != "]":
                j += 1
            j += 1
        if j >= len(toks) or toks[j][1] != "=":
            continue
        k = j + 1
        init = []
        while k < len(toks) and toks[k][1] not in (";", ","):
            init.append(toks[k])
            k += 1
        ok = bool(init) and all(t[0] == "str" for t in init)
        found[s] = found.get(s, True) and ok
    return {name for name, ok in found.items() if ok}


def files_of(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                for name in sorted(names):
                    if name.endswith(EXTS):
                        yield os.path.join(root, name)
        elif os.path.isfile(p):
            yield p
        else:
            sys.exit("check_sql: no such file or directory: %s" % p)


def main(paths):
    sources = {}
    for f in files_of(paths):
        with open(f, encoding="utf-8", errors="replace") as fh:
            sources[f] = tokenize(strip_comments(fh.read()))
    constants = set()
    for toks in sources.values():
        constants |= constant_defs(toks)
    calls, bad = 0, []
    for f, toks in sorted(sources.items()):
        base = os.path.basename(f)
        for i, (kind, s, line) in enumerate(toks):
            if kind != "id" or i + 1 >= len(toks) or toks[i + 1][1] != "(":
                continue
            prev = toks[i - 1] if i > 0 else ("op", ";", 0)
            if CALL_SQLITE.match(s):
                sql_index = 1
            elif s in CALL_MEMBER:
                if prev[1] in NOT_A_CALL_BEFORE:
                    continue
                if prev[0] == "id" and prev[1] not in CALL_KEYWORDS:
                    continue  # declaration: `void exec(const char *sql)`
                sql_index = 0
            else:
                continue
            args, _ = split_args(toks, i + 1)
            if s == "exec" and not args:
                continue  # Stmt::exec(): runs an already prepared statement
            if sql_index == 0 and any(is_declaration(a) for a in args):
                continue  # `StmtRef prepare(const char *sql);` and the like
            calls += 1
            if len(args) <= sql_index:
                bad.append((f, line, s, "", "no SQL argument"))
                continue
            arg = args[sql_index]
            text = " ".join(t[1] for t in arg)
            if VERBOSE:
                print("%s:%d: %s(%s)" % (f, line, s, text[:100]))
            if (base, s, text.replace(" ", "")) in ALLOWED:
                continue
            why = acceptable(arg, constants)
            if why:
                bad.append((f, arg[0][2] if arg else line, s, text, why))
    for f, line, fn, text, why in bad:
        print("%s:%d: %s(%s): %s" % (f, line, fn, text[:160], why))
    if calls == 0:
        print("check_sql: found no SQL calls at all; is the path right?")
        return 2
    print("check_sql: %d SQL call(s) checked, %d violation(s)" % (calls, len(bad)))
    return 1 if bad else 0


sys.exit(main(sys.argv[1:]))
PY
