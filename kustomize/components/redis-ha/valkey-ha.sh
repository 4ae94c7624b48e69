#!/bin/sh
# Writes the start-up configuration of one node of the highly available data tier, then the
# container starts the server on it (docker-compose.ha.yml and this component alike):
#   valkey-ha.sh data       /tmp/ha.conf, which data.conf includes
#   valkey-ha.sh sentinel   /tmp/sentinel.conf, whole (Sentinel rewrites it as it learns)
#
# Environment: REDIS_PASSWORD (every node and sentinel), MASTER_NAME, FIRST_PRIMARY (the node
# that is primary on the very first start), SENTINELS ("host:port host:port ..."), and
# ANNOUNCE_HOST, this node's stable name (its DNS name), which it gives to the others, so that
# a node rescheduled with a new address keeps its identity. DOWN_AFTER_MS and
# FAILOVER_TIMEOUT_MS are optional.
#
# The password goes into a config file (mode 600, on a tmpfs or emptyDir), never onto the
# command line where `ps` would show it.
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

primary=$(named_primary)
case "$role" in
data)
    # A node the sentinels still name the primary has restarted before they noticed (a
    # container restarted at once). Coming back as primary would hand the replicas its own
    # data, which lacks up to a second of acknowledged writes (appendfsync everysec) that
    # they hold; so it waits for the failover and rejoins as a replica. Only if none comes
    # (no replica to promote) does it serve again as it is, after twice the failover timeout.
    waited=0
    limit=$((2 * ${FAILOVER_TIMEOUT_MS:-10000} / 1000))
    while [ "$primary" = "$ANNOUNCE_HOST" ] && [ "$waited" -lt "$limit" ]; do
        [ "$waited" -eq 0 ] && echo "valkey-ha: still named the primary; waiting for a failover"
        sleep 1
        waited=$((waited + 1))
        primary=$(named_primary)
    done
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
    } > /tmp/sentinel.conf
    ;;
*)
    echo "valkey-ha.sh: role must be data or sentinel, not $role" >&2
    exit 2
    ;;
esac
