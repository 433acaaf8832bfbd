#!/usr/bin/env bash
# Docker smoke test, run by CI (.ci/run) and by hand: `bash docker/smoke-test.sh` as root.
#
# No Docker engine runs here and Docker Hub is out of reach, so the image is built and run
# with buildah (chroot isolation) on a Debian 12 base made with debootstrap:
#   1. installs buildah, debootstrap and the compose validators through apt;
#   2. builds localhost/bookworm-python (Debian 12, python3 3.11), reused while it exists;
#   3. lists the build context (.dockerignore keeps .git, .venv, data and caches out), then
#      builds the CPU image from docker/Dockerfile on that base (pip's cache is the
#      Dockerfile's `RUN --mount=type=cache`, which buildah keeps between builds);
#   4. checks the image config: USER 10001, entrypoint, HEALTHCHECK, volumes, environment,
#      nothing secret-looking; and in a container: `id -u` is 10001, no C compiler;
#   5. `demo-data /data` writes a tiny dataset, then `run --weights random:0` runs the whole
#      retrain flow in Prefect's embedded mode with the default WORKDIR, /workdir.
#      /data and /workdir/{cache,models,runs} are the image's own volumes, as with a plain
#      `docker run` (buildah keeps them per container), so the checks run in the container;
#   6. checks that the run folder holds evaluation.html and dropout_impact.html, that
#      /workdir/models/champion.json exists, and that every file belongs to uid 10001;
#   7. serves nightly-retrain as compose does (minus PostgreSQL): a Prefect server with
#      basic auth, `inception-retrain serve` as its client, the image's health check on the
#      runner, and `prefect deployment run 'retrain/nightly-retrain' --watch` to completion;
#   8. validates docker/compose.yaml with Debian's docker-compose (`config`, with
#      .env.example and the gpu profile; refused without secrets) and against the Compose
#      Specification JSON schema;
#   9. prints the image size and the time of every step.
# Idempotent: leftovers of an earlier run are removed first; the base image, buildah's cache
# mount and the downloaded schema are kept for the next run. Exits non-zero with a one-line
# reason on the first failure, keeping its logs.
#
# Knobs (environment): SMOKE_REBUILD_BASE=1 rebuilds the base; SMOKE_REUSE_IMAGE=1 tests the
# existing image without rebuilding; SMOKE_PER_CLASS (20) images per class; SMOKE_RUN_OPTIONS
# extra `run` options; SMOKE_RUN_TIMEOUT seconds per flow run (1800); SMOKE_STORAGE_DRIVER
# (buildah's default, overlay here; vfs where the kernel has no overlay).
set -Eeuo pipefail

cd "$(dirname "$0")/.."

export BUILDAH_ISOLATION=chroot DEBIAN_FRONTEND=noninteractive

BASE_IMAGE=localhost/bookworm-python
IMAGE=localhost/inception-retrain:smoke
CONTAINER=inception-retrain-smoke
STATE_DIR=/var/cache/inception-retrain-smoke # kept between runs: the compose schema
SCHEMA_PACKAGE=dclint@3.1.0                  # npm package that ships compose-spec's schema
RETRAIN_UID=10001
PER_CLASS=${SMOKE_PER_CLASS:-20}
RUN_TIMEOUT=${SMOKE_RUN_TIMEOUT:-1800}
# Small enough for CI, still every stage: 75 px images, one epoch, a 2x2 dropout sweep.
RUN_OPTIONS=${SMOKE_RUN_OPTIONS:---image-size 75 --sweep-rates 0.0,0.5 --sweep-placements after_dense2,none --mc-passes 5}
FLOW_OPTIONS="--data /data --weights random:0 --epochs 1 --sweep-folds 2 --sweep-repeats 1 --sweep-epochs 1 $RUN_OPTIONS"

WORK=$(mktemp -d /tmp/inception-retrain-smoke.XXXXXX)
STARTED=$(date +%s)
STEP_NAME=""
STEP_STARTED=$STARTED
TIMINGS=()

fail() {
  echo "SMOKE TEST FAILED: $*" >&2
  exit 1
}

step() { # step NAME: closes the previous step's timer and opens the next one
  local now
  now=$(date +%s)
  if [[ -n $STEP_NAME ]]; then
    TIMINGS+=("$(printf '%5ds  %s' $((now - STEP_STARTED)) "$STEP_NAME")")
    echo "--- done in $((now - STEP_STARTED))s: $STEP_NAME"
  fi
  STEP_NAME=$1
  STEP_STARTED=$now
  [[ -n $STEP_NAME ]] && echo && echo "=== [$((now - STARTED))s] $STEP_NAME"
  return 0
}

cleanup() {
  local status=$?
  buildah rm "$CONTAINER" >/dev/null 2>&1 || true
  if [[ $status -eq 0 ]]; then
    rm -rf "$WORK"
  else
    [[ -n $STEP_NAME ]] && echo "failed during: $STEP_NAME" >&2
    echo "logs kept in $WORK" >&2
  fi
}
trap cleanup EXIT
trap 'fail "command failed (line $LINENO): $BASH_COMMAND"' ERR

buildah() {
  command buildah ${SMOKE_STORAGE_DRIVER:+--storage-driver "$SMOKE_STORAGE_DRIVER"} "$@"
}

in_container() { # run a command in the working container, as the image's user
  buildah run "$CONTAINER" -- "$@"
}

check_ownership() { # every file the container wrote belongs to the non-root user
  local not_ours
  not_ours=$(in_container find /workdir /data ! -uid "$RETRAIN_UID")
  [[ -z $not_ours ]] || fail "files not owned by uid $RETRAIN_UID: $(head -5 <<<"$not_ours")"
  echo "all $(in_container find /workdir /data | wc -l) files under /workdir and /data" \
    "belong to uid $RETRAIN_UID (non-root)"
}

build_image() {
  local old_image new_image
  old_image=$(buildah inspect --type image --format '{{.FromImageID}}' "$IMAGE" 2>/dev/null || true)
  # The host's CA certificates let pip reach the package index through this network's proxy.
  if ! buildah bud --format docker \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --volume /etc/ssl/certs:/etc/ssl/certs:ro \
    --file docker/Dockerfile --tag "$IMAGE" . >"$WORK/build.log" 2>&1; then
    tail -40 "$WORK/build.log"
    fail "buildah bud failed (log above)"
  fi
  new_image=$(buildah inspect --type image --format '{{.FromImageID}}' "$IMAGE")
  if [[ -n $old_image && $old_image != "$new_image" ]]; then
    buildah rmi "$old_image" >/dev/null 2>&1 || true # only the last smoke image is kept
  fi
  count() { grep -c "$1" "$WORK/build.log" || true; }
  echo "pip: $(count '^Collecting ') requirements, $(count '^  Downloading ') downloaded," \
    "$(count 'Using cached ') taken from the cache mount"
  grep -q '^Successfully installed .*tensorflow-2\.21' "$WORK/build.log" \
    || fail "the build log shows no TensorFlow 2.21 install"
}

[[ $(id -u) -eq 0 ]] || fail "run as root (buildah builds and runs as root here)"

# ---------------------------------------------------------------------------------------
step "apt packages: buildah, debootstrap, docker-compose, jsonschema"
packages=()
type -P buildah >/dev/null || packages+=(buildah) # -P: the function above is not the binary
command -v debootstrap >/dev/null || packages+=(debootstrap)
command -v docker-compose >/dev/null || packages+=(docker-compose)
command -v npm >/dev/null || packages+=(npm)
python3 -c 'import jsonschema, yaml' 2>/dev/null || packages+=(python3-jsonschema python3-yaml)
if ((${#packages[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
buildah --version
echo "buildah storage driver: $(buildah info --format '{{.store.GraphDriverName}}')"
echo "docker-compose $(docker-compose version --short)"
free_gb=$(df --output=avail -BG /var/lib | tail -1 | tr -dc '0-9')
((free_gb >= 15)) || fail "only ${free_gb} GiB free under /var/lib; the build needs about 15"

# ---------------------------------------------------------------------------------------
step "base image $BASE_IMAGE (Debian 12 + python3)"
buildah rm "$CONTAINER" >/dev/null 2>&1 || true
if [[ ${SMOKE_REBUILD_BASE:-0} == 1 ]]; then
  buildah rmi "$BASE_IMAGE" >/dev/null 2>&1 || true
fi
if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "reusing $BASE_IMAGE (SMOKE_REBUILD_BASE=1 rebuilds it)"
else
  rootfs=$WORK/rootfs
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  base=$(buildah from scratch)
  buildah copy --quiet "$base" "$rootfs" / >/dev/null
  # What an official python image sets too: a PATH and a UTF-8 locale.
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' "$base"
  buildah commit --quiet --rm "$base" "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
buildah from --quiet --name "$CONTAINER" "$BASE_IMAGE" >/dev/null
base_python=$(in_container python3 --version 2>&1 | tail -1)
buildah rm "$CONTAINER" >/dev/null
echo "base python: $base_python"
[[ $base_python == "Python 3.11."* ]] || fail "the base has '$base_python', the project needs 3.11"

# ---------------------------------------------------------------------------------------
step "build context (.dockerignore)"
# What `docker build .` would send: copy the context into a throwaway image and list it.
printf 'FROM %s\nCOPY . /context\nRUN cd /context && find . | sort\n' "$BASE_IMAGE" \
  >"$WORK/context.Dockerfile"
buildah bud --file "$WORK/context.Dockerfile" --tag localhost/inception-retrain-context . \
  >"$WORK/context.log" 2>&1 || { tail -20 "$WORK/context.log"; fail "listing the build context failed"; }
buildah rmi localhost/inception-retrain-context >/dev/null 2>&1 || true
grep -E '^\./' "$WORK/context.log" >"$WORK/context.txt" || true
echo "$(wc -l <"$WORK/context.txt") paths in the context"
leaked=$(grep -E '^\./(\.git|\.venv|workdir|data|test-output|runs|models|cache)(/|$)|__pycache__|\.pyc$|(^|/)\.env$' \
  "$WORK/context.txt" || true)
[[ -z $leaked ]] || fail ".dockerignore lets these into the build context: $(head -5 <<<"$leaked" | tr '\n' ' ')"
for needed in ./pyproject.toml ./inception_retrain/cli/main.py ./inception_retrain/tasks/extract.py \
  ./inception_retrain/flows/retrain.py ./docker/healthcheck.py; do
  grep -qx "$needed" "$WORK/context.txt" || fail "the build context lacks $needed"
done

# ---------------------------------------------------------------------------------------
step "build $IMAGE from docker/Dockerfile"
if [[ ${SMOKE_REUSE_IMAGE:-0} == 1 ]] && buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
  echo "SMOKE_REUSE_IMAGE=1: testing the existing $IMAGE without rebuilding it"
else
  build_image
fi

# ---------------------------------------------------------------------------------------
step "image configuration"
buildah inspect --type image "$IMAGE" >"$WORK/image.json"
python3 - "$WORK/image.json" "$RETRAIN_UID" <<'EOF' || fail "the image configuration is wrong (above)"
import json
import sys

config = json.load(open(sys.argv[1]))["Docker"]["config"]
uid = sys.argv[2]
env = dict(item.split("=", 1) for item in config["Env"])
for key in ("User", "Entrypoint", "Cmd", "WorkingDir", "Volumes", "Healthcheck"):
    print(f"{key}: {config.get(key)}")
problems = []
if config["User"] != f"{uid}:{uid}":
    problems.append(f"USER is {config['User']!r}, expected {uid}:{uid}")
if config["Entrypoint"] != ["inception-retrain"]:
    problems.append(f"ENTRYPOINT is {config['Entrypoint']}")
if "healthcheck.py" not in " ".join((config.get("Healthcheck") or {}).get("Test") or []):
    problems.append("no HEALTHCHECK")
for volume in ("/data", "/workdir/cache", "/workdir/models", "/workdir/runs"):
    if volume not in (config.get("Volumes") or {}):
        problems.append(f"no VOLUME {volume}")
for name, value in [("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("PREFECT_HOME", None),
                    ("KERAS_HOME", None), ("TF_CPP_MIN_LOG_LEVEL", "2")]:
    if name not in env or (value is not None and env[name] != value):
        problems.append(f"ENV {name}={env.get(name)!r}")
secrets = [name for name in env if any(word in name for word in ("PASSWORD", "AUTH", "KEY"))]
if secrets:
    problems.append(f"secret-looking variables in the image: {secrets}")
for problem in problems:
    print("  problem:", problem)
sys.exit(1 if problems else 0)
EOF

# ---------------------------------------------------------------------------------------
step "container: user, tools"
buildah from --quiet --name "$CONTAINER" "$IMAGE" >/dev/null
uid=$(in_container id -u)
echo "id -u in the container: $uid"
[[ $uid == "$RETRAIN_UID" ]] || fail "the container runs as uid $uid, expected $RETRAIN_UID"
if in_container sh -c 'command -v gcc || command -v cc || command -v g++' >/dev/null 2>&1; then
  fail "a C compiler is present in the final image"
fi
in_container inception-retrain --help >/dev/null || fail "inception-retrain --help failed"
in_container python -c 'import tensorflow as tf, keras, prefect
print("tensorflow", tf.__version__, "keras", keras.__version__, "prefect", prefect.__version__)'

# ---------------------------------------------------------------------------------------
step "container: demo-data /data --per-class $PER_CLASS"
in_container inception-retrain demo-data /data --per-class "$PER_CLASS" \
  || fail "inception-retrain demo-data failed"

# ---------------------------------------------------------------------------------------
step "container: run the retrain flow (random weights, WORKDIR /workdir)"
# shellcheck disable=SC2086  # FLOW_OPTIONS is a list of options
if ! timeout "$RUN_TIMEOUT" buildah run "$CONTAINER" -- inception-retrain run $FLOW_OPTIONS \
  >"$WORK/run.out" 2>"$WORK/run.log"; then
  tail -40 "$WORK/run.log" "$WORK/run.out"
  fail "inception-retrain run failed in the container (log above)"
fi
grep -E "Flow run .* - (Finished|model)" "$WORK/run.log" | tail -3

# ---------------------------------------------------------------------------------------
step "outputs: reports, champion, ownership"
# The last line on stdout is the run folder, relative to the container's working directory /.
run_dir=$(tail -1 "$WORK/run.out")
[[ $run_dir == /* ]] || run_dir=/$run_dir
[[ $run_dir == /workdir/runs/* ]] || fail "the run printed '$run_dir' last, not a folder in /workdir/runs"
for report in evaluation.html dropout_impact.html; do
  in_container test -s "$run_dir/$report" || fail "$run_dir/$report is missing or empty"
done
in_container python -m json.tool /workdir/models/champion.json >"$WORK/champion.json" \
  || fail "/workdir/models/champion.json is missing or not JSON"
echo "run folder: $run_dir"
in_container ls "$run_dir" | tr '\n' ' '
echo
echo "champion.json: $(tr -d '\n ' <"$WORK/champion.json" | head -c 300)"
check_ownership

# ---------------------------------------------------------------------------------------
step "container: serve nightly-retrain against a Prefect server with basic auth"
# What compose runs, minus PostgreSQL: a Prefect server with PREFECT_SERVER_API_AUTH_STRING,
# `inception-retrain serve` as its authenticated client, the image's health check on the
# runner, then one `prefect deployment run 'retrain/nightly-retrain'` watched to its end.
# chroot isolation shares the host's network, so both ports are free ones picked here.
read -r API_PORT RUNNER_PORT < <(python3 -c 'import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))')
AUTH="smoke:$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
# Runs in the container's sh. Each server runs in its own session (setsid), so the EXIT trap
# can stop it with everything it started, by process group.
# shellcheck disable=SC2016  # expanded by the container's shell
serve_script='
set -eu
api="http://127.0.0.1:$API_PORT/api"
server=""; runner=""
stop() { for group in $runner $server; do kill -TERM "-$group" 2>/dev/null || true; done; sleep 3
         for group in $runner $server; do kill -KILL "-$group" 2>/dev/null || true; done; }
trap stop EXIT
trap "exit 1" INT TERM
probe() { python -c "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=5)" "$1" 2>/dev/null; }
wait_for() { # wait_for SECONDS WHAT COMMAND...: polls every 2 s
  seconds=$1; what=$2; shift 2; waited=0
  until "$@" 2>/dev/null; do
    waited=$((waited + 2))
    [ "$waited" -lt "$seconds" ] || { echo "timed out after ${seconds}s waiting for $what"; return 1; }
    sleep 2
  done
  echo "$what after ${waited}s"
}
logs() { echo "--- prefect server log"; tail -20 /tmp/server.log; echo "--- serve log"; tail -40 /tmp/serve.log; }
PREFECT_SERVER_API_AUTH_STRING="$AUTH" setsid prefect server start --host 127.0.0.1 \
  --port "$API_PORT" >/tmp/server.log 2>&1 &
server=$!
wait_for 180 "Prefect server healthy" probe "$api/health" || { logs; exit 1; }
python - "$api" "$AUTH" <<EOF
import base64, sys, urllib.error, urllib.request
api, auth = sys.argv[1], sys.argv[2]
def status(headers):
    request = urllib.request.Request(f"{api}/deployments/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code
token = base64.b64encode(auth.encode()).decode()
anonymous, authenticated = status({}), status({"Authorization": f"Basic {token}"})
print(f"API without credentials: HTTP {anonymous}; with the auth string: HTTP {authenticated}")
sys.exit(0 if (anonymous, authenticated) == (401, 200) else 1)
EOF
export PREFECT_API_URL="$api" PREFECT_API_AUTH_STRING="$AUTH" PREFECT_RUNNER_SERVER_PORT="$RUNNER_PORT"
setsid inception-retrain serve $FLOW_OPTIONS >/tmp/serve.log 2>&1 &
runner=$!
wait_for 300 "runner healthy (the image health check)" \
  python /opt/inception-retrain/healthcheck.py --expect-runner || { logs; exit 1; }
prefect deployment ls
prefect deployment run retrain/nightly-retrain --watch --watch-timeout "$RUN_TIMEOUT" || { logs; exit 1; }
'
if ! buildah run --env API_PORT="$API_PORT" --env RUNNER_PORT="$RUNNER_PORT" --env AUTH="$AUTH" \
  --env RUN_TIMEOUT="$RUN_TIMEOUT" --env FLOW_OPTIONS="$FLOW_OPTIONS" "$CONTAINER" -- \
  timeout "$((RUN_TIMEOUT + 600))" sh -c "$serve_script" >"$WORK/serve.log" 2>&1; then
  tail -60 "$WORK/serve.log"
  fail "serving nightly-retrain in the container failed (log above)"
fi
grep -E 'after [0-9]+s|HTTP|nightly-retrain|finished' "$WORK/serve.log" | tail -12
served_run=$(in_container sh -c 'ls -td /workdir/runs/*/ | head -1')
served_run=${served_run%/}
[[ $served_run != "$run_dir" ]] || fail "the served nightly-retrain run wrote no new run folder"
for report in evaluation.html dropout_impact.html; do
  in_container test -s "$served_run/$report" || fail "the served run $served_run has no $report"
done
echo "served run folder: $served_run (reports present)"
check_ownership

# ---------------------------------------------------------------------------------------
step "compose.yaml: docker-compose config"
compose() { env -u POSTGRES_PASSWORD -u PREFECT_API_AUTH_STRING docker-compose "$@"; }
compose --env-file docker/.env.example -f docker/compose.yaml config -q \
  || fail "docker-compose config rejects docker/compose.yaml"
services=$(compose --env-file docker/.env.example -f docker/compose.yaml --profile gpu \
  --profile dask config --services | sort | tr '\n' ' ')
echo "services with --profile gpu --profile dask: $services"
[[ $services == "dask-scheduler dask-worker postgres prefect-server retrain retrain-dask retrain-gpu " ]] \
  || fail "the gpu and dask profiles do not give the 7 services of compose.yaml"
# The dask profile: the scheduler and the workers run the project image, the runner serves
# with --cluster pointed at the scheduler, the workers join it.
dask_config=$(compose --env-file docker/.env.example -f docker/compose.yaml --profile dask config)
python3 - "$dask_config" <<'EOF' || fail "the dask profile of compose.yaml is not wired as documented"
import sys

import yaml

services = yaml.safe_load(sys.argv[1])["services"]
image = services["retrain"]["image"]
for name in ("dask-scheduler", "dask-worker", "retrain-dask"):
    assert services[name]["image"] == image, (name, services[name]["image"])
    assert services[name]["profiles"] == ["dask"], name
assert services["dask-scheduler"]["entrypoint"][:2] == ["dask", "scheduler"]
assert services["dask-worker"]["entrypoint"] == ["dask", "worker", "tcp://dask-scheduler:8786"]
command = services["retrain-dask"]["command"]
command = command if isinstance(command, str) else " ".join(command)
assert command.startswith("serve --cluster tcp://dask-scheduler:8786"), command
print("dask profile: scheduler, workers and runner on", image)
EOF
# Secrets have no defaults: with an empty env file the stack refuses to start, naming them.
: >"$WORK/empty.env"
if compose --env-file "$WORK/empty.env" -f docker/compose.yaml config -q 2>"$WORK/compose-noenv.log"; then
  fail "compose.yaml accepts a missing POSTGRES_PASSWORD / PREFECT_API_AUTH_STRING"
fi
grep -qE 'POSTGRES_PASSWORD|PREFECT_API_AUTH_STRING' "$WORK/compose-noenv.log" \
  || fail "compose.yaml without secrets failed for another reason: $(tail -1 "$WORK/compose-noenv.log")"
echo "without secrets: $(tail -1 "$WORK/compose-noenv.log" | grep -oE 'in service .*$' || true)"

# ---------------------------------------------------------------------------------------
step "compose.yaml: Compose Specification JSON schema ($SCHEMA_PACKAGE)"
schema=$STATE_DIR/compose-spec.schema.json
if [[ ! -s $schema ]]; then
  mkdir -p "$STATE_DIR"
  (cd "$WORK" && npm pack --silent "$SCHEMA_PACKAGE" >/dev/null) || fail "npm pack $SCHEMA_PACKAGE failed"
  tar -xzf "$WORK"/dclint-*.tgz -C "$WORK" package/schemas/compose.schema.json
  mv "$WORK/package/schemas/compose.schema.json" "$schema"
fi
python3 - "$schema" docker/compose.yaml <<'EOF' || fail "docker/compose.yaml does not match the Compose Specification"
import copy
import json
import sys

import jsonschema
import yaml

schema = json.load(open(sys.argv[1]))
document = yaml.safe_load(open(sys.argv[2]))
validator = jsonschema.Draft7Validator(schema)
print("schema:", schema.get("title"), schema.get("$id"))
errors = list(validator.iter_errors(document))
for error in errors:
    print("  ", "/".join(map(str, error.absolute_path)) or "(root)", ":", error.message[:200])
# The validator must be able to fail: a misspelt key has to be rejected.
broken = copy.deepcopy(document)
broken["services"]["retrain"]["helthcheck"] = {"disable": True}
if not list(validator.iter_errors(broken)):
    sys.exit("the schema accepted a misspelt key: the validator is not working")
print("valid" if not errors else f"{len(errors)} error(s)")
sys.exit(1 if errors else 0)
EOF

# ---------------------------------------------------------------------------------------
step "image size"
buildah images --format '{{.Name}}:{{.Tag}}  {{.Size}}' "$IMAGE"
buildah images --format '{{.Name}}:{{.Tag}}  {{.Size}}' "$BASE_IMAGE"
echo "/opt/venv in the image: $(in_container du -sh /opt/venv | cut -f1)"

step ""
echo
echo "=== smoke test passed in $(($(date +%s) - STARTED))s"
printf '%s\n' "${TIMINGS[@]}"
