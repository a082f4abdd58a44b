// A worker's name resolution, inside its event loop: the hosts file, then the
// cache, then DNS. The stub resolver asks the nameservers of /etc/resolv.conf
// (or the `resolver` directive's) for A and AAAA records over UDP, one socket
// per query so the source port is as random as the 16-bit ID, retries across
// servers, asks again over TCP when a reply is truncated, and walks the search
// list. Lookups of one name that overlap share one pair of queries; every
// session waiting on it is told when it ends. With `resolver system` the
// getaddrinfo(3) thread pool answers instead, behind the same cache.
//
// Lookups live in a slab, their deadlines in a timer wheel, waiters are the
// callers' own slot indexes and TCP replies use a small pool of buffers, all
// allocated once; only re-reading the hosts file or resolv.conf allocates.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cproxy/address.hpp"
#include "cproxy/config.hpp"
#include "cproxy/dns_cache.hpp"
#include "cproxy/dns_message.hpp"
#include "cproxy/fd.hpp"
#include "cproxy/reactor.hpp"
#include "cproxy/slab.hpp"
#include "cproxy/system_resolver_files.hpp"
#include "cproxy/timer_wheel.hpp"

namespace cproxy {

class SystemResolver;

enum class LookupStatus : std::uint8_t {
    Found,
    NoSuchName,     // NXDOMAIN for every name of the search list
    NoAddress,      // the name exists but has no A or AAAA record
    ServerFailure,  // every server failed or refused, or none could be reached
    TimedOut,       // dns_timeout passed, or every try went unanswered
    Overloaded,     // no free lookup slot
    BadName,        // not a valid host name
};

// A name's addresses in the order to try them: the preferred family first,
// then the families alternating (RFC 8305 §4).
struct AddressList {
    static constexpr std::size_t capacity = dns::max_addresses;
    std::uint8_t count = 0;
    std::uint8_t ipv6_mask = 0;  // bit i: addresses[i] is IPv6
    std::array<std::array<std::uint8_t, 16>, capacity> addresses{};

    // An IP literal or the backend: one address to connect to.
    static AddressList single(const SocketAddress& address) noexcept;
    bool is_ipv6(std::size_t i) const noexcept { return (ipv6_mask >> i) & 1; }
    SocketAddress at(std::size_t i, std::uint16_t port) const noexcept;
};

class Resolver {
public:
    // Names looked up at once; a request for one more gets Overloaded.
    static constexpr std::uint32_t max_lookups = 256;
    // Descriptors the resolver may hold at once: a socket per query (two per
    // lookup), the TCP fallbacks among them, the hosts-file watch, the pool's eventfd.
    static constexpr std::uint32_t max_descriptors = 2 * max_lookups + 2;

    // Called once per waiter when its lookup ends (never from inside start()),
    // with the name as asked (lowercase, no final dot).
    using Deliver = void (*)(void* context, std::uint64_t waiter_token, LookupStatus status,
                             const AddressList& addresses, std::string_view name);

    // `waiters`: callers name themselves by an index below it (a session
    // slot). Events for the resolver's descriptors carry `token_kind`; pass
    // them to on_event(). Reads resolv.conf and the hosts file; throws
    // std::system_error when a descriptor cannot be made.
    Resolver(const Config& config, Reactor& reactor, std::uint8_t token_kind, std::uint32_t waiters,
             Deliver deliver, void* context, std::uint64_t now_ms);
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    // A reload: dns_timeout, the TTL bounds, prefer_ipv6 and the servers
    // (resolv.conf is read again) apply to lookups started from now on.
    void reconfigure(const Config& config) noexcept;

    // Answers at once from the hosts file or the cache (fills `out` when
    // Found), or registers `waiter` and returns nullopt: deliver() follows.
    std::optional<LookupStatus> start(std::string_view host, std::uint32_t waiter, std::uint64_t waiter_token,
                                      AddressList& out, std::uint64_t now_ms) noexcept;
    // Forgets `waiter` (its session ended or gave up); no-op if not waiting.
    void cancel(std::uint32_t waiter) noexcept;

    void on_event(std::uint32_t index, std::uint32_t generation, std::uint64_t now_ms) noexcept;
    // Milliseconds until expire() has work (retries, deadlines), capped at `cap_ms`.
    int ms_until_due(std::uint64_t now_ms, int cap_ms) const noexcept;
    void expire(std::uint64_t now_ms) noexcept;

    std::uint32_t lookups_in_flight() const noexcept { return lookups_.used(); }
    std::uint64_t cache_hits() const noexcept { return cache_.hits(); }
    std::uint64_t cache_misses() const noexcept { return cache_.misses(); }

private:
    static constexpr std::uint32_t none = UINT32_MAX;
    static constexpr std::uint8_t no_buffer = 0xff;

    // One question (A or AAAA) for the current name of a lookup.
    struct Query {
        Fd socket;
        dns::Reply reply;
        std::uint64_t try_deadline_ms = 0;
        std::uint32_t tcp_done = 0;     // bytes of the TCP exchange sent, then received
        std::uint16_t id = 0;
        std::uint8_t tries = 0;
        std::uint8_t tcp_buffer = no_buffer;
        bool tcp = false;
        bool tcp_sending = false;
        bool finished = false;
        bool timed_out = false;         // finished because no try was answered
    };

    struct Lookup {
        // The name as asked, lowercase; with its final dot when a search
        // list applies, since "intranet." and "intranet" may differ then.
        char key[DnsCache::max_key];
        char query_name[dns::max_name];  // the search-list candidate being asked
        std::uint8_t key_length = 0;
        std::uint8_t name_length = 0;    // without the final dot
        std::uint8_t query_name_length = 0;
        std::uint8_t search_index = 0;   // next search-list candidate
        bool absolute = false;           // asked with a final dot: no search list
        bool saw_no_data = false;        // an earlier candidate exists without addresses
        bool saw_failure = false;        // an earlier candidate's servers failed
        bool saw_timeout = false;        // ... by not answering
        bool delivered = false;          // waiters told; the late family still fills the cache
        Query queries[2];                // A, AAAA
        std::uint64_t deadline_ms = 0;   // dns_timeout after the start
        std::uint64_t resolution_delay_until_ms = 0;  // one family answered: wait this long for the other
        std::uint32_t first_waiter = none;
        std::uint32_t next_in_bucket = none;

        std::string_view key_view() const noexcept { return {key, key_length}; }
        std::string_view name() const noexcept { return {key, name_length}; }
    };

    struct Waiter {
        std::uint64_t token = 0;
        std::uint32_t lookup = none;
        std::uint32_t prev = none;
        std::uint32_t next = none;
    };

    std::uint32_t bucket_of(std::string_view key) const noexcept;
    std::uint32_t find_lookup(std::string_view key) const noexcept;
    std::uint32_t start_lookup(std::string_view key, std::size_t name_length, bool absolute,
                               std::uint64_t now_ms) noexcept;
    void unlink_lookup(std::uint32_t index) noexcept;
    void release_lookup(std::uint32_t index) noexcept;
    bool next_search_name(Lookup& lookup) noexcept;
    void ask(std::uint32_t index, std::uint64_t now_ms) noexcept;
    void send_query(std::uint32_t index, int which, std::uint64_t now_ms) noexcept;
    void start_tcp(std::uint32_t index, int which, std::uint64_t now_ms) noexcept;
    void try_failed(std::uint32_t index, int which, bool timed_out, std::uint64_t now_ms) noexcept;
    void finish_query(Query& query, const dns::Reply& reply) noexcept;
    void read_udp(std::uint32_t index, int which, std::uint64_t now_ms) noexcept;
    void drive_tcp(std::uint32_t index, int which, std::uint64_t now_ms) noexcept;
    void on_system_answers(std::uint64_t now_ms) noexcept;
    // Ends the lookup if its queries say enough; true if it ended.
    bool settle(std::uint32_t index, std::uint64_t now_ms) noexcept;
    std::optional<LookupStatus> verdict(std::uint32_t index, std::uint64_t now_ms) noexcept;
    void finish(std::uint32_t index, LookupStatus status, std::uint64_t now_ms) noexcept;
    void on_lookup_timer(std::uint32_t index, std::uint64_t now_ms) noexcept;
    void release_query(Query& query) noexcept;
    void rearm(std::uint32_t index) noexcept;
    void fill(AddressList& out, const dns::Reply* a, const dns::Reply* aaaa) const noexcept;
    void load_resolv_conf(const Config& config);
    void load_hosts() noexcept;
    void watch_hosts() noexcept;
    void on_hosts_changed() noexcept;
    std::uint16_t random_id() noexcept;
    std::uint32_t try_timeout_ms() const noexcept;
    std::uint64_t token(std::uint32_t index, std::uint32_t generation) const noexcept;

    Reactor& reactor_;
    std::uint8_t token_kind_;
    Deliver deliver_;
    void* context_;
    std::uint32_t timeout_ms_;
    bool prefer_ipv6_;
    ResolvConf resolv_;
    std::string hosts_path_;
    HostsTable hosts_;
    Fd hosts_watch_;  // inotify on the hosts file and its directory
    int hosts_file_watch_ = -1;
    DnsCache cache_;
    Slab<Lookup> lookups_;
    TimerWheel timers_;  // per lookup: its earliest retry, delay or deadline
    std::vector<std::uint32_t> buckets_;
    std::unique_ptr<Waiter[]> waiters_;
    std::uint32_t waiter_capacity_;
    std::unique_ptr<SystemResolver> system_;
    std::unique_ptr<std::uint8_t[]> tcp_buffers_;
    std::uint32_t free_tcp_buffers_ = 0;  // bit i: buffer i free
    std::array<std::uint8_t, 256> random_{};
    std::size_t random_used_ = sizeof random_;
};

}  // namespace cproxy
