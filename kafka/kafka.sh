#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft combined mode, no ZooKeeper),
# run with the machine's Java from jars fetched from Maven Central by
# kafka/pom.xml.
#
#   kafka/kafka.sh up       start (idempotent), wait until it answers
#   kafka/kafka.sh down     stop (SIGTERM, then SIGKILL after 30 s)
#   kafka/kafka.sh status   exit 0 if running and answering
#   kafka/kafka.sh fetch    only make sure the jars are in the lib dir
#
# Settings (environment):
#   KAFKA_PORT            client port on 127.0.0.1           (default 9092)
#   KAFKA_DATA_DIR        data dir, relative to the cwd      (default .kafka)
#   KAFKA_LIB_DIR         where the jars are cached          (default kafka/lib)
#   KAFKA_START_TIMEOUT   seconds to wait for readiness      (default 90)
#   KAFKA_STOP_TIMEOUT    seconds before SIGKILL on down     (default 30)
#   KAFKA_HEAP_OPTS       JVM heap flags                     (default -Xmx512m -Xms256m)
#   KAFKA_JVM_PERFORMANCE_OPTS  GC/JIT flags (default: Kafka's own G1 settings)
#   KAFKA_RETENTION_CHECK_MS    log.retention.check.interval.ms  (default 300000)
#
# Optional SASL listener (off unless KAFKA_SASL_PORT is set), for trying and
# testing clients against a secured broker:
#   KAFKA_SASL_PORT       SASL_PLAINTEXT listener on 127.0.0.1 beside PLAINTEXT
#   KAFKA_SASL_USERS      users, "name:password[,name:password...]" (required with
#                         KAFKA_SASL_PORT; names [A-Za-z0-9._@-], passwords
#                         [A-Za-z0-9._~!@#%^*+/-])
#   KAFKA_SASL_MECHANISMS mechanisms the listener offers
#                         (default SCRAM-SHA-256,SCRAM-SHA-512; PLAIN may be added)
# The SCRAM credentials of every user are created when the storage is
# formatted (StorageTool --add-scram); on a data dir formatted earlier, or
# whose users changed, they are added or updated over the PLAINTEXT listener
# once the broker answers (users left out are not deleted). PLAIN users are
# listed in the listener's JAAS config. The PLAINTEXT listener stays,
# unauthenticated: the broker uses it itself (inter-broker) and so do the
# readiness probe and `up` for the credentials. Passwords end up in the data
# dir and on StorageTool's command line: a local development broker, not a
# hardened one. Example:
#   KAFKA_PORT=19092 KAFKA_SASL_PORT=19093 KAFKA_SASL_USERS=alice:alice-secret \
#     KAFKA_DATA_DIR=.kafka-sasl kafka/kafka.sh up
#
# Several brokers can run at once with different KAFKA_PORT/KAFKA_DATA_DIR.
# The lib dir and data dir each get a `.gitignore` containing `*`.
#
# One node of a KRaft cluster of several (kafka/cluster.sh runs N of them on
# this machine; by hand, one kafka.sh per node with its own KAFKA_PORT and
# KAFKA_DATA_DIR and the same quorum and cluster id):
#   KAFKA_NODE_ID           this node's node.id                 (default 1)
#   KAFKA_CONTROLLER_QUORUM every voter, "id@host:port[,id@host:port...]", the
#                           same on every node; this node (KAFKA_NODE_ID) must be
#                           one of them and listens on its entry's port
#                           (default: this node alone, controller port picked free)
#   KAFKA_CLUSTER_ID        cluster id the storage is formatted with, the same on
#                           every node (22 characters, base64url of 16 bytes, as
#                           `kafka-storage random-uuid` prints; default: random;
#                           required with more than one voter)
# With N voters the broker defaults allow replication: default, __consumer_offsets
# and transaction state replication factor min(3, N), min.insync.replicas 2
# when N >= 3. `up` of a node waits until it answers as a registered broker
# when a majority of the voters is listening; while fewer are up (the first
# nodes of a cluster being started) it only waits until the node listens,
# since no node can answer before a majority has elected a leader.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
POM="$SCRIPT_DIR/pom.xml"
PROBE="$SCRIPT_DIR/probe.py"
LOG4J_CONFIG="$SCRIPT_DIR/log4j2.xml"

KAFKA_PORT=${KAFKA_PORT:-9092}
DATA_DIR_SHOWN=${KAFKA_DATA_DIR:-.kafka}
DATA_DIR=$(realpath -m -- "$DATA_DIR_SHOWN")
LIB_DIR=$(realpath -m -- "${KAFKA_LIB_DIR:-$SCRIPT_DIR/lib}")
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}
JVM_PERF_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}

PID_FILE="$DATA_DIR/broker.pid"
LOG_FILE="$DATA_DIR/broker.log"
PROPS_FILE="$DATA_DIR/server.properties"
CONTROLLER_PORT_FILE="$DATA_DIR/controller.port"
LOG_DIRS="$DATA_DIR/logs"
STAMP_FILE="$LIB_DIR/.pom.sha256"
SASL_USERS_STAMP="$DATA_DIR/sasl-users.sha256"

SASL_PORT=${KAFKA_SASL_PORT:-}
SASL_USERS=${KAFKA_SASL_USERS:-}
SASL_MECHANISMS=${KAFKA_SASL_MECHANISMS:-SCRAM-SHA-256,SCRAM-SHA-512}

NODE_ID=${KAFKA_NODE_ID:-1}
QUORUM=${KAFKA_CONTROLLER_QUORUM:-}
CLUSTER_ID=${KAFKA_CLUSTER_ID:-}

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n 1)

die() { echo "kafka.sh: $*" >&2; exit 1; }
note() { echo "kafka.sh: $*" >&2; }

install_hint() {
  cat >&2 <<EOF
kafka.sh: $1
  Install it, e.g.:  apt-get install openjdk-17-jre-headless maven python3
  (Kafka ${KAFKA_VERSION} needs Java 17+; Maven is only needed once, to fetch the jars)
  or point the project at an existing cluster instead: export KAFKA_BOOTSTRAP_SERVERS=host:port
EOF
  exit 1
}

need_cmd() { command -v "$1" >/dev/null 2>&1 || install_hint "'$1' not found on PATH."; }

# ---------------------------------------------------------------- jars

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

jars_cached() {
  [[ -f "$STAMP_FILE" ]] && [[ "$(cat "$STAMP_FILE")" == "$(pom_hash)" ]] &&
    compgen -G "$LIB_DIR/kafka_2.13-*.jar" >/dev/null
}

ensure_jars() {
  jars_cached && return 0
  need_cmd mvn
  mkdir -p "$(dirname "$LIB_DIR")"
  # Serialise concurrent fetches into the same lib dir.
  local lock
  lock="/tmp/kafka-sh-fetch-$(printf '%s' "$LIB_DIR" | sha256sum | cut -c1-16).lock"
  exec 9>"$lock"
  flock 9 2>/dev/null || true
  if jars_cached; then exec 9>&-; return 0; fi

  echo "fetching Kafka jars from Maven Central (first time only)..." >&2
  local tmp="$LIB_DIR.tmp.$$" mvn_log
  rm -rf "$tmp"
  mkdir -p "$tmp"
  printf '*\n' >"$tmp/.gitignore"
  mvn_log="$tmp/.maven.log"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" package -Dkafka.lib.dir="$tmp" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -rf "$tmp"
    die "Maven failed to fetch the Kafka jars (see above)."
  fi
  rm -f "$mvn_log"
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp"; die "Maven ran but no kafka_2.13 jar in $tmp"; }
  pom_hash >"$tmp/.pom.sha256"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  exec 9>&-
}

# ---------------------------------------------------------------- process helpers

read_pid() { [[ -f "$PID_FILE" ]] && tr -dc '0-9' <"$PID_FILE" || true; }

# Is $1 a live broker process started from this data dir?
is_our_broker() {
  local pid=$1 cmdline
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *kafka.Kafka*"$PROPS_FILE"* ]]
}

# Client port the broker in this data dir was configured with.
configured_port() {
  sed -n 's|^listeners=PLAINTEXT://[^,]*:\([0-9]*\),.*|\1|p' "$PROPS_FILE" 2>/dev/null | head -n 1
}

probe() { python3 "$PROBE" 127.0.0.1 "$@"; }

port_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
# SO_REUSEADDR like the JVM's server sockets: TIME_WAIT leftovers of a
# just-stopped broker must not count as "in use", only a live listener.
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

pick_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }

# ---------------------------------------------------------------- commands

cmd_fetch() {
  ensure_jars
  echo "Kafka ${KAFKA_VERSION} jars in $LIB_DIR ($(compgen -G "$LIB_DIR/*.jar" | wc -l) jars)"
}

# ---------------------------------------------------------------- SASL listener

# Checks KAFKA_SASL_*; fills SASL_USER_NAMES, SASL_USER_PASSWORDS and SASL_SCRAM.
check_sasl() {
  SASL_USER_NAMES=()
  SASL_USER_PASSWORDS=()
  SASL_SCRAM=()
  if [[ -z "$SASL_PORT" ]]; then
    [[ -z "$SASL_USERS" ]] ||
      die "KAFKA_SASL_USERS is set but KAFKA_SASL_PORT is not: set both for a SASL listener."
    return 0
  fi
  [[ "$SASL_PORT" =~ ^[0-9]{1,5}$ ]] && ((SASL_PORT >= 1 && SASL_PORT <= 65535)) ||
    die "KAFKA_SASL_PORT='$SASL_PORT' is not a port number."
  [[ "$SASL_PORT" != "$KAFKA_PORT" ]] || die "KAFKA_SASL_PORT must differ from KAFKA_PORT ($KAFKA_PORT)."
  [[ -n "$SASL_USERS" ]] ||
    die "KAFKA_SASL_PORT is set but KAFKA_SASL_USERS is empty: give name:password[,name:password...]."
  [[ -n "$SASL_MECHANISMS" ]] || die "KAFKA_SASL_MECHANISMS is empty."
  local mechanism entry name password mechanisms users
  IFS=, read -ra mechanisms <<<"$SASL_MECHANISMS"
  for mechanism in "${mechanisms[@]}"; do
    case "$mechanism" in
      SCRAM-SHA-256 | SCRAM-SHA-512) SASL_SCRAM+=("$mechanism") ;;
      PLAIN) ;;
      *) die "KAFKA_SASL_MECHANISMS: '$mechanism' is not one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN." ;;
    esac
  done
  IFS=, read -ra users <<<"$SASL_USERS"
  for entry in "${users[@]}"; do
    name=${entry%%:*}
    password=${entry#*:}
    if [[ "$entry" != *:* ]] || ! [[ "$name" =~ ^[A-Za-z0-9._@-]+$ ]] ||
        ! [[ "$password" =~ ^[A-Za-z0-9._~!@#%^*+/-]+$ ]]; then
      die "KAFKA_SASL_USERS: '${name}:...' is not name:password (names [A-Za-z0-9._@-], passwords [A-Za-z0-9._~!@#%^*+/-])."
    fi
    SASL_USER_NAMES+=("$name")
    SASL_USER_PASSWORDS+=("$password")
  done
}

sasl_users_hash() { printf '%s|%s' "$SASL_MECHANISMS" "$SASL_USERS" | sha256sum | cut -d' ' -f1; }

sasl_shown() {
  [[ -z "$SASL_PORT" ]] || printf ', SASL_PLAINTEXT on 127.0.0.1:%s (%s)' "$SASL_PORT" "$SASL_MECHANISMS"
}

# StorageTool arguments that create the SCRAM credentials at format time.
scram_format_args() {
  SCRAM_ARGS=()
  local i mechanism
  for mechanism in "${SASL_SCRAM[@]}"; do
    for i in "${!SASL_USER_NAMES[@]}"; do
      SCRAM_ARGS+=(--add-scram "${mechanism}=[name=${SASL_USER_NAMES[$i]},password=${SASL_USER_PASSWORDS[$i]}]")
    done
  done
}

# A data dir formatted without these users (earlier, or with other ones): add
# or update their SCRAM credentials through the running broker's PLAINTEXT
# listener. Skipped when the format (or an earlier run) already did it.
upsert_scram_users() {
  [[ -n "$SASL_PORT" && ${#SASL_SCRAM[@]} -gt 0 ]] || return 0
  [[ "$(cat "$SASL_USERS_STAMP" 2>/dev/null)" != "$(sasl_users_hash)" ]] || return 0
  local i mechanism
  java_cmd
  for i in "${!SASL_USER_NAMES[@]}"; do
    # One mechanism per request: the broker refuses two changes of one user in one.
    for mechanism in "${SASL_SCRAM[@]}"; do
      if ! "${JAVA_ARGS[@]}" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
          --alter --entity-type users --entity-name "${SASL_USER_NAMES[$i]}" \
          --add-config "${mechanism}=[password=${SASL_USER_PASSWORDS[$i]}]" >>"$LOG_FILE" 2>&1; then
        tail -n 20 "$LOG_FILE" >&2
        die "could not set the ${mechanism} credentials of '${SASL_USER_NAMES[$i]}' (log: $LOG_FILE)"
      fi
    done
  done
  sasl_users_hash >"$SASL_USERS_STAMP"
  note "SCRAM credentials of ${SASL_USER_NAMES[*]} set on the running broker"
}

# ---------------------------------------------------------------- cluster node

# Checks KAFKA_NODE_ID, KAFKA_CONTROLLER_QUORUM and KAFKA_CLUSTER_ID; sets
# VOTERS (how many), QUORUM_CPORT (this node's controller port; empty for the
# default quorum of this node alone, whose port is picked free) and
# OTHER_VOTERS (host:port of the other voters' controllers).
check_node() {
  VOTERS=1
  QUORUM_CPORT=""
  OTHER_VOTERS=()
  [[ "$NODE_ID" =~ ^[0-9]{1,9}$ ]] || die "KAFKA_NODE_ID='$NODE_ID' is not a node id (0-999999999)."
  # Numbers, not strings: "01" is node 1 to Kafka, so it must be here too.
  NODE_ID=$((10#$NODE_ID))
  if [[ -n "$CLUSTER_ID" ]] && ! [[ "$CLUSTER_ID" =~ ^[A-Za-z0-9_-]{22}$ ]]; then
    die "KAFKA_CLUSTER_ID='$CLUSTER_ID' is not a cluster id: 22 characters of base64url, as 'kafka-storage random-uuid' prints."
  fi
  [[ -n "$QUORUM" ]] || return 0
  local entry id host port seen=" " voters
  IFS=, read -ra voters <<<"$QUORUM"
  for entry in "${voters[@]}"; do
    [[ "$entry" =~ ^([0-9]{1,9})@([A-Za-z0-9._-]+):([0-9]{1,5})$ ]] ||
      die "KAFKA_CONTROLLER_QUORUM: '$entry' is not id@host:port."
    id=$((10#${BASH_REMATCH[1]}))
    host=${BASH_REMATCH[2]}
    port=$((10#${BASH_REMATCH[3]}))
    ((port >= 1 && port <= 65535)) || die "KAFKA_CONTROLLER_QUORUM: '$entry' has no valid port."
    [[ "$seen" != *" $id@"* ]] || die "KAFKA_CONTROLLER_QUORUM: node $id is named twice."
    [[ "$seen" != *"@$host:$port "* ]] || die "KAFKA_CONTROLLER_QUORUM: $host:$port is named twice."
    seen+="$id@$host:$port "
    if ((id == NODE_ID)); then QUORUM_CPORT=$port; else OTHER_VOTERS+=("$host:$port"); fi
  done
  VOTERS=${#voters[@]}
  [[ -n "$QUORUM_CPORT" ]] ||
    die "KAFKA_NODE_ID=$NODE_ID is not one of the voters in KAFKA_CONTROLLER_QUORUM ($QUORUM)."
  [[ "$QUORUM_CPORT" != "$KAFKA_PORT" && "$QUORUM_CPORT" != "$SASL_PORT" ]] ||
    die "node $NODE_ID's controller port $QUORUM_CPORT (KAFKA_CONTROLLER_QUORUM) is also its client or SASL port."
  # A node formatted with a cluster id of its own never joins the others: it
  # fails at start with an error in its log. Refuse before that, saying why.
  ((VOTERS == 1)) || [[ -n "$CLUSTER_ID" ]] ||
    die "KAFKA_CLUSTER_ID is not set: the $VOTERS nodes of a cluster must be formatted with one cluster id (e.g. the output of 'kafka/cluster.sh cluster-id')."
}

# A data dir formatted before for another node or cluster: the broker would
# fail at start (or worse, join the wrong cluster); say so instead.
check_formatted() {
  local meta="$LOG_DIRS/meta.properties" formatted
  [[ -f "$meta" ]] || return 0
  formatted=$(sed -n 's/^node\.id=//p' "$meta")
  [[ -z "$formatted" || "$formatted" == "$NODE_ID" ]] ||
    die "$DATA_DIR_SHOWN was formatted for node $formatted, not KAFKA_NODE_ID=$NODE_ID; use another KAFKA_DATA_DIR or remove it."
  [[ -n "$CLUSTER_ID" ]] || return 0
  formatted=$(sed -n 's/^cluster\.id=//p' "$meta")
  [[ -z "$formatted" || "$formatted" == "$CLUSTER_ID" ]] ||
    die "$DATA_DIR_SHOWN belongs to cluster $formatted, not KAFKA_CLUSTER_ID=$CLUSTER_ID; use another KAFKA_DATA_DIR or remove it."
}

# Probe arguments of "this node is ready": in a cluster, any node answers
# with the brokers it knows of, so it must list itself (registered, unfenced).
ready_args() {
  READY_ARGS=()
  ((VOTERS == 1)) || READY_ARGS=(--broker-id "$NODE_ID")
}

listening() {
  python3 - "$1" "$2" <<'EOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
EOF
}

# Are a majority of the voters (this node included) listening? Only then can
# a leader be elected and this node answer; sets UP_VOTERS.
majority_listening() {
  local addr
  UP_VOTERS=1
  for addr in "${OTHER_VOTERS[@]}"; do
    if listening "${addr%:*}" "${addr##*:}"; then UP_VOTERS=$((UP_VOTERS + 1)); fi
  done
  ((UP_VOTERS > VOTERS / 2))
}

sasl_props() {
  [[ -n "$SASL_PORT" ]] || return 0
  local i plain_users=""
  for i in "${!SASL_USER_NAMES[@]}"; do
    plain_users+=" user_${SASL_USER_NAMES[$i]}=\"${SASL_USER_PASSWORDS[$i]}\""
  done
  cat <<EOF

# SASL_PLAINTEXT listener (KAFKA_SASL_PORT), users from KAFKA_SASL_USERS. SCRAM
# credentials live in the cluster metadata; PLAIN users are listed here.
sasl.enabled.mechanisms=${SASL_MECHANISMS}
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required${plain_users};
EOF
}

write_props() {
  local cport=$1 sasl_listener="" quorum_note replication min_isr
  [[ -z "$SASL_PORT" ]] || sasl_listener=",SASL_PLAINTEXT://127.0.0.1:${SASL_PORT}"
  quorum_note="Static single-voter quorum: the controller port may change between restarts."
  [[ -z "$QUORUM" ]] || quorum_note="Static quorum of ${VOTERS} (KAFKA_CONTROLLER_QUORUM), the same on every node."
  # Every topic replicated on up to three of the nodes, and acks=all still
  # served with one of three down (min ISR 2). One node: 1 and 1, as always.
  replication=$((VOTERS < 3 ? VOTERS : 3))
  min_isr=$((VOTERS >= 3 ? 2 : 1))
  # Readable by its owner only: it may hold PLAIN passwords.
  (umask 077 && : >"$PROPS_FILE")
  cat >"$PROPS_FILE" <<EOF
# Written by kafka/kafka.sh on every start -- edits here are overwritten.
process.roles=broker,controller
node.id=${NODE_ID}
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${cport}${sasl_listener}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT}${sasl_listener}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# ${quorum_note}
controller.quorum.voters=${QUORUM:-${NODE_ID}@127.0.0.1:${cport}}
log.dirs=${LOG_DIRS}

num.partitions=1
default.replication.factor=${replication}
min.insync.replicas=${min_isr}
auto.create.topics.enable=true
delete.topic.enable=true
log.cleaner.enable=true

offsets.topic.replication.factor=${replication}
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=${replication}
transaction.state.log.min.isr=${min_isr}
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=${replication}
share.coordinator.state.topic.min.isr=${min_isr}
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
# How often time retention runs (Kafka's default: 5 minutes). Tests shorten it
# so that a topic whose records would expire by age fails at once, not by luck.
log.retention.check.interval.ms=${KAFKA_RETENTION_CHECK_MS:-300000}
EOF
  sasl_props >>"$PROPS_FILE"
}

random_cluster_id() {
  # Same shape as `kafka-storage random-uuid`: 16 random bytes, base64url, no padding,
  # never starting with '-' (Kafka's Uuid.randomUuid() avoids that too).
  python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s); break'
}

java_cmd() {
  # shellcheck disable=SC2206  # word-splitting of the *_OPTS strings is intended
  JAVA_ARGS=(java $HEAP_OPTS $JVM_PERF_OPTS
    "-Dlog4j2.configurationFile=$LOG4J_CONFIG"
    "-Dkafka.logs.dir=$DATA_DIR"
    -cp "$LIB_DIR/*")
}

cmd_up() {
  local t0 pid cport running_port running_voters
  t0=$(now)
  need_cmd java
  need_cmd python3
  check_sasl
  check_node
  ready_args
  if ! jars_cached && ! command -v mvn >/dev/null 2>&1; then
    install_hint "'mvn' not found on PATH and no cached Kafka jars in $LIB_DIR."
  fi

  # Serialise concurrent `up`s on the same data dir (e.g. parallel test workers).
  mkdir -p "$DATA_DIR"
  [[ -f "$DATA_DIR/.gitignore" ]] || printf '*\n' >"$DATA_DIR/.gitignore"
  exec 8>"$DATA_DIR/.up.lock"
  flock -w "$((START_TIMEOUT + 60))" 8 2>/dev/null || true

  pid=$(read_pid)
  if is_our_broker "$pid"; then
    running_port=$(configured_port)
    if [[ -n "$running_port" && "$running_port" != "$KAFKA_PORT" ]]; then
      die "a broker from $DATA_DIR_SHOWN is already running on port $running_port (pid $pid), not $KAFKA_PORT; run 'kafka.sh down' first."
    fi
    if [[ -n "$SASL_PORT" ]] &&
        ! grep -q "^listeners=.*,SASL_PLAINTEXT://127.0.0.1:${SASL_PORT}\$" "$PROPS_FILE"; then
      die "the broker from $DATA_DIR_SHOWN (pid $pid) has no SASL listener on port $SASL_PORT; run 'kafka.sh down' first."
    fi
    running_voters=$(sed -n 's/^controller\.quorum\.voters=//p' "$PROPS_FILE")
    if ! grep -qx "node\.id=${NODE_ID}" "$PROPS_FILE" ||
        [[ -n "$QUORUM" && "$running_voters" != "$QUORUM" ]] ||
        [[ -z "$QUORUM" && "$running_voters" == *,* ]]; then
      die "the broker from $DATA_DIR_SHOWN (pid $pid) is not node $NODE_ID of quorum ${QUORUM:-(this node alone)} but $(sed -n 's/^node\.id=//p' "$PROPS_FILE") of $running_voters; run 'kafka.sh down' first."
    fi
    if probe "$KAFKA_PORT" "${READY_ARGS[@]}"; then
      upsert_scram_users
      echo "Kafka already running on 127.0.0.1:$KAFKA_PORT$(sasl_shown)$(node_shown) (pid $pid)"
      return 0
    fi
    note "broker pid $pid is alive but not answering yet; waiting up to ${START_TIMEOUT}s..."
    wait_up "$pid" "$t0" "$(sed -n 's|^listeners=.*CONTROLLER://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$PROPS_FILE")"
    upsert_scram_users
    return 0
  fi
  [[ -z "$pid" ]] || { note "removing stale pid file (pid $pid not running)"; rm -f "$PID_FILE"; }

  ensure_jars

  if ! port_free "$KAFKA_PORT"; then
    die "port $KAFKA_PORT on 127.0.0.1 is already in use by another process; set KAFKA_PORT to a free port (or KAFKA_BOOTSTRAP_SERVERS to use that server)."
  fi
  if [[ -n "$SASL_PORT" ]] && ! port_free "$SASL_PORT"; then
    die "port $SASL_PORT (KAFKA_SASL_PORT) on 127.0.0.1 is already in use by another process; pick a free one."
  fi

  mkdir -p "$LOG_DIRS"
  check_formatted

  cport=$([[ -f "$CONTROLLER_PORT_FILE" ]] && tr -dc '0-9' <"$CONTROLLER_PORT_FILE" || true)
  if [[ -n "$QUORUM_CPORT" ]]; then
    # Every other voter knows this node by that port: no other will do.
    cport=$QUORUM_CPORT
    port_free "$cport" ||
      die "controller port $cport of node $NODE_ID (KAFKA_CONTROLLER_QUORUM) on 127.0.0.1 is already in use by another process."
  elif [[ -z "$cport" || "$cport" == "$KAFKA_PORT" || "$cport" == "$SASL_PORT" ]] ||
      ! port_free "$cport"; then
    [[ -z "$cport" ]] || note "recorded controller port $cport is taken; picking a new one"
    cport=$(pick_free_port)
    while [[ "$cport" == "$KAFKA_PORT" || "$cport" == "$SASL_PORT" ]]; do cport=$(pick_free_port); done
    echo "$cport" >"$CONTROLLER_PORT_FILE"
  fi
  write_props "$cport"

  java_cmd
  if [[ ! -f "$LOG_DIRS/meta.properties" ]]; then
    local cluster_id=$CLUSTER_ID
    [[ -n "$cluster_id" ]] || cluster_id=$(random_cluster_id)
    note "formatting storage in $LOG_DIRS (cluster id $cluster_id)"
    scram_format_args
    if ! "${JAVA_ARGS[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS_FILE" \
        --ignore-formatted "${SCRAM_ARGS[@]}" >>"$LOG_FILE" 2>&1; then
      tail -n 40 "$LOG_FILE" >&2
      die "formatting storage failed (log: $LOG_FILE)"
    fi
    # Which users the format created (upsert_scram_users skips them).
    if [[ -n "$SASL_PORT" ]]; then sasl_users_hash >"$SASL_USERS_STAMP"; else rm -f "$SASL_USERS_STAMP"; fi
  fi

  rm -f "$PID_FILE"
  # fds 8/9 (our flock fds) are closed so the broker does not hold the locks.
  # setsid: own session, survives the calling shell and its Ctrl-C; the inner
  # bash writes its own pid (== java's pid after exec) to the pid file.
  nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-broker "$PID_FILE" \
    "${JAVA_ARGS[@]}" kafka.Kafka "$PROPS_FILE" >>"$LOG_FILE" 2>&1 </dev/null 8>&- 9>&- &
  local i
  for i in $(seq 1 100); do
    pid=$(read_pid)
    [[ -n "$pid" ]] && break
    sleep 0.05
  done
  [[ -n "$pid" ]] || die "broker did not start (no pid written); see $LOG_FILE"
  wait_up "$pid" "$t0" "$cport"
  upsert_scram_users
}

# In a cluster, " as node N of M voters"; nothing for a single node.
node_shown() {
  ((VOTERS == 1)) || printf ' as node %s of %s voters' "$NODE_ID" "$VOTERS"
}

elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Waits until this node answers. A node of a cluster whose majority is not
# listening yet cannot answer (no leader can be elected): then only until its
# controller listens, so that nodes can be started one after the other.
wait_up() {
  local pid=$1 t0=$2 cport=$3
  if ((VOTERS > 1)); then
    [[ -z "$cport" ]] || wait_listening "$pid" "$cport"
    if ! majority_listening; then
      echo "Kafka ${KAFKA_VERSION} node $NODE_ID started on 127.0.0.1:$KAFKA_PORT$(sasl_shown) (pid $pid, data $DATA_DIR_SHOWN) in $(elapsed_since "$t0") s; $UP_VOTERS of $VOTERS voters listening, it answers once $((VOTERS / 2 + 1)) are"
      return 0
    fi
  fi
  wait_ready "$pid" "$t0"
}

wait_listening() {
  local pid=$1 cport=$2 deadline=$((SECONDS + START_TIMEOUT))
  until listening 127.0.0.1 "$cport"; do
    if ! is_our_broker "$pid"; then
      tail -n 40 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      die "broker process $pid exited during startup."
    fi
    if ((SECONDS >= deadline)); then
      tail -n 40 "$LOG_FILE" >&2 || true
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      die "broker did not listen on its controller port 127.0.0.1:$cport within ${START_TIMEOUT}s (killed pid $pid)."
    fi
    sleep 0.2
  done
}

wait_ready() {
  local pid=$1 t0=$2 rc=0 elapsed
  probe "$KAFKA_PORT" --wait "$START_TIMEOUT" --pid "$pid" "${READY_ARGS[@]}" 2>/dev/null || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "----- last 40 lines of $LOG_FILE -----" >&2
    tail -n 40 "$LOG_FILE" >&2 || true
    echo "--------------------------------------" >&2
    if [[ $rc -eq 3 ]]; then
      rm -f "$PID_FILE"
      die "broker process $pid exited during startup."
    fi
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
    die "broker did not answer on 127.0.0.1:$KAFKA_PORT within ${START_TIMEOUT}s (killed pid $pid)."
  fi
  elapsed=$(elapsed_since "$t0")
  echo "Kafka ${KAFKA_VERSION} up on 127.0.0.1:$KAFKA_PORT$(sasl_shown)$(node_shown) (pid $pid, data $DATA_DIR_SHOWN) in $elapsed s"
}

cmd_down() {
  local pid waited=0
  if [[ ! -f "$PID_FILE" ]]; then
    echo "Kafka not running (no pid file in $DATA_DIR_SHOWN)"
    return 0
  fi
  pid=$(read_pid)
  if ! is_our_broker "$pid"; then
    rm -f "$PID_FILE"
    echo "Kafka not running (removed stale pid file, pid ${pid:-?})"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  while is_our_broker "$pid"; do
    if (( waited >= STOP_TIMEOUT * 10 )); then
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      rm -f "$PID_FILE"
      echo "Kafka (pid $pid) did not stop within ${STOP_TIMEOUT}s; killed with SIGKILL"
      return 0
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$PID_FILE"
  echo "Kafka stopped (pid $pid, SIGTERM, $(awk -v w="$waited" 'BEGIN { printf "%.1f", w / 10 }') s)"
}

cmd_status() {
  local pid port
  check_node
  ready_args
  pid=$(read_pid)
  if ! is_our_broker "$pid"; then
    echo "Kafka not running (data $DATA_DIR_SHOWN)"
    return 1
  fi
  port=$(configured_port)
  port=${port:-$KAFKA_PORT}
  if probe "$port" "${READY_ARGS[@]}"; then
    echo "Kafka ${KAFKA_VERSION} running on 127.0.0.1:$port$(node_shown) (pid $pid, data $DATA_DIR_SHOWN)"
    return 0
  fi
  echo "Kafka process $pid is alive but not answering on 127.0.0.1:$port (starting or stuck?)"
  return 1
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  fetch) cmd_fetch ;;
  *)
    echo "usage: $0 {up|down|status|fetch}" >&2
    exit 2
    ;;
esac
