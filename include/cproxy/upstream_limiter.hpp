// upstream_max_connections: how many connections the worker holds to each
// upstream address (connecting, in use, or idle in the pool), and the sessions
// waiting, first come first served, for one of them to come free.
//
// A place freed while sessions wait is not returned: it passes to the first
// waiter, so a request arriving later cannot overtake the queue. Memory is
// fixed at start: an open-addressing table with room for every address the
// worker's descriptors could reach at once, and two links per session for
// the queues. Its pages are touched only as addresses come into use.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "cproxy/address.hpp"

namespace cproxy {

class UpstreamLimiter {
public:
    // `per_address` 0: no limit, and every call is a no-op. `addresses`: the
    // most upstream descriptors the worker may hold at once.
    UpstreamLimiter(std::uint32_t per_address, std::uint32_t sessions, std::uint32_t addresses);
    bool enabled() const noexcept { return per_address_ != 0; }

    // Counts a new connection to `address` if there is room.
    bool acquire(const SocketAddress& address) noexcept;
    // A counted connection closed: the first waiter gets its place (and is
    // returned) or the count drops.
    std::optional<std::uint32_t> release(const SocketAddress& address) noexcept;
    // The first waiter, out of the queue, for a connection handed over whole.
    std::optional<std::uint32_t> take_waiter(const SocketAddress& address) noexcept;
    // False if the table has no room for another address (cannot happen
    // within the descriptor budget it was sized for).
    bool wait(const SocketAddress& address, std::uint32_t session) noexcept;
    bool has_waiters(const SocketAddress& address) noexcept;
    // Leaves the queue `session` joined for `address`.
    void cancel(const SocketAddress& address, std::uint32_t session) noexcept;

    std::uint32_t waiting() const noexcept { return waiting_; }
    std::uint32_t addresses_in_use() const noexcept { return used_; }

private:
    static constexpr std::uint32_t none = UINT32_MAX;

    struct Key {
        std::uint8_t bytes[16];
        std::uint16_t port;
        std::uint8_t family;  // 0: an empty slot
        bool operator==(const Key&) const noexcept = default;
    };
    struct Entry {
        Key key;
        std::uint32_t connections;
        std::uint32_t first_waiter;
        std::uint32_t last_waiter;
    };

    static Key key_of(const SocketAddress& address) noexcept;
    std::uint32_t home(const Key& key) const noexcept;
    Entry* find(const Key& key) noexcept;
    Entry* find_or_add(const Key& key) noexcept;
    void erase_if_unused(Entry* entry) noexcept;
    std::uint32_t pop_waiter(Entry& entry) noexcept;

    struct FreeDeleter {
        void operator()(void* memory) const noexcept;
    };

    std::uint32_t per_address_;
    std::uint32_t mask_ = 0;
    std::uint32_t used_ = 0;
    std::uint32_t waiting_ = 0;
    // calloc'd: untouched slots cost no resident memory.
    std::unique_ptr<Entry, FreeDeleter> table_;
    std::unique_ptr<std::uint32_t, FreeDeleter> next_waiter_;
    std::unique_ptr<std::uint32_t, FreeDeleter> previous_waiter_;
};

}  // namespace cproxy
