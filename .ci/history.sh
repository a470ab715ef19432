#!/usr/bin/env bash
# History checking with adya (an Elle-style isolation checker, pinned to 0.1.0):
# tests/history.rs records concurrent list-append histories under each isolation level in
# target/histories/, then adya checks them:
#
#   si.jsonl            strong-session-snapshot-isolation   must pass
#   serializable.jsonl  strong-session-serializable         must pass
#   si_skew.jsonl       strong-session-snapshot-isolation   must pass
#   si_skew.jsonl       strong-session-serializable         must be REJECTED (write skew)
#
# adya exit status: 0 valid, 1 anomalies found, 2 unknown, 3 error. Only 0 passes; only 1
# counts as a rejection.
#
#   .ci/history.sh                               # default run length
#   SNAPKV_HISTORY_TXNS=200000 .ci/history.sh    # longer (attempts per history)
set -euo pipefail
cd "$(dirname "$0")/.."

ADYA_VERSION=0.1.0
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v adya >/dev/null 2>&1; then
    if [[ -x "$cargo_bin/adya" ]]; then
        PATH="$cargo_bin:$PATH"
    else
        cargo install adya --version "$ADYA_VERSION" --no-default-features --locked
        PATH="$cargo_bin:$PATH"
    fi
fi
installed=$(adya --version)
if [[ "$installed" != "adya $ADYA_VERSION" ]]; then
    echo "warning: expected adya $ADYA_VERSION, found '$installed' on PATH" >&2
fi
echo "using $installed ($(command -v adya))"

started=$(date +%s)
cargo test --release --test history -- --nocapture

dir=target/histories
failures=0

# What a history holds: committed, failed and indeterminate transactions.
counts() {
    local f=$1 ok fail info
    ok=$(grep -c '"type":"ok"' "$f" || true)
    fail=$(grep -c '"type":"fail"' "$f" || true)
    info=$(grep -c '"type":"info"' "$f" || true)
    echo "$((ok + fail + info)) transactions ($ok ok, $fail failed, $info indeterminate)"
}

# check NAME MODEL EXPECT: runs adya on target/histories/NAME.jsonl against MODEL; EXPECT is
# "valid" (exit 0 required) or "rejected" (exit 1 required).
check() {
    local name=$1 model=$2 expect=$3 file=$dir/$1.jsonl out rc
    printf '\n==> %s: %s must be %s\n' "$name" "$model" "$expect"
    [[ -f "$file" ]] || { echo "missing $file" >&2; failures=$((failures + 1)); return; }
    echo "checking $(counts "$file")"
    if out=$(adya check -m list-append -c "$model" "$file"); then rc=0; else rc=$?; fi
    # Full report when anomalies are expected or found; adya shows three examples per type.
    if [[ $rc -ne 0 ]]; then
        printf '%s\n' "$out" | head -n 60
    fi
    local found
    found=$(printf '%s\n' "$out" | grep '^Found ' || true)
    echo "adya exit $rc; anomalies: ${found:-none}"
    case "$expect:$rc" in
        valid:0) echo "PASS: valid" ;;
        rejected:1) echo "PASS: rejected as expected" ;;
        valid:*)
            echo "FAIL: $name is not $model (adya exit $rc)" >&2
            failures=$((failures + 1))
            ;;
        rejected:0)
            echo "FAIL: adya accepted $name as $model: the negative control detects nothing" >&2
            failures=$((failures + 1))
            ;;
        rejected:*)
            echo "FAIL: adya could not decide on $name (exit $rc), expected a rejection" >&2
            failures=$((failures + 1))
            ;;
    esac
}

check si strong-session-snapshot-isolation valid
check serializable strong-session-serializable valid
check si_skew strong-session-snapshot-isolation valid
check si_skew strong-session-serializable rejected

echo
if [[ $failures -ne 0 ]]; then
    echo "history checks: $failures failed ($(( $(date +%s) - started ))s)" >&2
    exit 1
fi
echo "history checks: all passed ($(( $(date +%s) - started ))s)"
