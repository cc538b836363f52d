#!/usr/bin/env python3
"""Derive the serialization/defaulting schema of PodSpec / PodTemplateSpec.

Reads core/v1/types.go from a bare (or normal) git repository of
github.com/kubernetes/api (k8s.io/api) at every tag in VERSIONS and writes a
JSON description of every type reachable from PodSpec and PodTemplateSpec to
stdout. Warnings go to stderr.

Usage:
    python3 crds/defaults/derive.py <k8s.io/api git dir> > crds/defaults/podspec-types.json

Standard library only. To add a Kubernetes version, append its tag to VERSIONS
(keep the list ordered oldest -> newest; the last entry is treated as newest).
"""

import json
import re
import subprocess
import sys

# (label, git ref), oldest first. k8s.io/api v0.N.0 == Kubernetes 1.N.
VERSIONS = [
    ("1.28", "v0.28.0"),
    ("1.29", "v0.29.0"),
    ("1.30", "v0.30.0"),
    ("1.31", "v0.31.0"),
    ("1.32", "v0.32.0"),
    ("1.33", "v0.33.0"),
    ("1.34", "v0.34.0"),
    ("1.35", "v0.35.0"),
    ("1.36", "v0.36.0"),
    ("1.37-dev", "master"),
]

SOURCE_FILE = "core/v1/types.go"
ROOTS = ["PodSpec", "PodTemplateSpec"]

# Go types outside core/v1 that map to a JSON scalar kind.
EXTERNAL_SCALARS = {
    "resource.Quantity": "quantity",
    "intstr.IntOrString": "intorstring",
    "metav1.Time": "time",
    "metav1.Duration": "string",
    "types.UID": "string",
    "int": "int",
    "int32": "int",
    "int64": "int",
    "uint": "int",
    "uint32": "int",
    "uint64": "int",
    "bool": "bool",
    "string": "string",
    "float64": "number",
    "float32": "number",
}


def _f(typ, shape="scalar", pointer=False, omitempty=True):
    return {"type": typ, "shape": shape, "pointer": pointer, "omitempty": omitempty}


# Hand-written subsets of apimachinery types (not in k8s.io/api).
EXTERNAL_STRUCTS = {
    "metav1.ObjectMeta": ("ObjectMeta", {
        "name": _f("string"),
        "generateName": _f("string"),
        "namespace": _f("string"),
        "labels": _f("string", "map"),
        "annotations": _f("string", "map"),
        # non-pointer struct: omitempty has no effect in encoding/json,
        # a zero metav1.Time marshals as null.
        "creationTimestamp": _f("time"),
    }),
    "metav1.LabelSelector": ("LabelSelector", {
        "matchLabels": _f("string", "map"),
        "matchExpressions": _f("LabelSelectorRequirement", "list"),
    }),
    "metav1.LabelSelectorRequirement": ("LabelSelectorRequirement", {
        "key": _f("string", omitempty=False),
        "operator": _f("string", omitempty=False),
        "values": _f("string", "list"),
    }),
}
EXTERNAL_BY_NAME = {name: fields for name, fields in EXTERNAL_STRUCTS.values()}


_WARNINGS = {}  # message -> list of version labels (insertion ordered)


def warn(msg, label=None):
    """Record a warning; printed (deduplicated) at the end of the run."""
    _WARNINGS.setdefault(msg, [])
    if label is not None and label not in _WARNINGS[msg]:
        _WARNINGS[msg].append(label)


def flush_warnings():
    for msg, labels in _WARNINGS.items():
        suffix = " [%s]" % ", ".join(labels) if labels else ""
        print("warning: " + msg + suffix, file=sys.stderr)


def git(gitdir, *args):
    return subprocess.run(
        ["git", "--git-dir=" + gitdir] + list(args),
        check=True, stdout=subprocess.PIPE).stdout.decode("utf-8")


# ---------------------------------------------------------------------------
# Parsing of one types.go


RE_STRUCT_START = re.compile(r"^type\s+(\w+)\s+struct\s*\{\s*$")
RE_NAMED = re.compile(r"^type\s+(\w+)\s+(=\s*)?(\S.*?)\s*(//.*)?$")
RE_CONST_LINE = re.compile(r"^\s*(\w+)\s+(?:[\w.]+\s+)?=\s*(\"(?:[^\"\\]|\\.)*\"|-?\d+(?:\.\d+)?|true|false)\s*(//.*)?$")
RE_SINGLE_CONST = re.compile(r"^const\s+(\w+)\s+(?:[\w.]+\s+)?=\s*(\"(?:[^\"\\]|\\.)*\"|-?\d+(?:\.\d+)?|true|false)")
RE_FIELD = re.compile(r"^\s*(\w+)\s+(\S+)\s*(`[^`]*`)?\s*(//.*)?$")
RE_EMBEDDED = re.compile(r"^\s*(\*?[\w.]+)\s*(`[^`]*`)?\s*(//.*)?$")
RE_DEFAULT = re.compile(r"^\s*//\s*\+default=(.*?)\s*$")
RE_JSON_TAG = re.compile(r'json:"([^"]*)"')


def parse_go_file(text):
    """Return (structs, named, consts).

    structs: name -> list of raw fields
        {"name", "embedded", "gotype", "json", "opts", "default_raw"}
    named: name -> underlying Go type string (non-struct type declarations)
    consts: name -> Go literal string
    """
    lines = text.split("\n")
    structs, named, consts = {}, {}, {}
    i, n = 0, len(lines)
    in_const = False
    while i < n:
        line = lines[i]
        if in_const:
            if line.strip() == ")":
                in_const = False
            else:
                m = RE_CONST_LINE.match(line)
                if m:
                    consts[m.group(1)] = m.group(2)
            i += 1
            continue
        if re.match(r"^const\s*\(\s*$", line):
            in_const = True
            i += 1
            continue
        m = RE_SINGLE_CONST.match(line)
        if m:
            consts[m.group(1)] = m.group(2)
            i += 1
            continue
        m = RE_STRUCT_START.match(line)
        if m:
            name = m.group(1)
            fields, i = parse_struct_body(lines, i + 1, name)
            structs[name] = fields
            continue
        if line.startswith("type ") and "struct" not in line and "interface" not in line:
            m = RE_NAMED.match(line)
            if m:
                named[m.group(1)] = m.group(3)
        i += 1
    return structs, named, consts


def parse_struct_body(lines, i, struct_name):
    fields = []
    doc = []
    depth = 1
    in_block_comment = False
    while i < len(lines):
        raw = lines[i]
        s = raw.strip()
        i += 1
        if in_block_comment:
            if "*/" in s:
                in_block_comment = False
            continue
        if s.startswith("/*"):
            in_block_comment = "*/" not in s[2:]
            continue
        if depth == 1 and s == "}":
            return fields, i
        if depth > 1:
            depth += s.count("{") - s.count("}")
            continue
        if s == "":
            doc = []
            continue
        if s.startswith("//"):
            doc.append(s)
            continue
        if s.endswith("{"):
            fields.append({"parse_warning": "%s: nested anonymous struct skipped: %s" % (struct_name, s)})
            depth += 1
            doc = []
            continue
        m = RE_FIELD.match(raw)
        embedded = False
        if m:
            gname, gtype, tag = m.group(1), m.group(2), m.group(3) or ""
        else:
            m = RE_EMBEDDED.match(raw)
            if not m:
                fields.append({"parse_warning": "%s: unparsed line: %s" % (struct_name, s)})
                doc = []
                continue
            embedded = True
            gtype, tag = m.group(1), m.group(2) or ""
            gname = gtype.lstrip("*").split(".")[-1]
        jm = RE_JSON_TAG.search(tag)
        if jm:
            parts = jm.group(1).split(",")
            jname, opts = parts[0], parts[1:]
        else:
            if tag or not embedded:
                fields.append({"parse_warning": "%s.%s: no json tag" % (struct_name, gname)})
            jname, opts = "", []
        default_raw = None
        for d in doc:
            dm = RE_DEFAULT.match(d)
            if dm:
                default_raw = dm.group(1)
        fields.append({
            "goname": gname,
            "embedded": embedded,
            "gotype": gtype,
            "json": jname,
            "opts": opts,
            "default_raw": default_raw,
        })
        doc = []
    raise ValueError("unterminated struct " + struct_name)


# ---------------------------------------------------------------------------
# Resolution


class Version:
    def __init__(self, label, text):
        self.label = label
        self.structs, self.named, self.consts = parse_go_file(text)

    def parse_default(self, raw, where):
        m = re.match(r"^ref\((\w+)\)$", raw)
        if m:
            c = m.group(1)
            if c not in self.consts:
                warn("%s: unresolved default ref(%s)" % (where, c), self.label)
                return {"unresolved_ref": c}
            raw = self.consts[c]
        try:
            return json.loads(raw)
        except ValueError:
            warn("%s: cannot parse default %r, kept as string" % (where, raw), self.label)
            return raw

    def resolve(self, gotype, where):
        """Go type string -> (type, shape, pointer, struct_to_walk or None)."""
        t = gotype
        pointer = False
        if t.startswith("*"):
            pointer, t = True, t[1:]
        shape = "scalar"
        if t.startswith("[]"):
            if pointer:
                warn("%s: pointer to slice %s" % (where, gotype), self.label)
            shape, pointer, t = "list", False, t[2:]
        elif t.startswith("map["):
            if pointer:
                warn("%s: pointer to map %s" % (where, gotype), self.label)
            key, t = split_map(t)
            kt = self.resolve_scalar_name(key)
            if kt != "string":
                warn("%s: map key %s is not a string" % (where, key), self.label)
            shape, pointer = "map", False
        if t.startswith("*") or t.startswith("[]") or t.startswith("map["):
            warn("%s: nested composite element type %s" % (where, gotype), self.label)
            t = t.lstrip("*")
        if t == "byte" and shape == "list":
            return "string", "scalar", pointer, None  # []byte -> base64 string
        # named non-struct types (follow aliases / definitions)
        seen = set()
        while t in self.named and t not in seen:
            seen.add(t)
            under = self.named[t]
            if under.startswith("map[") or under.startswith("[]"):
                if shape != "scalar":
                    warn("%s: nested composite via named type %s" % (where, t), self.label)
                sub = self.resolve(under, where)
                return sub[0], sub[1], pointer if sub[1] == "scalar" else False, sub[3]
            t = under
        if t in EXTERNAL_SCALARS:
            return EXTERNAL_SCALARS[t], shape, pointer, None
        if t in EXTERNAL_STRUCTS:
            name = EXTERNAL_STRUCTS[t][0]
            return name, shape, pointer, name
        if t in self.structs:
            return t, shape, pointer, t
        warn("%s: unknown type %s" % (where, gotype), self.label)
        return t, shape, pointer, None

    def resolve_scalar_name(self, t):
        while t in self.named:
            t = self.named[t]
        return EXTERNAL_SCALARS.get(t, t)

    def flatten(self, struct_name):
        """Struct -> ordered dict jsonName -> props, inlining embedded fields."""
        if struct_name in EXTERNAL_BY_NAME:
            return {k: dict(v, _walk=(v["type"] if v["type"] in EXTERNAL_BY_NAME else None))
                    for k, v in EXTERNAL_BY_NAME[struct_name].items()}
        out = {}
        for f in self.structs[struct_name]:
            if "parse_warning" in f:
                warn(f["parse_warning"], self.label)
                continue
            where = "%s.%s" % (struct_name, f["goname"])
            if f["json"] == "-":
                continue
            if f["embedded"] and (f["json"] == "" or "inline" in f["opts"]):
                inner = f["gotype"].lstrip("*")
                if inner not in self.structs:
                    warn("%s: cannot inline unknown type %s" % (where, inner), self.label)
                    continue
                for k, v in self.flatten(inner).items():
                    if k in out:
                        warn("%s: inlined field %s shadows" % (where, k), self.label)
                    out[k] = v
                continue
            if "inline" in f["opts"]:
                warn("%s: inline on non-embedded field" % (where), self.label)
            jname = f["json"] or f["goname"]
            typ, shape, pointer, walk = self.resolve(f["gotype"], where)
            props = {"type": typ, "shape": shape, "pointer": pointer,
                     "omitempty": "omitempty" in f["opts"], "_walk": walk}
            if f["default_raw"] is not None:
                props["default"] = self.parse_default(f["default_raw"], where)
            if jname in out:
                warn("%s: duplicate json name %s" % (where, jname), self.label)
            out[jname] = props
        return out

    def has_struct(self, name):
        return name in self.structs or name in EXTERNAL_BY_NAME


def split_map(t):
    assert t.startswith("map[")
    depth = 0
    for idx in range(3, len(t)):
        if t[idx] == "[":
            depth += 1
        elif t[idx] == "]":
            depth -= 1
            if depth == 0:
                return t[4:idx], t[idx + 1:]
    raise ValueError("bad map type " + t)


# ---------------------------------------------------------------------------
# Merging over versions

CORE_PROPS = ("type", "shape", "pointer", "omitempty")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    gitdir = argv[1]
    labels = [label for label, _ in VERSIONS]
    shas = {}
    versions = []
    for label, ref in VERSIONS:
        shas[label] = git(gitdir, "rev-parse", ref + "^{commit}").strip()
        text = git(gitdir, "show", "%s:%s" % (shas[label], SOURCE_FILE))
        versions.append(Version(label, text))

    # per version: type -> field -> props (for types reachable in that version)
    per_version = {}
    for v in versions:
        flat = {}
        todo = [r for r in ROOTS if v.has_struct(r)]
        while todo:
            t = todo.pop()
            if t in flat:
                continue
            flat[t] = v.flatten(t)
            for props in flat[t].values():
                w = props.get("_walk")
                if w and w not in flat:
                    todo.append(w)
        per_version[v.label] = flat

    all_types = set()
    for flat in per_version.values():
        all_types.update(flat)

    # For versions where a type exists but is not reachable, still record its
    # fields so "versions" reflects existence in types.go.
    for v in versions:
        flat = per_version[v.label]
        for t in all_types:
            if t not in flat and v.has_struct(t):
                flat[t] = v.flatten(t)

    out_types = {}
    for t in sorted(all_types):
        names = []
        for label in labels:
            for k in per_version[label].get(t, {}):
                if k not in names:
                    names.append(k)
        fields = {}
        for k in names:
            present = [l for l in labels if k in per_version[l].get(t, {})]
            hist = {l: per_version[l][t][k] for l in present}
            newest = hist[present[-1]]
            entry = {p: newest[p] for p in CORE_PROPS}
            with_default = [l for l in present if "default" in hist[l]]
            if with_default:
                entry["default"] = hist[with_default[-1]]["default"]
                if with_default != present:
                    entry["default_versions"] = with_default
            if present != labels:
                entry["versions"] = present
            changed = {}
            for l in present[:-1]:
                old = hist[l]
                diff = any(old[p] != entry[p] for p in CORE_PROPS)
                if "default" in old and "default" in entry and old["default"] != entry["default"]:
                    diff = True
                if diff:
                    changed[l] = {p: old[p] for p in CORE_PROPS}
                    if "default" in old:
                        changed[l]["default"] = old["default"]
                    warn("%s.%s changed in %s: %s -> %s" % (
                        t, k, l, json.dumps(changed[l], sort_keys=True),
                        json.dumps({p: entry[p] for p in CORE_PROPS + (("default",) if "default" in entry else ())},
                                   sort_keys=True)))
            if changed:
                entry["changed"] = changed
            fields[k] = entry
        out_types[t] = fields

    doc = {
        "source": {
            "repository": "github.com/kubernetes/api",
            "file": SOURCE_FILE,
            "versions": shas,
        },
        "roots": {r: r for r in ROOTS},
        "types": out_types,
    }
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    flush_warnings()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
