// Relaying one direction of a byte stream (a CONNECT tunnel, or a large
// response body) from one socket to another: splice(2) through a pooled pipe so
// the bytes never enter user space, or a pooled buffer copy when no pipe is
// free or splice is not supported.
//
// Per direction, each call to relay():
//
//   flush buffer ──► flush pipe ──► source at EOF? ── yes ──► shutdown(to, SHUT_WR) ► Finished
//        ▲                                │ no
//        └────── refill (splice into an empty pipe, or recv into the buffer) ◄──┘
//
// A refill is only attempted into an empty pipe, so EAGAIN from splice(socket →
// pipe) always means "socket drained", never "pipe full". Idle directions give
// their pipe and buffer back, so an idle tunnel holds neither.
//
// A direction with a read limit (a Content-Length body) reads exactly that many
// bytes, so the connection stays usable for the next response; it finishes
// without shutting anything down, and a source that ends early is an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cproxy/buffer.hpp"

namespace cproxy {

struct Pipe {
    int read_end = -1;
    int write_end = -1;
    std::uint32_t capacity = 0;
};

class PipePool {
public:
    // Bulk transfers move a pipe's capacity per pair of splice calls, so pipes
    // are enlarged from the kernel's 64 KiB; past the per-user pipe memory
    // limit the kernel refuses and a pipe keeps its default size.
    static constexpr int wanted_capacity = 256 * 1024;

    explicit PipePool(std::uint32_t max_pipes);
    ~PipePool();
    PipePool(const PipePool&) = delete;
    PipePool& operator=(const PipePool&) = delete;

    // A reusable empty pipe, a new one while under the cap, or an invalid Pipe.
    Pipe acquire() noexcept;
    void release(Pipe pipe) noexcept;  // the pipe must be empty
    void destroy(Pipe pipe) noexcept;  // still holds bytes, or broken
    std::uint32_t in_use() const noexcept { return in_use_; }
    std::uint32_t created() const noexcept { return created_; }

private:
    std::vector<Pipe> free_;
    std::uint32_t max_pipes_;
    std::uint32_t created_ = 0;
    std::uint32_t in_use_ = 0;
};

// A tunnel's sockets keep at most this many bytes queued but not yet sent
// (TCP_NOTSENT_LOWAT): the rest waits in the pipe until the socket drains.
// Bytes queued beyond what the peer's window admits are sent later from the
// peer's ACK, on whichever CPU processes it, while cproxy sends the next ones
// from its own: on loopback the two reach the receiver out of order, which it
// takes for loss (spurious retransmissions, a shrunken window). Measured on
// two CPUs, 256 MiB through a tunnel: 0.83-0.86 of a direct download without
// it, 0.99-1.01 with it, and some 190 retransmitted segments become 6.
inline constexpr int tunnel_notsent_lowat = 16 * 1024;

inline constexpr std::uint64_t no_read_limit = UINT64_MAX;

struct RelayDirection {
    Pipe pipe;
    std::uint32_t pipe_bytes = 0;
    Buffer* buffer = nullptr;  // bytes read before the tunnel began, or the copy path
    bool source_eof = false;
    bool finished = false;     // EOF relayed as shutdown(SHUT_WR)
    bool copy_only = false;    // splice refused for this socket pair
    std::uint64_t read_limit = no_read_limit;  // bytes still to read from the source
    std::uint64_t bytes = 0;
    std::uint64_t spliced_bytes = 0;
};

struct RelayContext {
    BufferPool& buffers;
    PipePool& pipes;
    bool splice_enabled;
    std::size_t budget;  // bytes this call may move before yielding to other sessions
};

enum class RelayResult : std::uint8_t {
    Waiting,      // needs readiness on one of the sockets
    Finished,     // source ended (or the read limit was reached) and everything was delivered
    Yield,        // budget spent or no buffer free: call again soon
    Error,        // a socket failed (reset, broken pipe), or a limited source ended early
};

// `from_fin_arrived`: the source's FIN has been seen (EPOLLRDHUP), so a short
// read does not end the reading (read_drained).
RelayResult relay(RelayDirection& direction, int from, int to, bool& can_read, bool& can_write,
                  bool from_fin_arrived, const RelayContext& context) noexcept;

// Gives back the direction's pipe (destroyed if it still holds bytes) and buffer.
void release_relay(RelayDirection& direction, BufferPool& buffers, PipePool& pipes) noexcept;

}  // namespace cproxy
