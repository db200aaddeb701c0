#!/bin/sh
# Drops from a production node_modules what only building it needed, for the image (Dockerfile,
# after `npm prune --omit=dev`).
#
#   sh scripts/slim-node-modules.sh NODE_MODULES_DIR
#
# - esbuild and uplot: the build bundles the auditor console into dist/console, which the image
#   serves (webhook/console/assets.ts bundles in memory only when that folder is missing, as when
#   run from source). Removed whole.
# - simdjson and node-addon-api: compiled into the objectDigest addon. Their files go, their
#   license files stay.
# - Native addons (a package with a binding.gyp): only build/Release/*.node loads at run time. The
#   rest of build/ (objects, static libraries, makefiles) and their C/C++ sources (deps/, src/) go;
#   license files (LICENSE*, LICENCE*, COPYING*, NOTICE*) stay, since those sources are compiled in.
# Top-level packages and those nested one level (node_modules/PACKAGE/node_modules/...).
set -eu

if [ "$#" -ne 1 ]; then
  echo "usage: sh scripts/slim-node-modules.sh NODE_MODULES_DIR" >&2
  exit 2
fi
dir=$1
if [ ! -d "$dir" ]; then
  echo "slim-node-modules: $dir is not a directory" >&2
  exit 2
fi

# Deletes every file under $1 but license files and the addons in $1/Release (when $2 = addon),
# then every folder left empty.
drop() {
  [ -e "$1" ] || return 0
  if [ "${2:-}" = addon ]; then
    find "$1" -type f ! -iname 'licen[cs]e*' ! -iname 'copying*' ! -iname 'notice*' \
      ! \( -path "$1/Release/*" ! -path "$1/Release/*/*" -name '*.node' \) -delete
  else
    find "$1" -type f ! -iname 'licen[cs]e*' ! -iname 'copying*' ! -iname 'notice*' -delete
  fi
  find "$1" -depth -type d -empty -delete
}

for modules in "$dir" "$dir"/*/node_modules "$dir"/@*/*/node_modules; do
  [ -d "$modules" ] || continue
  rm -rf "$modules/esbuild" "$modules/@esbuild" "$modules/uplot"
  drop "$modules/@nozbe/simdjson"
  drop "$modules/node-addon-api"
  for gyp in "$modules"/*/binding.gyp "$modules"/@*/*/binding.gyp; do
    [ -f "$gyp" ] || continue
    addon=${gyp%/binding.gyp}
    drop "$addon/build" addon
    drop "$addon/deps"
    drop "$addon/src"
  done
done
