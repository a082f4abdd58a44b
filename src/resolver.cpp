#include "cproxy/resolver.hpp"

#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "cproxy/log.hpp"
#include "cproxy/system_resolver.hpp"

namespace cproxy {

namespace {

// Event indexes past any query socket's (2 per lookup, at most 2048).
constexpr std::uint32_t system_index = 0xffffff;
constexpr std::uint32_t watch_index = 0xfffffe;

constexpr std::uint32_t min_try_ms = 250;
// RFC 8305 §3: once one family has answered, how long to wait for the other.
constexpr std::uint64_t resolution_delay_ms = 50;
// How long a family whose servers failed is left alone when the other has addresses.
constexpr std::uint32_t failed_family_ttl_s = 30;
// A reply over TCP may be larger than a datagram; more than this is refused.
constexpr std::uint32_t tcp_buffer_count = 8;
constexpr std::uint32_t tcp_buffer_size = 16 * 1024;

// A file is read once written and closed, or once renamed into place; never
// half-written.
constexpr std::uint32_t file_events = IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF;
constexpr std::uint32_t directory_events = IN_CLOSE_WRITE | IN_MOVED_TO;

constexpr dns::QueryType query_types[2] = {dns::QueryType::A, dns::QueryType::AAAA};

std::uint16_t read16(const std::uint8_t* p) noexcept { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }

bool is_negative(const dns::Reply& reply) noexcept {
    return reply.outcome == dns::Outcome::NoSuchName || reply.outcome == dns::Outcome::NoData;
}

bool cacheable(const dns::Reply& reply) noexcept {
    return reply.outcome == dns::Outcome::Addresses || is_negative(reply);
}

std::uint32_t hash_name(std::string_view name) noexcept {
    std::uint32_t hash = 2166136261u;
    for (char c : name) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619u;
    return hash;
}

bool read_file(const std::string& path, std::string& text) {
    std::ifstream in(path);
    if (!in) return false;
    std::ostringstream contents;
    contents << in.rdbuf();
    text = contents.str();
    return true;
}

void add_address(dns::Reply& reply, const SocketAddress& address) noexcept {
    if (reply.count >= dns::max_addresses) return;
    reply.outcome = dns::Outcome::Addresses;
    auto bytes = ip_bytes(address);
    std::memcpy(reply.addresses[reply.count++].data(), bytes.data(), bytes.size());
}

}  // namespace

AddressList AddressList::single(const SocketAddress& address) noexcept {
    AddressList list;
    list.count = 1;
    list.ipv6_mask = address.family() == AF_INET6 ? 1 : 0;
    auto bytes = ip_bytes(address);
    std::memcpy(list.addresses[0].data(), bytes.data(), bytes.size());
    return list;
}

SocketAddress AddressList::at(std::size_t i, std::uint16_t port) const noexcept {
    SocketAddress address;
    if (is_ipv6(i)) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(address.get());
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        std::memcpy(&in6->sin6_addr, addresses[i].data(), 16);
        address.length = sizeof(sockaddr_in6);
    } else {
        auto* in4 = reinterpret_cast<sockaddr_in*>(address.get());
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        std::memcpy(&in4->sin_addr, addresses[i].data(), 4);
        address.length = sizeof(sockaddr_in);
    }
    return unmapped(address);
}

Resolver::Resolver(const Config& config, Reactor& reactor, std::uint8_t token_kind, std::uint32_t waiters,
                   Deliver deliver, void* context, std::uint64_t now_ms)
    : reactor_(reactor),
      token_kind_(token_kind),
      deliver_(deliver),
      context_(context),
      timeout_ms_(config.dns_timeout_ms),
      prefer_ipv6_(config.prefer_ipv6),
      hosts_path_(config.system_resolver ? std::string() : config.hosts_file),
      cache_(config.dns_cache_size * 2, config.dns_min_ttl_s, config.dns_max_ttl_s),
      lookups_(std::clamp(waiters, 16u, max_lookups)),
      timers_(lookups_.capacity(), now_ms),
      buckets_(static_cast<std::size_t>(lookups_.capacity()) * 2, none),
      waiters_(std::make_unique<Waiter[]>(waiters)),
      waiter_capacity_(waiters),
      tcp_buffers_(std::make_unique<std::uint8_t[]>(tcp_buffer_count * tcp_buffer_size)),
      free_tcp_buffers_((1u << tcp_buffer_count) - 1) {
    if (config.system_resolver) {
        system_ = std::make_unique<SystemResolver>(2, lookups_.capacity());
        if (!reactor_.add_input(system_->event_fd(), token(system_index, 0)))
            throw std::system_error(errno, std::generic_category(), "epoll_ctl");
    }
    load_resolv_conf(config);
    if (!hosts_path_.empty()) {
        watch_hosts();
        load_hosts();
    }
}

Resolver::~Resolver() = default;

// With servers named in the configuration, resolv.conf is not read: no search
// list, and the C library's default attempts and timeout.
void Resolver::load_resolv_conf(const Config& config) {
    if (system_) return;
    if (config.dns_servers.empty()) {
        std::string text;
        read_file("/etc/resolv.conf", text);
        resolv_ = parse_resolv_conf(text);
    } else {
        ResolvConf named;
        named.nameservers = config.dns_servers;
        resolv_ = std::move(named);
    }
}

void Resolver::reconfigure(const Config& config) noexcept {
    timeout_ms_ = config.dns_timeout_ms;
    prefer_ipv6_ = config.prefer_ipv6;
    cache_.set_ttl_bounds(config.dns_min_ttl_s, config.dns_max_ttl_s);
    try {
        load_resolv_conf(config);
    } catch (const std::exception& error) {
        log_warning("reload: DNS servers unchanged: %s", error.what());
    }
}

std::uint64_t Resolver::token(std::uint32_t index, std::uint32_t generation) const noexcept {
    return event_token(token_kind_, index, generation);
}

std::uint32_t Resolver::try_timeout_ms() const noexcept {
    std::uint32_t tries = std::max<std::uint32_t>(
        1, resolv_.attempts * static_cast<std::uint32_t>(resolv_.nameservers.size()));
    return std::clamp(timeout_ms_ / tries, min_try_ms, std::max(min_try_ms, resolv_.timeout_s * 1000));
}

std::uint16_t Resolver::random_id() noexcept {
    if (random_used_ + 2 > random_.size()) {
        if (::getrandom(random_.data(), random_.size(), GRND_NONBLOCK) != static_cast<ssize_t>(random_.size())) {
            // Only before the kernel's pool is ready: better than a fixed ID.
            timespec now;
            ::clock_gettime(CLOCK_MONOTONIC, &now);
            std::uint64_t state = static_cast<std::uint64_t>(now.tv_nsec) ^ (static_cast<std::uint64_t>(now.tv_sec) << 32);
            for (std::uint8_t& byte : random_) {
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                byte = static_cast<std::uint8_t>(state >> 56);
            }
        }
        random_used_ = 0;
    }
    std::uint16_t id = static_cast<std::uint16_t>(random_[random_used_] | (random_[random_used_ + 1] << 8));
    random_used_ += 2;
    return id;
}

int Resolver::ms_until_due(std::uint64_t now_ms, int cap_ms) const noexcept {
    return timers_.next_timeout_ms(now_ms, cap_ms);
}

// A lookup's timer is its earliest moment of interest: a try's deadline, the
// end of the resolution delay, or the lookup's own deadline.
void Resolver::rearm(std::uint32_t index) noexcept {
    const Lookup& lookup = lookups_[index];
    std::uint64_t due = lookup.deadline_ms;
    if (lookup.resolution_delay_until_ms != 0 && !lookup.delivered)
        due = std::min(due, lookup.resolution_delay_until_ms);
    for (const Query& query : lookup.queries)
        if (query.try_deadline_ms != 0) due = std::min(due, query.try_deadline_ms);
    timers_.arm(index, due);
}

void Resolver::expire(std::uint64_t now_ms) noexcept {
    timers_.expire(now_ms, [&](std::uint32_t index) { on_lookup_timer(index, now_ms); });
}

void Resolver::on_lookup_timer(std::uint32_t index, std::uint64_t now_ms) noexcept {
    Lookup& lookup = lookups_[index];
    for (int which = 0; which < 2; ++which) {
        Query& query = lookup.queries[which];
        if (!query.finished && query.try_deadline_ms != 0 && now_ms >= query.try_deadline_ms)
            try_failed(index, which, true, now_ms);
    }
    if (settle(index, now_ms)) return;
    // Past the deadline, a lookup already answered with one family just stops asking.
    if (now_ms >= lookup.deadline_ms)
        return finish(index, lookup.delivered ? LookupStatus::Found : LookupStatus::TimedOut, now_ms);
    rearm(index);
}

// ------------------------------------------------------------ hosts file

void Resolver::watch_hosts() noexcept {
    hosts_watch_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!hosts_watch_) {
        log_warning("hosts file %s: cannot watch it for changes: %s", hosts_path_.c_str(), std::strerror(errno));
        return;
    }
    std::size_t slash = hosts_path_.rfind('/');
    std::string directory = slash == std::string::npos ? "." : slash == 0 ? "/" : hosts_path_.substr(0, slash);
    ::inotify_add_watch(hosts_watch_.get(), directory.c_str(), directory_events | IN_ONLYDIR);
    hosts_file_watch_ = ::inotify_add_watch(hosts_watch_.get(), hosts_path_.c_str(), file_events);
    reactor_.add_input(hosts_watch_.get(), token(watch_index, 0));
}

// A file that cannot be read (being replaced, say) leaves the table as it was.
void Resolver::load_hosts() noexcept {
    std::string text;
    try {
        if (!read_file(hosts_path_, text)) return;
        hosts_.assign(parse_hosts(text));
    } catch (const std::exception& error) {
        log_warning("hosts file %s: %s", hosts_path_.c_str(), error.what());
    }
}

void Resolver::on_hosts_changed() noexcept {
    alignas(inotify_event) char events[4096];
    std::string_view file_name(hosts_path_);
    if (std::size_t slash = file_name.rfind('/'); slash != std::string_view::npos) file_name.remove_prefix(slash + 1);
    bool changed = false;
    ssize_t n;
    while ((n = ::read(hosts_watch_.get(), events, sizeof events)) > 0) {
        for (char* p = events; p < events + n;) {
            auto* event = reinterpret_cast<inotify_event*>(p);
            changed |= event->wd == hosts_file_watch_ || (event->mask & IN_Q_OVERFLOW) != 0 ||
                       (event->len != 0 && std::string_view(event->name) == file_name);
            p += sizeof(inotify_event) + event->len;
        }
    }
    if (!changed) return;
    // Replaced by a rename: the new file needs a watch of its own.
    hosts_file_watch_ = ::inotify_add_watch(hosts_watch_.get(), hosts_path_.c_str(), file_events);
    load_hosts();
    log_info("hosts file %s read: %zu names", hosts_path_.c_str(), hosts_.size());
}

// ------------------------------------------------------------ lookups

std::uint32_t Resolver::bucket_of(std::string_view key) const noexcept {
    return hash_name(key) % static_cast<std::uint32_t>(buckets_.size());
}

std::uint32_t Resolver::find_lookup(std::string_view key) const noexcept {
    for (std::uint32_t index = buckets_[bucket_of(key)]; index != none; index = lookups_[index].next_in_bucket)
        if (lookups_[index].key_view() == key) return index;
    return none;
}

void Resolver::unlink_lookup(std::uint32_t index) noexcept {
    Lookup& lookup = lookups_[index];
    std::uint32_t* link = &buckets_[bucket_of(lookup.key_view())];
    while (*link != none && *link != index) link = &lookups_[*link].next_in_bucket;
    if (*link == index) *link = lookup.next_in_bucket;
}

void Resolver::release_lookup(std::uint32_t index) noexcept {
    Lookup& lookup = lookups_[index];
    for (Query& query : lookup.queries) release_query(query);
    timers_.cancel(index);
    unlink_lookup(index);
    lookups_.release(index);
}

std::optional<LookupStatus> Resolver::start(std::string_view host, std::uint32_t waiter, std::uint64_t waiter_token,
                                            AddressList& out, std::uint64_t now_ms) noexcept {
    char key_buffer[DnsCache::max_key];
    if (waiter >= waiter_capacity_) return LookupStatus::Overloaded;
    std::size_t name_length = dns::normalise_name(host, key_buffer);
    if (name_length == 0) return LookupStatus::BadName;
    bool absolute = host.back() == '.';
    std::string_view name(key_buffer, name_length);
    std::size_t key_length = name_length;
    if (absolute && !resolv_.search.empty()) key_buffer[key_length++] = '.';
    std::string_view key(key_buffer, key_length);

    if (auto entries = hosts_.find(name); !entries.empty()) {
        dns::Reply a, aaaa;
        for (const HostsEntry& entry : entries) add_address(entry.address.family() == AF_INET ? a : aaaa, entry.address);
        fill(out, &a, &aaaa);
        return LookupStatus::Found;
    }
    const dns::Reply* a = cache_.find(key, dns::QueryType::A, now_ms);
    const dns::Reply* aaaa = cache_.find(key, dns::QueryType::AAAA, now_ms);
    std::uint32_t index = find_lookup(key);
    if (a && aaaa) {
        fill(out, a, aaaa);
        if (out.count != 0) return LookupStatus::Found;
        return a->outcome == dns::Outcome::NoSuchName ? LookupStatus::NoSuchName : LookupStatus::NoAddress;
    }
    // One family's addresses are enough to connect; the other is asked
    // again in the background, so the name does not stay one-family.
    if ((a && a->outcome == dns::Outcome::Addresses) || (aaaa && aaaa->outcome == dns::Outcome::Addresses)) {
        fill(out, a, aaaa);
        if (index == none) start_lookup(key, name_length, absolute, now_ms);
        return LookupStatus::Found;
    }
    if (index == none) {
        index = start_lookup(key, name_length, absolute, now_ms);
        if (index == none) return LookupStatus::Overloaded;
        // Every try may have failed at once (no descriptor, no route).
        if (auto status = verdict(index, now_ms)) {
            finish(index, *status, now_ms);
            return status;
        }
        rearm(index);
    }
    cancel(waiter);
    Waiter& entry = waiters_[waiter];
    Lookup& lookup = lookups_[index];
    entry.token = waiter_token;
    entry.lookup = index;
    entry.prev = none;
    entry.next = lookup.first_waiter;
    if (entry.next != none) waiters_[entry.next].prev = waiter;
    lookup.first_waiter = waiter;
    return std::nullopt;
}

// A new lookup, its queries sent; none when every slot is taken.
std::uint32_t Resolver::start_lookup(std::string_view key, std::size_t name_length, bool absolute,
                                     std::uint64_t now_ms) noexcept {
    auto slot = lookups_.acquire();
    if (!slot) return none;
    std::uint32_t index = *slot;
    Lookup& lookup = lookups_[index];
    std::memcpy(lookup.key, key.data(), key.size());
    lookup.key_length = static_cast<std::uint8_t>(key.size());
    lookup.name_length = static_cast<std::uint8_t>(name_length);
    lookup.absolute = absolute;
    lookup.deadline_ms = now_ms + timeout_ms_;
    std::uint32_t& bucket = buckets_[bucket_of(key)];
    lookup.next_in_bucket = bucket;
    bucket = index;
    if (system_) {
        std::uint64_t system_token = index | (static_cast<std::uint64_t>(lookups_.generation(index)) << 32);
        if (!system_->submit(lookup.name(), system_token)) {
            release_lookup(index);
            return none;
        }
    } else {
        next_search_name(lookup);
        ask(index, now_ms);
    }
    rearm(index);
    return index;
}

void Resolver::cancel(std::uint32_t waiter) noexcept {
    if (waiter >= waiter_capacity_) return;
    Waiter& entry = waiters_[waiter];
    if (entry.lookup == none) return;
    // The lookup carries on without this waiter: its answer still fills the cache.
    if (entry.prev != none) waiters_[entry.prev].next = entry.next;
    else lookups_[entry.lookup].first_waiter = entry.next;
    if (entry.next != none) waiters_[entry.next].prev = entry.prev;
    entry = Waiter{};
}

// The search list (resolv.conf(5)): a name with at least `ndots` dots is
// asked as it is first, others after the search domains; a final dot means
// only as it is.
bool Resolver::next_search_name(Lookup& lookup) noexcept {
    std::string_view name = lookup.name();
    std::size_t domains = lookup.absolute || system_ ? 0 : resolv_.search.size();
    bool as_is_first = domains == 0 ||
                       static_cast<std::size_t>(std::count(name.begin(), name.end(), '.')) >= resolv_.ndots;
    while (lookup.search_index <= domains) {
        std::size_t i = lookup.search_index++;
        std::string_view suffix;
        if (as_is_first) suffix = i == 0 ? std::string_view() : std::string_view(resolv_.search[i - 1]);
        else suffix = i < domains ? std::string_view(resolv_.search[i]) : std::string_view();
        std::size_t length = name.size() + (suffix.empty() ? 0 : suffix.size() + 1);
        if (length > dns::max_name) continue;
        std::memcpy(lookup.query_name, name.data(), name.size());
        if (!suffix.empty()) {
            lookup.query_name[name.size()] = '.';
            std::memcpy(lookup.query_name + name.size() + 1, suffix.data(), suffix.size());
        }
        lookup.query_name_length = static_cast<std::uint8_t>(length);
        return true;
    }
    return false;
}

// Both questions for the lookup's current name.
void Resolver::ask(std::uint32_t index, std::uint64_t now_ms) noexcept {
    for (Query& query : lookups_[index].queries) {
        release_query(query);
        query = Query{};
    }
    send_query(index, 0, now_ms);
    send_query(index, 1, now_ms);
}

void Resolver::release_query(Query& query) noexcept {
    query.socket.reset();
    if (query.tcp_buffer != no_buffer) free_tcp_buffers_ |= 1u << query.tcp_buffer;
    query.tcp_buffer = no_buffer;
    query.tcp = query.tcp_sending = false;
    query.try_deadline_ms = 0;
}

void Resolver::finish_query(Query& query, const dns::Reply& reply) noexcept {
    release_query(query);
    query.reply = reply;
    query.finished = true;
}

// Sends the next try over UDP, to the servers in turn, until one goes out or
// the tries (attempts × servers) are used up.
void Resolver::send_query(std::uint32_t index, int which, std::uint64_t now_ms) noexcept {
    Lookup& lookup = lookups_[index];
    Query& query = lookup.queries[which];
    release_query(query);
    std::uint8_t packet[dns::max_name + 32];
    std::size_t length = dns::write_query(0, {lookup.query_name, lookup.query_name_length}, query_types[which],
                                          packet, sizeof packet);
    // A search domain that cannot be a DNS name holds no such name.
    if (length == 0) return finish_query(query, dns::Reply{dns::Outcome::NoSuchName, 0, 0, {}});
    std::size_t servers = resolv_.nameservers.size();
    std::uint32_t max_tries = resolv_.attempts * static_cast<std::uint32_t>(servers);
    while (query.tries < max_tries) {
        const SocketAddress& server = resolv_.nameservers[query.tries % servers];
        ++query.tries;
        query.id = random_id();
        packet[0] = static_cast<std::uint8_t>(query.id >> 8);
        packet[1] = static_cast<std::uint8_t>(query.id);
        // A connected socket of its own: a random source port, and the kernel
        // drops datagrams from anyone but the server.
        Fd socket(::socket(server.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!socket || ::connect(socket.get(), server.get(), server.length) != 0 ||
            ::send(socket.get(), packet, length, 0) != static_cast<ssize_t>(length) ||
            !reactor_.add_input(socket.get(), token(index * 2 + which, lookups_.generation(index))))
            continue;
        query.socket = std::move(socket);
        query.try_deadline_ms = now_ms + try_timeout_ms();
        return;
    }
    finish_query(query, dns::Reply{dns::Outcome::ServerFailure, 0, 0, {}});
}

void Resolver::try_failed(std::uint32_t index, int which, bool timed_out, std::uint64_t now_ms) noexcept {
    lookups_[index].queries[which].timed_out |= timed_out;
    send_query(index, which, now_ms);
}

// RFC 1035 §4.2.2 / RFC 7766: the same question to the same server over TCP,
// each message behind a two-byte length.
void Resolver::start_tcp(std::uint32_t index, int which, std::uint64_t now_ms) noexcept {
    Lookup& lookup = lookups_[index];
    Query& query = lookup.queries[which];
    release_query(query);
    if (free_tcp_buffers_ == 0) return try_failed(index, which, false, now_ms);
    const SocketAddress& server = resolv_.nameservers[(query.tries - 1) % resolv_.nameservers.size()];
    Fd socket(::socket(server.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!socket || (::connect(socket.get(), server.get(), server.length) != 0 && errno != EINPROGRESS) ||
        !reactor_.add(socket.get(), token(index * 2 + which, lookups_.generation(index))))
        return try_failed(index, which, false, now_ms);
    query.tcp_buffer = static_cast<std::uint8_t>(__builtin_ctz(free_tcp_buffers_));
    free_tcp_buffers_ &= ~(1u << query.tcp_buffer);
    std::uint8_t* buffer = &tcp_buffers_[query.tcp_buffer * tcp_buffer_size];
    std::size_t length = dns::write_query(query.id, {lookup.query_name, lookup.query_name_length},
                                          query_types[which], buffer + 2, tcp_buffer_size - 2);
    buffer[0] = static_cast<std::uint8_t>(length >> 8);
    buffer[1] = static_cast<std::uint8_t>(length);
    query.socket = std::move(socket);
    query.tcp = query.tcp_sending = true;
    query.tcp_done = 0;
    query.try_deadline_ms = now_ms + try_timeout_ms();
}

void Resolver::read_udp(std::uint32_t index, int which, std::uint64_t now_ms) noexcept {
    Lookup& lookup = lookups_[index];
    Query& query = lookup.queries[which];
    std::uint8_t packet[4096];
    while (true) {
        ssize_t n = ::recv(query.socket.get(), packet, sizeof packet, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            // ECONNREFUSED and the like: ICMP says nobody serves DNS there.
            return try_failed(index, which, false, now_ms);
        }
        dns::Reply reply = dns::read_reply(packet, static_cast<std::size_t>(n), query.id,
                                           {lookup.query_name, lookup.query_name_length}, query_types[which]);
        switch (reply.outcome) {
        case dns::Outcome::NotOurs:
        case dns::Outcome::Malformed: continue;  // a stray or forged datagram: keep waiting
        case dns::Outcome::Truncated: return start_tcp(index, which, now_ms);
        case dns::Outcome::ServerFailure:
        case dns::Outcome::Refused: return try_failed(index, which, false, now_ms);
        default: return finish_query(query, reply);
        }
    }
}

void Resolver::drive_tcp(std::uint32_t index, int which, std::uint64_t now_ms) noexcept {
    Lookup& lookup = lookups_[index];
    Query& query = lookup.queries[which];
    std::uint8_t* buffer = &tcp_buffers_[query.tcp_buffer * tcp_buffer_size];
    if (query.tcp_sending) {
        std::uint32_t total = 2u + read16(buffer);
        while (query.tcp_done < total) {
            ssize_t n = ::send(query.socket.get(), buffer + query.tcp_done, total - query.tcp_done, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return;
                return try_failed(index, which, false, now_ms);
            }
            query.tcp_done += static_cast<std::uint32_t>(n);
        }
        query.tcp_sending = false;
        query.tcp_done = 0;
    }
    while (true) {
        ssize_t n = ::recv(query.socket.get(), buffer + query.tcp_done, tcp_buffer_size - query.tcp_done, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            return try_failed(index, which, false, now_ms);
        }
        if (n == 0) return try_failed(index, which, false, now_ms);
        query.tcp_done += static_cast<std::uint32_t>(n);
        if (query.tcp_done < 2) continue;
        std::uint32_t expected = read16(buffer);
        if (2 + expected > tcp_buffer_size) return try_failed(index, which, false, now_ms);
        if (query.tcp_done < 2 + expected) continue;
        dns::Reply reply = dns::read_reply(buffer + 2, expected, query.id,
                                           {lookup.query_name, lookup.query_name_length}, query_types[which]);
        if (!cacheable(reply)) return try_failed(index, which, false, now_ms);
        return finish_query(query, reply);
    }
}

void Resolver::on_event(std::uint32_t index, std::uint32_t generation, std::uint64_t now_ms) noexcept {
    if (index == system_index) return on_system_answers(now_ms);
    if (index == watch_index) return on_hosts_changed();
    std::uint32_t lookup_index = index / 2;
    int which = static_cast<int>(index % 2);
    if (!lookups_.live(lookup_index, generation)) return;
    Query& query = lookups_[lookup_index].queries[which];
    if (query.finished || !query.socket) return;
    if (query.tcp) drive_tcp(lookup_index, which, now_ms);
    else read_udp(lookup_index, which, now_ms);
    if (!settle(lookup_index, now_ms)) rearm(lookup_index);
}

void Resolver::on_system_answers(std::uint64_t now_ms) noexcept {
    system_->drain([&](const SystemResolver::Answer& answer) {
        auto index = static_cast<std::uint32_t>(answer.token & 0xffffffff);
        auto generation = static_cast<std::uint32_t>(answer.token >> 32);
        if (!lookups_.live(index, generation)) return;
        Lookup& lookup = lookups_[index];
        finish_query(lookup.queries[0], answer.a);
        finish_query(lookup.queries[1], answer.aaaa);
        settle(index, now_ms);
    });
}

// What the lookup's queries add up to so far; nullopt while they say too
// little. Moves on to the next search-list name when this one has no address.
std::optional<LookupStatus> Resolver::verdict(std::uint32_t index, std::uint64_t now_ms) noexcept {
    Lookup& lookup = lookups_[index];
    Query& a = lookup.queries[0];
    Query& aaaa = lookup.queries[1];
    bool found = (a.finished && a.reply.outcome == dns::Outcome::Addresses) ||
                 (aaaa.finished && aaaa.reply.outcome == dns::Outcome::Addresses);
    if (found) {
        if (a.finished && aaaa.finished) return LookupStatus::Found;
        if (lookup.delivered) return std::nullopt;
        // Both families in the list, so Happy Eyeballs has a fallback.
        if (lookup.resolution_delay_until_ms == 0) lookup.resolution_delay_until_ms = now_ms + resolution_delay_ms;
        if (now_ms >= lookup.resolution_delay_until_ms) return LookupStatus::Found;
        return std::nullopt;
    }
    if (!a.finished || !aaaa.finished) return std::nullopt;
    // Like the C library, a failing server does not stop the search list.
    lookup.saw_failure |= !is_negative(a.reply) || !is_negative(aaaa.reply);
    lookup.saw_no_data |= a.reply.outcome == dns::Outcome::NoData || aaaa.reply.outcome == dns::Outcome::NoData;
    lookup.saw_timeout |= a.timed_out || aaaa.timed_out;
    if (next_search_name(lookup)) {
        ask(index, now_ms);
        return verdict(index, now_ms);
    }
    if (lookup.saw_failure) return lookup.saw_timeout ? LookupStatus::TimedOut : LookupStatus::ServerFailure;
    return lookup.saw_no_data ? LookupStatus::NoAddress : LookupStatus::NoSuchName;
}

bool Resolver::settle(std::uint32_t index, std::uint64_t now_ms) noexcept {
    auto status = verdict(index, now_ms);
    if (status) finish(index, *status, now_ms);
    return status.has_value();
}

// Tells the waiters and caches the answers. A lookup that ended with one
// family still asked carries on without waiters until that answer is in.
void Resolver::finish(std::uint32_t index, LookupStatus status, std::uint64_t now_ms) noexcept {
    Lookup& lookup = lookups_[index];
    bool final_answer = status == LookupStatus::Found || status == LookupStatus::NoSuchName ||
                        status == LookupStatus::NoAddress;
    bool keep_asking = status == LookupStatus::Found && !lookup.delivered &&
                       !(lookup.queries[0].finished && lookup.queries[1].finished);
    const dns::Reply* replies[2] = {nullptr, nullptr};
    for (int which = 0; which < 2; ++which) {
        Query& query = lookup.queries[which];
        if (!query.finished || !cacheable(query.reply)) {
            // One family found, the other failing: it is not asked again for
            // every request, only once this has passed.
            if (status == LookupStatus::Found && !keep_asking)
                cache_.store(lookup.key_view(), query_types[which],
                             dns::Reply{dns::Outcome::NoData, failed_family_ttl_s, 0, {}}, now_ms);
            continue;
        }
        replies[which] = &query.reply;
        if (!final_answer) continue;
        dns::Reply kept = query.reply;
        // The cache answers with the verdict, not the last search name's.
        if (status == LookupStatus::NoAddress) kept.outcome = dns::Outcome::NoData;
        if (status == LookupStatus::NoSuchName) kept.outcome = dns::Outcome::NoSuchName;
        // No data without a SOA has no TTL of its own; beside the other
        // family's addresses it lasts as long as they do, or the name would
        // be asked again for every request.
        const Query& other = lookup.queries[1 - which];
        if (status == LookupStatus::Found && kept.outcome == dns::Outcome::NoData && kept.ttl == 0 &&
            other.finished && other.reply.outcome == dns::Outcome::Addresses)
            kept.ttl = other.reply.ttl;
        cache_.store(lookup.key_view(), query_types[which], kept, now_ms);
    }
    std::uint32_t first = lookup.first_waiter;
    lookup.first_waiter = none;
    if (first != none) {
        AddressList addresses;
        if (status == LookupStatus::Found) fill(addresses, replies[0], replies[1]);
        char name_copy[dns::max_name];
        std::size_t name_length = lookup.name_length;
        std::memcpy(name_copy, lookup.key, name_length);
        if (keep_asking) {
            lookup.delivered = true;
            rearm(index);
        } else {
            release_lookup(index);
        }
        // Detach every waiter before telling any, so a waiter that cancels
        // another while being told finds it already gone.
        for (std::uint32_t waiter = first; waiter != none; waiter = waiters_[waiter].next)
            waiters_[waiter].lookup = none;
        for (std::uint32_t waiter = first; waiter != none;) {
            Waiter entry = waiters_[waiter];
            waiters_[waiter] = Waiter{};
            deliver_(context_, entry.token, status, addresses, {name_copy, name_length});
            waiter = entry.next;
        }
        return;
    }
    if (keep_asking) {
        lookup.delivered = true;
        rearm(index);
    } else {
        release_lookup(index);
    }
}

// Preferred family first, then alternating (RFC 8305 §4, First Address Family Count 1).
void Resolver::fill(AddressList& out, const dns::Reply* a, const dns::Reply* aaaa) const noexcept {
    out = AddressList{};
    const dns::Reply* first = prefer_ipv6_ ? aaaa : a;
    const dns::Reply* second = prefer_ipv6_ ? a : aaaa;
    auto usable = [](const dns::Reply* reply) {
        return reply && reply->outcome == dns::Outcome::Addresses ? reply->count : std::uint8_t{0};
    };
    std::uint8_t first_count = usable(first), second_count = usable(second);
    std::uint8_t i = 0, j = 0;
    while (out.count < AddressList::capacity && (i < first_count || j < second_count)) {
        bool take_first = i < first_count && (j >= second_count || i <= j);
        const dns::Reply* from = take_first ? first : second;
        std::uint8_t& k = take_first ? i : j;
        out.addresses[out.count] = from->addresses[k++];
        if (from == aaaa) out.ipv6_mask = static_cast<std::uint8_t>(out.ipv6_mask | (1u << out.count));
        ++out.count;
    }
}

}  // namespace cproxy
