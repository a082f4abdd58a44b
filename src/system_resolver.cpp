#include "cproxy/system_resolver.hpp"

#include <netdb.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace cproxy {

namespace {

void add_address(dns::Reply& reply, const void* bytes, std::size_t size) noexcept {
    reply.outcome = dns::Outcome::Addresses;
    reply.ttl = SystemResolver::positive_ttl_s;
    if (reply.count < dns::max_addresses) std::memcpy(reply.addresses[reply.count++].data(), bytes, size);
}

// The two families' answers as DNS would give them.
void fill_answer(SystemResolver::Answer& answer, int rc, const addrinfo* result) noexcept {
    dns::Outcome none = rc == 0 ? dns::Outcome::NoData
                        : rc == EAI_NONAME || rc == EAI_NODATA ? dns::Outcome::NoSuchName
                                                               : dns::Outcome::ServerFailure;
    std::uint32_t ttl = rc == 0 ? SystemResolver::positive_ttl_s : SystemResolver::negative_ttl_s;
    answer.a = dns::Reply{none, ttl, 0, {}};
    answer.aaaa = dns::Reply{none, ttl, 0, {}};
    for (const addrinfo* entry = result; rc == 0 && entry; entry = entry->ai_next) {
        if (entry->ai_family == AF_INET)
            add_address(answer.a, &reinterpret_cast<const sockaddr_in*>(entry->ai_addr)->sin_addr, 4);
        else if (entry->ai_family == AF_INET6)
            add_address(answer.aaaa, &reinterpret_cast<const sockaddr_in6*>(entry->ai_addr)->sin6_addr, 16);
    }
}

}  // namespace

SystemResolver::SystemResolver(unsigned threads, std::uint32_t queue_capacity)
    : event_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      capacity_(queue_capacity),
      pending_(std::make_unique<Job[]>(queue_capacity)),
      done_(std::make_unique<Job[]>(queue_capacity)) {
    if (!event_fd_) throw std::system_error(errno, std::generic_category(), "eventfd");
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

SystemResolver::~SystemResolver() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_) thread.join();
}

bool SystemResolver::submit(std::string_view host, std::uint64_t token) noexcept {
    if (host.empty() || host.size() > dns::max_name + 1 || in_flight_ >= capacity_) return false;
    {
        std::lock_guard lock(mutex_);
        Job& job = pending_[(pending_head_ + pending_count_) % capacity_];
        std::memcpy(job.host, host.data(), host.size());
        job.host[host.size()] = '\0';
        job.answer.token = token;
        ++pending_count_;
    }
    ++in_flight_;
    wake_.notify_one();
    return true;
}

void SystemResolver::run() noexcept {
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
        fill_answer(job.answer, rc, result);
        if (result) ::freeaddrinfo(result);
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
