// One worker: an edge-triggered epoll loop, run by its own thread, that owns
// every session it accepts and every resource those sessions use (listening
// sockets, slab, buffers, pipes, timers, resolver, counters). It shares with
// other threads only its control channel, the stats boards and, with
// `resolver system`, the getaddrinfo pool's hand-off queue.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "cproxy/buffer.hpp"
#include "cproxy/config.hpp"
#include "cproxy/fd.hpp"
#include "cproxy/http_parser.hpp"
#include "cproxy/log.hpp"
#include "cproxy/metrics.hpp"
#include "cproxy/parents.hpp"
#include "cproxy/policy.hpp"
#include "cproxy/reactor.hpp"
#include "cproxy/resolver.hpp"
#include "cproxy/session.hpp"
#include "cproxy/slab.hpp"
#include "cproxy/stats_board.hpp"
#include "cproxy/timer_wheel.hpp"
#include "cproxy/tunnel.hpp"
#include "cproxy/upstream_limiter.hpp"
#include "cproxy/upstream_pool.hpp"
#include "cproxy/worker_control.hpp"

namespace cproxy {

struct Counters {
    std::uint64_t accepted = 0;
    std::uint64_t refused = 0;  // answered 503 for lack of a slot or a descriptor
    std::uint64_t requests = 0;
    std::uint64_t tunnels = 0;
    std::uint64_t failures = 0;  // requests answered with a local 4xx/5xx or aborted
    std::uint64_t bytes_in = 0;  // from clients
    std::uint64_t bytes_out = 0; // to clients
    std::uint64_t spliced = 0;
    std::uint64_t replays = 0;    // requests sent again after a reused upstream closed
    std::uint64_t requests_by_class[5] = {};  // ended with 1xx .. 5xx
    std::uint64_t requests_unanswered = 0;    // ended before a status was sent
    std::uint64_t upstream_reused = 0;        // sent on a kept-alive or pooled upstream connection
    std::uint64_t tunnels_open = 0;           // sessions in Phase::Tunnel now
    std::uint64_t parent_requests = 0;        // requests and tunnels sent through a parent proxy
    std::uint64_t parents_marked_down = 0;
};

Counters& operator+=(Counters& total, const Counters& more) noexcept;

struct WorkerLimits {
    std::uint32_t max_connections;
    std::uint32_t max_pipes;
    std::uint32_t max_idle_upstreams;
    std::uint32_t large_buffers;      // for request heads up to max_header_size
    std::uint32_t large_buffer_bytes;
    std::uint32_t upstream_max_connections;  // per address; 0: no limit
    std::uint32_t stats_buffer_bytes;  // a stats response for every worker; 0: no stats listener
};

struct WorkerSetup {
    std::uint32_t id;
    WorkerLimits limits;
    // Bound, listening, non-blocking sockets: one per listen address (a
    // SO_REUSEPORT group's member when there are several workers), and the
    // stats listener, if this worker has it.
    std::vector<Fd> listeners;
    Fd stats_listener;
    std::span<StatsBoard> boards;  // every worker's, this one's at [id]
    int access_log_fd;             // -1 for none
};

class Worker {
public:
    Worker(std::shared_ptr<const Config> config, WorkerSetup setup);  // throws std::system_error
    ~Worker();
    // The worker's thread: serves until told to stop at once or, after
    // BeginShutdown, until every session has ended or the shutdown timeout
    // passed. Sessions still open are closed by the destructor.
    void run() noexcept;
    // Any thread.
    ControlChannel& control() noexcept { return control_; }
    // After run() returned.
    void close_all_sessions() noexcept;
    const Counters& counters() const noexcept { return counters_; }
    std::uint32_t open_sessions() const noexcept { return sessions_.used(); }

private:
    void handle_control() noexcept;
    // New requests use `config` from now on; sessions carry on. Settings fixed
    // at start (listen, max_connections) are not looked at again.
    void reconfigure(std::shared_ptr<const Config> config, int access_log_fd) noexcept;
    // Stops accepting, closes idle connections, and lets the others finish
    // their current request or tunnel within config.shutdown_timeout.
    void begin_shutdown() noexcept;
    // Logs what the worker holds (sessions, buffers, pipes, idle upstreams,
    // armed timers) and its counters: SIGUSR2, and a check that a load left
    // nothing behind.
    void log_resources() const noexcept;
    WorkerStats stats() const noexcept;

    enum class Step : std::uint8_t { Progress, Wait, Closed };

    // worker.cpp: the loop, accepting, refusing, timers
    enum class ListenerKind : std::uint8_t { Proxy, ProxyProtocol, Stats };
    void accept_clients(int listener, ListenerKind kind) noexcept;
    void refuse(int fd, const char* why) noexcept;
    void overload_episode(const char* why) noexcept;
    void on_session_event(std::uint32_t index, std::uint32_t tag, bool upstream, std::uint32_t events) noexcept;
    void on_timer(std::uint32_t index) noexcept;
    void on_racer_event(std::uint32_t index, std::uint32_t tag, std::uint32_t events) noexcept;
    static void deliver_lookup(void* worker, std::uint64_t token, LookupStatus status, const AddressList& addresses,
                               std::string_view name) noexcept;
    void on_lookup_done(std::uint64_t token, LookupStatus status, const AddressList& addresses,
                        std::string_view name) noexcept;
    void run_retries() noexcept;
    void queue_retry(std::uint32_t index) noexcept;
    void update_deadline(std::uint32_t index) noexcept;
    std::uint64_t deadline_for(const Session& s) const noexcept;

    // session.cpp: the per-session state machine
    void drive(std::uint32_t index) noexcept;
    Step read_head(std::uint32_t index) noexcept;
    Step take_proxy_header(std::uint32_t index) noexcept;
    void move_request(Session& s, Buffer* target) noexcept;
    bool grow_request(Session& s) noexcept;
    void return_large_buffer(Session& s) noexcept;
    std::uint32_t request_head_room(const Session& s) const noexcept;
    Step on_request_head(std::uint32_t index, const http::RequestHead& head) noexcept;
    // Through a parent proxy, or straight to the origin (parent_for,
    // direct_for, never_direct).
    Step route_request(std::uint32_t index, std::string_view host, std::uint16_t port) noexcept;
    Step route(std::uint32_t index, std::string_view host, std::uint16_t port) noexcept;
    Step use_lookup(std::uint32_t index, LookupStatus status, std::string_view name) noexcept;
    Step start_upstream(std::uint32_t index) noexcept;
    Step connect_next(std::uint32_t index) noexcept;
    Step finish_connect(std::uint32_t index) noexcept;
    Step on_upstream_ready(std::uint32_t index) noexcept;
    Step exchange(std::uint32_t index) noexcept;
    Step process_response_head(std::uint32_t index) noexcept;
    Step finish_exchange(std::uint32_t index) noexcept;
    Step tunnel(std::uint32_t index) noexcept;
    Step switch_protocols(std::uint32_t index) noexcept;
    Step open_parent_tunnel(std::uint32_t index) noexcept;
    void begin_tunnel(Session& s) noexcept;
    Step use_parent(std::uint32_t index, std::uint8_t parent) noexcept;
    // parent_route.cpp: requests through parent proxies
    // A parent that cannot be reached is held down for parent_down_time and
    // the request moves on: to the next parent up, else to the origin unless
    // never_direct.
    Step parent_failed(std::uint32_t index, const char* why) noexcept;
    bool retarget_head(Session& s, const Parent* next) noexcept;
    const Parent* current_parent(const Session& s) const noexcept;
    Step send_connect_to_parent(std::uint32_t index) noexcept;
    Step refuse_without_parents(std::uint32_t index) noexcept;
    void follow_parents_reload() noexcept;
    Step respond(std::uint32_t index) noexcept;
    Step linger(std::uint32_t index) noexcept;
    Step check_idle_upstream(std::uint32_t index) noexcept;
    // A response saying why the request failed; logged as a warning when the
    // status is 5xx, unless it was the client's own doing.
    Step fail(std::uint32_t index, int status, std::string_view detail, EndReason reason,
              bool client_mistake = false) noexcept;
    // A response made by cproxy itself; `extra_fields` are whole CRLF-ended lines.
    Step answer_locally(std::uint32_t index, int status, const char* extra_fields,
                        std::string_view content_type, std::string_view body) noexcept;
    Step echo_trace(std::uint32_t index, const http::RequestHead& head) noexcept;
    Step serve_stats(std::uint32_t index, const http::RequestHead& head) noexcept;
    void fail_and_drive(std::uint32_t index, int status, std::string_view detail, EndReason reason) noexcept;
    Step relay_response_body(std::uint32_t index, bool progress) noexcept;
    bool prepare_replay(Session& s) noexcept;
    void park_upstream(Session& s) noexcept;
    bool take_pooled_upstream(std::uint32_t index) noexcept;
    // upstream_max_connections: every upstream descriptor (attempt, racer,
    // connection in use or pooled) holds a place at its address, taken here
    // and given back, or passed to the first waiter, when it closes.
    bool take_upstream_place(std::uint32_t index, const SocketAddress& address) noexcept;
    void release_upstream_place(const SocketAddress& address) noexcept;
    static void on_pooled_close(void* worker, const SocketAddress& address) noexcept;
    void drop_upstream(Session& s) noexcept;
    void drop_racer(Session& s) noexcept;
    void hand_over(Session& from, std::uint32_t to) noexcept;
    void leave_upstream_queue(std::uint32_t index) noexcept;
    // A finished request's connection goes to the pool rather than staying
    // with its keep-alive client when a request waits for its address or the
    // pool has room.
    bool wanted_elsewhere(const SocketAddress& address) noexcept;
    Step watch_waiting_client(std::uint32_t index) noexcept;
    bool classify_request_body(Session& s) noexcept;
    bool classify_response_body(Session& s) noexcept;
    void start_reading_head(Session& s) noexcept;
    void begin_unparsed_request(Session& s) noexcept;
    void close_upstream(Session& s) noexcept;
    void log_request(Session& s) noexcept;
    Step close_session(std::uint32_t index, EndReason reason) noexcept;
    bool is_own_address(const SocketAddress& address) const noexcept;
    std::uint32_t connection_tag(std::uint32_t index, std::uint8_t serial) const noexcept;
    std::uint64_t client_token(std::uint32_t index) const noexcept;
    std::uint64_t new_upstream_token(std::uint32_t index) noexcept;
    std::uint64_t new_racer_token(std::uint32_t index) noexcept;

    // Per-request warnings, by cause: the second of the last one logged and
    // how many came since within that second.
    struct WarningGate {
        std::uint64_t second = ~std::uint64_t{0};
        std::uint32_t suppressed = 0;
    };

    std::uint32_t id_;
    std::array<WarningGate, end_reason_count> warning_gates_{};
    std::shared_ptr<const Config> config_owner_;
    const Config* config_;  // config_owner_'s, read on every request
    Authenticator authenticator_;
    std::vector<Fd> listeners_;
    Fd stats_listener_;
    std::vector<SocketAddress> listen_addresses_;
    ControlChannel control_;
    std::span<StatsBoard> boards_;
    std::vector<WorkerStats> all_stats_;  // the boards read for a stats request
    Fd spare_fd_;  // closed to accept-and-refuse when descriptors run out
    std::uint32_t max_clients_;     // proxy sessions; stats clients have slots beyond these
    std::uint32_t stats_open_ = 0;
    Reactor reactor_;
    Slab<Session> sessions_;
    BufferPool head_buffers_;  // where request heads start
    BufferPool buffers_;
    BufferPool large_buffers_;  // request heads beyond a regular buffer
    BufferPool stats_buffers_;  // /metrics and /stats grow with the number of workers
    PipePool pipes_;
    UpstreamLimiter limiter_;  // before the pool, which reports to it until destroyed
    UpstreamPool idle_upstreams_;
    TimerWheel timers_;
    ParentSelector parents_;
    Resolver resolver_;
    AccessLog access_log_;
    Counters counters_;
    std::vector<std::uint32_t> retry_;
    std::vector<std::uint32_t> retry_now_;
    std::uint64_t now_ms_ = 0;
    bool overloaded_ = false;
    bool splice_enabled_;
    bool stopping_ = false;
    bool stop_now_ = false;
    std::uint64_t shutdown_deadline_ms_ = 0;
    http::RequestHead request_head_;
    http::ResponseHead response_head_;
    // Room for a rewritten head of the largest size allowed, and other
    // short-lived bytes (decoded credentials, discarded input).
    std::uint32_t scratch_size_;
    std::unique_ptr<char[]> scratch_;
};

}  // namespace cproxy
