#!/usr/bin/env bash
# Fails if a tracked source, script or config reads outside the repository: test vectors, keys
# and specs live in `testdata/` (see its README), and a clone must run its own tests with
# nothing beside it. Prose (*.md) may still name outside documents; code and configs may not.
set -euo pipefail
cd "$(dirname "$0")/.."

# Paths that leave the repository: the old sibling folder, and a crate-relative path that
# climbs two levels from a crate's manifest directory (crates sit one level below the root).
pattern='\.\./shared|shared/(testdata|spec|upstream)|"/\.\./\.\./'
if git ls-files -z -- . ':(exclude)*.md' ':(exclude)scripts/check-standalone.sh' \
    | xargs -0 grep -nIE "$pattern" --; then
  echo "error: the files above read outside the repository; put the data under testdata/" >&2
  exit 1
fi
echo "self-contained: no tracked source, script or config reads outside the repository"
