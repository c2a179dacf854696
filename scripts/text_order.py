"""Lists the functions of kate's own binary that callgrind profiles saw run, for
scripts/text-order.sh: those of the first profile, then those each later one adds, each group
sorted (so that a module's functions stay together).

Usage: text_order.py OUTPUT PROFILE...
"""

import re
import sys

LINE = re.compile(r"^(ob|cob|fn|cfn)=\((\d+)\)(?: (.*))?$")


def functions_run(path):
    """The names of kate's own functions in one callgrind profile."""
    objects, functions, current, callee = {}, {}, None, None
    with open(path, encoding="utf-8", errors="replace") as profile:
        for line in profile:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            kind, ident, name = m.groups()
            if kind in ("ob", "cob"):
                if name:
                    objects[ident] = name
                if kind == "ob":
                    current = objects.get(ident)
                else:
                    callee = objects.get(ident)
                continue
            owner = current if kind == "fn" else (callee or current)
            if kind == "cfn":
                callee = None
            if name:
                functions[ident] = (name, owner)
    # Callgrind marks recursion levels with a 'N suffix; addresses stand for unnamed code.
    return {
        re.sub(r"'\d+$", "", name)
        for name, owner in functions.values()
        if owner and owner.endswith("/release/kate") and not re.match(r"^(0x|\()", name)
    }


def main():
    output, profiles = sys.argv[1], sys.argv[2:]
    listed, order = set(), []
    for profile in profiles:
        added = functions_run(profile) - listed
        order.extend(sorted(added))
        listed |= added
    with open(output, "w", encoding="utf-8") as out:
        out.write("\n".join(order) + "\n")
    print(f"text-order: {len(order)} functions in {output}")


main()
