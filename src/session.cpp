// The per-session state machine (phases and diagram in include/cproxy/session.hpp).
//
// Every readiness event sets a "can read / can write" flag on the session and
// calls drive(), which runs the current phase's step until it reports Wait (the
// next move needs readiness the kernel has not signalled) or Closed. Each step
// does real work or returns Wait, so drive() cannot spin.
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cproxy/forward.hpp"
#include "cproxy/proxy_protocol.hpp"
#include "cproxy/worker.hpp"

namespace cproxy {

namespace {

constexpr std::size_t tunnel_budget = 256 * 1024;
// RFC 8305 §5: the recommended Connection Attempt Delay.
constexpr std::uint64_t happy_eyeballs_delay_ms = 250;
constexpr std::string_view connection_established = "HTTP/1.1 200 Connection established\r\n\r\n";

bool would_block(int error) noexcept { return error == EAGAIN || error == EWOULDBLOCK; }

// RFC 9110 §9.2.2.
bool idempotent(std::string_view method) noexcept {
    for (std::string_view m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
        if (method == m) return true;
    return false;
}

void copy_field(char* out, std::size_t capacity, std::string_view text) noexcept {
    std::size_t n = std::min(text.size(), capacity - 1);
    for (std::size_t i = 0; i < n; ++i) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        out[i] = c > 0x20 && c < 0x7f ? static_cast<char>(c) : '_';  // keep log fields one token
    }
    out[n] = '\0';
}

const http::Header* find_header(const http::RequestHead& head, std::string_view name) noexcept {
    for (std::size_t i = 0; i < head.header_count; ++i)
        if (http::iequals(head.headers[i].name, name)) return &head.headers[i];
    return nullptr;
}

constexpr const char* allow_field = "Allow: GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, PATCH, TRACE\r\n";

// Fields a TRACE echo leaves out (RFC 9110 §9.3.8): credentials and cookies.
bool sensitive_field(std::string_view name) noexcept {
    return http::iequals(name, "authorization") || http::iequals(name, "proxy-authorization") ||
           http::iequals(name, "cookie");
}

const char* reason_phrase(int status) noexcept {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 508: return "Loop Detected";
    default: return "Error";
    }
}

void go_to_address(Session& s, const SocketAddress& address) noexcept {
    s.destination = address;
    s.target_port = address.port();
    s.candidates = AddressList::single(address);
}

// connect(2) errors that say this machine ran short (ports, memory), not
// that the far end is down.
bool local_failure(int error) noexcept {
    return error == EADDRNOTAVAIL || error == EAGAIN || error == ENOBUFS || error == ENOMEM;
}

bool is_candidate(const Session& s, const SocketAddress& address) noexcept {
    for (std::uint8_t i = 0; i < s.candidates.count; ++i)
        if (s.candidates.at(i, s.target_port) == address) return true;
    return false;
}

}  // namespace

const char* end_reason_text(EndReason reason) noexcept {
    switch (reason) {
    case EndReason::Done: return "done";
    case EndReason::ClientClosed: return "client-closed";
    case EndReason::ClientReset: return "client-reset";
    case EndReason::UpstreamClosed: return "upstream-closed";
    case EndReason::UpstreamReset: return "upstream-reset";
    case EndReason::UpstreamTruncated: return "upstream-truncated";
    case EndReason::UpstreamBadResponse: return "upstream-bad-response";
    case EndReason::ConnectFailed: return "connect-failed";
    case EndReason::ResolveFailed: return "resolve-failed";
    case EndReason::TimeoutHeader: return "timeout-header";
    case EndReason::TimeoutIdle: return "timeout-idle";
    case EndReason::TimeoutResolve: return "timeout-resolve";
    case EndReason::TimeoutConnect: return "timeout-connect";
    case EndReason::TimeoutResponse: return "timeout-response";
    case EndReason::TimeoutTunnel: return "timeout-tunnel";
    case EndReason::BadRequest: return "bad-request";
    case EndReason::Refused: return "refused";
    case EndReason::TunnelReset: return "tunnel-reset";
    case EndReason::NoResources: return "no-resources";
    case EndReason::Shutdown: return "shutdown";
    case EndReason::Denied: return "denied";
    case EndReason::UpstreamBusy: return "upstream-busy";
    case EndReason::ParentsDown: return "parents-down";
    }
    return "-";
}

void Worker::drive(std::uint32_t index) noexcept {
    while (true) {
        Session& s = sessions_[index];
        Step step = Step::Wait;
        switch (s.phase) {
        case Phase::ReadingHead: step = read_head(index); break;
        case Phase::Resolving: step = Step::Wait; break;
        case Phase::Connecting: step = finish_connect(index); break;
        case Phase::Exchanging: step = exchange(index); break;
        case Phase::Tunnel: step = tunnel(index); break;
        case Phase::Responding: step = respond(index); break;
        case Phase::Lingering: step = linger(index); break;
        }
        if (step == Step::Closed) return;
        if (step == Step::Wait) {
            update_deadline(index);
            return;
        }
        s.last_activity_ms = now_ms_;
    }
}

void Worker::start_reading_head(Session& s) noexcept {
    s.phase = Phase::ReadingHead;
    s.phase_started_ms = now_ms_;
    s.head_started = false;
    s.in_request = false;
    s.request_parser.reset();
    s.request_parser.set_limits(config_->max_header_size, config_->max_headers);
    s.response_parser.reset();
    s.request_chunked.reset();
    s.response_chunked.reset();
    s.request_unsent = s.response_unsent = 0;
    s.request_remaining = s.response_remaining = 0;
    s.request_body = s.response_body = http::BodyKind::None;
    s.request_complete = s.response_head_done = s.response_complete = false;
    s.response_started = s.close_after_response = s.upstream_reused = false;
    s.fresh_upstream_only = false;
    s.client_bytes_pending = false;
    s.replay_length = 0;
    s.head_method = s.connect_method = s.upgrade_requested = false;
    s.dechunk_response = false;
    s.head_for_parent = false;
    s.status = 0;
    s.end = EndReason::Done;
    if (s.request) {
        if (s.request->empty()) {
            buffers_.release(s.request);
            s.request = nullptr;
        } else {
            // A pipelined request is already here: its head timer starts now.
            s.request->compact();
            s.head_started = true;
        }
    }
}

Worker::Step Worker::check_idle_upstream(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    if (!s.upstream || !s.upstream_can_read) return Step::Wait;
    // Anything from an idle upstream, data or EOF, means it cannot take another
    // request: the server closed it or broke the protocol.
    char probe;
    ssize_t n = ::recv(s.upstream.get(), &probe, 1, MSG_PEEK);
    if (n < 0 && would_block(errno)) s.upstream_can_read = false;
    else close_upstream(s);
    return Step::Wait;
}

// While a request waits for a connection or for its response, a client that
// gave up is let go at once, with the upstream connection or place it held,
// rather than when its turn or the response comes (as nginx's 499 and squid's
// half_closed_clients off do).
Worker::Step Worker::watch_waiting_client(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    if (!s.client_can_read || s.client_bytes_pending) return Step::Wait;
    char probe;
    ssize_t n = ::recv(s.client.get(), &probe, 1, MSG_PEEK);
    if (n == 0) return close_session(index, EndReason::ClientClosed);
    if (n < 0 && !would_block(errno)) return close_session(index, EndReason::ClientReset);
    // Request body or pipelined bytes, read in their turn: the socket stays
    // readable for them, and a close behind them is noticed then.
    if (n > 0) s.client_bytes_pending = true;
    else s.client_can_read = false;
    return Step::Wait;
}

// How many bytes of request head the session's buffer may hold, never more
// than max_header_size: all of a head buffer (the head moves on to be
// rewritten), or a regular or large buffer's room less the rewrite's headroom.
std::uint32_t Worker::request_head_room(const Session& s) const noexcept {
    std::uint32_t capacity = s.request ? s.request->capacity() : head_buffer_size;
    std::uint32_t room = capacity < buffer_size ? capacity : capacity - head_headroom;
    return std::min(room, config_->max_header_size);
}

// Moves the request's bytes into `target` (empty, large enough) and gives
// the old buffer back to its pool.
void Worker::move_request(Session& s, Buffer* target) noexcept {
    std::memcpy(target->space(), s.request->data(), s.request->size());
    target->commit(s.request->size());
    buffers_.release(s.request);
    s.request = target;
}

// Once its head is rewritten, a request in a large buffer moves back to a
// regular one when the rest fits, so a slow body upload does not hold one of
// the few large buffers.
void Worker::return_large_buffer(Session& s) noexcept {
    if (!s.request || s.request->capacity() <= buffer_size || s.request->size() > buffer_size) return;
    if (Buffer* regular = buffers_.acquire()) move_request(s, regular);
}

// The request's bytes move up a size: from a head buffer to a regular one,
// from a regular one to a large one. False if there is no larger size or no
// buffer of it free.
bool Worker::grow_request(Session& s) noexcept {
    std::uint32_t capacity = s.request->capacity();
    Buffer* larger = capacity < buffer_size    ? buffers_.acquire()
                     : capacity == buffer_size ? large_buffers_.acquire()
                                               : nullptr;
    if (!larger) return false;
    move_request(s, larger);
    return true;
}

Worker::Step Worker::read_head(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    check_idle_upstream(index);
    if (s.client_can_read && (!s.request || s.request->size() < request_head_room(s))) {
        if (!s.request && !(s.request = head_buffers_.acquire()) && !(s.request = buffers_.acquire()))
            return close_session(index, EndReason::NoResources);
        std::size_t asked = request_head_room(s) - s.request->size();
        ssize_t n = ::recv(s.client.get(), s.request->space(), asked, 0);
        if (read_drained(n, asked, s.client_fin_arrived)) s.client_can_read = false;
        if (n > 0) {
            s.request->commit(static_cast<std::uint32_t>(n));
            if (!s.stats_client) counters_.bytes_in += static_cast<std::uint64_t>(n);
            if (!s.head_started) {
                s.head_started = true;
                s.phase_started_ms = now_ms_;
            }
        } else if (n == 0) {
            return close_session(index, EndReason::ClientClosed);
        } else if (would_block(errno)) {
            s.client_can_read = false;
        } else {
            return close_session(index, EndReason::ClientReset);
        }
    }
    if (s.awaiting_proxy_header && s.request && !s.request->empty()) {
        Step step = take_proxy_header(index);
        if (step == Step::Closed || s.awaiting_proxy_header || s.phase != Phase::ReadingHead) return step;
    }
    if (!s.request || s.request->empty()) {
        if (s.request) {
            buffers_.release(s.request);
            s.request = nullptr;
        }
        return s.client_can_read ? Step::Progress : Step::Wait;
    }
    switch (s.request_parser.parse(s.request->view(), request_head_)) {
    case http::ParseStatus::Partial:
        if (s.request->size() >= request_head_room(s)) {
            if (s.request->size() < config_->max_header_size) {
                if (grow_request(s)) return Step::Progress;
                begin_unparsed_request(s);
                return fail(index, 503, "no buffer free for a request head this large", EndReason::NoResources);
            }
            begin_unparsed_request(s);
            return fail(index, 431, "request head too large (max_header_size)", EndReason::BadRequest);
        }
        return s.client_can_read ? Step::Progress : Step::Wait;
    case http::ParseStatus::Error:
        begin_unparsed_request(s);
        return fail(index, s.request_parser.error_status(), s.request_parser.error_reason(),
                    EndReason::BadRequest);
    case http::ParseStatus::Done: break;
    }
    return on_request_head(index, request_head_);
}

// A load balancer's PROXY protocol header comes before the client's bytes:
// from then on the client is the address it names (rules, logs, forwarded
// fields). A missing or malformed header closes the connection, unanswered:
// whatever sent it does not speak HTTP to cproxy.
Worker::Step Worker::take_proxy_header(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    proxy_protocol::Result result = proxy_protocol::parse(s.request->view());
    if (result.status == proxy_protocol::Status::Partial) {
        if (s.request->size() < std::min<std::uint32_t>(request_head_room(s), proxy_protocol::max_header))
            return s.client_can_read ? Step::Progress : Step::Wait;
        result.error = "PROXY protocol header too long";
    }
    if (result.status != proxy_protocol::Status::Done) {
        char where[64];
        format_address(s.client_address, where, sizeof where);
        log_warning("%s: %s; closed", where, result.error);
        return close_session(index, EndReason::BadRequest);
    }
    s.awaiting_proxy_header = false;
    s.request->consume(static_cast<std::uint32_t>(result.header.length));
    s.request->compact();
    if (result.header.has_addresses) s.client_address = unmapped(result.header.source);
    if (!client_allowed(config_->access_rules, s.client_address)) {
        begin_unparsed_request(s);
        return fail(index, 403, "your address may not use this proxy (allow/deny rules)", EndReason::Denied);
    }
    return Step::Progress;
}

// A head that cannot be parsed still gets an access-log line, and the
// connection closes after the error: where the next request would start is unknown.
void Worker::begin_unparsed_request(Session& s) noexcept {
    s.in_request = true;
    s.request_started_ms = now_ms_;
    s.bytes_in = s.request ? s.request->size() : 0;
    s.bytes_out = 0;
    s.method[0] = s.target[0] = s.user[0] = '\0';
    s.destination = SocketAddress{};
    s.close_after_response = true;
}

Worker::Step Worker::on_request_head(std::uint32_t index, const http::RequestHead& head) noexcept {
    Session& s = sessions_[index];
    if (!s.stats_client) ++counters_.requests;
    s.in_request = true;
    s.request_started_ms = now_ms_;
    s.head_length = static_cast<std::uint32_t>(head.length);
    s.request_unsent = s.head_length;  // a refusal drops exactly the head
    s.bytes_in = head.length;
    s.bytes_out = 0;
    copy_field(s.method, sizeof s.method, head.method);
    copy_field(s.target, sizeof s.target, head.target);
    s.user[0] = '\0';
    s.destination = SocketAddress{};
    s.parent = no_parent;
    s.parents_failed = 0;
    s.head_method = head.method == "HEAD";
    s.connect_method = head.method == "CONNECT";
    s.keep_client = forward::client_wants_keep_alive(head) && !stopping_;
    s.client_http10 = head.version_minor == 0;
    s.legacy_keep_alive = s.client_http10 && s.keep_client;

    // Rules may have changed (SIGHUP) since this connection was accepted.
    if (!client_allowed(config_->access_rules, s.client_address)) {
        s.close_after_response = true;
        return fail(index, 403, "your address may not use this proxy (allow/deny rules)", EndReason::Denied);
    }
    if (s.stats_client) return serve_stats(index, head);

    const http::RequestFraming framing = http::request_framing(head);
    if (framing.refusal) {
        s.close_after_response = true;
        return fail(index, framing.refusal, framing.reason, EndReason::BadRequest);
    }
    s.request_body = framing.framing.kind;
    s.request_remaining = framing.framing.length;

    // RFC 9112 §3.2: one Host field, and HTTP/1.1 requests in origin-form must
    // have it (absolute-form carries the authority in the target).
    std::size_t host_fields = 0;
    for (std::size_t i = 0; i < head.header_count; ++i)
        host_fields += http::iequals(head.headers[i].name, "host");
    bool origin_form = !head.target.empty() && head.target.front() == '/';
    if (host_fields > 1 || (host_fields == 0 && origin_form && !s.client_http10)) {
        s.close_after_response = true;
        return fail(index, 400,
                    host_fields > 1 ? "more than one Host field" : "an HTTP/1.1 request needs a Host field",
                    EndReason::BadRequest);
    }
    // A chunked body whose first bytes came with the head and are already
    // malformed is refused before any upstream connection is made.
    if (s.request_body == http::BodyKind::Chunked) {
        http::ChunkedDecoder probe = s.request_chunked;
        if (probe.feed(s.request->view().substr(s.head_length)).status == http::ParseStatus::Error) {
            s.close_after_response = true;
            return fail(index, 400, "malformed chunked request body", EndReason::BadRequest);
        }
    }

    if (authenticator_.required()) {
        const http::Header* credentials = find_header(head, "proxy-authorization");
        auto user = credentials ? authenticator_.check(credentials->value, scratch_.get(), scratch_size_)
                                : std::nullopt;
        if (!user) return fail(index, 407, "proxy authentication required", EndReason::Refused);
        copy_field(s.user, sizeof s.user, *user);
    }

    // A proxy that finds its own name in Via has seen this request before: a
    // loop between proxies that forward to each other (RFC 9110 §7.6.3).
    if (!config_->via.empty() && forward::via_names(head, config_->via))
        return fail(index, 508, "the request has already been through this proxy (its Via names it)",
                    EndReason::Refused);

    // TRACE echoes the request to whoever can make a browser send one
    // (cross-site tracing): refused unless `trace on`.
    bool trace = head.method == "TRACE";
    if (trace && !config_->trace) return fail(index, 405, "TRACE is not allowed (trace off)", EndReason::Refused);

    Step step;
    if (s.connect_method) {
        if (s.request_body != http::BodyKind::None) {
            s.close_after_response = true;
            return fail(index, 400, "a CONNECT request cannot carry a body", EndReason::BadRequest);
        }
        auto host_port = split_host_port(head.target);
        if (!host_port || host_port->port == 0)
            return fail(index, 400, "CONNECT needs a host:port target", EndReason::BadRequest);
        if (!connect_port_allowed(config_->connect_ports, host_port->port)) {
            char detail[96];
            std::snprintf(detail, sizeof detail, "CONNECT to port %u is not allowed (--connect-ports)",
                          host_port->port);
            return fail(index, 403, detail, EndReason::Refused);
        }
        return route_request(index, host_port->host, host_port->port);
    }

    forward::RequestRewrite rewrite;
    rewrite.via_name = config_->via;
    rewrite.framing = framing.framing;
    char client_ip[INET6_ADDRSTRLEN];
    if (config_->forwarded != forward::ForwardedStyle::Off) {
        rewrite.forwarded = config_->forwarded;
        rewrite.client_ip = format_ip(s.client_address, client_ip, sizeof client_ip);
    }
    if (trace || head.method == "OPTIONS") {
        // RFC 9110 §7.6.2: the hop that finds Max-Forwards at 0 answers itself.
        if (const http::Header* field = find_header(head, "max-forwards")) {
            auto hops = http::parse_content_length(field->value);
            if (!hops) return fail(index, 400, "invalid Max-Forwards", EndReason::BadRequest);
            if (*hops == 0) return trace ? echo_trace(index, head) : answer_locally(index, 200, allow_field, "", "");
            rewrite.max_forwards = *hops - 1;
        }
    }
    // Switching protocols needs the whole connection: not for HTTP/1.0, and
    // not while a request body is still to come.
    if (!s.client_http10 && s.request_body == http::BodyKind::None)
        rewrite.upgrade = forward::requested_upgrade(head);
    s.upgrade_requested = !rewrite.upgrade.empty();
    if (!head.target.empty() && head.target.front() == '/') {
        if (!config_->backend)
            return fail(index, 400,
                        "this is a proxy: request an absolute URL (GET http://host/path), "
                        "or start cproxy with --backend for origin-form requests",
                        EndReason::BadRequest);
        rewrite.path = head.target;
        if (host_fields == 0) rewrite.host = config_->backend->host;
        go_to_address(s, config_->backend->address);
        step = start_upstream(index);
    } else if (forward::has_scheme(head.target)) {
        auto url = forward::parse_http_url(head.target);
        if (!url) {
            bool http_scheme = head.target.size() > 5 && http::iequals(head.target.substr(0, 5), "http:");
            return fail(index, 400,
                        http_scheme ? "malformed http:// URL"
                                    : "only http:// URLs can be forwarded; use CONNECT for https",
                        EndReason::BadRequest);
        }
        rewrite.path = url->path;
        rewrite.host = url->authority;
        step = route_request(index, url->host, url->port);
    } else {
        return fail(index, 400, "unsupported request target", EndReason::BadRequest);
    }
    if (step == Step::Closed || s.phase == Phase::Responding) return step;
    if (const Parent* parent = current_parent(s)) {
        // A parent proxy gets the absolute-form target (RFC 9112 §3.2.2), whose authority Host repeats.
        rewrite.absolute_authority = rewrite.host;
        rewrite.proxy_authorization = parent->authorization;
        s.head_for_parent = true;
    }

    // The destination is settled (and any name copied to the resolver), so the
    // head's views may now be overwritten by the rewritten head.
    std::size_t length = forward::write_request_head(head, rewrite, scratch_.get(), scratch_size_);
    // A head buffer, or a full regular one (a pipelined head behind a body),
    // may lack the room: the rewrite then moves up a size.
    bool rewritten = length != 0 && s.request->replace(0, s.head_length, {scratch_.get(), length});
    while (!rewritten && length != 0 && grow_request(s))
        rewritten = s.request->replace(0, s.head_length, {scratch_.get(), length});
    bool larger_exists = s.request->capacity() < buffer_size ||
                         (s.request->capacity() == buffer_size && large_buffers_.capacity() > 0);
    if (!rewritten && length != 0 && larger_exists) {
        close_upstream(s);
        s.close_after_response = true;
        return fail(index, 503, "no buffer free for the rewritten request head", EndReason::NoResources);
    }
    if (!rewritten) {
        close_upstream(s);
        s.close_after_response = true;
        return fail(index, 431, "request head too large", EndReason::BadRequest);
    }
    return_large_buffer(s);
    // A body or a protocol switch streams through the request buffer: a head
    // buffer would cut it into 1 KiB reads.
    if ((s.request_body != http::BodyKind::None || s.upgrade_requested) && s.request->capacity() < buffer_size)
        grow_request(s);
    s.request_unsent = static_cast<std::uint32_t>(length);
    s.request_complete = s.request_body == http::BodyKind::None;
    s.replay_length = s.request_complete && idempotent(s.method) ? s.request_unsent : 0;
    // A malformed chunk already here is caught again when exchange() classifies.
    classify_request_body(s);
    return step;
}

Worker::Step Worker::route_request(std::uint32_t index, std::string_view host, std::uint16_t port) noexcept {
    const Config& config = *config_;
    bool through_parents = !config.parents.empty() && !destination_in(config.direct_for, host) &&
                           (config.parent_for.empty() || destination_in(config.parent_for, host));
    if (!through_parents) return route(index, host, port);
    if (auto parent = parents_.choose(now_ms_, 0)) {
        ++counters_.parent_requests;
        return use_parent(index, *parent);
    }
    if (config.never_direct) return refuse_without_parents(index);
    return route(index, host, port);
}

Worker::Step Worker::use_parent(std::uint32_t index, std::uint8_t parent) noexcept {
    Session& s = sessions_[index];
    s.parent = parent;
    go_to_address(s, config_->parents[parent].address);
    return start_upstream(index);
}

Worker::Step Worker::route(std::uint32_t index, std::string_view host, std::uint16_t port) noexcept {
    Session& s = sessions_[index];
    s.target_port = port;
    if (auto literal = parse_ip_literal(host, port)) {
        go_to_address(s, *literal);
        return start_upstream(index);
    }
    std::uint64_t waiter_token = index | (static_cast<std::uint64_t>(sessions_.generation(index)) << 32);
    auto status = resolver_.start(host, index, waiter_token, s.candidates, now_ms_);
    if (!status) {
        s.phase = Phase::Resolving;
        s.phase_started_ms = now_ms_;
        return Step::Progress;
    }
    return use_lookup(index, *status, host);
}

Worker::Step Worker::use_lookup(std::uint32_t index, LookupStatus status, std::string_view name) noexcept {
    Session& s = sessions_[index];
    const char* problem = nullptr;
    switch (status) {
    case LookupStatus::Found:
        s.destination = s.candidates.at(0, s.target_port);
        return start_upstream(index);
    case LookupStatus::NoSuchName: problem = "no such name"; break;
    case LookupStatus::NoAddress: problem = "it has no address"; break;
    case LookupStatus::ServerFailure: problem = "the DNS server failed"; break;
    case LookupStatus::TimedOut: break;
    case LookupStatus::Overloaded:
        return fail(index, 503, "name resolution is overloaded", EndReason::NoResources);
    case LookupStatus::BadName: return fail(index, 400, "the host is not a valid name", EndReason::BadRequest);
    }
    char detail[320];
    int shown = static_cast<int>(std::min<std::size_t>(name.size(), 255));
    if (!problem) {
        std::snprintf(detail, sizeof detail, "resolving host '%.*s' timed out", shown, name.data());
        return fail(index, 504, detail, EndReason::TimeoutResolve);
    }
    std::snprintf(detail, sizeof detail, "cannot resolve host '%.*s': %s", shown, name.data(), problem);
    // A name that does not exist is most often the client's typo.
    bool client_mistake = status != LookupStatus::ServerFailure;
    return fail(index, 502, detail, EndReason::ResolveFailed, client_mistake);
}

Worker::Step Worker::start_upstream(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    if (is_own_address(s.destination)) {
        close_upstream(s);
        return fail(index, 508, "the request would loop back into this proxy", EndReason::Refused);
    }
    if (s.upstream) {
        check_idle_upstream(index);
        if (s.upstream && !s.connect_method && is_candidate(s, s.upstream_address)) {
            s.destination = s.upstream_address;
            s.upstream_reused = true;
            ++counters_.upstream_reused;
            return on_upstream_ready(index);
        }
        if (s.upstream) park_upstream(s);
    }
    if (!s.connect_method && !s.fresh_upstream_only && take_pooled_upstream(index)) {
        s.upstream_reused = true;
        ++counters_.upstream_reused;
        return on_upstream_ready(index);
    }
    s.phase = Phase::Connecting;
    s.phase_started_ms = now_ms_;
    s.connect_error = 0;
    s.next_candidate = 0;
    // A replay holding its failed connection's place starts at that address.
    if (s.upstream_wait == UpstreamWait::Granted)
        while (s.next_candidate + 1 < s.candidates.count &&
               !(s.candidates.at(s.next_candidate, s.target_port) == s.destination))
            ++s.next_candidate;
    return connect_next(index);
}

// Starts a connection to the next candidate address in a free slot: the
// upstream one, or the racer's while the first attempt is still pending.
// Addresses that fail at once are skipped. With no address left and no
// attempt pending, the request fails with the last error. (RFC 8305 keeps
// every attempt going; two at a time, the newest two, keep the descriptor
// count of a session bounded.)
Worker::Step Worker::connect_next(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    while (s.next_candidate < s.candidates.count && !(s.upstream && s.racer)) {
        std::uint8_t candidate = s.next_candidate++;
        SocketAddress address = s.candidates.at(candidate, s.target_port);
        if (candidate != 0 && is_own_address(address)) continue;
        bool racing = static_cast<bool>(s.upstream);
        if (!take_upstream_place(index, address)) {
            --s.next_candidate;
            // A pending attempt may still win; the next address is tried later.
            if (s.upstream || s.racer) {
                s.next_attempt_ms = now_ms_ + happy_eyeballs_delay_ms;
                return Step::Progress;
            }
            if (!limiter_.wait(address, index))
                return fail(index, 503, "too many upstream addresses in use at once", EndReason::NoResources);
            s.destination = address;
            s.upstream_wait = UpstreamWait::Queued;
            return Step::Progress;
        }
        Fd socket(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!socket) {
            release_upstream_place(address);
            if (s.upstream || s.racer) return Step::Progress;  // the pending attempt may still win
            char detail[128];
            std::snprintf(detail, sizeof detail, "cannot open an upstream socket: %s", std::strerror(errno));
            return fail(index, 503, detail, EndReason::NoResources);
        }
        int one = 1;
        ::setsockopt(socket.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (::connect(socket.get(), address.get(), address.length) != 0 && errno != EINPROGRESS) {
            s.connect_error = errno;
            s.destination = address;
            socket.reset();
            release_upstream_place(address);
            continue;
        }
        if (!reactor_.add(socket.get(), racing ? new_racer_token(index) : new_upstream_token(index))) {
            socket.reset();
            release_upstream_place(address);
            if (s.upstream || s.racer) return Step::Progress;
            return fail(index, 503, "cannot watch the upstream socket", EndReason::NoResources);
        }
        s.racer_is_newest = racing;
        if (racing) {
            s.racer = std::move(socket);
            s.racer_candidate = candidate;
            s.racer_can_write = false;
        } else {
            s.upstream = std::move(socket);
            s.destination = s.upstream_address = address;
            s.reset_upstream_state(false);
        }
        s.next_attempt_ms = s.next_candidate < s.candidates.count ? now_ms_ + happy_eyeballs_delay_ms : 0;
        return Step::Progress;
    }
    if (s.upstream || s.racer) return Step::Progress;
    char where[64];
    format_address(s.destination, where, sizeof where);
    char detail[160];
    std::snprintf(detail, sizeof detail, "connect %s: %s", where, std::strerror(s.connect_error));
    if (s.parent != no_parent && !local_failure(s.connect_error)) return parent_failed(index, detail);
    return fail(index, 502, detail, EndReason::ConnectFailed);
}

// Either attempt may finish first; the winner becomes the upstream connection
// and the other is closed.
Worker::Step Worker::finish_connect(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    // Marked down while this request waited its turn for it.
    if (s.upstream_wait == UpstreamWait::Granted && s.parent != no_parent && parents_.is_down(s.parent, now_ms_))
        return parent_failed(index, "marked down while the request waited for a connection");
    if (s.upstream_wait == UpstreamWait::Queued) return watch_waiting_client(index);
    if (s.upstream_wait == UpstreamWait::Granted) {
        s.phase_started_ms = now_ms_;
        return connect_next(index);
    }
    if (s.upstream_handed) {
        s.upstream_handed = false;
        s.upstream_reused = true;
        ++counters_.upstream_reused;
        return on_upstream_ready(index);
    }
    for (bool racing : {false, true}) {
        Fd& socket = racing ? s.racer : s.upstream;
        bool& can_write = racing ? s.racer_can_write : s.upstream_can_write;
        if (!socket || !can_write) continue;
        int error = 0;
        socklen_t length = sizeof error;
        ::getsockopt(socket.get(), SOL_SOCKET, SO_ERROR, &error, &length);
        if (error == EINPROGRESS || error == EALREADY) {
            can_write = false;
            continue;
        }
        if (error != 0) {
            s.connect_error = error;
            if (racing) {
                s.destination = s.candidates.at(s.racer_candidate, s.target_port);
                drop_racer(s);
            } else {
                drop_upstream(s);
            }
            can_write = false;
            Step step = connect_next(index);
            if (step == Step::Closed || s.phase != Phase::Connecting) return step;
            continue;
        }
        if (racing) {
            drop_upstream(s);
            s.upstream = std::move(s.racer);
            s.destination = s.upstream_address = s.candidates.at(s.racer_candidate, s.target_port);
            s.racer_can_write = false;
            s.reset_upstream_state(true);
            if (!reactor_.rewatch(s.upstream.get(), new_upstream_token(index), true)) {
                close_upstream(s);
                return fail(index, 503, "cannot watch the upstream socket", EndReason::NoResources);
            }
        } else {
            drop_racer(s);
            s.racer_can_write = false;
        }
        s.next_attempt_ms = 0;
        return on_upstream_ready(index);
    }
    return Step::Wait;
}

Worker::Step Worker::on_upstream_ready(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    if (const Parent* parent = s.upstream_reused ? nullptr : current_parent(s))
        if (parents_.mark_up(s.parent)) log_info("parent proxy %s is up again", parent->name.c_str());
    if (s.connect_method && s.parent != no_parent) return send_connect_to_parent(index);
    if (!s.connect_method) {
        s.phase = Phase::Exchanging;
        s.phase_started_ms = now_ms_;
        return Step::Progress;
    }
    ++counters_.tunnels;
    // Bytes the client sent after the CONNECT head are the tunnel's first bytes.
    s.request->consume(s.head_length);
    s.request_unsent = 0;
    if (s.request->capacity() < buffer_size) grow_request(s);  // a relay buffer, best full size
    if (!s.response && !(s.response = buffers_.acquire())) return close_session(index, EndReason::NoResources);
    s.response->clear();
    std::memcpy(s.response->space(), connection_established.data(), connection_established.size());
    s.response->commit(static_cast<std::uint32_t>(connection_established.size()));
    s.status = 200;
    begin_tunnel(s);
    return Step::Progress;
}

// Bytes already read on either side go first: the client's sent early, the
// server's (or parent's) behind its response head.
void Worker::begin_tunnel(Session& s) noexcept {
    s.to_upstream = RelayDirection{};
    s.to_client = RelayDirection{};
    s.to_upstream.buffer = std::exchange(s.request, nullptr);
    s.to_client.buffer = std::exchange(s.response, nullptr);
    s.request_unsent = s.response_unsent = 0;
    for (int socket : {s.client.get(), s.upstream.get()})
        ::setsockopt(socket, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &tunnel_notsent_lowat, sizeof tunnel_notsent_lowat);
    s.phase = Phase::Tunnel;
    s.phase_started_ms = now_ms_;
    ++counters_.tunnels_open;
}

// The parent's 2xx to the CONNECT it was sent: the client gets the same
// answer a direct tunnel gives, and the tunnel runs through the parent.
Worker::Step Worker::open_parent_tunnel(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    if (!s.response->replace(s.response_unsent, static_cast<std::uint32_t>(response_head_.length),
                             connection_established)) {
        close_upstream(s);
        s.close_after_response = true;
        return fail(index, 502, "the parent proxy sent an invalid response", EndReason::UpstreamBadResponse);
    }
    ++counters_.tunnels;
    if (s.request && s.request->capacity() < buffer_size) grow_request(s);
    s.status = 200;
    s.response_head_done = s.response_started = true;
    begin_tunnel(s);
    return Step::Progress;
}

// After a 101 the connection belongs to the new protocol: both directions are
// relayed like a CONNECT tunnel. Bytes already read on either side (the
// server's first frames after its head, the client's sent early) go first.
Worker::Step Worker::switch_protocols(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    const http::ResponseHead& head = response_head_;
    std::uint32_t old_length = static_cast<std::uint32_t>(head.length);
    forward::ResponseRewrite rewrite;
    rewrite.connection = forward::ClientConnection::Upgrade;
    rewrite.via_name = config_->via;
    std::size_t length = forward::write_response_head(head, rewrite, scratch_.get(), scratch_size_);
    if (length == 0 || !s.response->replace(s.response_unsent, old_length, {scratch_.get(), length})) {
        close_upstream(s);
        s.close_after_response = true;
        return fail(index, 502, "the upstream server sent an invalid response", EndReason::UpstreamBadResponse);
    }
    s.status = 101;
    s.response_head_done = s.response_started = true;
    begin_tunnel(s);
    return Step::Progress;
}

// The final recipient of a TRACE sends the request back as message/http.
Worker::Step Worker::echo_trace(std::uint32_t index, const http::RequestHead& head) noexcept {
    char* out = scratch_.get();
    std::size_t length = 0;
    auto append = [&](std::string_view text) {
        if (length + text.size() <= scratch_size_) std::memcpy(out + length, text.data(), text.size());
        length += text.size();
    };
    append(head.method);
    append(" ");
    append(head.target);
    append(head.version_minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    for (std::size_t i = 0; i < head.header_count; ++i) {
        if (sensitive_field(head.headers[i].name)) continue;
        append(head.headers[i].name);
        append(": ");
        append(head.headers[i].value);
        append("\r\n");
    }
    append("\r\n");
    if (length > std::min(scratch_size_, buffer_size - head_headroom))
        return fail(index, 431, "the TRACE request is too large to echo", EndReason::BadRequest);
    sessions_[index].end = EndReason::Done;
    return answer_locally(index, 200, "", "message/http", {out, length});
}

bool Worker::classify_request_body(Session& s) noexcept {
    if (s.request_complete || !s.request) return true;
    std::uint32_t unclassified = s.request->size() - s.request_unsent;
    if (unclassified == 0) return true;
    std::uint32_t taken = 0;
    if (s.request_body == http::BodyKind::Length) {
        taken = static_cast<std::uint32_t>(std::min<std::uint64_t>(s.request_remaining, unclassified));
        s.request_remaining -= taken;
        s.request_complete = s.request_remaining == 0;
    } else if (s.request_body == http::BodyKind::Chunked) {
        auto result = s.request_chunked.feed({s.request->data() + s.request_unsent, unclassified});
        if (result.status == http::ParseStatus::Error) return false;
        taken = static_cast<std::uint32_t>(result.consumed);
        s.request_complete = result.status == http::ParseStatus::Done;
    }
    s.request_unsent += taken;
    s.bytes_in += taken;
    return true;
}

bool Worker::classify_response_body(Session& s) noexcept {
    if (s.response_complete || !s.response) return true;
    std::uint32_t unclassified = s.response->size() - s.response_unsent;
    if (unclassified == 0) return true;
    std::uint32_t taken = unclassified;
    if (s.response_body == http::BodyKind::Length) {
        taken = static_cast<std::uint32_t>(std::min<std::uint64_t>(s.response_remaining, unclassified));
        s.response_remaining -= taken;
        s.response_complete = s.response_remaining == 0;
    } else if (s.response_body == http::BodyKind::Chunked && s.dechunk_response) {
        auto result = s.response_chunked.decode(s.response->data() + s.response_unsent, unclassified);
        if (result.status == http::ParseStatus::Error) return false;
        // The decoded data now starts where the chunked bytes did; the sizes
        // and trailers it left behind are cut out, whatever follows the body kept.
        auto produced = static_cast<std::uint32_t>(result.produced);
        s.response->replace(s.response_unsent + produced, static_cast<std::uint32_t>(result.consumed) - produced, {});
        taken = produced;
        s.response_complete = result.status == http::ParseStatus::Done;
    } else if (s.response_body == http::BodyKind::Chunked) {
        auto result = s.response_chunked.feed({s.response->data() + s.response_unsent, unclassified});
        if (result.status == http::ParseStatus::Error) return false;
        taken = static_cast<std::uint32_t>(result.consumed);
        s.response_complete = result.status == http::ParseStatus::Done;
    }
    s.response_unsent += taken;
    return true;
}

Worker::Step Worker::process_response_head(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    std::string_view input = s.response->view().substr(s.response_unsent);
    switch (s.response_parser.parse(input, response_head_)) {
    case http::ParseStatus::Partial:
        if (input.size() >= head_limit) break;
        return Step::Wait;
    case http::ParseStatus::Error: break;
    case http::ParseStatus::Done: {
        const http::ResponseHead& head = response_head_;
        std::uint32_t old_length = static_cast<std::uint32_t>(head.length);
        if (head.status == 407 && s.parent != no_parent) {
            // The client cannot fix cproxy's own credentials for the parent.
            const Parent* parent = current_parent(s);
            char detail[320];
            std::snprintf(detail, sizeof detail, "parent proxy %s refused cproxy's credentials (407): check its auth",
                          parent ? parent->name.c_str() : "-");
            close_upstream(s);
            s.close_after_response = true;
            return fail(index, 502, detail, EndReason::UpstreamBadResponse);
        }
        // Only a CONNECT sent on to a parent proxy is exchanged: its 2xx opens the tunnel.
        if (s.connect_method) {
            if (head.status >= 200 && head.status < 300) return open_parent_tunnel(index);
            if (head.status == 101) break;
            if (head.status < 200) {
                // An interim answer means nothing to a client waiting for its tunnel.
                if (!s.response->replace(s.response_unsent, old_length, {})) break;
                s.response_parser.reset();
                return Step::Progress;
            }
            // The parent's refusal is the client's answer; what follows it on
            // the client's connection was meant for a tunnel.
            s.close_after_response = true;
        }
        if (head.status == 101) {
            // Only to a request that asked, and naming the protocol (RFC 9110 §15.2.2).
            if (!s.upgrade_requested || !forward::response_names_upgrade(head)) break;
            return switch_protocols(index);
        }
        if (head.status >= 100 && head.status < 200) {
            std::size_t length = 0;
            // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
            if (!s.client_http10) {
                forward::ResponseRewrite rewrite;
                rewrite.via_name = config_->via;
                length = forward::write_response_head(head, rewrite, scratch_.get(), scratch_size_);
            }
            if (!s.response->replace(s.response_unsent, old_length, {scratch_.get(), length})) break;
            s.response_unsent += static_cast<std::uint32_t>(length);
            s.response_parser.reset();
            return Step::Progress;
        }
        auto framing = http::response_framing(head, s.head_method ? "HEAD" : "GET");
        if (!framing) break;
        s.response_body = framing->kind;
        s.response_remaining = framing->length;
        s.response_complete = framing->kind == http::BodyKind::None ||
                              (framing->kind == http::BodyKind::Length && framing->length == 0);
        // cproxy always asks upstream for a persistent connection (HTTP/1.1,
        // no close): whether it stays usable is the response's to say.
        s.upstream_reusable = forward::upstream_allows_reuse(head) &&
                              framing->kind != http::BodyKind::UntilClose;
        // An HTTP/1.0 client may be sent no transfer coding (RFC 9112 §6.1):
        // chunked is decoded for it and the body ended by close; any other
        // coding, which cproxy cannot undo, cannot reach it.
        if (s.client_http10 && framing->other_codings && framing->kind != http::BodyKind::None) {
            close_upstream(s);
            s.close_after_response = true;
            return fail(index, 502, "the server's response has a transfer coding an HTTP/1.0 client cannot read",
                        EndReason::UpstreamBadResponse);
        }
        s.dechunk_response = s.client_http10 && framing->kind == http::BodyKind::Chunked;
        if (framing->kind == http::BodyKind::UntilClose || s.dechunk_response || s.close_after_response ||
            !s.request_complete || stopping_)
            s.keep_client = false;
        forward::ResponseRewrite rewrite;
        rewrite.connection = !s.keep_client      ? forward::ClientConnection::Close
                             : s.legacy_keep_alive ? forward::ClientConnection::KeepAliveLegacy
                                                   : forward::ClientConnection::Persistent;
        rewrite.framing = *framing;
        rewrite.http10_client = s.client_http10;
        rewrite.via_name = config_->via;
        std::size_t length = forward::write_response_head(head, rewrite, scratch_.get(), scratch_size_);
        if (length == 0 || !s.response->replace(s.response_unsent, old_length, {scratch_.get(), length})) break;
        s.status = static_cast<std::uint16_t>(head.status);
        s.response_unsent += static_cast<std::uint32_t>(length);
        s.response_head_done = true;
        return Step::Progress;
    }
    }
    close_upstream(s);
    s.close_after_response = true;
    return fail(index, 502, "the upstream server sent an invalid response",
                EndReason::UpstreamBadResponse);
}

Worker::Step Worker::exchange(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    bool progress = false;

    if (s.request_complete && !s.response_started && s.client_can_read &&
        watch_waiting_client(index) == Step::Closed)
        return Step::Closed;

    if (!s.request_complete && s.client_can_read) {
        if (!s.request && !(s.request = buffers_.acquire())) return close_session(index, EndReason::NoResources);
        if (s.request->space_size() == 0) s.request->compact();
        if (s.request->space_size() > 0) {
            std::size_t asked = s.request->space_size();
            ssize_t n = ::recv(s.client.get(), s.request->space(), asked, 0);
            if (read_drained(n, asked, s.client_fin_arrived)) s.client_can_read = false;
            if (n > 0) {
                s.request->commit(static_cast<std::uint32_t>(n));
                counters_.bytes_in += static_cast<std::uint64_t>(n);
                s.client_bytes_pending = false;
                progress = true;
            } else if (n == 0) {
                return close_session(index, EndReason::ClientClosed);
            } else if (would_block(errno)) {
                s.client_can_read = false;
            } else {
                return close_session(index, EndReason::ClientReset);
            }
        }
    }
    if (!classify_request_body(s)) {
        // Part of the body may be upstream already: that connection is spoiled.
        close_upstream(s);
        s.close_after_response = true;
        return fail(index, 400, "malformed chunked request body", EndReason::BadRequest);
    }

    if (s.request_unsent > 0 && s.upstream_can_write) {
        ssize_t n = ::send(s.upstream.get(), s.request->data(), s.request_unsent, MSG_NOSIGNAL);
        if (n > 0) {
            s.request->consume(static_cast<std::uint32_t>(n));
            s.request_unsent -= static_cast<std::uint32_t>(n);
            if (s.request_unsent == 0 && s.request_complete) s.phase_started_ms = now_ms_;
            progress = true;
        } else if (n < 0 && would_block(errno)) {
            s.upstream_can_write = false;
        } else {
            if (prepare_replay(s)) return start_upstream(index);
            close_upstream(s);
            if (s.response_started) return close_session(index, EndReason::UpstreamReset);
            s.close_after_response = true;
            return fail(index, 502, "the upstream connection failed while sending the request",
                        EndReason::UpstreamReset);
        }
    }
    if (s.request && s.request->empty() && s.request_complete && s.replay_length == 0) {
        buffers_.release(s.request);
        s.request = nullptr;
    }

    // Past the head and whatever body came with it, a large Content-Length body
    // skips the buffer: splice moves it socket to socket.
    if (s.body_relayed ||
        (splice_enabled_ && s.response_head_done && !s.response_complete && s.response_unsent == 0 &&
         s.response_body == http::BodyKind::Length && s.response_remaining >= buffer_size &&
         (!s.response || s.response->empty())))
        return relay_response_body(index, progress);

    bool upstream_ended = false;
    bool upstream_reset = false;
    if (!s.response_complete && s.upstream_can_read) {
        if (!s.response && !(s.response = buffers_.acquire())) return close_session(index, EndReason::NoResources);
        std::uint32_t limit = buffer_size;
        if (!s.response_head_done) {
            if (s.response->space_size() < head_headroom + 1) s.response->compact();
            limit = head_limit;
        } else if (s.response->space_size() == 0) {
            s.response->compact();
        }
        std::uint32_t used = buffer_size - s.response->space_size();
        if (used < limit) {
            ssize_t n = ::recv(s.upstream.get(), s.response->space(), limit - used, 0);
            if (read_drained(n, limit - used, s.upstream_fin_arrived)) s.upstream_can_read = false;
            if (n > 0) {
                s.response->commit(static_cast<std::uint32_t>(n));
                s.replay_length = 0;  // the server answered: never replay now
                progress = true;
            } else if (n == 0) {
                upstream_ended = true;
            } else if (would_block(errno)) {
                s.upstream_can_read = false;
            } else {
                upstream_ended = upstream_reset = true;
            }
        }
    }

    if (s.response) {
        while (!s.response_head_done) {
            Step step = process_response_head(index);
            if (step == Step::Closed) return step;
            if (s.phase != Phase::Exchanging) return Step::Progress;
            if (step == Step::Wait) break;
            progress = true;
        }
        if (s.response_head_done && !classify_response_body(s)) {
            close_upstream(s);
            if (s.response_started) return close_session(index, EndReason::UpstreamBadResponse);
            // Nothing of it has reached the client: it can still be told.
            s.close_after_response = true;
            return fail(index, 502, "the upstream server sent a malformed chunked body", EndReason::UpstreamBadResponse);
        }
    }

    if (upstream_ended) {
        if (!s.response_head_done && prepare_replay(s)) return start_upstream(index);
        close_upstream(s);
        if (!s.response_head_done) {
            if (s.response_started) return close_session(index, EndReason::UpstreamClosed);
            s.close_after_response = true;
            return fail(index, 502,
                        upstream_reset ? "the upstream connection was reset before a response"
                                       : "the upstream server closed the connection without a response",
                        upstream_reset ? EndReason::UpstreamReset : EndReason::UpstreamClosed);
        }
        if (s.response_body != http::BodyKind::UntilClose || upstream_reset) {
            if (!s.response_complete)
                return close_session(index, upstream_reset ? EndReason::UpstreamReset
                                                            : EndReason::UpstreamTruncated);
        } else {
            s.response_complete = true;
        }
        progress = true;
    }

    if (s.response_unsent > 0 && s.client_can_write) {
        ssize_t n = ::send(s.client.get(), s.response->data(), s.response_unsent, MSG_NOSIGNAL);
        if (n > 0) {
            s.response->consume(static_cast<std::uint32_t>(n));
            s.response_unsent -= static_cast<std::uint32_t>(n);
            s.bytes_out += static_cast<std::uint64_t>(n);
            counters_.bytes_out += static_cast<std::uint64_t>(n);
            s.response_started = true;
            progress = true;
        } else if (n < 0 && would_block(errno)) {
            s.client_can_write = false;
        } else {
            return close_session(index, EndReason::ClientReset);
        }
    }

    if (s.response_complete && s.response_unsent == 0) return finish_exchange(index);
    return progress ? Step::Progress : Step::Wait;
}

// A server may close an idle keep-alive connection just as a request goes out
// on it. A bodiless idempotent request that got no byte of response on a
// reused connection is sent once more on a new one (RFC 9112 §9.3.1).
bool Worker::prepare_replay(Session& s) noexcept {
    if (!s.upstream_reused || s.replay_length == 0 || !s.request) return false;
    if (s.request->empty()) {
        // Sent in full: the consumed head is still at the buffer's start.
        s.request->resize(s.replay_length);
    } else if (s.request->size() != s.replay_length || s.request_unsent != s.replay_length) {
        return false;  // partly sent, or a pipelined request follows
    }
    s.request_unsent = s.replay_length;
    s.replay_length = 0;
    // Under upstream_max_connections the replay keeps the failed connection's
    // place rather than queue behind requests that came later.
    if (limiter_.enabled() && s.upstream) {
        s.upstream.reset();
        s.destination = s.upstream_address;
        s.upstream_wait = UpstreamWait::Granted;
    }
    close_upstream(s);
    s.upstream_reused = false;
    s.fresh_upstream_only = true;
    ++counters_.replays;
    return true;
}

// The relay reads exactly the remaining body, so the upstream connection stays
// reusable; an upstream that ends early truncates the response.
Worker::Step Worker::relay_response_body(std::uint32_t index, bool progress) noexcept {
    Session& s = sessions_[index];
    if (!s.body_relayed) {
        if (s.response) {
            buffers_.release(s.response);
            s.response = nullptr;
        }
        s.to_client = RelayDirection{};
        s.to_client.read_limit = s.response_remaining;
        s.body_relayed = true;
    }
    RelayContext context{buffers_, pipes_, splice_enabled_, tunnel_budget};
    std::uint64_t sent_before = s.to_client.bytes, spliced_before = s.to_client.spliced_bytes;
    RelayResult result = relay(s.to_client, s.upstream.get(), s.client.get(), s.upstream_can_read,
                               s.client_can_write, s.upstream_fin_arrived, context);
    std::uint64_t sent = s.to_client.bytes - sent_before;
    s.bytes_out += sent;
    counters_.bytes_out += sent;
    counters_.spliced += s.to_client.spliced_bytes - spliced_before;
    s.response_remaining = s.to_client.read_limit;
    if (sent > 0) progress = true;
    switch (result) {
    case RelayResult::Finished:
        release_relay(s.to_client, buffers_, pipes_);
        s.body_relayed = false;
        s.response_complete = true;
        return finish_exchange(index);
    case RelayResult::Error:
        close_upstream(s);
        return close_session(index, s.to_client.source_eof ? EndReason::UpstreamTruncated
                                                            : EndReason::ClientReset);
    case RelayResult::Yield:
        queue_retry(index);
        return Step::Wait;
    case RelayResult::Waiting: break;
    }
    return progress ? Step::Progress : Step::Wait;
}

Worker::Step Worker::finish_exchange(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    bool leftover = s.response && !s.response->empty();
    if (!s.upstream_reusable || !s.request_complete || s.request_unsent > 0 || leftover)
        close_upstream(s);
    else if (!s.keep_client || wanted_elsewhere(s.upstream_address))
        park_upstream(s);
    if (s.response) {
        buffers_.release(s.response);
        s.response = nullptr;
    }
    log_request(s);
    s.served_request = true;
    if (!s.keep_client || !s.request_complete || stopping_) {
        ::shutdown(s.client.get(), SHUT_WR);
        s.phase = Phase::Lingering;
        s.phase_started_ms = now_ms_;
        return Step::Progress;
    }
    start_reading_head(s);
    return Step::Progress;
}

Worker::Step Worker::tunnel(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    RelayContext context{buffers_, pipes_, splice_enabled_, tunnel_budget};
    std::uint64_t up_before = s.to_upstream.bytes, down_before = s.to_client.bytes;
    std::uint64_t spliced_before = s.to_upstream.spliced_bytes + s.to_client.spliced_bytes;
    RelayResult up = relay(s.to_upstream, s.client.get(), s.upstream.get(), s.client_can_read,
                           s.upstream_can_write, s.client_fin_arrived, context);
    RelayResult down = relay(s.to_client, s.upstream.get(), s.client.get(), s.upstream_can_read,
                             s.client_can_write, s.upstream_fin_arrived, context);
    std::uint64_t up_moved = s.to_upstream.bytes - up_before;
    std::uint64_t down_moved = s.to_client.bytes - down_before;
    s.bytes_in += up_moved;
    s.bytes_out += down_moved;
    counters_.bytes_in += up_moved;
    counters_.bytes_out += down_moved;
    counters_.spliced += s.to_upstream.spliced_bytes + s.to_client.spliced_bytes - spliced_before;
    if (up_moved + down_moved > 0) s.last_activity_ms = now_ms_;
    if (up == RelayResult::Error || down == RelayResult::Error)
        return close_session(index, EndReason::TunnelReset);
    if (up == RelayResult::Finished && down == RelayResult::Finished)
        return close_session(index, EndReason::Done);
    if (up == RelayResult::Yield || down == RelayResult::Yield) queue_retry(index);
    return Step::Wait;
}

Worker::Step Worker::fail(std::uint32_t index, int status, std::string_view detail, EndReason reason,
                          bool client_mistake) noexcept {
    Session& s = sessions_[index];
    if (s.phase == Phase::Resolving) resolver_.cancel(index);
    if (s.phase == Phase::Connecting) close_upstream(s);  // attempts still pending
    leave_upstream_queue(index);
    // After a 400 where the next request starts cannot be trusted; after a
    // refused CONNECT, bytes behind its head were meant for the tunnel, and
    // must never be run as requests.
    if (status == 400 || (s.connect_method && s.request && s.request->size() > s.head_length))
        s.close_after_response = true;
    s.end = reason;
    ++counters_.failures;
    // A server-side failure is the operator's business; a client's mistake
    // only when debugging.
    LogLevel level = status >= 500 && !client_mistake ? LogLevel::Warning : LogLevel::Debug;
    // A dead origin fails every request to it: one warning a second per cause
    // says so, with the count of those left out since the last.
    std::uint32_t left_out = 0;
    if (level == LogLevel::Warning) {
        WarningGate& gate = warning_gates_[static_cast<std::size_t>(reason)];
        if (gate.second == now_ms_ / 1000) {
            ++gate.suppressed;
            level = LogLevel::Debug;
        } else {
            gate.second = now_ms_ / 1000;
            left_out = std::exchange(gate.suppressed, 0);
        }
    }
    if (log_enabled(level)) {
        char client[64];
        format_address(s.client_address, client, sizeof client);
        char more[64] = "";
        if (left_out) std::snprintf(more, sizeof more, " (%u more like it since the last line)", left_out);
        log_message(level, "%s: %d %.*s%s", client, status, static_cast<int>(detail.size()), detail.data(), more);
    }
    const char* extra_fields = status == 407   ? "Proxy-Authenticate: Basic realm=\"cproxy\"\r\n"
                               : status == 503 ? "Retry-After: 1\r\n"
                               : status == 405 ? allow_field
                                               : "";
    // The body names cproxy and the reason.
    char body[1100];
    int length = std::snprintf(body, sizeof body, "cproxy: %.*s\n",
                               static_cast<int>(std::min<std::size_t>(detail.size(), 1024)), detail.data());
    return answer_locally(index, status, extra_fields, "text/plain",
                          {body, static_cast<std::size_t>(std::max(length, 0))});
}

// The stats listener's own requests: GET or HEAD of /metrics or /stats, for
// every worker's counters as last published, this one's as of now.
Worker::Step Worker::serve_stats(std::uint32_t index, const http::RequestHead& head) noexcept {
    Session& s = sessions_[index];
    const http::RequestFraming framing = http::request_framing(head);
    if (framing.refusal || framing.framing.kind != http::BodyKind::None) s.close_after_response = true;
    if (head.method != "GET" && head.method != "HEAD")
        return answer_locally(index, 405, "Allow: GET, HEAD\r\n", "text/plain",
                              "cproxy: the stats listener answers GET and HEAD\n");
    std::string_view path = head.target.substr(0, head.target.find('?'));
    bool prometheus = path == "/metrics";
    if (!prometheus && path != "/stats")
        return answer_locally(index, 404, "", "text/plain", "cproxy: try /metrics or /stats\n");
    boards_[id_].publish(stats());
    for (std::size_t i = 0; i < boards_.size(); ++i) all_stats_[i] = boards_[i].read();
    if (!s.response && !(s.response = stats_buffers_.acquire()))
        return fail(index, 503, "every stats buffer is busy", EndReason::NoResources);
    // Room for the response head in front of the body in one buffer.
    std::size_t room = s.response->capacity() - head_headroom;
    std::size_t length = prometheus ? render_prometheus(all_stats_.data(), all_stats_.size(), scratch_.get(), room)
                                    : render_json(all_stats_.data(), all_stats_.size(), scratch_.get(), room);
    if (length == 0) return fail(index, 500, "the statistics do not fit in a response buffer", EndReason::NoResources);
    return answer_locally(index, 200, "", prometheus ? "text/plain; version=0.0.4; charset=utf-8" : "application/json",
                          {scratch_.get(), length});
}

Worker::Step Worker::answer_locally(std::uint32_t index, int status, const char* extra_fields,
                                    std::string_view content_type, std::string_view body) noexcept {
    Session& s = sessions_[index];
    s.status = static_cast<std::uint16_t>(status);
    if (s.response_started) return close_session(index, s.end);
    bool request_consumed = s.request_body == http::BodyKind::None || s.request_complete;
    s.keep_client = s.keep_client && !s.close_after_response && request_consumed;
    if (s.request && s.request_unsent > 0) s.request->consume(std::min(s.request_unsent, s.request->size()));
    s.request_unsent = 0;
    if (!s.response && !(s.response = buffers_.acquire())) return close_session(index, EndReason::NoResources);
    s.response->clear();
    int length = std::snprintf(s.response->space(), s.response->space_size(),
                               "HTTP/1.1 %d %s\r\n"
                               "%s%.*s%s"
                               "Content-Length: %zu\r\n"
                               "%s%s"
                               "\r\n",
                               status, reason_phrase(status), body.empty() ? "" : "Content-Type: ",
                               static_cast<int>(body.empty() ? 0 : content_type.size()), content_type.data(),
                               body.empty() ? "" : "\r\n", body.size(), extra_fields,
                               s.keep_client ? "" : "Connection: close\r\n");
    if (length <= 0 || static_cast<std::size_t>(length) + body.size() > s.response->space_size())
        return close_session(index, s.end);
    s.response->commit(static_cast<std::uint32_t>(length));
    // A response to HEAD has no body, whatever its Content-Length says.
    if (!s.head_method && !body.empty()) {
        std::memcpy(s.response->space(), body.data(), body.size());
        s.response->commit(static_cast<std::uint32_t>(body.size()));
    }
    s.response_unsent = s.response->size();
    s.phase = Phase::Responding;
    s.last_activity_ms = now_ms_;
    return Step::Progress;
}

Worker::Step Worker::respond(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    while (s.response_unsent > 0) {
        if (!s.client_can_write) return Step::Wait;
        ssize_t n = ::send(s.client.get(), s.response->data(), s.response_unsent, MSG_NOSIGNAL);
        if (n < 0) {
            if (would_block(errno)) {
                s.client_can_write = false;
                continue;
            }
            return close_session(index, EndReason::ClientReset);
        }
        s.response->consume(static_cast<std::uint32_t>(n));
        s.response_unsent -= static_cast<std::uint32_t>(n);
        s.bytes_out += static_cast<std::uint64_t>(n);
        if (!s.stats_client) counters_.bytes_out += static_cast<std::uint64_t>(n);
    }
    buffers_.release(s.response);
    s.response = nullptr;
    log_request(s);
    if (!s.keep_client || stopping_) {
        close_upstream(s);
        ::shutdown(s.client.get(), SHUT_WR);
        s.phase = Phase::Lingering;
        s.phase_started_ms = now_ms_;
        return Step::Progress;
    }
    s.served_request = true;
    start_reading_head(s);
    return Step::Progress;
}

Worker::Step Worker::linger(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    // Reading out what the client still sends keeps close() from turning into
    // a reset that could destroy the response before the client has read it.
    if (s.request) {
        buffers_.release(s.request);
        s.request = nullptr;
    }
    while (s.client_can_read) {
        ssize_t n = ::recv(s.client.get(), scratch_.get(), scratch_size_, 0);
        if (read_drained(n, scratch_size_, s.client_fin_arrived)) s.client_can_read = false;
        if (n > 0) continue;
        if (n < 0 && would_block(errno)) {
            s.client_can_read = false;
            break;
        }
        return close_session(index, s.end);
    }
    return Step::Wait;
}

void Worker::close_upstream(Session& s) noexcept {
    drop_upstream(s);
    drop_racer(s);
    s.racer_can_write = false;
    s.reset_upstream_state(false);
}

void Worker::log_request(Session& s) noexcept {
    if (!s.in_request) return;
    s.in_request = false;
    if (!s.stats_client) {
        if (s.status >= 100 && s.status < 600) ++counters_.requests_by_class[s.status / 100 - 1];
        else ++counters_.requests_unanswered;
    }
    if (!access_log_.enabled()) return;
    char client[64];
    char upstream[64] = "";
    std::size_t client_length = format_address(s.client_address, client, sizeof client);
    std::size_t upstream_length = 0;
    if (s.destination.length != 0 && s.status != 407)
        upstream_length = format_address(s.destination, upstream, sizeof upstream);
    access_log_.write(AccessRecord{
        {client, client_length},
        s.user,
        s.method,
        s.target,
        s.status,
        s.bytes_in,
        s.bytes_out,
        now_ms_ - s.request_started_ms,
        {upstream, upstream_length},
        end_reason_text(s.end),
    });
}

Worker::Step Worker::close_session(std::uint32_t index, EndReason reason) noexcept {
    Session& s = sessions_[index];
    if (s.in_request) {
        s.end = reason;
        if (reason != EndReason::Done && s.status < 400 && s.phase != Phase::Tunnel) ++counters_.failures;
        log_request(s);
    }
    leave_upstream_queue(index);
    // Between requests a kept upstream connection is clean and can serve others.
    if (s.upstream && s.phase == Phase::ReadingHead) park_upstream(s);
    release_relay(s.to_upstream, buffers_, pipes_);
    release_relay(s.to_client, buffers_, pipes_);
    if (s.request) buffers_.release(s.request);
    if (s.response) buffers_.release(s.response);
    s.request = s.response = nullptr;
    timers_.cancel(index);
    if (s.phase == Phase::Resolving) resolver_.cancel(index);
    if (s.phase == Phase::Tunnel) --counters_.tunnels_open;
    s.client.reset();
    close_upstream(s);
    stats_open_ -= s.stats_client;
    sessions_.release(index);
    return Step::Closed;
}

}  // namespace cproxy
