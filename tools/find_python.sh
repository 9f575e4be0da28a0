#!/usr/bin/env bash
# find_python.sh X.Y: print the path of a working Python X.Y, found through pyenv
# (`pyenv root`/versions/X.Y.N, newest first, whether or not pyenv selects it) or on PATH
# (pythonX.Y); print nothing and exit 1 where there is none.
version=${1:?usage: find_python.sh X.Y}
candidates=()
root=$(pyenv root 2>/dev/null) || root=${PYENV_ROOT:-}
if [[ -n $root ]]; then
    # Skips 3.13.0t (free-threaded), 3.12-dev and the like.
    mapfile -t candidates < <(compgen -G "$root/versions/$version.*/bin/python$version" |
        grep -E "/versions/${version//./\\.}\.[0-9]+/bin/" | sort -rV)
fi
mapfile -t -O "${#candidates[@]}" candidates < <(type -aP "python$version")
for candidate in "${candidates[@]}"; do
    # A pyenv shim of a version that pyenv does not select exits with an error: try the next.
    if [[ $("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) == "$version" ]]; then
        echo "$candidate"
        exit 0
    fi
done
exit 1
