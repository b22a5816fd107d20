#!/usr/bin/env bash
# Peer test suite: dbt-labs' own functional tests for dbt-redshift (github.com/dbt-labs/dbt-adapters,
# dbt-redshift/tests/functional) run against a local shiftguard, the way dbt-labs run them against a cluster.
#
# Reproduces the whole run from scratch:
#   1. gets the tests (a bare git dir of dbt-adapters in $DBT_GIT_DIR, else a shallow clone), at $DBT_REF,
#   2. makes a venv with dbt-core/dbt-redshift of the versions the project's own dbt test uses
#      (tests/integration/test_dbt.py), dbt-tests-adapter, pytest,
#   3. starts `shiftguard serve` (embedded PostgreSQL 15) on free loopback ports in a fresh data dir, with an
#      IAM user for the suite's IAM-method tests (GetClusterCredentials/DescribeClusters on the API port),
#   4. creates the users and group the grants tests expect (DBT_TEST_USER_1..3, DBT_TEST_GROUP_1) and the
#      database test_autocommit.py expects to exist already,
#   5. runs pytest with the env vars the suite's conftest reads (REDSHIFT_TEST_HOST/PORT/DBNAME/USER/PASS/...);
#      TLS as dbt-redshift does by default (sslmode prefer: verify-ca, SSL_CERT_FILE = shiftguard's cert),
#   6. stops shiftguard by its PID and writes $WORK/summary.md (from results.jsonl, written test by test): per-file counts, failures grouped by their
#      first error line (digits and quoted names folded).
#
# Usage: dbt_functional.sh [test paths relative to dbt-redshift/, default tests/functional]
# Environment:
#   WORK=<tempdir>/dbt-peer.XXXX  work dir (default: a fresh mktemp -d); everything is written there
#   SG_SRC=.                the shiftguard checkout to run (PYTHONPATH)
#   SG_PY=python3           the interpreter that runs shiftguard: it must have shiftguard's dependencies
#                           (pyproject.toml; the dbt venv does not)
#   DBT_GIT_DIR=...         bare git dir of github.com/dbt-labs/dbt-adapters; else a clone is tried
#   DBT_REF=3915c53...      commit/ref of dbt-adapters whose tests are run (default: matches dbt-redshift 1.11.2)
#   TIMEOUT=300             per-test timeout (pytest-timeout)
#   SUMMARY_ONLY=1          only (re)write $WORK/summary.md from an earlier run's results.jsonl in $WORK
# Needs real AWS (skipped or failing as "env"): IAM role profiles (STS AssumeRole), Redshift Serverless.
# Parallelism is 1 (one pytest process, no xdist).
set -u -o pipefail

SG_SRC=$(cd "${SG_SRC:-$PWD}" && pwd)
# the newest dbt-adapters commit whose dbt-redshift impl.py and connections.py are those of dbt-redshift 1.11.2
# (the version tests/integration/test_dbt.py installs); later commits test code 1.11.2 does not have
DBT_REF=${DBT_REF:-3915c53ca050812348c140532ed51aa9f52cbb07}
DBT_GIT_DIR=${DBT_GIT_DIR:-}
TIMEOUT=${TIMEOUT:-300}
PY=${PY:-python3}
ADMIN_PASSWORD=Admin1234x
WORK=${WORK:-$(mktemp -d -t dbt-peer.XXXXXX)}
mkdir -p "$WORK"
chmod 755 "$WORK"   # the embedded PostgreSQL runs as an unprivileged user when this runs as root
WORK=$(cd "$WORK" && pwd)
echo "work dir: $WORK"
log() { echo "[$(date +%H:%M:%S)] $*"; }

SRC="$WORK/dbt-adapters"
TESTS="$SRC/dbt-redshift"
VENV="$WORK/venv"
if [ "${SUMMARY_ONLY:-0}" != 1 ]; then
# ---------------------------------------------------------------- 1. test source
if [ ! -d "$TESTS/tests/functional" ]; then
  mkdir -p "$SRC"
  if [ -d "$DBT_GIT_DIR" ]; then
    log "test source: git archive $DBT_REF of $DBT_GIT_DIR"
    git --git-dir="$DBT_GIT_DIR" archive "$DBT_REF" dbt-redshift/tests | tar -x -C "$SRC" || exit 1
    git --git-dir="$DBT_GIT_DIR" rev-parse "$DBT_REF" > "$WORK/tests.commit"
  else
    log "test source: git clone"
    rm -rf "$SRC"
    git clone --depth 1 https://github.com/dbt-labs/dbt-adapters.git "$SRC" || exit 1
    git -C "$SRC" rev-parse HEAD > "$WORK/tests.commit"
  fi
fi
log "dbt-adapters commit: $(cat "$WORK/tests.commit" 2>/dev/null)"
git -C "$SG_SRC" rev-parse HEAD > "$WORK/shiftguard.commit" 2>/dev/null
log "shiftguard: $SG_SRC at $(cat "$WORK/shiftguard.commit")$(git -C "$SG_SRC" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"

# ---------------------------------------------------------------- 2. venv
# dbt-redshift pins redshift_connector<2.2; shiftguard runs with its own interpreter ($SG_PY), not this venv
DBT_REQ=$(grep -o '"dbt-core[^"]*", "dbt-redshift[^"]*"' "$SG_SRC/tests/integration/test_dbt.py" | tr -d '",')
if [ ! -x "$VENV/bin/dbt" ]; then
  log "creating venv ($DBT_REQ)"
  $PY -m venv "$VENV" || exit 1
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1
  "$VENV/bin/pip" install -q $DBT_REQ "dbt-tests-adapter>=1.16" "pytest>=7,<9" pytest-timeout pytest-dotenv \
      freezegun 2>&1 | grep -v '^WARNING: Location' | tail -3
fi
"$VENV/bin/pip" list 2>/dev/null | grep -iE '^(dbt-core|dbt-redshift|dbt-adapters|dbt-tests-adapter|redshift.connector|pytest) ' \
  > "$WORK/versions.txt"
cat "$WORK/versions.txt"
# shiftguard itself runs from the checkout with the interpreter that has its dependencies installed
SG_PY=${SG_PY:-python3}

# ---------------------------------------------------------------- 3. shiftguard
read -r SG_PORT API_PORT < <($SG_PY - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks: s.close()
EOF
)
DATA="$WORK/sgdata"
CONF="$WORK/shiftguard.yaml"
IAM_KEY_ID=AKIADBTFUNCTIONAL001
IAM_SECRET=dbt-functional-secret-0123456789abcdef
# track_table_writes: a cluster's sys_query_detail knows every table's writes, which dbt's source
# freshness from metadata reads (off by default in shiftguard for its cost to each write).
cat > "$CONF" <<EOF
cluster:
  track_table_writes: true
iam:
  users:
    - name: dbt-functional
      access_keys: [{id: $IAM_KEY_ID, secret: $IAM_SECRET}]
      policies:
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: ["redshift:GetClusterCredentials", "redshift:GetClusterCredentialsWithIAM",
                       "redshift:CreateClusterUser", "redshift:JoinGroup", "redshift:DescribeClusters"]
              Resource: "*"
EOF

SG_PID=
start_sg() {
  : > "$WORK/shiftguard.log"
  log "starting shiftguard on 127.0.0.1:$SG_PORT (api $API_PORT), data $DATA"
  SHIFTGUARD_ADMIN_PASSWORD=$ADMIN_PASSWORD PYTHONPATH="$SG_SRC" setsid $SG_PY -m proxy serve --config "$CONF" \
      --listen "127.0.0.1:$SG_PORT" --api-listen "127.0.0.1:$API_PORT" --data-dir "$DATA" >> "$WORK/shiftguard.log" 2>&1 &
  SG_PID=$!
  for _ in $(seq 1 120); do
    grep -q "api listening on" "$WORK/shiftguard.log" 2>/dev/null && return 0
    kill -0 "$SG_PID" 2>/dev/null || { echo "shiftguard exited:"; tail -20 "$WORK/shiftguard.log"; return 1; }
    sleep 0.5
  done
  echo "shiftguard did not start"; return 1
}
stop_sg() {
  [ -n "$SG_PID" ] || return 0
  if kill -0 "$SG_PID" 2>/dev/null; then
    log "stopping shiftguard pid $SG_PID"
    kill -TERM "$SG_PID"
    for _ in $(seq 1 60); do kill -0 "$SG_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$SG_PID" 2>/dev/null && kill -KILL "$SG_PID"
  fi
  wait "$SG_PID" 2>/dev/null
  SG_PID=
}
trap stop_sg EXIT
trap 'exit 130' INT TERM
start_sg || exit 1
CERT="$DATA/tls/server.crt"

# ---------------------------------------------------------------- 4. users and groups the suite expects
export PGPASSWORD=$ADMIN_PASSWORD PGSSLMODE=require
psql -h 127.0.0.1 -p "$SG_PORT" -U awsuser -d dev -v ON_ERROR_STOP=0 -q >> "$WORK/setup.log" 2>&1 <<'EOF'
create user dbt_test_user_1 password disable;
create user dbt_test_user_2 password disable;
create user dbt_test_user_3 password disable;
create group dbt_test_group_1;
EOF
# test_autocommit.py expects CREATE DATABASE of this name to fail as it does on dbt-labs' CI cluster, where it exists
psql -h 127.0.0.1 -p "$SG_PORT" -U awsuser -d dev -q -c "create database db_for_test__do_delete_if_you_see_this" \
    >> "$WORK/setup.log" 2>&1
unset PGPASSWORD PGSSLMODE

# ---------------------------------------------------------------- 5. functional tests
cat > "$WORK/aws_credentials" <<EOF
[dbt-functional]
aws_access_key_id = $IAM_KEY_ID
aws_secret_access_key = $IAM_SECRET
EOF
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
export SSL_CERT_FILE="$CERT" AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null \
    AWS_SHARED_CREDENTIALS_FILE="$WORK/aws_credentials" AWS_DEFAULT_REGION=us-east-1 \
    AWS_ENDPOINT_URL_REDSHIFT="http://127.0.0.1:$API_PORT" \
    REDSHIFT_TEST_HOST=127.0.0.1 REDSHIFT_TEST_PORT=$SG_PORT REDSHIFT_TEST_DBNAME=dev \
    REDSHIFT_TEST_USER=awsuser REDSHIFT_TEST_PASS=$ADMIN_PASSWORD REDSHIFT_TEST_REGION=us-east-1 \
    REDSHIFT_TEST_CLUSTER_ID=shiftguard REDSHIFT_TEST_IAM_USER_PROFILE=dbt-functional \
    REDSHIFT_TEST_IAM_USER_ACCESS_KEY_ID=$IAM_KEY_ID REDSHIFT_TEST_IAM_USER_SECRET_ACCESS_KEY=$IAM_SECRET \
    DBT_TEST_USER_1=dbt_test_user_1 DBT_TEST_USER_2=dbt_test_user_2 DBT_TEST_USER_3=dbt_test_user_3 \
    DBT_TEST_GROUP_1=dbt_test_group_1 DBT_SEND_ANONYMOUS_USAGE_STATS=false
cd "$TESTS" || exit 1
SELECT=("$@"); [ ${#SELECT[@]} -eq 0 ] && SELECT=(tests/functional)
# results are written as each test ends (results.jsonl), so a run cut short still counts what it ran
cat > "$WORK/dbtf_results.py" <<'EOF'
import json, os
def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed" or (report.when == "teardown" and report.failed):
        outcome = {"call": report.outcome}.get(report.when, "error" if report.failed else report.outcome)
        with open(os.environ["DBTF_RESULTS"], "a") as f:
            f.write(json.dumps({"nodeid": report.nodeid, "outcome": outcome, "text": report.longreprtext[-6000:]}) + "\n")
EOF
export DBTF_RESULTS="$WORK/results.jsonl" PYTHONPATH="$WORK"
: > "$DBTF_RESULTS"
log "pytest ${SELECT[*]}"
"$VENV/bin/python" -m pytest "${SELECT[@]}" -p dbtf_results -p no:cacheprovider -o addopts= --timeout "$TIMEOUT" \
    -q -rfEs --tb=short --junitxml="$WORK/functional.xml" > "$WORK/functional.log" 2>&1
log "functional: $(tail -1 "$WORK/functional.log")"
stop_sg
fi  # SUMMARY_ONLY

# ---------------------------------------------------------------- 6. summary
"$VENV/bin/python" - "$WORK" <<'EOF'
import collections, json, os, re, sys
work = sys.argv[1]
rows, seen = [], set()
for line in open(os.path.join(work, "results.jsonl")):
    r = json.loads(line)
    if r["nodeid"] in seen:  # a test that failed and then errored in teardown counts once
        continue
    seen.add(r["nodeid"])
    path, _, name = r["nodeid"].partition("::")
    rows.append(dict(file=path, name=name, outcome=r["outcome"], msg="", text=r["text"]))

def cause(r):
    """The first database error in the output, else the first 'E ' line, else the message; names folded."""
    t = r["text"]
    m = re.search(r"(?:Database Error|DatabaseError|ProgrammingError)[^\n]*\n\s*(?:[^\n]*\n\s*)??([^\n]*(?:\{'S'|error|does not|not supported|syntax|permission|must)[^\n]*)", t)
    line = m.group(1) if m else next((l[1:].strip() for l in t.splitlines() if l.startswith("E ") and l[1:].strip()), r["msg"])
    line = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", line.strip())
    return re.sub(r"\d+", "N", line)[:160]

tot = collections.Counter(r["outcome"] for r in rows)
out = [f"{len(rows)} ran, {tot['passed']} passed, {tot['failed']} failed, {tot['error']} errors, "
       f"{tot['skipped']} skipped\n"]
per = collections.defaultdict(collections.Counter)
for r in rows:
    per[r["file"]][r["outcome"]] += 1
out.append("| file | collected | passed | failed | errors | skipped |\n|---|---:|---:|---:|---:|---:|")
for f in sorted(per):
    p = per[f]
    out.append(f"| {f.removeprefix('tests/functional/')} | {sum(p.values())} | {p['passed']} | {p['failed']} | {p['error']} | {p['skipped']} |")
groups = collections.defaultdict(list)
for r in rows:
    if r["outcome"] in ("failed", "error"):
        groups[cause(r)].append(r["file"].split("/")[-1] + "::" + r["name"])
out.append("\n| tests | first error line | examples |\n|---:|---|---|")
for c, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
    out.append(f"| {len(names)} | {c.replace('|', '/')} | {', '.join(names[:3]).replace('|', '/')} |")
open(os.path.join(work, "summary.md"), "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
log "done; summary in $WORK/summary.md"
