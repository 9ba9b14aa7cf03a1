#!/usr/bin/env bash
# exported_symbols.sh LIBRARY... - fails when a library (libtand.a,
# libtand.so, tand.so) defines a global symbol other than tand.h's
# tand_* and luaopen_tand. Internal tand__* functions and the binding's
# helpers are hidden and local in each of them, the static archive too
# (its one object is partially linked with hidden symbols localized).
set -euo pipefail
status=0
for lib in "$@"; do
    # nm -P: "NAME TYPE VALUE SIZE" per symbol, "ARCHIVE[MEMBER]:" lines.
    syms=$(nm -P -g --defined-only "$lib" |
        awk 'NF >= 2 && $1 !~ /:$/ { print $1 }' | sort -u)
    bad=$(grep -Ev '^(tand_[a-z0-9][a-z0-9_]*|luaopen_tand)$' <<<"$syms" ||
        true)
    if [ -n "$bad" ]; then
        echo "$lib: $(wc -l <<<"$bad") global symbols not tand_* or" \
            "luaopen_tand:" >&2
        sed 's/^/    /' <<<"$bad" | head -20 >&2
        status=1
    else
        echo "$lib: all $(wc -l <<<"$syms") global symbols are tand_* or" \
            "luaopen_tand"
    fi
done
exit $status
