#!/usr/bin/env bash
# The third-party licence inventory of the evergreen binary, from Cargo.lock:
#
#   packaging/licenses.sh           writes THIRD-PARTY-LICENSES.md
#   packaging/licenses.sh --check   fails if the committed file is out of date, or if a
#                                   crate has no licence this project accepts (CI)
#
# Every crate linked into the binary (cargo tree, normal dependencies of the
# evergreen package; proc-macros and build dependencies run only at build time
# and are not shipped) with its licence expression as the crate declares it.
# Accepted: an expression where every AND-term offers one of ALLOWED below.
set -euo pipefail
cd "$(dirname "$0")/.."

out=THIRD-PARTY-LICENSES.md
tree=$(cargo tree -p evergreen -e normal --prefix none --format '{p}|{l}' --locked --offline 2>/dev/null ||
    cargo tree -p evergreen -e normal --prefix none --format '{p}|{l}' --locked)

generated=$(printf '%s\n' "$tree" | python3 -c '
import re, sys
ALLOWED = {"MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Zlib", "Unlicense",
           "Unicode-3.0", "MPL-2.0", "CDLA-Permissive-2.0", "BSL-1.0", "0BSD",
           "Apache-2.0 WITH LLVM-exception"}
crates = {}
for line in sys.stdin:
    line = line.strip()
    if not line or "(proc-macro)" in line or line.startswith("evergreen"):
        continue
    pkg, _, lic = line.partition("|")
    lic = lic.replace("(*)", "").strip().replace("/", " OR ")
    name, version = pkg.split()[:2]
    crates[(name, version)] = lic
bad = []
def accepted(expr):
    # Every AND-term must offer an allowed licence among its OR-alternatives.
    for term in re.split(r"\s+AND\s+", expr.replace("(", "").replace(")", "")):
        options = [o.strip() for o in re.split(r"\s+OR\s+", term)]
        if not any(o in ALLOWED for o in options):
            return False
    return True
counts = {}
for (name, version), lic in sorted(crates.items()):
    counts[lic] = counts.get(lic, 0) + 1
    if not accepted(lic):
        bad.append(f"{name} {version}: {lic}")
print("# Third-party licences of the evergreen binary")
print()
print("Generated from `Cargo.lock` by `packaging/licenses.sh` (do not edit; CI checks it is up to")
print(f"date). {len(crates)} crates are linked into the binary; proc-macros and build dependencies run")
print("only at build time and are not listed. Each licence expression is the one the crate declares;")
print("where it offers a choice, Evergreen uses the crate under a permissive option it lists.")
print()
print("| licence expression | crates |")
print("|---|---|")
for lic, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
    print(f"| {lic} | {n} |")
print()
print("| crate | version | licence |")
print("|---|---|---|")
for (name, version), lic in sorted(crates.items()):
    print(f"| {name} | {version[1:]} | {lic} |")
if bad:
    sys.stderr.write("crates without an accepted licence:\n  " + "\n  ".join(bad) + "\n")
    sys.exit(3)
')

if [ "${1:-}" = --check ]; then
    if ! diff -u "$out" <(printf '%s\n' "$generated") >/dev/null; then
        diff -u "$out" <(printf '%s\n' "$generated") | head -40
        echo "FAIL: $out is out of date with Cargo.lock: run packaging/licenses.sh and commit it"
        exit 1
    fi
    echo "PASS: $out matches Cargo.lock; every crate has an accepted licence"
else
    printf '%s\n' "$generated" >"$out"
    echo "wrote $out"
fi
