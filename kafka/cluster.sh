#!/usr/bin/env bash
# A KRaft cluster of several Kafka nodes on this machine (127.0.0.1), for
# trying and testing what one broker cannot show: replication factor 3,
# in-sync replicas, a broker going away. Each node is a combined
# broker+controller started by kafka/kafka.sh with its own data dir; all are
# voters of one static quorum and formatted with one cluster id.
#
#   kafka/cluster.sh up [ID]      start every node at once (or node ID only) and
#                                 wait until each answers with every node
#                                 registered (idempotent)
#   kafka/cluster.sh down [ID]    stop every node (or node ID only); the last
#                                 node of a quorum cannot finish a controlled
#                                 shutdown alone: SIGKILL after 10 s
#                                 (KAFKA_STOP_TIMEOUT; 30 s for one node)
#   kafka/cluster.sh status [ID]  exit 0 if every node (or node ID) answers, and
#                                 (without ID) the cluster has all its brokers
#   kafka/cluster.sh bootstrap    print the bootstrap servers: 127.0.0.1:p1,...
#   kafka/cluster.sh cluster-id   print a new random cluster id (for kafka.sh by hand)
#
# Settings (environment). Taken when the cluster is first started and recorded
# in $KAFKA_CLUSTER_DIR/cluster.env, since the nodes' storage depends on them;
# later runs use the record, and refuse a setting that disagrees with it
# (`down`, remove the dir, `up` again for another shape):
#   KAFKA_CLUSTER_DIR     the cluster's dir; node N's data dir is node-N in it
#                         (default .kafka-cluster)
#   KAFKA_CLUSTER_NODES   how many nodes, 1-5  (default 3, or as many as ports)
#   KAFKA_CLUSTER_PORTS   client ports "p1,p2,..." (default 29092, 29093, ...)
#   KAFKA_CLUSTER_CONTROLLER_PORTS  controller ports "c1,c2,..." (default:
#                         picked free; picked again when one is taken by
#                         another process while the whole cluster is down)
# KAFKA_HEAP_OPTS defaults to -Xmx384m -Xms128m per node here (three JVMs on
# a small machine). kafka.sh's other settings (KAFKA_LIB_DIR,
# KAFKA_START_TIMEOUT, KAFKA_STOP_TIMEOUT, KAFKA_RETENTION_CHECK_MS, ...)
# apply to every node; KAFKA_PORT, KAFKA_DATA_DIR, KAFKA_NODE_ID,
# KAFKA_CONTROLLER_QUORUM and KAFKA_CLUSTER_ID are set per node from the
# record. No SASL listener. With 3 nodes, topics default to replication
# factor 3 and min.insync.replicas 2 (see kafka.sh). Example:
#   kafka/cluster.sh up    # 127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094
#   kafka/cluster.sh down 2; kafka/cluster.sh up 2    # one broker away and back
#   kafka/cluster.sh down
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_SH="$SCRIPT_DIR/kafka.sh"
PROBE="$SCRIPT_DIR/probe.py"

DIR_SHOWN=${KAFKA_CLUSTER_DIR:-.kafka-cluster}
DIR=$(realpath -m -- "$DIR_SHOWN")
RECORD="$DIR/cluster.env"
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx384m -Xms128m}
MAX_NODES=5
FIRST_DEFAULT_PORT=29092

# The cluster's shape, from the record (load).
NODES=0
PORTS=()
CPORTS=()
CPORTS_PICKED=no
CLUSTER_ID=""
QUORUM=""

die() { echo "cluster.sh: $*" >&2; exit 1; }
note() { echo "cluster.sh: $*" >&2; }

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

port_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
# As kafka.sh: TIME_WAIT leftovers of a just-stopped node are no live listener.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(1)
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

# $1 distinct free ports, bound all at once so that none is handed out twice.
pick_free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(",".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

random_cluster_id() {
  # As kafka.sh: `kafka-storage random-uuid`'s shape, never starting with '-'.
  python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s); break'
}

# ---------------------------------------------------------------- the record

recorded() { sed -n "s/^$1=//p" "$RECORD" 2>/dev/null | head -n 1; }

# "p1,p2,..." -> checked, into the array named $2; $3 names the setting.
parse_ports() {
  local -n into=$2
  local port
  IFS=, read -ra into <<<"$1"
  for port in "${into[@]}"; do
    if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || ((port < 1 || port > 65535)); then
      die "$3: '$port' is not a port number."
    fi
  done
}

write_record() {
  cat >"$RECORD.tmp" <<EOF
# Written by kafka/cluster.sh when the cluster was made: its nodes were
# formatted with this quorum and cluster id. Remove the whole dir to change it.
NODES=${NODES}
PORTS=$(IFS=,; echo "${PORTS[*]}")
CONTROLLER_PORTS=$(IFS=,; echo "${CPORTS[*]}")
CONTROLLER_PORTS_PICKED=${CPORTS_PICKED}
CLUSTER_ID=${CLUSTER_ID}
EOF
  mv "$RECORD.tmp" "$RECORD"
}

# Reads the record, or (with $1 = make) makes it from the settings. Sets NODES,
# PORTS, CPORTS, CPORTS_PICKED, CLUSTER_ID and QUORUM.
load() {
  local want_nodes=${KAFKA_CLUSTER_NODES:-} want_ports=${KAFKA_CLUSTER_PORTS:-}
  local want_cports=${KAFKA_CLUSTER_CONTROLLER_PORTS:-} i all
  [[ -z "${KAFKA_SASL_PORT:-}" ]] || die "KAFKA_SASL_PORT is set: cluster nodes have no SASL listener."
  if [[ -f "$RECORD" ]]; then
    NODES=$(recorded NODES)
    parse_ports "$(recorded PORTS)" PORTS "PORTS in $RECORD"
    parse_ports "$(recorded CONTROLLER_PORTS)" CPORTS "CONTROLLER_PORTS in $RECORD"
    CPORTS_PICKED=$(recorded CONTROLLER_PORTS_PICKED)
    CLUSTER_ID=$(recorded CLUSTER_ID)
    [[ "$NODES" =~ ^[1-9]$ && ${#PORTS[@]} -eq $NODES && ${#CPORTS[@]} -eq $NODES && -n "$CLUSTER_ID" ]] ||
      die "$RECORD is damaged; 'kafka/cluster.sh down' and remove $DIR_SHOWN."
    [[ -z "$want_nodes" || "$want_nodes" == "$NODES" ]] ||
      die "the cluster in $DIR_SHOWN has $NODES nodes, not KAFKA_CLUSTER_NODES=$want_nodes; use another KAFKA_CLUSTER_DIR, or 'down' and remove it."
    [[ -z "$want_ports" || "$want_ports" == "$(recorded PORTS)" ]] ||
      die "the cluster in $DIR_SHOWN has client ports $(recorded PORTS), not KAFKA_CLUSTER_PORTS=$want_ports."
    [[ -z "$want_cports" || "$want_cports" == "$(recorded CONTROLLER_PORTS)" ]] ||
      die "the cluster in $DIR_SHOWN has controller ports $(recorded CONTROLLER_PORTS), not KAFKA_CLUSTER_CONTROLLER_PORTS=$want_cports."
  elif [[ "${1:-}" == make ]]; then
    PORTS=()
    [[ -z "$want_ports" ]] || parse_ports "$want_ports" PORTS KAFKA_CLUSTER_PORTS
    if [[ -n "$want_nodes" ]]; then
      if ! [[ "$want_nodes" =~ ^[0-9]$ ]] || ((want_nodes < 1 || want_nodes > MAX_NODES)); then
        die "KAFKA_CLUSTER_NODES='$want_nodes' is not a number of nodes from 1 to $MAX_NODES."
      fi
      NODES=$want_nodes
    elif ((${#PORTS[@]} > 0)); then
      NODES=${#PORTS[@]}
    else
      NODES=3
    fi
    if [[ -z "$want_ports" ]]; then
      for ((i = 0; i < NODES; i++)); do PORTS+=($((FIRST_DEFAULT_PORT + i))); done
    fi
    ((${#PORTS[@]} == NODES)) || die "KAFKA_CLUSTER_PORTS names ${#PORTS[@]} ports for $NODES nodes."
    CPORTS_PICKED=no
    if [[ -n "$want_cports" ]]; then
      parse_ports "$want_cports" CPORTS KAFKA_CLUSTER_CONTROLLER_PORTS
      ((${#CPORTS[@]} == NODES)) ||
        die "KAFKA_CLUSTER_CONTROLLER_PORTS names ${#CPORTS[@]} ports for $NODES nodes."
    else
      pick_controller_ports
    fi
    all=" ${PORTS[*]} ${CPORTS[*]} "
    for i in "${PORTS[@]}" "${CPORTS[@]}"; do
      [[ "${all/ $i / }" != *" $i "* ]] || die "port $i is named twice among the client and controller ports."
    done
    CLUSTER_ID=$(random_cluster_id)
    mkdir -p "$DIR"
    [[ -f "$DIR/.gitignore" ]] || printf '*\n' >"$DIR/.gitignore"
    write_record
  else
    die "no cluster in $DIR_SHOWN (no $RECORD); 'kafka/cluster.sh up' makes one."
  fi
  QUORUM=""
  for ((i = 0; i < NODES; i++)); do QUORUM+="${QUORUM:+,}$((i + 1))@127.0.0.1:${CPORTS[$i]}"; done
}

pick_controller_ports() {
  local taken
  CPORTS_PICKED=yes
  while :; do
    parse_ports "$(pick_free_ports "$NODES")" CPORTS "picked ports"
    taken=" ${PORTS[*]} "
    # A picked port that is also a client port: pick again.
    local port clash=no
    for port in "${CPORTS[@]}"; do [[ "$taken" != *" $port "* ]] || clash=yes; done
    [[ "$clash" == yes ]] || return 0
  done
}

# Picked controller ports, one of them now taken by another process, while no
# node runs: pick new ones. The quorum is static configuration (written on
# every start), so the nodes take new ports as a single node does.
repick_if_taken() {
  [[ "$CPORTS_PICKED" == yes ]] || return 0
  local i taken=no
  for ((i = 1; i <= NODES; i++)); do
    ! node_running "$i" || return 0
  done
  for ((i = 0; i < NODES; i++)); do
    port_free "${CPORTS[$i]}" || taken=yes
  done
  [[ "$taken" == yes ]] || return 0
  note "a recorded controller port (${CPORTS[*]}) is taken and the cluster is down; picking new ones"
  pick_controller_ports
  write_record
  QUORUM=""
  for ((i = 0; i < NODES; i++)); do QUORUM+="${QUORUM:+,}$((i + 1))@127.0.0.1:${CPORTS[$i]}"; done
}

# ---------------------------------------------------------------- nodes

node_dir() { printf '%s/node-%s' "$DIR" "$1"; }

node_running() {
  local pid
  [[ -f "$(node_dir "$1")/broker.pid" ]] || return 1
  pid=$(tr -dc '0-9' <"$(node_dir "$1")/broker.pid")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# kafka.sh for node $1 (1-based), with the rest of the arguments. fd 9 (our
# lock) is closed: the broker would otherwise hold it for as long as it runs.
node() {
  local id=$1
  shift
  env KAFKA_NODE_ID="$id" KAFKA_PORT="${PORTS[$((id - 1))]}" KAFKA_DATA_DIR="$(node_dir "$id")" \
    KAFKA_CONTROLLER_QUORUM="$QUORUM" KAFKA_CLUSTER_ID="$CLUSTER_ID" KAFKA_HEAP_OPTS="$HEAP_OPTS" \
    "$KAFKA_SH" "$@" 9>&-
}

check_id() {
  if ! [[ "$1" =~ ^[1-9]$ ]] || (($1 > NODES)); then
    die "'$1' is not a node of this cluster (1-$NODES)."
  fi
}

nodes_shown() {
  if ((NODES == 1)); then echo "1 node"; else echo "$NODES nodes"; fi
}

bootstrap() {
  local i out=""
  for ((i = 0; i < NODES; i++)); do out+="${out:+,}127.0.0.1:${PORTS[$i]}"; done
  printf '%s' "$out"
}

lock() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.cluster.lock"
  flock -w "$((START_TIMEOUT + 60))" 9 2>/dev/null || true
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local t0 i failed=() pids=() out deadline remaining
  t0=$(now)
  lock
  load make
  if [[ -n "${1:-}" ]]; then
    check_id "$1"
    # kafka.sh waits until the node is registered whenever a majority of the
    # voters listens; with fewer it says so and returns.
    node "$1" up
    return 0
  fi
  repick_if_taken
  # Once, before the nodes: a fetch run by each of them would serialise anyway.
  "$KAFKA_SH" fetch >/dev/null 9>&-
  # All at once: no node answers before a majority of the voters is up, and
  # starting them one by one would only wait longer.
  out=$(mktemp -d)
  for ((i = 1; i <= NODES; i++)); do
    node "$i" up >"$out/$i" 2>&1 &
    pids+=($!)
  done
  for ((i = 1; i <= NODES; i++)); do
    wait "${pids[$((i - 1))]}" || failed+=("$i")
  done
  for ((i = 1; i <= NODES; i++)); do
    sed "s/^/node $i: /" "$out/$i" >&2
  done
  rm -rf "$out"
  ((${#failed[@]} == 0)) ||
    die "node(s) ${failed[*]} did not start (logs: $(node_dir "${failed[0]}")/broker.log ...); 'kafka/cluster.sh down' stops the others."
  # Every node answers, and knows every broker: the cluster is whole.
  deadline=$((SECONDS + START_TIMEOUT))
  for ((i = 1; i <= NODES; i++)); do
    remaining=$((deadline - SECONDS))
    ((remaining > 0)) || remaining=1
    python3 "$PROBE" 127.0.0.1 "${PORTS[$((i - 1))]}" --wait "$remaining" \
        --brokers "$NODES" --broker-id "$i" ||
      die "node $i did not answer with all $NODES brokers registered within ${START_TIMEOUT}s (log: $(node_dir "$i")/broker.log)."
  done
  echo "Kafka cluster of $(nodes_shown) up in $(elapsed_since "$t0") s (data $DIR_SHOWN), bootstrap $(bootstrap)"
}

cmd_down() {
  local i pids=() out status=0
  [[ -f "$RECORD" ]] || { echo "no cluster in $DIR_SHOWN (no $RECORD)"; return 0; }
  lock
  load
  if [[ -n "${1:-}" ]]; then
    check_id "$1"
    node "$1" down
    return 0
  fi
  # All at once, so that the controlled shutdowns are committed while the
  # quorum still stands. Still, a node left alone (the others done, the
  # active controller's own shutdown not yet committed) waits for a quorum
  # that is gone, for minutes: 10 s, then SIGKILL (kafka.sh) unless
  # KAFKA_STOP_TIMEOUT says otherwise. Kafka recovers its logs at the next start.
  export KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-10}
  out=$(mktemp -d)
  for ((i = 1; i <= NODES; i++)); do
    node "$i" down >"$out/$i" 2>&1 &
    pids+=($!)
  done
  for ((i = 1; i <= NODES; i++)); do
    wait "${pids[$((i - 1))]}" || status=1
    sed "s/^/node $i: /" "$out/$i"
  done
  rm -rf "$out"
  return "$status"
}

cmd_status() {
  local i status=0
  load
  if [[ -n "${1:-}" ]]; then
    check_id "$1"
    node "$1" status
    return
  fi
  for ((i = 1; i <= NODES; i++)); do
    node "$i" status | sed "s/^/node $i: /" || status=1
  done
  if ((status == 0)) && ! python3 "$PROBE" 127.0.0.1 "${PORTS[0]}" --brokers "$NODES"; then
    echo "cluster: fewer than $NODES brokers registered"
    status=1
  fi
  ((status != 0)) || echo "cluster: all $NODES brokers registered, bootstrap $(bootstrap)"
  return "$status"
}

case "${1:-}" in
  up) cmd_up "${2:-}" ;;
  down) cmd_down "${2:-}" ;;
  status) cmd_status "${2:-}" ;;
  bootstrap) load && bootstrap && echo ;;
  cluster-id) random_cluster_id ;;
  *)
    echo "usage: $0 {up|down|status} [NODE_ID] | bootstrap | cluster-id" >&2
    exit 2
    ;;
esac
