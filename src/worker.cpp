#include "cproxy/worker.hpp"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace cproxy {

namespace {

enum class TokenKind : std::uint8_t {
    Listener,
    StatsListener,
    Client,
    Upstream,
    RacingUpstream,
    ParkedUpstream,
    Resolver,
    Control,
};

std::uint64_t make_token(TokenKind kind, std::uint32_t index, std::uint32_t generation) noexcept {
    return event_token(static_cast<std::uint8_t>(kind), index, generation);
}

std::uint64_t monotonic_ms() noexcept {
    timespec now;
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1000 +
           static_cast<std::uint64_t>(now.tv_nsec) / 1'000'000;
}

// Stats clients served at once, in session slots of their own so that a
// proxy full of clients can still be watched; more get 503.
constexpr std::uint32_t stats_clients = 4;

// Sent to clients that cannot be given a session: no slot or no descriptor.
constexpr std::string_view service_unavailable =
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Retry-After: 1\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 40\r\n"
    "Connection: close\r\n"
    "\r\n"
    "cproxy is at capacity; try again later.\n";

}  // namespace

Counters& operator+=(Counters& total, const Counters& more) noexcept {
    total.accepted += more.accepted;
    total.refused += more.refused;
    total.requests += more.requests;
    total.tunnels += more.tunnels;
    total.failures += more.failures;
    total.bytes_in += more.bytes_in;
    total.bytes_out += more.bytes_out;
    total.spliced += more.spliced;
    total.replays += more.replays;
    for (int i = 0; i < 5; ++i) total.requests_by_class[i] += more.requests_by_class[i];
    total.requests_unanswered += more.requests_unanswered;
    total.upstream_reused += more.upstream_reused;
    total.tunnels_open += more.tunnels_open;
    total.parent_requests += more.parent_requests;
    total.parents_marked_down += more.parents_marked_down;
    return total;
}

Worker::Worker(std::shared_ptr<const Config> config, WorkerSetup setup)
    : id_(setup.id),
      config_owner_(std::move(config)),
      config_(config_owner_.get()),
      authenticator_(config_->auth),
      listeners_(std::move(setup.listeners)),
      stats_listener_(std::move(setup.stats_listener)),
      boards_(setup.boards),
      all_stats_(setup.boards.size()),
      spare_fd_(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
      max_clients_(setup.limits.max_connections),
      sessions_(setup.limits.max_connections + (stats_listener_ ? stats_clients : 0)),
      head_buffers_(setup.limits.max_connections + 16, head_buffer_size),
      buffers_(setup.limits.max_connections * 2 + 16),
      large_buffers_(setup.limits.large_buffers, setup.limits.large_buffer_bytes),
      stats_buffers_(setup.limits.stats_buffer_bytes ? stats_clients : 0, setup.limits.stats_buffer_bytes),
      pipes_(setup.limits.max_pipes),
      limiter_(setup.limits.upstream_max_connections, sessions_.capacity(),
               2 * setup.limits.max_connections + setup.limits.max_idle_upstreams),
      idle_upstreams_(setup.limits.max_idle_upstreams, config_->upstream_idle_timeout_ms),
      timers_(sessions_.capacity(), monotonic_ms()),
      resolver_(*config_, reactor_, static_cast<std::uint8_t>(TokenKind::Resolver), sessions_.capacity(),
                &Worker::deliver_lookup, this, monotonic_ms()),
      access_log_(setup.access_log_fd),
      splice_enabled_(config_->splice),
      scratch_size_(std::max({buffer_size, setup.limits.large_buffer_bytes, setup.limits.stats_buffer_bytes})),
      scratch_(std::make_unique<char[]>(scratch_size_)) {
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
        SocketAddress address;
        address.length = sizeof address.storage;
        ::getsockname(listeners_[i].get(), address.get(), &address.length);
        listen_addresses_.push_back(unmapped(address));
        reactor_.add_input(listeners_[i].get(),
                           make_token(TokenKind::Listener, static_cast<std::uint32_t>(i), 0));
    }
    if (stats_listener_) reactor_.add_input(stats_listener_.get(), make_token(TokenKind::StatsListener, 0, 0));
    reactor_.add_input(control_.fd(), make_token(TokenKind::Control, 0, 0));
    idle_upstreams_.on_close(&Worker::on_pooled_close, this);
    parents_.reset(config_->parents);
    retry_.reserve(sessions_.capacity());
    retry_now_.reserve(sessions_.capacity());
    // Before any thread runs: a scrape right after start-up sees every worker.
    boards_[id_].publish(stats());
}

Worker::~Worker() { close_all_sessions(); }

void Worker::close_all_sessions() noexcept {
    for (std::uint32_t i = 0; i < sessions_.capacity(); ++i)
        if (sessions_.in_use(i)) close_session(i, EndReason::Shutdown);
    access_log_.flush();
}

// An upstream socket's events name the connection, not only the session: the
// session's generation and a serial bumped for every socket it watches. A
// session may close its upstream socket and open another while events for
// the old one wait later in the same epoll_wait batch; without the serial,
// such an event would set "can write" on the new, still connecting socket,
// and getsockopt(SO_ERROR) answers 0 for a connect in progress, so the
// request would be sent into a socket that is not connected.
std::uint32_t Worker::connection_tag(std::uint32_t index, std::uint8_t serial) const noexcept {
    return (sessions_.generation(index) << 8) | serial;
}

std::uint64_t Worker::client_token(std::uint32_t index) const noexcept {
    return make_token(TokenKind::Client, index, sessions_.generation(index));
}

std::uint64_t Worker::new_upstream_token(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    return make_token(TokenKind::Upstream, index, connection_tag(index, ++s.upstream_serial));
}

std::uint64_t Worker::new_racer_token(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    return make_token(TokenKind::RacingUpstream, index, connection_tag(index, ++s.racer_serial));
}

void Worker::run() noexcept {
    while (true) {
        now_ms_ = monotonic_ms();
        if (stop_now_ || (stopping_ && (sessions_.used() == 0 || now_ms_ >= shutdown_deadline_ms_))) break;
        int timeout = retry_.empty() ? timers_.next_timeout_ms(now_ms_, 1000) : 0;
        timeout = resolver_.ms_until_due(now_ms_, timeout);
        access_log_.flush_if_due(now_ms_);
        int log_due = access_log_.ms_until_due(now_ms_);
        if (log_due >= 0 && log_due < timeout) timeout = log_due;
        boards_[id_].publish(stats());
        int count = reactor_.wait(timeout);
        now_ms_ = monotonic_ms();
        for (int i = 0; i < count; ++i) {
            const epoll_event& event = reactor_.event(i);
            std::uint64_t data = event.data.u64;
            auto kind = static_cast<TokenKind>(token_kind(data));
            std::uint32_t index = token_index(data);
            std::uint32_t generation = token_generation(data);
            switch (kind) {
            case TokenKind::Listener:
                if (!stopping_) accept_clients(listeners_[index].get(), config_->listen[index].proxy_protocol
                                                                ? ListenerKind::ProxyProtocol
                                                                : ListenerKind::Proxy);
                break;
            case TokenKind::StatsListener:
                if (!stopping_) accept_clients(stats_listener_.get(), ListenerKind::Stats);
                break;
            case TokenKind::Client: on_session_event(index, generation, false, event.events); break;
            case TokenKind::Upstream: on_session_event(index, generation, true, event.events); break;
            case TokenKind::RacingUpstream: on_racer_event(index, generation, event.events); break;
            case TokenKind::ParkedUpstream: idle_upstreams_.drop(index, generation); break;
            case TokenKind::Resolver: resolver_.on_event(index, generation, now_ms_); break;
            case TokenKind::Control: handle_control(); break;
            }
        }
        run_retries();
        resolver_.expire(now_ms_);
        timers_.expire(now_ms_, [this](std::uint32_t index) { on_timer(index); });
        idle_upstreams_.expire(now_ms_);
    }
    boards_[id_].publish(stats());
    access_log_.flush();
    control_.close();
}

// Between two events no session holds a view into the running configuration,
// so a new one can replace it here.
void Worker::handle_control() noexcept {
    ControlMessage message;
    while (control_.take(message)) {
        switch (message.command) {
        case ControlCommand::Reconfigure: reconfigure(std::move(message.config), message.access_log_fd); break;
        case ControlCommand::FlushAccessLog: access_log_.flush(); break;
        case ControlCommand::LogResources: log_resources(); break;
        case ControlCommand::BeginShutdown: begin_shutdown(); break;
        case ControlCommand::StopNow: stop_now_ = true; break;
        }
        control_.done();
    }
}

void Worker::reconfigure(std::shared_ptr<const Config> config, int access_log_fd) noexcept {
    config_owner_ = std::move(config);
    config_ = config_owner_.get();
    authenticator_ = Authenticator(config_->auth);
    splice_enabled_ = config_->splice;
    resolver_.reconfigure(*config_);
    idle_upstreams_.set_idle_timeout(config_->upstream_idle_timeout_ms);
    parents_.reset(config_->parents);
    follow_parents_reload();
    access_log_.set_fd(access_log_fd);
}

void Worker::log_resources() const noexcept {
    const Counters& c = counters_;
    log_info("resources: worker %u, %u/%u sessions, %u/%u buffers, %u/%u large buffers, %u pipes in use of %u made, %u idle upstream "
             "connections, %u name lookups, %u/%u head buffers; counters: %llu accepted, %llu refused, %llu requests, %llu tunnels, "
             "%llu failed, %llu bytes in, %llu bytes out, %llu DNS cache hits, %llu DNS cache misses, %llu syslog messages dropped",
             id_, sessions_.used(), sessions_.capacity(), buffers_.in_use(), buffers_.capacity(),
             large_buffers_.in_use(), large_buffers_.capacity(), pipes_.in_use(),
             pipes_.created(), idle_upstreams_.parked(), resolver_.lookups_in_flight(), head_buffers_.in_use(), head_buffers_.capacity(),
             static_cast<unsigned long long>(c.accepted), static_cast<unsigned long long>(c.refused),
             static_cast<unsigned long long>(c.requests), static_cast<unsigned long long>(c.tunnels),
             static_cast<unsigned long long>(c.failures), static_cast<unsigned long long>(c.bytes_in),
             static_cast<unsigned long long>(c.bytes_out), static_cast<unsigned long long>(resolver_.cache_hits()),
             static_cast<unsigned long long>(resolver_.cache_misses()),
             static_cast<unsigned long long>(syslog_messages_dropped()));
}

WorkerStats Worker::stats() const noexcept {
    const Counters& c = counters_;
    WorkerStats stats;
    stats.worker = id_;
    stats.connections_accepted = c.accepted;
    stats.connections_refused = c.refused;
    stats.connections_open = sessions_.used();
    for (int i = 0; i < 5; ++i) stats.requests[i] = c.requests_by_class[i];
    stats.requests_unanswered = c.requests_unanswered;
    stats.tunnels_active = c.tunnels_open;
    stats.tunnels_total = c.tunnels;
    stats.bytes_in = c.bytes_in;
    stats.bytes_out = c.bytes_out;
    stats.bytes_spliced = c.spliced;
    stats.buffers_in_use = head_buffers_.in_use() + buffers_.in_use() + large_buffers_.in_use();
    stats.pipes_in_use = pipes_.in_use();
    stats.upstream_idle_connections = idle_upstreams_.parked();
    stats.upstream_reused = c.upstream_reused;
    stats.upstream_waiting = limiter_.waiting();
    stats.dns_cache_hits = resolver_.cache_hits();
    stats.dns_cache_misses = resolver_.cache_misses();
    stats.dns_lookups_active = resolver_.lookups_in_flight();
    stats.parent_requests = c.parent_requests;
    stats.parents_marked_down = c.parents_marked_down;
    stats.parents_down = parents_.down(now_ms_);
    return stats;
}

void Worker::begin_shutdown() noexcept {
    stopping_ = true;
    shutdown_deadline_ms_ = monotonic_ms() + config_->shutdown_timeout_ms;
    // Closing the listeners sends clients still in their queues a reset
    // rather than leaving them to wait for an accept that will not come.
    listeners_.clear();
    stats_listener_.reset();
    for (std::uint32_t i = 0; i < sessions_.capacity(); ++i) {
        if (!sessions_.in_use(i)) continue;
        const Session& s = sessions_[i];
        if (s.phase == Phase::ReadingHead && !s.head_started) close_session(i, EndReason::Shutdown);
    }
}

void Worker::overload_episode(const char* why) noexcept {
    if (!overloaded_)
        log_warning("refusing new clients with 503: %s (%u sessions open); logged once until a "
                    "client is accepted again", why, sessions_.used());
    overloaded_ = true;
}

void Worker::refuse(int fd, const char* why) noexcept {
    overload_episode(why);
    ++counters_.refused;
    // Read what the client already sent so close() does not answer it with a
    // reset that could destroy the 503 before the client reads it.
    char discard[4096];
    while (::recv(fd, discard, sizeof discard, 0) > 0) {}
    [[maybe_unused]] auto sent = ::send(fd, service_unavailable.data(), service_unavailable.size(),
                                        MSG_NOSIGNAL);
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
}

void Worker::accept_clients(int listener, ListenerKind kind) noexcept {
    bool stats = kind == ListenerKind::Stats;
    while (true) {
        SocketAddress peer;
        peer.length = sizeof peer.storage;
        int fd = ::accept4(listener, peer.get(), &peer.length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) {
                // Out of descriptors: spend the spare one to take the client off
                // the queue and tell it, rather than leave it waiting there.
                spare_fd_.reset();
                int client = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (client >= 0) refuse(client, "out of file descriptors");
                spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
                if (client >= 0) continue;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_error("accept: %s", std::strerror(errno));
            }
            return;
        }
        bool full = stats ? stats_open_ >= stats_clients : sessions_.used() - stats_open_ >= max_clients_;
        auto slot = full ? std::nullopt : sessions_.acquire();
        if (!slot) {
            refuse(fd, stats ? "all stats client slots in use" : "all session slots in use (--max-connections)");
            continue;
        }
        std::uint32_t index = *slot;
        Session& s = sessions_[index];
        s.client.reset(fd);
        s.client_address = unmapped(peer);
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!reactor_.add(fd, client_token(index))) {
            log_error("epoll_ctl: %s", std::strerror(errno));
            s.client.reset();
            sessions_.release(index);
            continue;
        }
        overloaded_ = false;
        s.stats_client = stats;
        stats_open_ += stats;
        if (!stats) ++counters_.accepted;
        start_reading_head(s);
        if (kind == ListenerKind::ProxyProtocol) {
            // The rules apply to the client the header names, once it has come.
            if (!address_in(config_->proxy_trusted, peer)) {
                char where[64];
                format_address(peer, where, sizeof where);
                log_warning("%s: not in proxy_trusted, may not send a PROXY protocol header; closed", where);
                close_session(index, EndReason::Denied);
                continue;
            }
            s.awaiting_proxy_header = true;
        } else if (!client_allowed(config_->access_rules, peer)) {
            begin_unparsed_request(s);
            fail_and_drive(index, 403, "your address may not use this proxy (allow/deny rules)",
                           EndReason::Denied);
            continue;
        }
        update_deadline(index);
    }
}

void Worker::on_session_event(std::uint32_t index, std::uint32_t tag, bool upstream, std::uint32_t events) noexcept {
    if (upstream ? !sessions_.in_use(index) || tag != connection_tag(index, sessions_[index].upstream_serial)
                 : !sessions_.live(index, tag))
        return;
    Session& s = sessions_[index];
    bool readable = events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    bool writable = events & (EPOLLOUT | EPOLLHUP | EPOLLERR);
    bool fin = events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    if (upstream) {
        if (!s.upstream) return;  // an event for an upstream socket already closed
        s.upstream_can_read |= readable;
        s.upstream_can_write |= writable;
        s.upstream_fin_arrived |= fin;
    } else {
        s.client_can_read |= readable;
        s.client_can_write |= writable;
        s.client_fin_arrived |= fin;
    }
    drive(index);
}

// The second connection attempt of a Happy Eyeballs race.
void Worker::on_racer_event(std::uint32_t index, std::uint32_t tag, std::uint32_t events) noexcept {
    if (!sessions_.in_use(index) || tag != connection_tag(index, sessions_[index].racer_serial)) return;
    Session& s = sessions_[index];
    if (!s.racer) return;
    s.racer_can_write |= (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
    drive(index);
}

// A reusable upstream connection outlives its session in the pool, watched
// for the server closing it while it waits.
// Under upstream_max_connections a request waiting for the address gets it
// first.
void Worker::park_upstream(Session& s) noexcept {
    if (auto waiter = limiter_.take_waiter(s.upstream_address)) {
        hand_over(s, *waiter);
        return;
    }
    int fd = s.upstream.get();
    auto parked = idle_upstreams_.park(std::move(s.upstream), s.upstream_address, now_ms_);
    if (!parked)
        release_upstream_place(s.upstream_address);
    else if (!reactor_.rewatch(fd, make_token(TokenKind::ParkedUpstream, parked->slot, parked->generation), false))
        idle_upstreams_.drop(parked->slot, parked->generation);
    close_upstream(s);
}

// A finished request's connection goes straight to the first waiter: the
// origin sees no new connection and the waiter's turn keeps its order. A
// tunnel or a replay must not inherit a used connection: it gets the place,
// to connect anew.
void Worker::hand_over(Session& from, std::uint32_t to) noexcept {
    Session& waiter = sessions_[to];
    bool usable = !waiter.connect_method && !waiter.fresh_upstream_only;
    if (usable && reactor_.rewatch(from.upstream.get(), new_upstream_token(to), true)) {
        waiter.upstream = std::move(from.upstream);
        waiter.destination = waiter.upstream_address = from.upstream_address;
        waiter.reset_upstream_state(true);
        waiter.upstream_handed = true;
        waiter.upstream_wait = UpstreamWait::None;
        waiter.phase_started_ms = now_ms_;
        waiter.next_attempt_ms = 0;
    } else {
        from.upstream.reset();  // its place passes to the waiter
        waiter.upstream_wait = UpstreamWait::Granted;
        waiter.phase_started_ms = now_ms_;
        waiter.next_attempt_ms = 0;
    }
    close_upstream(from);
    queue_retry(to);
}

bool Worker::take_upstream_place(std::uint32_t index, const SocketAddress& address) noexcept {
    Session& s = sessions_[index];
    if (std::exchange(s.upstream_wait, UpstreamWait::None) == UpstreamWait::Granted) {
        if (s.destination == address) return true;
        release_upstream_place(s.destination);  // a place held for another of the name's addresses
    }
    if (limiter_.acquire(address)) return true;
    // An idle pooled connection holds a place this request cannot use (a
    // tunnel, or a replay that wants a fresh connection): close it. The place
    // goes to an earlier waiter if there is one.
    return idle_upstreams_.close_one(address) && limiter_.acquire(address);
}

void Worker::release_upstream_place(const SocketAddress& address) noexcept {
    auto waiter = limiter_.release(address);
    if (!waiter) return;
    Session& s = sessions_[*waiter];
    s.upstream_wait = UpstreamWait::Granted;
    s.phase_started_ms = now_ms_;
    s.next_attempt_ms = 0;
    queue_retry(*waiter);
}

void Worker::on_pooled_close(void* worker, const SocketAddress& address) noexcept {
    static_cast<Worker*>(worker)->release_upstream_place(address);
}

void Worker::drop_upstream(Session& s) noexcept {
    if (!s.upstream) return;
    s.upstream.reset();
    release_upstream_place(s.upstream_address);
}

void Worker::drop_racer(Session& s) noexcept {
    if (!s.racer) return;
    s.racer.reset();
    release_upstream_place(s.candidates.at(s.racer_candidate, s.target_port));
}

bool Worker::wanted_elsewhere(const SocketAddress& address) noexcept {
    if (!limiter_.enabled()) return false;
    return limiter_.has_waiters(address) || idle_upstreams_.parked() < idle_upstreams_.capacity();
}

void Worker::leave_upstream_queue(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    UpstreamWait wait = std::exchange(s.upstream_wait, UpstreamWait::None);
    if (wait == UpstreamWait::Queued) limiter_.cancel(s.destination, index);
    else if (wait == UpstreamWait::Granted) release_upstream_place(s.destination);
    if (s.upstream_handed) {
        s.upstream_handed = false;
        close_upstream(s);
    }
}

// Any of the name's addresses will do: the one that won an earlier race is
// as good as the first.
bool Worker::take_pooled_upstream(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    Fd connection;
    SocketAddress address;
    for (std::uint8_t i = 0; i < s.candidates.count && !connection; ++i) {
        address = s.candidates.at(i, s.target_port);
        connection = idle_upstreams_.take(address, now_ms_);
    }
    if (!connection) return false;
    if (!reactor_.rewatch(connection.get(), new_upstream_token(index), true)) {
        connection.reset();
        release_upstream_place(address);
        return false;
    }
    s.upstream = std::move(connection);
    s.destination = s.upstream_address = address;
    s.reset_upstream_state(true);
    return true;
}

void Worker::queue_retry(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    if (s.retry_queued) return;
    s.retry_queued = true;
    retry_.push_back(index);
}

void Worker::run_retries() noexcept {
    retry_now_.swap(retry_);
    for (std::uint32_t index : retry_now_) {
        if (!sessions_.in_use(index)) continue;
        Session& s = sessions_[index];
        if (!s.retry_queued) continue;
        s.retry_queued = false;
        drive(index);
    }
    retry_now_.clear();
}

std::uint64_t Worker::deadline_for(const Session& s) const noexcept {
    switch (s.phase) {
    case Phase::ReadingHead:
        if (s.head_started || !s.served_request)
            return s.phase_started_ms + config_->timeout_header_ms;
        return s.phase_started_ms + config_->timeout_idle_ms;
    // The resolver ends its lookups at dns_timeout; this only backs it up.
    case Phase::Resolving: return s.phase_started_ms + config_->dns_timeout_ms + 1000;
    case Phase::Connecting:
        // Happy Eyeballs: the next address is tried if none has connected by then.
        if (s.upstream_wait == UpstreamWait::None && s.next_attempt_ms != 0 && s.next_candidate < s.candidates.count)
            return std::min(s.next_attempt_ms, s.phase_started_ms + config_->timeout_connect_ms);
        return s.phase_started_ms + config_->timeout_connect_ms;
    case Phase::Exchanging:
        if (!s.response_head_done && s.request_complete && s.request_unsent == 0)
            return s.phase_started_ms + config_->timeout_response_ms;
        return s.last_activity_ms + config_->timeout_idle_ms;
    case Phase::Tunnel: return s.last_activity_ms + config_->timeout_tunnel_idle_ms;
    case Phase::Responding: return s.last_activity_ms + config_->timeout_idle_ms;
    case Phase::Lingering: return s.phase_started_ms + 2000;
    }
    return now_ms_;
}

// Moving a deadline later costs nothing here: the wheel entry stays where it is
// and on_timer() re-arms it when it fires early.
void Worker::update_deadline(std::uint32_t index) noexcept {
    std::uint64_t deadline = deadline_for(sessions_[index]);
    if (!timers_.armed(index) || deadline < timers_.deadline(index)) timers_.arm(index, deadline);
}

// For a failure found outside the session's own socket events (a timer, a
// lookup answer): no event will come to send the response, so drive it now.
void Worker::fail_and_drive(std::uint32_t index, int status, std::string_view detail, EndReason reason) noexcept {
    if (fail(index, status, detail, reason) != Step::Closed) drive(index);
}

void Worker::on_timer(std::uint32_t index) noexcept {
    if (!sessions_.in_use(index)) return;
    Session& s = sessions_[index];
    std::uint64_t deadline = deadline_for(s);
    if (deadline > now_ms_) {
        timers_.arm(index, deadline);
        return;
    }
    switch (s.phase) {
    case Phase::ReadingHead:
        if (s.head_started) {
            begin_unparsed_request(s);
            fail_and_drive(index, 408, "the request head did not arrive in time", EndReason::TimeoutHeader);
            return;
        }
        close_session(index, s.served_request ? EndReason::TimeoutIdle : EndReason::TimeoutHeader);
        return;
    case Phase::Resolving:
        fail_and_drive(index, 504, "resolving the host name timed out", EndReason::TimeoutResolve);
        return;
    case Phase::Connecting:
        if (s.upstream_wait == UpstreamWait::Queued && s.parent != no_parent && parents_.is_down(s.parent, now_ms_)) {
            if (parent_failed(index, "marked down while the request waited for a connection") != Step::Closed)
                drive(index);
            return;
        }
        if (s.upstream_wait == UpstreamWait::Queued) {
            char detail[160], where[64];
            format_address(s.destination, where, sizeof where);
            std::snprintf(detail, sizeof detail,
                          "no connection to %s came free within timeout_connect (upstream_max_connections)", where);
            fail_and_drive(index, 503, detail, EndReason::UpstreamBusy);
            return;
        }
        if (now_ms_ < s.phase_started_ms + config_->timeout_connect_ms) {
            // Both attempts pending: the older gives way to the next address.
            if (s.upstream && s.racer) {
                if (s.racer_is_newest) {
                    drop_upstream(s);
                    s.upstream_can_write = false;
                } else {
                    drop_racer(s);
                    s.racer_can_write = false;
                }
            }
            s.next_attempt_ms = 0;
            if (connect_next(index) != Step::Closed) drive(index);
            return;
        }
        close_upstream(s);
        if (s.parent != no_parent) {
            if (parent_failed(index, "no connection within timeout_connect") != Step::Closed) drive(index);
            return;
        }
        fail_and_drive(index, 504, "the upstream connection was not established in time",
                       EndReason::TimeoutConnect);
        return;
    case Phase::Exchanging:
        if (!s.request_complete && !s.response_started) {
            close_upstream(s);
            s.close_after_response = true;
            fail_and_drive(index, 408, "the request body did not arrive in time", EndReason::TimeoutIdle);
            return;
        }
        if (!s.response_started) {
            close_upstream(s);
            s.close_after_response = true;
            fail_and_drive(index, 504, "the upstream server did not respond in time",
                           s.response_head_done ? EndReason::TimeoutIdle : EndReason::TimeoutResponse);
            return;
        }
        close_session(index, EndReason::TimeoutIdle);
        return;
    case Phase::Tunnel: close_session(index, EndReason::TimeoutTunnel); return;
    case Phase::Responding:
    case Phase::Lingering: close_session(index, s.end); return;
    }
}

void Worker::deliver_lookup(void* worker, std::uint64_t token, LookupStatus status, const AddressList& addresses,
                            std::string_view name) noexcept {
    static_cast<Worker*>(worker)->on_lookup_done(token, status, addresses, name);
}

void Worker::on_lookup_done(std::uint64_t token, LookupStatus status, const AddressList& addresses,
                            std::string_view name) noexcept {
    auto index = static_cast<std::uint32_t>(token & 0xffffffff);
    auto generation = static_cast<std::uint32_t>(token >> 32);
    if (!sessions_.live(index, generation)) return;
    Session& s = sessions_[index];
    if (s.phase != Phase::Resolving) return;
    s.candidates = addresses;
    if (use_lookup(index, status, name) != Step::Closed) drive(index);
}

bool Worker::is_own_address(const SocketAddress& address) const noexcept {
    auto host_address = [&] {
        auto ip = ip_bytes(address);
        for (const SocketAddress& host : config_->host_addresses) {
            auto own_ip = ip_bytes(host);
            if (host.family() == address.family() && std::equal(ip.begin(), ip.end(), own_ip.begin(), own_ip.end()))
                return true;
        }
        return false;
    };
    for (const SocketAddress& own : listen_addresses_) {
        if (own == address) return true;
        if (own.is_unspecified() && own.port() == address.port() &&
            (address.is_loopback() || address.is_unspecified() || host_address()))
            return true;
    }
    return false;
}

}  // namespace cproxy
