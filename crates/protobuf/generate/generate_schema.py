#!/usr/bin/env python3
"""Regenerates ../src/schema_table.rs, the protobuf schema table of kate-protobuf.

Facts come from two crates in the local cargo registry; unpack them first with
`cargo fetch --manifest-path crates/protobuf/generate/Cargo.toml` (a never-built manifest that
pins exactly these versions; keep it in step with the constants below):

* k8s-pb: prost code generated from the upstream generated.proto files. Gives every
  message, its field tags and wire types (`#[prost(string, optional, tag = "1")]`).
* k8s-openapi: serde code generated from the upstream OpenAPI spec (feature v1_35, the release
  k8s-pb 0.9's protos come from; v1_33 lacks fields they carry). Gives each field's JSON
  name (the match arms of its Deserialize impls, e.g. `"podIPs" => Field::Key_pod_ips`) and
  whether the field is required (a non-`Option` struct field), i.e. has no `omitempty`.

Plus one hand-kept fact file, go_pointer_scalars.txt: which optional scalar fields are Go
pointers. Neither crate records that, but it decides whether a zero value on the wire is
meaningful (see that file's header).

Usage: python3 crates/protobuf/generate/generate_schema.py   (from anywhere; stdlib only)
Then: cargo fmt -p kate-protobuf --check && cargo test -p kate-protobuf
"""

import glob
import os
import re
import sys

K8S_PB = "k8s-pb-0.9.0"
K8S_OPENAPI = "k8s-openapi-0.29.0"
OPENAPI_FEATURE = "v1_35"

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "src", "schema_table.rs"))
POINTERS = os.path.join(HERE, "go_pointer_scalars.txt")

# The kinds whose bodies the decoder accepts: (apiVersion or "*", kind, k8s-pb module, message).
ROOTS = [
    ("v1", "Namespace", "api.core.v1", "Namespace"),
    ("v1", "ConfigMap", "api.core.v1", "ConfigMap"),
    ("v1", "Secret", "api.core.v1", "Secret"),
    ("v1", "Service", "api.core.v1", "Service"),
    ("v1", "ServiceAccount", "api.core.v1", "ServiceAccount"),
    ("v1", "Pod", "api.core.v1", "Pod"),
    ("v1", "Node", "api.core.v1", "Node"),
    ("v1", "Endpoints", "api.core.v1", "Endpoints"),
    ("v1", "Event", "api.core.v1", "Event"),
    ("v1", "PersistentVolume", "api.core.v1", "PersistentVolume"),
    ("v1", "PersistentVolumeClaim", "api.core.v1", "PersistentVolumeClaim"),
    ("v1", "LimitRange", "api.core.v1", "LimitRange"),
    ("v1", "ResourceQuota", "api.core.v1", "ResourceQuota"),
    ("v1", "Binding", "api.core.v1", "Binding"),
    ("apps/v1", "Deployment", "api.apps.v1", "Deployment"),
    ("apps/v1", "ReplicaSet", "api.apps.v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet", "api.apps.v1", "StatefulSet"),
    ("apps/v1", "DaemonSet", "api.apps.v1", "DaemonSet"),
    ("apps/v1", "ControllerRevision", "api.apps.v1", "ControllerRevision"),
    ("batch/v1", "Job", "api.batch.v1", "Job"),
    ("batch/v1", "CronJob", "api.batch.v1", "CronJob"),
    ("coordination.k8s.io/v1", "Lease", "api.coordination.v1", "Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice", "api.discovery.v1", "EndpointSlice"),
    ("events.k8s.io/v1", "Event", "api.events.v1", "Event"),
    ("scheduling.k8s.io/v1", "PriorityClass", "api.scheduling.v1", "PriorityClass"),
    ("policy/v1", "PodDisruptionBudget", "api.policy.v1", "PodDisruptionBudget"),
    ("policy/v1", "Eviction", "api.policy.v1", "Eviction"),
    ("autoscaling/v1", "Scale", "api.autoscaling.v1", "Scale"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", "api.authorization.v1", "SelfSubjectAccessReview"),
    ("authorization.k8s.io/v1", "SubjectAccessReview", "api.authorization.v1", "SubjectAccessReview"),
    ("authentication.k8s.io/v1", "TokenRequest", "api.authentication.v1", "TokenRequest"),
    ("authentication.k8s.io/v1", "TokenReview", "api.authentication.v1", "TokenReview"),
    ("rbac.authorization.k8s.io/v1", "Role", "api.rbac.v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "api.rbac.v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "api.rbac.v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "api.rbac.v1", "ClusterRoleBinding"),
    # Clients send DeleteOptions with the apiVersion of the group they delete from.
    ("*", "DeleteOptions", "apimachinery.pkg.apis.meta.v1", "DeleteOptions"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition",
     "apiextensions_apiserver.pkg.apis.apiextensions.v1", "CustomResourceDefinition"),
]

AEXT = "apiextensions_apiserver.pkg.apis.apiextensions.v1."
META = "apimachinery.pkg.apis.meta.v1."
# Messages whose JSON form is not an object of their fields (custom MarshalJSON upstream);
# the runtime implements each form. Value: the `Form` variant of src/schema.rs.
SPECIAL = {
    META + "Time": "Time",
    META + "MicroTime": "MicroTime",
    META + "Duration": "Duration",
    META + "FieldsV1": "RawJson",
    "apimachinery.pkg.runtime.RawExtension": "RawJson",
    AEXT + "Json": "RawJson",
    "apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "apimachinery.pkg.api.resource.Quantity": "Quantity",
    # `type ExtraValue []string`: proto wraps the list in a message, JSON is the bare list.
    "api.authentication.v1.ExtraValue": "StringList",
    "api.authorization.v1.ExtraValue": "StringList",
    AEXT + "JsonSchemaPropsOrArray": "SchemaOrArray",
    AEXT + "JsonSchemaPropsOrBool": "SchemaOrBool",
    AEXT + "JsonSchemaPropsOrStringArray": "SchemaOrStringArray",
}
# The union forms decode their fields by tag, so they keep their message references.
UNIONS = {"SchemaOrArray", "SchemaOrBool", "SchemaOrStringArray"}

SCALARS = {"string": "Str", "bytes": "Bytes", "bool": "Bool", "int32": "I32", "int64": "I64",
           "double": "F64"}


def fail(msg):
    sys.exit("generate_schema: " + msg)


def crate_dir(name):
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = sorted(glob.glob(os.path.join(home, "registry", "src", "*", name)))
    if not found:
        fail(f"{name} not found under {home}/registry/src; run "
             "`cargo fetch --manifest-path crates/protobuf/generate/Cargo.toml`")
    return found[0]


def norm(name):
    """Comparable form of a prost field name or a JSON property name."""
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("r#", ""))


# ---- k8s-pb ------------------------------------------------------------------------------

STRUCT_RE = re.compile(r"^pub struct (\w+) \{(?:\}|(.*?)^\})", re.S | re.M)
FIELD_RE = re.compile(r"#\[prost\(([^\]]*)\)\]\s*pub (r#)?(\w+):\s*(.*?),?\s*(?=///|#\[|\Z)", re.S)


def resolve(module, rust_type):
    """Turns a prost field type into the dotted name of the message it refers to."""
    inner = rust_type
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<",
                    "::prost::alloc::boxed::Box<"):
        inner = inner.replace(wrapper, "")
    if "BTreeMap<" in inner:
        inner = inner.split(",", 1)[1]
    inner = re.sub(r"\s+", "", inner).rstrip(">,")
    parts = module.split(".")
    segments = inner.split("::")
    while segments and segments[0] == "super":
        parts = parts[:-1]
        segments = segments[1:]
    return ".".join(parts + segments)


def parse_k8s_pb(root):
    messages = {}
    src = os.path.join(root, "src")
    for path in glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), src).replace(os.sep, ".")
        text = open(path, encoding="utf-8").read()
        for struct in STRUCT_RE.finditer(text):
            fields = []
            for f in FIELD_RE.finditer(struct.group(2) or ""):
                attr, name, rust_type = f.group(1), f.group(3), f.group(4)
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                head = attr.split(",")[0].strip()
                if head.startswith("btree_map"):
                    key, value = re.search(r'btree_map = "(\w+), (\w+)"', attr).groups()
                    if key != "string":
                        fail(f"{module}.{struct.group(1)}.{name}: map key {key}")
                    card, wire = "Map", value
                else:
                    wire = head.split("=")[0].strip()
                    card = "Repeated" if "repeated" in attr else "Optional"
                target = resolve(module, rust_type) if wire == "message" else None
                fields.append(dict(tag=tag, name=name, card=card, wire=wire, target=target))
            messages[module + "." + struct.group(1)] = fields
    return messages


# ---- k8s-openapi -------------------------------------------------------------------------

ARM_RE = re.compile(r'^\s*"([^"]+)" => Field::Key_(\w+),$', re.M)
OA_STRUCT_RE = re.compile(r"^pub struct (\w+) \{(?:\}|(.*?)^\})", re.S | re.M)
OA_FIELD_RE = re.compile(r"^\s*pub (\w+): (.*),$", re.M)


def parse_k8s_openapi(root):
    """Maps lowercased 'module.Struct' to {normalized JSON name: (JSON name, required)}."""
    types = {}
    base = os.path.join(root, "src", OPENAPI_FEATURE)
    for path in glob.glob(os.path.join(base, "**", "*.rs"), recursive=True):
        if os.path.basename(path) == "mod.rs":
            continue
        text = open(path, encoding="utf-8").read()
        struct = OA_STRUCT_RE.search(text)
        if not struct:
            continue
        required = {m.group(1): not m.group(2).startswith("Option<")
                    for m in OA_FIELD_RE.finditer(struct.group(2) or "")}
        props = {}
        for json_name, key in ARM_RE.findall(text):
            if key in ("api_version", "kind") and key not in required:
                continue  # TypeMeta: carried by runtime.Unknown, not by the message
            props[norm(json_name)] = (json_name, required.get(key, False))
        module = os.path.relpath(os.path.dirname(path), base).replace(os.sep, ".")
        types[(module + "." + struct.group(1)).lower()] = props
    return types


# ---- schema ------------------------------------------------------------------------------

def load_pointers():
    pointers = set()
    for line in open(POINTERS, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if line:
            msg, fields = line.split(":", 1)
            pointers.update((msg.strip(), field) for field in fields.split())
    return pointers


def build(messages, openapi, pointers):
    order, seen, table = [], set(), {}
    queue = [module + "." + name for _, _, module, name in ROOTS] + sorted(SPECIAL)
    while queue:
        msg = queue.pop(0)
        if msg in seen:
            continue
        seen.add(msg)
        order.append(msg)
        if msg not in messages:
            fail(f"message {msg} not in k8s-pb")
        special = SPECIAL.get(msg)
        if special and special not in UNIONS:
            continue
        for f in messages[msg]:
            if f["target"]:
                queue.append(f["target"])
    used_pointers = set()
    inline_props = {}  # embedded message -> JSON properties of the struct it is embedded in
    for msg in order:
        special = SPECIAL.get(msg)
        if special and special not in UNIONS:
            table[msg] = (special, [])
            continue
        props = {} if special else openapi.get(msg.lower(), inline_props.get(msg))
        if props is None and messages[msg]:
            fail(f"no k8s-openapi type for {msg}")
        fields = []
        for f in sorted(messages[msg], key=lambda f: f["tag"]):
            key = norm(f["name"])
            inline = False
            if special:
                json_name, required = f["name"], False
            elif key in props:
                json_name, required = props[key]
            elif f["target"] and messages[f["target"]] and all(
                    norm(g["name"]) in props for g in messages[f["target"]]):
                # An embedded Go struct (`json:",inline"`): its fields appear in the parent.
                json_name, required, inline = "", False, True
                inline_props[f["target"]] = props
            else:
                fail(f"{msg}.{f['name']}: no JSON property in k8s-openapi")
            pointer = (msg, f["name"]) in pointers
            if pointer and f["card"] == "Optional" and f["wire"] != "message":
                used_pointers.add((msg, f["name"]))
            # Go's protobuf marshaller writes every non-pointer scalar, even when zero, while its
            # JSON encoder drops zero `omitempty` ones: only pointers and required fields keep 0.
            omit_zero = (f["card"] == "Optional" and f["wire"] != "message"
                         and not required and not pointer)
            fields.append(dict(f, json=json_name, inline=inline, omit_zero=omit_zero))
        table[msg] = (special or "Struct", fields)
    unused = pointers - used_pointers
    if unused:
        fail("go_pointer_scalars.txt names no optional scalar field: " + ", ".join(
            sorted(f"{m}.{f}" for m, f in unused)))
    return order, table


# ---- output ------------------------------------------------------------------------------

def value_kind(wire, target, index):
    if wire == "message":
        return f"Kind::Message({index[target]})"
    return f"Kind::{SCALARS[wire]}"


def render(order, table):
    if len(order) > 0xFFFF:
        fail("more messages than Kind::Message(u16) can index")
    index = {msg: i for i, msg in enumerate(order)}
    out = [
        "// @generated by crates/protobuf/generate/generate_schema.py -- do not edit.",
        f"// Sources: {K8S_PB} (prost messages, tags, wire types), {K8S_OPENAPI} feature "
        f"{OPENAPI_FEATURE} (JSON names, required),",
        "// generate/go_pointer_scalars.txt (Go pointer scalars).",
        "",
        "use crate::schema::{Card, Field, Form, Kind, Message, Root};",
        "",
        "/// Every message reachable from the root kinds; `Kind::Message(i)` indexes this table.",
        "pub(crate) static MESSAGES: &[Message] = &[",
    ]
    for i, msg in enumerate(order):
        form, fields = table[msg]
        out.append(f"    // {i}")
        if not fields:
            out.append(f'    Message {{ name: "{msg}", form: Form::{form}, fields: &[] }},')
            continue
        out.append(f'    Message {{ name: "{msg}", form: Form::{form}, fields: &[')
        for f in fields:
            kind = value_kind(f["wire"], f["target"], index)
            out.append(
                f'        Field {{ tag: {f["tag"]}, json: "{f["json"]}", card: Card::{f["card"]}, '
                f'kind: {kind}, omit_zero: {str(f["omit_zero"]).lower()}, '
                f'inline: {str(f["inline"]).lower()} }},')
        out.append("    ] },")
    out.append("];")
    out.append("")
    out.append("/// The kinds a request body may carry, by apiVersion and kind.")
    out.append("pub(crate) static ROOTS: &[Root] = &[")
    for api_version, kind, module, name in ROOTS:
        out.append(f'    Root {{ api_version: "{api_version}", kind: "{kind}", '
                   f'message: {index[module + "." + name]} }},')
    out.append("];")
    return "\n".join(out) + "\n"


def main():
    messages = parse_k8s_pb(crate_dir(K8S_PB))
    openapi = parse_k8s_openapi(crate_dir(K8S_OPENAPI))
    order, table = build(messages, openapi, load_pointers())
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(render(order, table))
    scalars = sum(1 for _, fields in table.values() for f in fields if f["omit_zero"])
    print(f"wrote {OUT}: {len(order)} messages, {scalars} zero-omitting scalars")


if __name__ == "__main__":
    main()
