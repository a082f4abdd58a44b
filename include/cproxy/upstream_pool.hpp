// Idle upstream connections that finished sessions left reusable, kept for the
// next session going to the same address: a client that closes after every
// response (siege, curl in a loop, most HTTP/1.0 tools) then costs the origin
// no new connection per request.
//
// Bounded, because its descriptors are reserved in the worker's budget; when
// full, the connection idle longest is closed to make room. Per address the
// most recently parked connection is reused first, so surplus ones age out.
// Nothing is kept longer than the idle timeout (upstream_idle_timeout, 2 s
// by default): servers close idle keep-alive connections after a few seconds
// (Apache and Node.js: 5 s), and a request sent as the server closes would be lost.
//
// The pool owns the descriptors but knows nothing of epoll: the worker watches
// a parked connection under the slot's token, and any event on it (the server
// closed it, or sent bytes nobody asked for) drops it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "cproxy/address.hpp"
#include "cproxy/fd.hpp"

namespace cproxy {

class UpstreamPool {
public:
    static constexpr std::uint32_t default_idle_timeout_ms = 2000;

    struct Parked {
        std::uint32_t slot;
        std::uint32_t generation;
    };

    explicit UpstreamPool(std::uint32_t capacity, std::uint32_t idle_timeout_ms = default_idle_timeout_ms);
    // Applies to every connection parked, from the next expire() on.
    void set_idle_timeout(std::uint32_t idle_timeout_ms) noexcept { idle_timeout_ms_ = idle_timeout_ms; }

    // Told the address of every connection the pool closes (expired, dropped,
    // evicted for room), so the worker's per-address counts follow.
    using CloseHook = void (*)(void* context, const SocketAddress& address) noexcept;
    void on_close(CloseHook hook, void* context) noexcept {
        close_hook_ = hook;
        close_context_ = context;
    }

    // Takes ownership of `connection`; capacity 0 closes it at once (nullopt,
    // and the hook is not called: the caller knows).
    std::optional<Parked> park(Fd connection, const SocketAddress& address, std::uint64_t now_ms) noexcept;
    // The most recently parked live connection to `address`, or an empty Fd.
    Fd take(const SocketAddress& address, std::uint64_t now_ms) noexcept;
    // An event arrived for a parked connection: close it, if it is still parked.
    void drop(std::uint32_t slot, std::uint32_t generation) noexcept;
    // Closes connections parked longer than the idle timeout.
    void expire(std::uint64_t now_ms) noexcept;
    // Closes one idle connection to `address` to make room for a new one that
    // cannot be pooled (a tunnel); false if there is none.
    bool close_one(const SocketAddress& address) noexcept;

    std::uint32_t capacity() const noexcept { return static_cast<std::uint32_t>(entries_.size()); }
    std::uint32_t parked() const noexcept { return parked_; }

private:
    static constexpr std::uint32_t none = UINT32_MAX;

    struct Entry {
        Fd connection;
        SocketAddress address;
        std::uint64_t parked_ms = 0;
        std::uint32_t generation = 0;
        std::uint32_t bucket = none;
        // Age order over all parked entries (newest first), or the free list.
        std::uint32_t newer = none, older = none;
        // Same-bucket chain, newest first.
        std::uint32_t next_in_bucket = none, previous_in_bucket = none;
    };

    void unlink(std::uint32_t slot) noexcept;  // from both lists; the descriptor stays
    std::uint32_t find(const SocketAddress& address) const noexcept;  // newest first; none
    void close_entry(std::uint32_t slot) noexcept;
    std::uint32_t bucket_of(const SocketAddress& address) const noexcept;

    std::vector<Entry> entries_;
    std::vector<std::uint32_t> buckets_;  // head of each chain
    std::uint32_t newest_ = none, oldest_ = none;
    std::uint32_t free_ = none;           // chained through `older`
    std::uint32_t parked_ = 0;
    std::uint32_t idle_timeout_ms_;
    CloseHook close_hook_ = nullptr;
    void* close_context_ = nullptr;
};

}  // namespace cproxy
