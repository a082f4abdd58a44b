#include "cproxy/upstream_pool.hpp"

#include <netinet/in.h>

#include <bit>
#include <cstring>

namespace cproxy {

UpstreamPool::UpstreamPool(std::uint32_t capacity, std::uint32_t idle_timeout_ms)
    : entries_(capacity), buckets_(capacity ? std::bit_ceil(2 * capacity) : 0, none), idle_timeout_ms_(idle_timeout_ms) {
    for (std::uint32_t i = 0; i < capacity; ++i) entries_[i].older = i + 1 < capacity ? i + 1 : none;
    free_ = capacity ? 0 : none;
}

std::uint32_t UpstreamPool::bucket_of(const SocketAddress& address) const noexcept {
    // FNV-1a over the port and address bytes that operator== compares.
    const unsigned char* bytes = nullptr;
    std::size_t length = 0;
    std::uint16_t port = 0;
    if (address.family() == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(&address.storage);
        bytes = reinterpret_cast<const unsigned char*>(&in->sin_addr);
        length = sizeof in->sin_addr;
        port = in->sin_port;
    } else if (address.family() == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
        bytes = reinterpret_cast<const unsigned char*>(&in6->sin6_addr);
        length = sizeof in6->sin6_addr;
        port = in6->sin6_port;
    }
    std::uint32_t hash = 2166136261u ^ port;
    for (std::size_t i = 0; i < length; ++i) hash = (hash ^ bytes[i]) * 16777619u;
    return hash & static_cast<std::uint32_t>(buckets_.size() - 1);
}

std::optional<UpstreamPool::Parked> UpstreamPool::park(Fd connection, const SocketAddress& address,
                                                       std::uint64_t now_ms) noexcept {
    if (entries_.empty()) return std::nullopt;
    if (free_ == none) close_entry(oldest_);
    std::uint32_t slot = free_;
    Entry& e = entries_[slot];
    free_ = e.older;
    e.connection = std::move(connection);
    e.address = address;
    e.parked_ms = now_ms;
    ++e.generation;
    e.bucket = bucket_of(address);
    e.newer = none;
    e.older = newest_;
    if (newest_ != none) entries_[newest_].newer = slot;
    newest_ = slot;
    if (oldest_ == none) oldest_ = slot;
    e.previous_in_bucket = none;
    e.next_in_bucket = buckets_[e.bucket];
    if (e.next_in_bucket != none) entries_[e.next_in_bucket].previous_in_bucket = slot;
    buckets_[e.bucket] = slot;
    ++parked_;
    return Parked{slot, e.generation};
}

std::uint32_t UpstreamPool::find(const SocketAddress& address) const noexcept {
    if (parked_ == 0) return none;
    for (std::uint32_t slot = buckets_[bucket_of(address)]; slot != none; slot = entries_[slot].next_in_bucket)
        if (entries_[slot].address == address) return slot;
    return none;
}

Fd UpstreamPool::take(const SocketAddress& address, std::uint64_t now_ms) noexcept {
    if (parked_ == 0) return {};
    expire(now_ms);
    std::uint32_t slot = find(address);
    if (slot == none) return {};
    unlink(slot);
    return std::move(entries_[slot].connection);
}

bool UpstreamPool::close_one(const SocketAddress& address) noexcept {
    std::uint32_t slot = find(address);
    if (slot == none) return false;
    close_entry(slot);
    return true;
}

void UpstreamPool::drop(std::uint32_t slot, std::uint32_t generation) noexcept {
    if (slot >= entries_.size()) return;
    Entry& e = entries_[slot];
    if (e.generation != generation || !e.connection) return;
    close_entry(slot);
}

void UpstreamPool::expire(std::uint64_t now_ms) noexcept {
    while (oldest_ != none && entries_[oldest_].parked_ms + idle_timeout_ms_ <= now_ms) close_entry(oldest_);
}

void UpstreamPool::unlink(std::uint32_t slot) noexcept {
    Entry& e = entries_[slot];
    if (e.newer != none) entries_[e.newer].older = e.older;
    else newest_ = e.older;
    if (e.older != none) entries_[e.older].newer = e.newer;
    else oldest_ = e.newer;
    if (e.previous_in_bucket != none) entries_[e.previous_in_bucket].next_in_bucket = e.next_in_bucket;
    else buckets_[e.bucket] = e.next_in_bucket;
    if (e.next_in_bucket != none) entries_[e.next_in_bucket].previous_in_bucket = e.previous_in_bucket;
    e.newer = none;
    e.older = free_;
    free_ = slot;
    ++e.generation;  // events still queued for the old registration are ignored
    --parked_;
}

void UpstreamPool::close_entry(std::uint32_t slot) noexcept {
    unlink(slot);
    entries_[slot].connection.reset();
    if (close_hook_) close_hook_(close_context_, entries_[slot].address);
}

}  // namespace cproxy
