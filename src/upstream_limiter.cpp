#include "cproxy/upstream_limiter.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>

namespace cproxy {

namespace {

template <typename T>
T* zeroed_array(std::size_t count) {
    void* memory = std::calloc(count, sizeof(T));
    if (!memory) throw std::bad_alloc();
    return static_cast<T*>(memory);
}

}  // namespace

void UpstreamLimiter::FreeDeleter::operator()(void* memory) const noexcept { std::free(memory); }

UpstreamLimiter::UpstreamLimiter(std::uint32_t per_address, std::uint32_t sessions, std::uint32_t addresses)
    : per_address_(per_address) {
    if (per_address_ == 0) return;
    // At most half full, so probe runs stay short.
    std::uint32_t slots = 16;
    while (slots < 2ull * addresses && slots < (1u << 30)) slots *= 2;
    mask_ = slots - 1;
    table_.reset(zeroed_array<Entry>(slots));
    next_waiter_.reset(zeroed_array<std::uint32_t>(sessions));
    previous_waiter_.reset(zeroed_array<std::uint32_t>(sessions));
}

UpstreamLimiter::Key UpstreamLimiter::key_of(const SocketAddress& address) noexcept {
    Key key{};
    std::span<const std::uint8_t> bytes = ip_bytes(address);
    std::memcpy(key.bytes, bytes.data(), std::min(bytes.size(), sizeof key.bytes));
    key.port = address.port();
    key.family = address.family() == AF_INET6 ? 6 : 4;
    return key;
}

std::uint32_t UpstreamLimiter::home(const Key& key) const noexcept {
    // FNV-1a over the address and port.
    std::uint32_t hash = 2166136261u;
    for (std::uint8_t byte : key.bytes) hash = (hash ^ byte) * 16777619u;
    hash = (hash ^ (key.port & 0xff)) * 16777619u;
    hash = (hash ^ (key.port >> 8)) * 16777619u;
    hash = (hash ^ key.family) * 16777619u;
    return hash & mask_;
}

UpstreamLimiter::Entry* UpstreamLimiter::find(const Key& key) noexcept {
    for (std::uint32_t slot = home(key);; slot = (slot + 1) & mask_) {
        Entry& entry = table_.get()[slot];
        if (entry.key.family == 0) return nullptr;
        if (entry.key == key) return &entry;
    }
}

UpstreamLimiter::Entry* UpstreamLimiter::find_or_add(const Key& key) noexcept {
    for (std::uint32_t slot = home(key);; slot = (slot + 1) & mask_) {
        Entry& entry = table_.get()[slot];
        if (entry.key == key) return &entry;
        if (entry.key.family != 0) continue;
        if (used_ >= mask_ / 2 + 1) return nullptr;  // cannot happen within the descriptor budget
        entry = Entry{key, 0, none, none};
        ++used_;
        return &entry;
    }
}

// Backward-shift deletion keeps every remaining key reachable from its home
// slot without tombstones.
void UpstreamLimiter::erase_if_unused(Entry* entry) noexcept {
    if (entry->connections != 0 || entry->first_waiter != none) return;
    Entry* table = table_.get();
    std::uint32_t hole = static_cast<std::uint32_t>(entry - table);
    for (std::uint32_t slot = (hole + 1) & mask_;; slot = (slot + 1) & mask_) {
        if (table[slot].key.family == 0) break;
        std::uint32_t wanted = home(table[slot].key);
        // Movable into the hole unless its home lies cyclically in (hole, slot].
        bool stays = hole <= slot ? (hole < wanted && wanted <= slot) : (hole < wanted || wanted <= slot);
        if (stays) continue;
        table[hole] = table[slot];
        hole = slot;
    }
    table[hole] = Entry{};
    --used_;
}

bool UpstreamLimiter::acquire(const SocketAddress& address) noexcept {
    if (!enabled()) return true;
    Entry* entry = find_or_add(key_of(address));
    if (!entry) return false;
    // Waiters go first: a place that frees goes to them, not to a newcomer.
    if (entry->connections >= per_address_ || entry->first_waiter != none) {
        erase_if_unused(entry);
        return false;
    }
    ++entry->connections;
    return true;
}

std::uint32_t UpstreamLimiter::pop_waiter(Entry& entry) noexcept {
    std::uint32_t session = entry.first_waiter;
    entry.first_waiter = next_waiter_.get()[session];
    if (entry.first_waiter == none) entry.last_waiter = none;
    else previous_waiter_.get()[entry.first_waiter] = none;
    --waiting_;
    return session;
}

std::optional<std::uint32_t> UpstreamLimiter::release(const SocketAddress& address) noexcept {
    if (!enabled()) return std::nullopt;
    Entry* entry = find(key_of(address));
    if (!entry || entry->connections == 0) return std::nullopt;
    if (entry->first_waiter != none) return pop_waiter(*entry);
    --entry->connections;
    erase_if_unused(entry);
    return std::nullopt;
}

std::optional<std::uint32_t> UpstreamLimiter::take_waiter(const SocketAddress& address) noexcept {
    if (!enabled()) return std::nullopt;
    Entry* entry = find(key_of(address));
    if (!entry || entry->first_waiter == none) return std::nullopt;
    return pop_waiter(*entry);
}

bool UpstreamLimiter::has_waiters(const SocketAddress& address) noexcept {
    if (!enabled() || waiting_ == 0) return false;
    Entry* entry = find(key_of(address));
    return entry && entry->first_waiter != none;
}

bool UpstreamLimiter::wait(const SocketAddress& address, std::uint32_t session) noexcept {
    Entry* entry = find_or_add(key_of(address));
    if (!entry) return false;
    next_waiter_.get()[session] = none;
    previous_waiter_.get()[session] = entry->last_waiter;
    if (entry->last_waiter == none) entry->first_waiter = session;
    else next_waiter_.get()[entry->last_waiter] = session;
    entry->last_waiter = session;
    ++waiting_;
    return true;
}

void UpstreamLimiter::cancel(const SocketAddress& address, std::uint32_t session) noexcept {
    Entry* entry = find(key_of(address));
    if (!entry) return;
    std::uint32_t next = next_waiter_.get()[session];
    std::uint32_t previous = previous_waiter_.get()[session];
    if (previous == none) entry->first_waiter = next;
    else next_waiter_.get()[previous] = next;
    if (next == none) entry->last_waiter = previous;
    else previous_waiter_.get()[next] = previous;
    --waiting_;
    erase_if_unused(entry);
}

}  // namespace cproxy
