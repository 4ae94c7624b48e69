#!/bin/sh
# Entry point of the air-gapped Valkey image, doing what the official image's does for us:
# its Valkey is built with protected mode off, since a container's "loopback only" default
# would refuse every other container. Here we pass --protected-mode no, after the config
# file when one is given (valkey-server reads options in order, the last one wins).
# Like the official entry point, a first argument that is an option or a config file means
# "valkey-server with these" (lesson 13 passes only its config file).
set -e
case "${1:-}" in
    -*|*.conf) set -- valkey-server "$@" ;;
esac
if [ "${1:-}" = "valkey-server" ]; then
    shift
    case "${1:-}" in
        *.conf) conf=$1; shift; set -- valkey-server "$conf" --protected-mode no "$@" ;;
        *) set -- valkey-server --protected-mode no "$@" ;;
    esac
fi
exec "$@"
