#!/bin/sh
# Entry point of the air-gapped Redis image, doing what the official image's does for us:
# its Redis is built with protected mode off, since a container's "loopback only" default
# would refuse every other container. Here we pass --protected-mode no, after the config
# file when one is given (redis-server reads options in order, the last one wins).
set -e
if [ "${1:-}" = "redis-server" ]; then
    shift
    case "${1:-}" in
        *.conf) conf=$1; shift; set -- redis-server "$conf" --protected-mode no "$@" ;;
        *) set -- redis-server --protected-mode no "$@" ;;
    esac
fi
exec "$@"
