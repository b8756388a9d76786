#!/usr/bin/env bash
# Runs the Eclipse Paho MQTT interoperability suite (client_test.py for MQTT 3.1.1,
# client_test5.py for MQTT 5) against mosquitto and against Evergreen's plain MQTT listener,
# side by side, and prints a pass/fail table. A benchmark-like tool, not part of CI.
#
#   tests/interop/run.sh --evergreen PATH --mosquitto PATH [--suite DIR] [--versions "311 5"]
#                        [--tests "test_a test_b"] [--brokers "mosquitto evergreen"] [--timeout SECS]
#                        [--out DIR] [--as-published]
#
# --suite DIR      an existing checkout of eclipse/paho.mqtt.testing (default: a shallow
#                  clone of https://github.com/eclipse/paho.mqtt.testing into a temp dir)
# --as-published   run the suite unmodified; by default one client id is renamed (below)
# --timeout SECS   bound for each test (default 90); a test killed at it is TIMEOUT
# --out DIR        keep the results and logs there (default: a temp dir, kept, printed)
#
# Each test runs in its own python process (so a hung test costs only its timeout), against one
# broker started per suite and broker, on 127.0.0.1 at a free port. Evergreen runs the group
# built from group.json and subjects.txt (every client id of the suite is a device, routed to
# every device on the suite's topics) with config.json; mosquitto runs mosquitto.conf.
#
# Adaptation (skipped with --as-published): the suites' cleanup connects with the client id
# "clean retained"; a thing name cannot hold a space, so no group can admit it, and Evergreen
# refuses the CONNECT, which fails every test in setUpClass. The id is renamed "clean_retained"
# in the temp copy, for both brokers alike.
set -u
here=$(cd "$(dirname "$0")" && pwd)
evergreen="" mosquitto="" suite="" versions="311 5" brokers="mosquitto evergreen" only="" timeout_s=90 out="" as_published=0
while [ $# -gt 0 ]; do
    case "$1" in
        --evergreen) evergreen=$2; shift 2 ;;
        --mosquitto) mosquitto=$2; shift 2 ;;
        --suite) suite=$2; shift 2 ;;
        --versions) versions=$2; shift 2 ;;
        --tests) only=$2; shift 2 ;;
        --brokers) brokers=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --as-published) as_published=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
[ -x "$evergreen" ] || { echo "--evergreen PATH: an evergreen binary is needed" >&2; exit 2; }
[ -x "$mosquitto" ] || { echo "--mosquitto PATH: a mosquitto binary is needed" >&2; exit 2; }
evergreen=$(realpath "$evergreen"); mosquitto=$(realpath "$mosquitto")
work=$(mktemp -d /tmp/eg-interop.XXXXXX)
[ -n "$out" ] || out=$work/results
mkdir -p "$out"; out=$(realpath "$out")
broker_pid=""

stop_broker() {
    [ -n "$broker_pid" ] || return 0
    kill -TERM "$broker_pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$broker_pid" 2>/dev/null
    wait "$broker_pid" 2>/dev/null
    broker_pid=""
}
trap 'stop_broker; exit 130' INT TERM
trap 'stop_broker' EXIT

# The suite, in a temp dir: never inside the repository.
if [ -z "$suite" ]; then
    suite=$work/paho.mqtt.testing
    timeout 300 git clone -q --depth 1 https://github.com/eclipse/paho.mqtt.testing "$suite" ||
        { echo "cannot clone the suite; pass --suite DIR" >&2; exit 1; }
else
    cp -r "$suite" "$work/paho.mqtt.testing"; suite=$work/paho.mqtt.testing
fi
commit=$(git -C "$suite" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$as_published" = 0 ]; then
    sed -i 's/"clean retained"/"clean_retained"/' "$suite"/interoperability/client_test.py \
        "$suite"/interoperability/client_test5.py
fi

# $1 = broker name; starts it, sets broker_pid and port.
start_broker() {
    local dir=$work/$1-$2
    rm -rf "$dir"; mkdir -p "$dir"
    case "$1" in
    mosquitto)
        port=$(python3 "$here/runner.py" freeport)
        sed -e "s|@PORT@|$port|" "$here/mosquitto.conf" >"$dir/mosquitto.conf"
        nice "$mosquitto" -c "$dir/mosquitto.conf" >"$dir/broker.log" 2>&1 &
        broker_pid=$!
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
            sleep 0.1
        done ;;
    evergreen)
        python3 "$here/runner.py" group "$here/group.json" "$here/subjects.txt" "$dir/group.json"
        sed -e "s|@ROOT@|$dir/root|" "$here/config.json" >"$dir/config.json"
        nice "$evergreen" run --config "$dir/config.json" --group "$dir/group.json" >"$dir/broker.log" 2>&1 &
        broker_pid=$!
        for _ in $(seq 300); do
            port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["plain"].rsplit(":",1)[1])' \
                "$dir/root/run/mqtt-listeners.json" 2>/dev/null) && [ -n "$port" ] && return 0
            kill -0 "$broker_pid" 2>/dev/null || break
            sleep 0.1
        done ;;
    esac
    echo "$1 did not start; see $dir/broker.log" >&2
    return 1
}

for version in $versions; do
    vdir=$out/$version; mkdir -p "$vdir"
    if [ -n "$only" ]; then
        printf '%s\n' $only >"$vdir/tests.txt"
    else
        python3 "$here/runner.py" list "$suite" "$version" >"$vdir/tests.txt" || exit 1
    fi
    for broker in $brokers; do
        mkdir -p "$vdir/$broker"
        start_broker "$broker" "$version" || continue
        echo "== MQTT $version, $broker on 127.0.0.1:$port" >&2
        for t in $(cat "$vdir/tests.txt"); do
            rm -f "$vdir/$broker/$t.json"
            timeout -k 5 "$timeout_s" nice python3 "$here/runner.py" run "$suite" "$version" "$port" "$t" \
                "$vdir/$broker/$t.json" >"$vdir/$broker/$t.log" 2>&1
            printf '   %-32s %s\n' "$t" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outcome"])' \
                "$vdir/$broker/$t.json" 2>/dev/null || echo TIMEOUT)" >&2
        done
        stop_broker
        cp "$work/$broker-$version/broker.log" "$vdir/$broker.log" 2>/dev/null
        [ "$broker" = evergreen ] && cp "$work/$broker-$version/root/var/log/system/runtime.log" \
            "$vdir/evergreen-runtime.log" 2>/dev/null
    done
done

echo
echo "Paho interoperability suite $commit$([ "$as_published" = 1 ] && echo ' (as published)' || echo ' (client id "clean retained" renamed "clean_retained")'),"
echo "mosquitto $("$mosquitto" -h 2>/dev/null | head -1 | awk '{print $3}'), evergreen $evergreen; per-test timeout ${timeout_s}s"
python3 "$here/runner.py" table "$out" $brokers
echo
echo "results and logs: $out"
