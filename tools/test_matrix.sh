#!/usr/bin/env bash
# `make test`: the test suite in each supported Python/NumPy combination this machine has, each
# in its own venv (`make venv`, `make test-venv`). Interpreters are looked up by version through
# pyenv, then on PATH (tools/find_python.sh). Outside CI a missing one is skipped and one line
# says so; in CI (CI=true) a missing one fails the run before any test.
#
# From the Makefile: PYTHON_VERSIONS ("3.11 3.12 3.13"), NUMPY1_VERSIONS (those NumPy 1.26 has
# wheels for); ONLY_PYTHON, ONLY_NUMPY (make test PYTHON=... NUMPY=...: that alone).
set -uo pipefail
cd "$(dirname "$0")/.."

say() { echo "make test: $*"; }

numpy_name() { [[ $1 == 1 ]] && echo "NumPy 1.26" || echo "NumPy 2.x"; }

# The combinations to run, "interpreter numpy" (1 or 2), and the interpreters not found.
combos=() missing=()
if [[ -n ${ONLY_PYTHON:-} ]]; then
    version=$("$ONLY_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
        { say "PYTHON=$ONLY_PYTHON does not run"; exit 2; }
    [[ " $PYTHON_VERSIONS " == *" $version "* ]] ||
        { say "PYTHON=$ONLY_PYTHON is Python $version; supported: $PYTHON_VERSIONS"; exit 2; }
    interpreters=("$(type -P "$ONLY_PYTHON" || echo "$ONLY_PYTHON")") versions=("$version")
else
    interpreters=() versions=()
    for version in $PYTHON_VERSIONS; do
        interpreter=$(tools/find_python.sh "$version")
        if [[ -z $interpreter ]]; then
            missing+=("python$version")
            continue
        fi
        interpreters+=("$interpreter") versions+=("$version")
    done
fi
for i in "${!interpreters[@]}"; do
    for numpy in 2 1; do
        [[ -n ${ONLY_NUMPY:-} && $numpy != "$ONLY_NUMPY" ]] && continue
        if [[ $numpy == 1 && " $NUMPY1_VERSIONS " != *" ${versions[i]} "* ]]; then
            [[ -n ${ONLY_NUMPY:-} ]] && { say "NumPy 1.26 has no wheels for Python ${versions[i]}; supported there: NUMPY=2"; exit 2; }
            continue
        fi
        combos+=("${interpreters[i]} $numpy")
    done
done

if ((${#missing[@]})); then
    if [[ ${CI:-} == true ]]; then
        say "${missing[*]} not found (through pyenv or on PATH); CI tests Python $PYTHON_VERSIONS"
        exit 1
    fi
fi
if ((${#combos[@]} == 0)); then
    say "no supported Python found (through pyenv or on PATH); supported: $PYTHON_VERSIONS"
    exit 1
fi

# How many tests pytest's closing line ($result) counts as $1 (a regular expression).
count() { grep -oE "[0-9]+ $1\b" <<<"$result" | grep -oE '^[0-9]+' || echo 0; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
summary=() failed=0 passed_total=0 failed_total=0 skipped_total=0
for combo in "${combos[@]}"; do
    read -r interpreter numpy <<<"$combo"
    name="$("$interpreter" -c 'import platform; print("Python", platform.python_version())'), $(numpy_name "$numpy")"
    say "$name ($interpreter)"
    SECONDS=0
    if ! make --no-print-directory -q venv PYTHON="$interpreter" NUMPY="$numpy" &&
        ! make --no-print-directory venv PYTHON="$interpreter" NUMPY="$numpy"; then
        summary+=("$name: set-up FAILED after ${SECONDS} s")
        failed=1
        continue
    fi
    setup=$SECONDS
    SECONDS=0
    make --no-print-directory test-venv PYTHON="$interpreter" NUMPY="$numpy" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    # pytest's closing line, e.g. "104 passed, 11 skipped in 61.02s"
    result=$(grep -E '^=*( *[0-9]+ [a-z]+,?)+ in [0-9.]+s' "$log" | tail -1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*$//')
    passed_total=$((passed_total + $(count passed)))
    failed_total=$((failed_total + $(count failed) + $(count 'errors?')))
    skipped_total=$((skipped_total + $(count skipped)))
    ((status == 0)) || failed=1
    summary+=("$name: ${result:-no pytest summary (exit $status)}; set-up ${setup} s, tests ${SECONDS} s")
done

echo
printf '%s\n' "${summary[@]}"
((${#missing[@]})) && say "skipped ${missing[*]}: not found through pyenv or on PATH"
# One closing line over all combinations (errors counted as failures).
echo "total: $passed_total passed, $failed_total failed, $skipped_total skipped"
exit $failed
