#include "cproxy/resolver.hpp"

#include <netdb.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "cproxy/http_parser.hpp"

namespace cproxy {

static std::uint32_t hash_name(std::string_view host) noexcept {
    std::uint32_t hash = 2166136261u;
    for (char c : host) {
        unsigned char lower = static_cast<unsigned char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
        hash = (hash ^ lower) * 16777619u;
    }
    return hash;
}

Resolver::Resolver(unsigned threads, std::uint32_t queue_capacity)
    : event_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      capacity_(queue_capacity),
      pending_(std::make_unique<Job[]>(queue_capacity)),
      done_(std::make_unique<Job[]>(queue_capacity)),
      cache_(std::make_unique<CacheEntry[]>(cache_slots)) {
    if (!event_fd_) throw std::system_error(errno, std::generic_category(), "eventfd");
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

Resolver::~Resolver() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_) thread.join();
}

Resolver::CacheResult Resolver::lookup(std::string_view host, std::uint64_t now_ms,
                                       SocketAddress& out) const noexcept {
    const CacheEntry& entry = cache_[hash_name(host) % cache_slots];
    if (entry.expires_ms <= now_ms || entry.host_length != host.size() ||
        !http::iequals(std::string_view(entry.host, entry.host_length), host))
        return CacheResult::Miss;
    if (!entry.ok) return CacheResult::Failed;
    out = entry.address;
    return CacheResult::Hit;
}

void Resolver::remember(std::string_view host, const Answer& answer, std::uint64_t now_ms) noexcept {
    // A temporary failure says nothing about the name; do not cache it.
    if (!answer.ok && answer.error == EAI_AGAIN) return;
    CacheEntry& entry = cache_[hash_name(host) % cache_slots];
    std::memcpy(entry.host, host.data(), host.size());
    entry.host_length = static_cast<std::uint8_t>(host.size());
    entry.ok = answer.ok;
    entry.address = answer.address;
    entry.expires_ms = now_ms + (answer.ok ? positive_ttl_ms : negative_ttl_ms);
}

bool Resolver::submit(std::string_view host, std::uint64_t token) noexcept {
    if (host.empty() || host.size() > max_name || in_flight_ >= capacity_) return false;
    {
        std::lock_guard lock(mutex_);
        Job& job = pending_[(pending_head_ + pending_count_) % capacity_];
        std::memcpy(job.host, host.data(), host.size());
        job.host[host.size()] = '\0';
        job.host_length = static_cast<std::uint8_t>(host.size());
        job.answer = Answer{token, false, {}, 0};
        ++pending_count_;
    }
    ++in_flight_;
    wake_.notify_one();
    return true;
}

void Resolver::run() noexcept {
    while (true) {
        Job job;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || pending_count_ > 0; });
            if (stopping_) return;
            job = pending_[pending_head_];
            pending_head_ = (pending_head_ + 1) % capacity_;
            --pending_count_;
        }
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* result = nullptr;
        int rc = ::getaddrinfo(job.host, nullptr, &hints, &result);
        if (rc == 0 && result) {
            std::memcpy(&job.answer.address.storage, result->ai_addr, result->ai_addrlen);
            job.answer.address.length = result->ai_addrlen;
            job.answer.ok = true;
            ::freeaddrinfo(result);
        } else {
            job.answer.error = rc == 0 ? EAI_NONAME : rc;
        }
        {
            std::lock_guard lock(mutex_);
            done_[(done_head_ + done_count_) % capacity_] = job;
            ++done_count_;
        }
        std::uint64_t one = 1;
        [[maybe_unused]] auto written = ::write(event_fd_.get(), &one, sizeof one);
    }
}

}  // namespace cproxy
