// The edge-triggered epoll loop's system-call surface: the only file that calls
// epoll_*. Sockets are registered once for read, write and peer-shutdown
// readiness; the session keeps "can read / can write" in user space and calls
// epoll_ctl again only when an upstream connection changes owner (parked in the
// upstream pool, or taken back by a session); closing deregisters it.
#pragma once

#include <sys/epoll.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "cproxy/fd.hpp"

namespace cproxy {

// An event's token: what the descriptor belongs to (a kind the owner defines,
// 8 bits), a slot index (24 bits) and the slot's generation (32 bits), so an
// event for a slot's previous occupant is recognised and dropped.
constexpr std::uint64_t event_token(std::uint8_t kind, std::uint32_t index, std::uint32_t generation) noexcept {
    return kind | (static_cast<std::uint64_t>(index & 0xffffff) << 8) | (static_cast<std::uint64_t>(generation) << 32);
}
constexpr std::uint8_t token_kind(std::uint64_t token) noexcept { return static_cast<std::uint8_t>(token & 0xff); }
constexpr std::uint32_t token_index(std::uint64_t token) noexcept {
    return static_cast<std::uint32_t>((token >> 8) & 0xffffff);
}
constexpr std::uint32_t token_generation(std::uint64_t token) noexcept {
    return static_cast<std::uint32_t>(token >> 32);
}

// Under edge-triggered epoll a stream socket's read that returned fewer bytes
// than it asked for emptied the receive queue, and bytes arriving later raise a
// new event: reading again now would only return EAGAIN, a system call for
// nothing. Not once the peer's FIN has arrived (EPOLLRDHUP): no event follows
// it, so reading goes on until it returns the 0 that ends the stream.
constexpr bool read_drained(ssize_t got, std::size_t asked, bool fin_arrived) noexcept {
    return !fin_arrived && got > 0 && static_cast<std::size_t>(got) < asked;
}

class Reactor {
public:
    static constexpr int max_events = 256;

    Reactor();  // throws std::system_error
    // Registers `fd` edge-triggered for in, out and peer shutdown; false on failure.
    bool add(int fd, std::uint64_t token) noexcept;
    // Registers `fd` edge-triggered for input only (listeners, eventfd, signalfd, UDP).
    bool add_input(int fd, std::uint64_t token) noexcept;
    // Re-registers a watched socket under a new token: for in, out and peer
    // shutdown like add(), or for input and peer shutdown only.
    bool rewatch(int fd, std::uint64_t token, bool output) noexcept;
    // Waits up to timeout_ms (-1: forever); returns the number of events (0 on EINTR).
    int wait(int timeout_ms) noexcept;
    const epoll_event& event(int i) const noexcept { return events_[i]; }

private:
    Fd epoll_;
    epoll_event events_[max_events];
};

}  // namespace cproxy
