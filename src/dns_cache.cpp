#include "cproxy/dns_cache.hpp"

#include <algorithm>
#include <cstring>

namespace cproxy {

namespace {

char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool same_name(const DnsCache::Entry& entry, std::string_view name) noexcept {
    if (entry.name_length != name.size()) return false;
    for (std::size_t i = 0; i < name.size(); ++i)
        if (entry.name[i] != lower(name[i])) return false;
    return true;
}

}  // namespace

DnsCache::DnsCache(std::uint32_t capacity, std::uint32_t min_ttl_s, std::uint32_t max_ttl_s)
    : entries_((capacity + ways - 1) / ways * ways),
      sets_(static_cast<std::uint32_t>(entries_.size() / ways)),
      min_ttl_s_(min_ttl_s),
      max_ttl_s_(std::max(min_ttl_s, max_ttl_s)) {}

void DnsCache::set_ttl_bounds(std::uint32_t min_ttl_s, std::uint32_t max_ttl_s) noexcept {
    min_ttl_s_ = min_ttl_s;
    max_ttl_s_ = std::max(min_ttl_s, max_ttl_s);
}

std::uint32_t DnsCache::set_of(std::string_view name, dns::QueryType type) const noexcept {
    std::uint32_t hash = 2166136261u ^ static_cast<std::uint32_t>(type);
    for (char c : name) hash = (hash ^ static_cast<unsigned char>(lower(c))) * 16777619u;
    return hash % sets_;
}

const dns::Reply* DnsCache::find(std::string_view name, dns::QueryType type, std::uint64_t now_ms) noexcept {
    if (sets_ == 0 || name.size() > max_key) return nullptr;
    Entry* set = &entries_[static_cast<std::size_t>(set_of(name, type)) * ways];
    for (std::uint32_t way = 0; way < ways; ++way) {
        Entry& entry = set[way];
        if (entry.expires_ms > now_ms && entry.type == type && same_name(entry, name)) {
            ++hits_;
            return &entry.reply;
        }
    }
    ++misses_;
    return nullptr;
}

void DnsCache::store(std::string_view name, dns::QueryType type, const dns::Reply& reply,
                     std::uint64_t now_ms) noexcept {
    if (sets_ == 0 || name.empty() || name.size() > max_key) return;
    if (reply.outcome != dns::Outcome::Addresses && reply.outcome != dns::Outcome::NoData &&
        reply.outcome != dns::Outcome::NoSuchName)
        return;
    Entry* set = &entries_[static_cast<std::size_t>(set_of(name, type)) * ways];
    // The same name's entry, else an expired one, else the one expiring soonest.
    Entry* victim = &set[0];
    for (std::uint32_t way = 0; way < ways; ++way) {
        Entry& entry = set[way];
        if (entry.expires_ms > now_ms && entry.type == type && same_name(entry, name)) {
            victim = &entry;
            break;
        }
        if (entry.expires_ms <= now_ms || entry.expires_ms < victim->expires_ms) victim = &entry;
        if (entry.expires_ms <= now_ms) break;
    }
    std::uint32_t ttl_s = std::clamp(reply.ttl, min_ttl_s_, max_ttl_s_);
    // RFC 1035 §3.2.1: a TTL of zero is for this transaction only.
    if (ttl_s == 0) return;
    victim->name_length = static_cast<std::uint8_t>(name.size());
    for (std::size_t i = 0; i < name.size(); ++i) victim->name[i] = lower(name[i]);
    victim->type = type;
    victim->reply = reply;
    victim->expires_ms = now_ms + static_cast<std::uint64_t>(ttl_s) * 1000;
}

}  // namespace cproxy
