#!/usr/bin/env python3
"""Generates gateway/src/fix/spec44.rs from QuickFIX's FIX44.xml data dictionary.

The acceptor validates every incoming message against the FIX 4.4 dictionary as QuickFIX does:
every field of the specification with its type, every message type, and for the messages Kinko
accepts, the fields, required fields and repeating groups they may carry. The output is committed;
rerun this only to change which messages are supported:

    python3 gateway/tests/interop/fix/gen_spec.py /path/to/FIX44.xml > gateway/src/fix/spec44.rs
"""
import sys
import xml.etree.ElementTree as ET

SUPPORTED = ["0", "1", "2", "3", "4", "5", "A", "D", "F", "G", "H", "q"]

root = ET.parse(sys.argv[1]).getroot()
fields = {f.get("name"): f for f in root.find("fields")}
number = {name: int(f.get("number")) for name, f in fields.items()}
components = {c.get("name"): c for c in root.find("components")}


def walk(node, required_here):
    """(fields, required, groups) of a message, component or group body, flattened."""
    all_fields, required, groups = [], [], []
    for child in node:
        is_required = required_here and child.get("required") == "Y"
        if child.tag == "field":
            tag = number[child.get("name")]
            all_fields.append(tag)
            if is_required:
                required.append(tag)
        elif child.tag == "component":
            f, r, g = walk(components[child.get("name")], is_required)
            all_fields += f
            required += r
            groups += g
        elif child.tag == "group":
            count = number[child.get("name")]
            all_fields.append(count)
            if is_required:
                required.append(count)
            members, _, inner = walk(child, False)
            groups.append((count, members[0], members))
            groups += inner
            all_fields += members
    return all_fields, required, groups


def rust_type(t):
    return {
        "INT": "Int", "LENGTH": "Int", "NUMINGROUP": "Int", "SEQNUM": "Int",
        "FLOAT": "Float", "QTY": "Float", "PRICE": "Float", "PRICEOFFSET": "Float",
        "AMT": "Float", "PERCENTAGE": "Float", "CHAR": "Char", "BOOLEAN": "Boolean",
        "UTCTIMESTAMP": "UtcTimestamp", "UTCTIMEONLY": "UtcTimeOnly", "UTCDATEONLY": "Date",
        "LOCALMKTDATE": "Date", "MONTHYEAR": "MonthYear", "DATA": "Data",
        "MULTIPLEVALUESTRING": "MultipleValueString",
    }.get(t, "String")


def tags(values):
    return "&[" + ", ".join(str(v) for v in values) + "]"


out = []
out.append("//! The FIX 4.4 data dictionary, generated from QuickFIX's FIX44.xml by")
out.append("//! `gateway/tests/interop/fix/gen_spec.py`. Do not edit by hand.")
out.append("")
out.append("use super::dictionary::{GroupSpec, MessageSpec, Type};")
out.append("")
out.append("/// Every field of FIX 4.4: `(tag, name, type)`, sorted by tag.")
out.append("pub const FIELDS: &[(u32, &str, Type)] = &[")
for f in sorted(fields.values(), key=lambda f: int(f.get("number"))):
    out.append(f'    ({f.get("number")}, "{f.get("name")}", Type::{rust_type(f.get("type"))}),')
out.append("];")
out.append("")
out.append("/// Every message type of FIX 4.4: `(MsgType, name)`.")
out.append("pub const MESSAGES: &[(&str, &str)] = &[")
for m in root.find("messages"):
    out.append(f'    ("{m.get("msgtype")}", "{m.get("name")}"),')
out.append("];")
out.append("")

used = set()


def spec(name, msg_type, node):
    f, r, g = walk(node, True)
    used.update(f)
    groups = ", ".join(
        f"GroupSpec {{ count: {c}, delimiter: {d}, members: {tags(sorted(set(m)))} }}" for c, d, m in g
    )
    return (
        f"pub const {name}: MessageSpec = MessageSpec {{\n"
        f'    msg_type: "{msg_type}",\n'
        f"    fields: {tags(sorted(set(f)))},\n"
        f"    required: {tags(sorted(set(r)))},\n"
        f"    groups: &[{groups}],\n"
        "};\n"
    )


out.append("/// The standard header.")
out.append(spec("HEADER", "", root.find("header")))
out.append("/// The standard trailer.")
out.append(spec("TRAILER", "", root.find("trailer")))
names = []
for m in root.find("messages"):
    if m.get("msgtype") in SUPPORTED:
        const = "MSG_" + m.get("name").upper()
        names.append(const)
        out.append(f"/// {m.get('name')} ({m.get('msgtype')}).")
        out.append(spec(const, m.get("msgtype"), m))
out.append("/// The messages the acceptor accepts.")
out.append("pub const SUPPORTED: &[MessageSpec] = &[" + ", ".join(names) + "];")
out.append("")
out.append("/// The enumerated values of the fields those messages may carry, sorted by tag.")
out.append("pub const VALUES: &[(u32, &[&str])] = &[")
for tag in sorted(used):
    f = next(x for x in fields.values() if int(x.get("number")) == tag)
    values = [v.get("enum") for v in f]
    if values:
        out.append(f"    ({tag}, &[" + ", ".join(f'"{v}"' for v in values) + "]),")
out.append("];")
print("\n".join(out))
