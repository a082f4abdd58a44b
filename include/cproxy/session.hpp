// The state of one client session. A session is a slot in the worker's slab:
// plain data, reset on reuse; the worker's state machine (session.cpp) moves it
// through these phases:
//
//            accept
//              │
//              ▼
//   ┌──► ReadingHead ──(head parsed, policy ok)──► Resolving ──► Connecting ─┐
//   │        │  │                        └──(IP literal / cache / kept upstream)┤
//   │        │  └─(refused: 400/403/407/…)──► Responding ──┐                   │
//   │        │                                    │ close   ▼                  ▼
//   │        │                                    │       Lingering     CONNECT? ──yes──► Tunnel
//   │        ▼                                    │          │               │no
//   │      close ◄────────────────────────────────┴──────────┘               ▼
//   └──────────────(response complete, keep-alive)────────────────────── Exchanging
//
// Exchanging also leads to Tunnel: on a 101 the client asked for, and on a
// parent proxy's 2xx to the CONNECT it was sent (a CONNECT through a parent is
// exchanged like a request first).
//
// An idle keep-alive session (ReadingHead, nothing buffered) holds its slot, its
// client socket and possibly one kept upstream socket: no buffer, no pipe.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cproxy/address.hpp"
#include "cproxy/buffer.hpp"
#include "cproxy/fd.hpp"
#include "cproxy/http_parser.hpp"
#include "cproxy/parents.hpp"
#include "cproxy/resolver.hpp"
#include "cproxy/tunnel.hpp"

namespace cproxy {

// Room kept free behind a head while it is read, so rewriting it in place
// (a Via field, a Host field, Connection: close) always fits in its buffer.
inline constexpr std::uint32_t head_headroom = 512;
inline constexpr std::uint32_t head_limit = buffer_size - head_headroom;

enum class Phase : std::uint8_t {
    ReadingHead,
    Resolving,
    Connecting,
    Exchanging,
    Tunnel,
    Responding,  // writing a response the proxy made itself
    Lingering,   // response sent, write side shut: draining input before close
};

// Why a request or session ended: the END field of the access log.
enum class EndReason : std::uint8_t {
    Done,
    ClientClosed,
    ClientReset,
    UpstreamClosed,
    UpstreamReset,
    UpstreamTruncated,
    UpstreamBadResponse,
    ConnectFailed,
    ResolveFailed,
    TimeoutHeader,
    TimeoutIdle,
    TimeoutResolve,
    TimeoutConnect,
    TimeoutResponse,
    TimeoutTunnel,
    BadRequest,
    Refused,
    TunnelReset,
    NoResources,
    Shutdown,
    Denied,  // the client's address is refused by the allow/deny rules
    UpstreamBusy,  // no connection under upstream_max_connections came free in time
    ParentsDown,   // every parent proxy is down, and never_direct is on
};
inline constexpr std::size_t end_reason_count = static_cast<std::size_t>(EndReason::ParentsDown) + 1;

// A session's place in upstream_max_connections' queue for `destination`.
enum class UpstreamWait : std::uint8_t {
    None,
    Queued,
    Granted,  // a connection closed and its place passed to this session
};

const char* end_reason_text(EndReason reason) noexcept;

struct Session {
    // What is known of the socket now in `upstream` starts afresh with each
    // one: writable already when it comes connected (pooled, handed over, a
    // racer that won), not yet when a connect is pending, or with none.
    void reset_upstream_state(bool writable) noexcept {
        upstream_can_read = upstream_fin_arrived = upstream_reusable = false;
        upstream_can_write = writable;
    }

    Fd client;
    Fd upstream;
    Fd racer;  // a second connection attempt racing `upstream` (Happy Eyeballs)
    Buffer* request = nullptr;   // bytes from the client, the head at its start
    Buffer* response = nullptr;  // bytes for the client
    http::RequestParser request_parser{head_limit};
    // A response may carry as many fields as a head can hold, whatever
    // max_headers allows clients: servers send many Set-Cookie fields.
    http::ResponseParser response_parser{head_limit, http::header_capacity};
    http::ChunkedDecoder request_chunked;
    http::ChunkedDecoder response_chunked;
    RelayDirection to_upstream;  // tunnel only
    RelayDirection to_client;    // tunnel, or a large response body
    SocketAddress client_address;
    AddressList candidates;          // where the request may go, in the order to try
    SocketAddress destination;       // where `upstream` connects (or last tried)
    SocketAddress upstream_address;  // where `upstream` is connected, kept for reuse

    std::uint64_t phase_started_ms = 0;  // head start, connect start, linger start
    std::uint64_t next_attempt_ms = 0;   // when to race another address if none connected
    std::uint64_t last_activity_ms = 0;
    std::uint64_t request_started_ms = 0;
    std::uint64_t request_remaining = 0;   // Content-Length body bytes not yet classified
    std::uint64_t response_remaining = 0;
    std::uint64_t bytes_in = 0;   // this request, from the client
    std::uint64_t bytes_out = 0;  // this request, to the client
    std::uint32_t request_unsent = 0;   // bytes at request->data() that belong upstream
    std::uint32_t response_unsent = 0;  // bytes at response->data() that belong to the client
    std::uint32_t head_length = 0;      // the request head as received (until it is rewritten)
    // A bodiless idempotent request's rewritten head, kept in `request` until
    // the response begins, for one replay if a reused upstream connection
    // turns out closed (0: no replay possible).
    std::uint32_t replay_length = 0;
    std::uint16_t status = 0;
    std::uint16_t target_port = 0;      // the destination's port, while names become addresses
    std::uint32_t parents_failed = 0;   // this request's, bit i for parent i
    std::uint8_t parent = no_parent;    // the parent proxy this request goes through
    std::uint8_t next_candidate = 0;    // in `candidates`
    std::uint8_t racer_candidate = 0;
    std::uint8_t upstream_serial = 0;   // of the socket in `upstream`, in its event tokens
    std::uint8_t racer_serial = 0;
    int connect_error = 0;              // errno of the last attempt that failed
    Phase phase = Phase::ReadingHead;
    UpstreamWait upstream_wait = UpstreamWait::None;
    EndReason end = EndReason::Done;
    http::BodyKind request_body = http::BodyKind::None;
    http::BodyKind response_body = http::BodyKind::None;

    bool client_can_read = false;
    bool client_can_write = false;
    bool upstream_can_read = false;
    bool upstream_can_write = false;
    bool client_fin_arrived = false;    // EPOLLRDHUP seen: reads go on to the 0 (read_drained)
    bool upstream_fin_arrived = false;  // the same for the socket now in `upstream`
    bool racer_can_write = false;
    bool racer_is_newest = false;    // of the two attempts, the racer started last
    bool head_started = false;       // bytes of a request head have arrived
    bool served_request = false;     // a request completed on this connection
    bool upstream_reused = false;
    bool upstream_handed = false;       // `upstream` came straight from another session's finished request
    bool client_bytes_pending = false;  // seen while waiting: the client has not left
    bool awaiting_proxy_header = false;  // a PROXY protocol listener's connection, header not yet read
    bool fresh_upstream_only = false; // a replay: no kept or pooled connection
    bool upstream_reusable = false;  // the response left the upstream connection usable
    bool request_complete = false;   // whole request classified
    bool response_head_done = false;
    bool response_complete = false;
    bool response_started = false;   // bytes of this response reached the client
    bool body_relayed = false;       // the rest of the response body goes through to_client
    bool keep_client = false;        // client connection persists after this response
    bool client_http10 = false;
    bool legacy_keep_alive = false;  // HTTP/1.0 client that asked for keep-alive
    bool dechunk_response = false;   // a chunked response goes to an HTTP/1.0 client decoded
    bool head_method = false;
    bool connect_method = false;
    bool upgrade_requested = false;  // Upgrade forwarded: a 101 turns the session into a tunnel
    bool head_for_parent = false;    // the request head in `request` is written for `parent`
    bool close_after_response = false;
    bool retry_queued = false;
    bool in_request = false;         // a request is being handled: log it when it ends
    bool stats_client = false;       // accepted on the stats listener: served, never proxied

    char method[16] = {};
    char target[112] = {};
    char user[32] = {};
};

}  // namespace cproxy
