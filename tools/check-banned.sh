#!/usr/bin/env bash
# STYLE rule 17: raw allocation and unsafe string functions are banned
# outside common/alloc.c; every allocation goes through dp_malloc & co.
set -u
cd "$(dirname "$0")/.."
pat='\b(malloc|calloc|realloc|free|strcpy|strcat|sprintf|vsprintf|atoi|atol|atof|strtok|gets)[[:space:]]*\('
hits=$(grep -rnE "$pat" --include='*.c' --include='*.h' common worker server 2>/dev/null \
       | grep -v '^common/alloc\.c:' \
       | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|/\*|//)' || true)
if [ -n "$hits" ]; then
  echo "banned functions used (use dp_malloc/dp_free/snprintf/strtol):"
  echo "$hits"
  exit 1
fi
echo "check-banned: ok"
