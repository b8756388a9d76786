#!/usr/bin/env bash
# Writes the man pages (packaging/man/) and the shell completions
# (packaging/completions/) that the .deb, the .rpm and the tarball ship, from the
# clap definitions of the evergreen binary (`evergreen man --dir`, `evergreen
# completions SHELL`). Run it after changing a command or an option and commit
# the result; `cargo test -p evergreen --test generated_docs` fails while they
# are stale.
#
#   packaging/generate-docs.sh [BINARY]     (default: builds and uses target/debug/evergreen)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build -p evergreen --quiet
    bin=${CARGO_TARGET_DIR:-target}/debug/evergreen
fi
rm -rf packaging/man
"$bin" man --dir packaging/man >/dev/null
mkdir -p packaging/completions
"$bin" completions bash >packaging/completions/evergreen.bash
"$bin" completions zsh >packaging/completions/_evergreen
"$bin" completions fish >packaging/completions/evergreen.fish
echo "packaging/man: $(ls packaging/man | wc -l) pages; packaging/completions: bash, zsh, fish"
