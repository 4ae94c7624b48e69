#!/bin/sh
# Writes the start-up configuration of one node of the highly available data tier, then the
# container starts the server on it (docker-compose.ha.yml and this component alike):
#   valkey-ha.sh data       /tmp/ha.conf, which data.conf includes
#   valkey-ha.sh sentinel   /data/sentinel.conf, whole (Sentinel rewrites it as it learns)
#
# Environment: REDIS_PASSWORD (every node and sentinel), MASTER_NAME, FIRST_PRIMARY (the node
# that is primary on the very first start), SENTINELS ("host:port host:port ..."), and
# ANNOUNCE_HOST, this node's stable name (its DNS name), which it gives to the others, so that
# a node rescheduled with a new address keeps its identity. DOWN_AFTER_MS and
# FAILOVER_TIMEOUT_MS are optional.
#
# Who is primary survives a restart of the whole tier: each sentinel keeps its state (the
# current primary, the epoch, its peers) in /data/sentinel.conf, on a volume, written
# here only the first time; and a node that holds data waits for a sentinel to answer
# rather than guess (FIRST_PRIMARY is for a tier that never ran). Else, after a failover, a
# cold start would make FIRST_PRIMARY the primary again, with its older data.
#
# The password goes into a config file (mode 600), never onto the command line where `ps`
# would show it: the node's on a tmpfs or emptyDir, the sentinel's on its volume (Sentinel
# rewrites that file whole, password included).
set -eu
role=${1:?usage: valkey-ha.sh data|sentinel}
umask 077

# The primary as the sentinels see it now; nothing when none answers (the first start: no
# sentinel runs yet).
named_primary() {
    for sentinel in $SENTINELS; do
        answer=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 3 valkey-cli -t 1 \
            -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
            SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | head -n 1) || true
        case "$answer" in
            ""|*ERR*|*NOAUTH*|*"Could not connect"*) ;;
            *) echo "$answer"; return ;;
        esac
    done
}

# Whether the sentinels have seen the named primary run since they started (its run id): if
# not, this is a start of the whole tier, not a node restarted under running sentinels.
seen_running() {
    for sentinel in $SENTINELS; do
        runid=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 3 valkey-cli -t 1 \
            -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
            SENTINEL master "$MASTER_NAME" 2>/dev/null | awk 'last == "runid" {print; exit} {last = $0}') || true
        [ -n "$runid" ] && return 0
    done
    return 1
}

# Whether the sentinels know replicas of the primary (a tier that ran before: none on the
# very first start, before the first primary ever ran).
knows_replicas() {
    for sentinel in $SENTINELS; do
        names=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 3 valkey-cli -t 1 \
            -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
            SENTINEL replicas "$MASTER_NAME" 2>/dev/null | grep -c -x name) || true
        [ "${names:-0}" -gt 0 ] && return 0
    done
    return 1
}

# Data of an earlier run: the append-only file or a snapshot.
holds_data() {
    [ -e /data/appendonlydir ] || [ -e /data/dump.rdb ]
}

# How long a node waits, in both cases below together: 2 x the failover timeout, then one
# last round of questions (statefulset.yaml's startup probe allows for it).
limit=$((2 * ${FAILOVER_TIMEOUT_MS:-10000} / 1000))
give_up=$(($(date +%s) + limit))
waiting() {
    [ "$(date +%s)" -lt "$give_up" ]
}
primary=$(named_primary)
case "$role" in
data)
    # No sentinel answers: on the tier's very first start, FIRST_PRIMARY is the primary. A
    # node with data waits for them instead: they remember who is primary now.
    if [ -z "$primary" ] && holds_data; then
        echo "valkey-ha: this node holds data; waiting for a sentinel"
    fi
    while [ -z "$primary" ] && holds_data && waiting; do
        sleep 1
        primary=$(named_primary)
    done
    if [ -z "$primary" ] && holds_data; then
        echo "valkey-ha: no sentinel answered within ${limit}s; not guessing the primary" >&2
        exit 1
    fi
    # A node the sentinels still name the primary, and have seen run, has restarted before
    # they noticed (a container restarted at once). Coming back as primary at once would hand
    # the replicas its own data, which may lack acknowledged writes they hold (a write Valkey
    # put off while an fsync was slow, or a disk that lost its last second); so it waits for
    # the failover and rejoins as a replica. Only if none comes (no replica to promote) does
    # it serve again as it is, after twice the failover timeout. On a start of the whole tier
    # (the sentinels have not seen it run yet) it was the primary when all stopped: it serves.
    if [ "$primary" = "$ANNOUNCE_HOST" ] && seen_running; then
        echo "valkey-ha: still named the primary; waiting for a failover"
        while [ "$primary" = "$ANNOUNCE_HOST" ] && waiting; do
            sleep 1
            primary=$(named_primary)
        done
    # And on such a start, a replica that listened before the primary runs could be promoted
    # in its place, older data and all (the sentinels see a primary that does not answer):
    # it waits for the primary to run first.
    elif [ -n "$primary" ] && [ "$primary" != "$ANNOUNCE_HOST" ] && ! seen_running; then
        echo "valkey-ha: waiting for the primary, $primary, to run first"
        while ! seen_running && waiting; do
            sleep 1
        done
    fi
    # Named the primary with no data (its volume lost) while the sentinels know replicas that
    # hold the count: serving empty would hand them an empty data set (review: the count went
    # from 490 to 10). It does not start; restarted, it asks again, and meanwhile the
    # sentinels promote a replica, whose replica it then becomes.
    if [ "$primary" = "$ANNOUNCE_HOST" ] && ! holds_data && knows_replicas; then
        echo "valkey-ha: named the primary, but this node's data is gone and the sentinels" \
            "know replicas; not serving an empty primary (waiting for them to promote one)" >&2
        exit 1
    fi
    primary=${primary:-$FIRST_PRIMARY}
    {
        printf 'requirepass "%s"\nmasterauth "%s"\n' "$REDIS_PASSWORD" "$REDIS_PASSWORD"
        printf 'replica-announce-ip %s\n' "$ANNOUNCE_HOST"
        if [ "$primary" != "$ANNOUNCE_HOST" ]; then
            printf 'replicaof %s 6379\n' "$primary"
        fi
    } > /tmp/ha.conf
    if [ "$primary" = "$ANNOUNCE_HOST" ]; then
        echo "valkey-ha: $ANNOUNCE_HOST starts as the primary"
    else
        echo "valkey-ha: $ANNOUNCE_HOST starts as a replica of $primary"
    fi
    ;;
sentinel)
    state=/data/sentinel.conf
    if [ -s "$state" ]; then
        # What this sentinel learnt before it stopped, kept; only the password is written
        # again (it may have been changed since).
        # Sentinel saves the password as `user default ... #<sha256>` too, which would win
        # over a new requirepass: those lines go as well.
        grep -v -e '^requirepass ' -e '^sentinel auth-pass ' -e '^user default ' "$state" \
            > /data/sentinel.next
        {
            printf 'requirepass "%s"\n' "$REDIS_PASSWORD"
            printf 'sentinel auth-pass %s "%s"\n' "$MASTER_NAME" "$REDIS_PASSWORD"
        } >> /data/sentinel.next
        mv /data/sentinel.next "$state"
        echo "valkey-ha: sentinel resumes from $state"
        exit 0
    fi
    primary=${primary:-$FIRST_PRIMARY}
    {
        printf 'port 26379\nrequirepass "%s"\n' "$REDIS_PASSWORD"
        # Kubernetes gives a rescheduled pod a new address: the component's nodes go by
        # their DNS names (compose's by fixed addresses, which need no resolving).
        printf 'sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n'
        printf 'sentinel announce-ip %s\n' "$ANNOUNCE_HOST"
        printf 'sentinel monitor %s %s 6379 2\n' "$MASTER_NAME" "$primary"
        printf 'sentinel auth-pass %s "%s"\n' "$MASTER_NAME" "$REDIS_PASSWORD"
        printf 'sentinel down-after-milliseconds %s %s\n' "$MASTER_NAME" "${DOWN_AFTER_MS:-5000}"
        printf 'sentinel failover-timeout %s %s\n' "$MASTER_NAME" "${FAILOVER_TIMEOUT_MS:-10000}"
        printf 'sentinel parallel-syncs %s 1\n' "$MASTER_NAME"
    } > "$state"
    ;;
*)
    echo "valkey-ha.sh: role must be data or sentinel, not $role" >&2
    exit 2
    ;;
esac
