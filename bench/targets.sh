# Sourced by bench/run: starts and stops what the benchmark measures, each from
# its own configuration in $work, on loopback ports, pinned with taskset.
#
# A target is described by four variables the cases read:
#   forward_addr[T]  where absolute-form requests and CONNECT go ("" = none)
#   origin_addr[T]   where origin-form requests go, as the seed's benchmark sent them
#   origin_host[T]   the Host header those origin-form requests carry
#   pids[T]          the process whose tree is measured for memory

declare -A forward_addr origin_addr origin_host pids

describe_target() {  # describe_target NAME FORWARD-ADDR ORIGIN-ADDR ORIGIN-HOST
    forward_addr[$1]=$2
    origin_addr[$1]=$3
    origin_host[$1]=$4
}

wait_for_port() {  # wait_for_port PORT NAME LOG
    for _ in $(seq 200); do
        ss -Hltn "sport = :$1" | grep -q LISTEN && return 0
        sleep 0.05
    done
    echo "bench: $2 did not listen on port $1; its log:" >&2
    cat "$3" >&2 2>/dev/null || true
    return 1
}

require_free_port() {
    if ss -Hltn "sport = :$1" | grep -q LISTEN; then
        echo "bench: port $1 is in use; set BENCH_PORT to a free range" >&2
        exit 2
    fi
}

# /nginx_status (stub_status, when this nginx has the module) counts the
# connections nginx accepted: the upstream-pool case reads it around each run.
start_nginx() {
    local status_location=""
    require_free_port "$nginx_port"
    mkdir -p "$work/nginx/logs"
    [[ $(nginx -V 2>&1) == *http_stub_status_module* ]] && status_location="location = /nginx_status { stub_status; }"
    cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 20000;
daemon on;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 19000; multi_accept on; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    # How a tuned nginx serves files: without tcp_nopush large responses go
    # out a third slower, and every ratio to this ceiling would flatter.
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server { listen 127.0.0.1:$nginx_port backlog=16384; root $html; $status_location }
}
CONF
    taskset -c "$load_cpu" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
    wait_for_port "$nginx_port" nginx "$work/nginx/logs/error.log" || return 1
    describe_target direct 127.0.0.1:$nginx_port 127.0.0.1:$nginx_port 127.0.0.1:$nginx_port
    pids[direct]=$(cat "$work/nginx/nginx.pid")
}

# The benchmark's DNS server (bench/dns_responder.cpp) on a UDP port, next to
# nginx on the load CPUs. Not a target: no case measures it.
start_dns_responder() {  # start_dns_responder PORT
    if ss -Hlun "sport = :$1" | grep -q .; then
        echo "bench: UDP port $1 is in use; set BENCH_PORT to a free range" >&2
        return 1
    fi
    taskset -c "$load_cpu" "$dns_responder" "$1" >"$work/dns-responder.out" 2>&1 &
    pids[dns-responder]=$!
    for _ in $(seq 200); do
        grep -q '^listening' "$work/dns-responder.out" && return 0
        kill -0 "${pids[dns-responder]}" 2>/dev/null || break
        sleep 0.05
    done
    echo "bench: dns-responder did not listen on UDP port $1; its output:" >&2
    cat "$work/dns-responder.out" >&2
    return 1
}

# cproxy runs as the seed's benchmark ran the seed: Basic auth and a default
# backend for origin-form requests; CONNECT may reach the backend's port. It
# runs on the proxy's CPUs (so --workers auto starts one worker per CPU there).
start_cproxy() {  # start_cproxy [EXTRA-OPTION...]
    start_cproxy_on "$proxy_cpu" "$@"
}

# The same on other CPUs. Sets max_sessions and cproxy_workers from the line
# cproxy logs just after it starts listening ("info: up to T client
# connections and P splice pipes in N workers ..."), and session_cost for
# the "limited" note of a client count above max_sessions.
start_cproxy_on() {  # start_cproxy_on CPU-LIST [EXTRA-OPTION...]
    local cpus=$1 line=""
    shift
    require_free_port "$cproxy_port"
    taskset -c "$cpus" ./cproxy -l "127.0.0.1:$cproxy_port" --auth "$credentials" \
        --backend "127.0.0.1:$nginx_port" --connect-ports "$nginx_port" "$@" \
        >"$work/cproxy.out" 2>"$work/cproxy.err" &
    pids[cproxy]=$!
    wait_for_port "$cproxy_port" cproxy "$work/cproxy.err" || return 1
    describe_target cproxy 127.0.0.1:$cproxy_port 127.0.0.1:$cproxy_port 127.0.0.1:$cproxy_port
    for _ in $(seq 100); do
        line=$(grep -m 1 'info: up to [0-9]* client connections' "$work/cproxy.err" || true)
        [ -n "$line" ] && break
        sleep 0.02
    done
    max_sessions=$(sed -n 's/.*info: up to \([0-9]*\) client connections.*/\1/p' <<<"$line")
    session_cost="2 descriptors each"  # a client and its own upstream connection
    cproxy_workers=$(sed -n 's/.* in \([0-9]*\) workers\{0,1\} .*/\1/p' <<<"$line")
    if [ -z "$max_sessions" ]; then
        echo "bench: cproxy logged no session count; its log:" >&2
        cat "$work/cproxy.err" >&2
        return 1
    fi
}

# tinyproxy: MaxClients raised from its default of 100, no ConnectPort lines
# (so CONNECT reaches any port), and a reverse path for origin-form requests.
start_tinyproxy() {
    local port=${peer_port[tinyproxy]}
    require_free_port "$port"
    mkdir -p "$work/tinyproxy"
    chown nobody:nogroup "$work/tinyproxy"
    cat >"$work/tinyproxy/tinyproxy.conf" <<CONF
User nobody
Group nogroup
Port $port
Listen 127.0.0.1
Timeout 600
MaxClients 20000
LogLevel Error
LogFile "$work/tinyproxy/tinyproxy.log"
Allow 127.0.0.1
ReversePath "/" "http://127.0.0.1:$nginx_port/"
ReverseOnly No
CONF
    taskset -c "$proxy_cpu" tinyproxy -d -c "$work/tinyproxy/tinyproxy.conf" \
        >"$work/tinyproxy/stdout.log" 2>&1 &
    pids[tinyproxy]=$!
    wait_for_port "$port" tinyproxy "$work/tinyproxy/tinyproxy.log" || return 1
    describe_target tinyproxy 127.0.0.1:$port 127.0.0.1:$port 127.0.0.1:$port
}

# squid: a forward port, plus an accelerator port in front of nginx for
# origin-form requests; no caching, no access log, no pinger.
start_squid() {
    local port=${peer_port[squid]} accel_port=$((peer_port[squid] + 10))
    require_free_port "$port"
    require_free_port "$accel_port"
    mkdir -p "$work/squid"
    chown proxy:proxy "$work/squid"
    cat >"$work/squid/squid.conf" <<CONF
http_port 127.0.0.1:$port
http_port 127.0.0.1:$accel_port accel defaultsite=127.0.0.1:$nginx_port no-vhost
cache_peer 127.0.0.1 parent $nginx_port 0 no-query originserver name=backend
http_access allow localhost
http_access deny all
cache deny all
cache_mem 0
access_log none
cache_store_log none
cache_log $work/squid/cache.log
pid_filename $work/squid/squid.pid
coredump_dir $work/squid
netdb_filename none
pinger_enable off
max_filedescriptors 20000
shutdown_lifetime 0 seconds
cache_effective_user proxy
CONF
    taskset -c "$proxy_cpu" squid -N -f "$work/squid/squid.conf" >"$work/squid/stdout.log" 2>&1 &
    pids[squid]=$!
    wait_for_port "$port" squid "$work/squid/cache.log" || return 1
    wait_for_port "$accel_port" squid "$work/squid/cache.log" || return 1
    describe_target squid 127.0.0.1:$port 127.0.0.1:$accel_port 127.0.0.1:$accel_port
}

# privoxy with no action or filter files does no filtering; it has no reverse
# mode, so it takes origin-form requests as intercepted ones, routed by Host.
start_privoxy() {
    local port=${peer_port[privoxy]}
    require_free_port "$port"
    mkdir -p "$work/privoxy"
    cat >"$work/privoxy/config" <<CONF
confdir $work/privoxy
logdir $work/privoxy
listen-address 127.0.0.1:$port
max-client-connections 19000
listen-backlog 4096
accept-intercepted-requests 1
keep-alive-timeout 300
socket-timeout 300
CONF
    taskset -c "$proxy_cpu" privoxy --no-daemon "$work/privoxy/config" >"$work/privoxy/stdout.log" 2>&1 &
    pids[privoxy]=$!
    wait_for_port "$port" privoxy "$work/privoxy/stdout.log" || return 1
    describe_target privoxy 127.0.0.1:$port 127.0.0.1:$port 127.0.0.1:$nginx_port
}

# The reverse proxies cproxy's CPU per request is compared with (the cpu-per-
# request case), each at its best for relaying to one backend: one worker or
# thread, no logging, kept-alive upstream connections, no temporary files.
# Their configuration files are kept for the report.
start_nginx_proxy() {
    local port=${peer_port[nginx-proxy]}
    require_free_port "$port"
    mkdir -p "$work/nginx-proxy/logs"
    cat >"$work/nginx-proxy/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 20000;
daemon on;
pid $work/nginx-proxy/nginx.pid;
error_log $work/nginx-proxy/logs/error.log;
events { worker_connections 19000; multi_accept on; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream backend { server 127.0.0.1:$nginx_port; keepalive 128; keepalive_requests 100000000; }
    # Responses stream through memory buffers: none is written to a file.
    proxy_buffers 8 64k;
    proxy_busy_buffers_size 128k;
    proxy_max_temp_file_size 0;
    client_body_temp_path $work/nginx-proxy/body;
    proxy_temp_path $work/nginx-proxy/proxy;
    fastcgi_temp_path $work/nginx-proxy/fastcgi;
    uwsgi_temp_path $work/nginx-proxy/uwsgi;
    scgi_temp_path $work/nginx-proxy/scgi;
    server {
        listen 127.0.0.1:$port backlog=16384;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
    taskset -c "$proxy_cpu" nginx -p "$work/nginx-proxy" -c "$work/nginx-proxy/nginx.conf"
    wait_for_port "$port" nginx-proxy "$work/nginx-proxy/logs/error.log" || return 1
    describe_target nginx-proxy "" 127.0.0.1:$port 127.0.0.1:$port
    pids[nginx-proxy]=$(cat "$work/nginx-proxy/nginx.pid")
}

start_haproxy() {
    local port=${peer_port[haproxy]}
    require_free_port "$port"
    mkdir -p "$work/haproxy"
    cat >"$work/haproxy/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 7000
defaults
    mode http
    timeout connect 10s
    timeout client 300s
    timeout server 300s
    http-reuse always
    # Bodies are spliced socket to socket when that pays, as cproxy does.
    option splice-auto
frontend relay
    bind 127.0.0.1:$port backlog 16384
    default_backend origin
backend origin
    server nginx 127.0.0.1:$nginx_port
CONF
    taskset -c "$proxy_cpu" haproxy -db -f "$work/haproxy/haproxy.cfg" >"$work/haproxy/stdout.log" 2>&1 &
    pids[haproxy]=$!
    wait_for_port "$port" haproxy "$work/haproxy/stdout.log" || return 1
    describe_target haproxy "" 127.0.0.1:$port 127.0.0.1:$port
}

stop_target() {  # stop_target NAME
    local pid=${pids[$1]:-}
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    # nginx daemonizes, so it is not this shell's child to wait for.
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    wait "$pid" 2>/dev/null || true
    unset "pids[$1]"
}

# The resident memory of a process and its descendants, in KiB: FIELD is
# VmRSS (now) or VmHWM (peak since the last reset_peak_rss).
tree_memory_kib() {  # tree_memory_kib PID FIELD
    local total=0 pid value
    for pid in $1 $(pgrep -P "$1" 2>/dev/null) ; do
        value=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${value:-0}))
    done
    echo "$total"
}

reset_peak_rss() {  # reset_peak_rss PID
    local pid
    for pid in $1 $(pgrep -P "$1" 2>/dev/null); do
        echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
    done
}

open_descriptors() {  # open_descriptors PID
    local total=0 pid
    for pid in $1 $(pgrep -P "$1" 2>/dev/null); do
        total=$((total + $(ls "/proc/$pid/fd" 2>/dev/null | wc -l)))
    done
    echo "$total"
}
