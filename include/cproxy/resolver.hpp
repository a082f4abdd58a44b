// Name resolution that never blocks the event loop: a small pool of threads runs
// getaddrinfo and hands answers back through an eventfd the loop watches, and a
// short direct-mapped cache answers repeated names without leaving the loop.
// The two queues are the one place cproxy takes a lock, and only for names that
// miss the cache; IP literals never come here.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "cproxy/address.hpp"
#include "cproxy/fd.hpp"

namespace cproxy {

class Resolver {
public:
    static constexpr std::size_t max_name = 255;
    static constexpr std::uint32_t positive_ttl_ms = 30'000;
    static constexpr std::uint32_t negative_ttl_ms = 5'000;

    enum class CacheResult { Hit, Failed, Miss };
    struct Answer {
        std::uint64_t token;
        bool ok;
        SocketAddress address;  // port 0; the caller sets it
        int error;              // getaddrinfo code when !ok
    };

    Resolver(unsigned threads, std::uint32_t queue_capacity);  // throws std::system_error
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    int event_fd() const noexcept { return event_fd_.get(); }
    CacheResult lookup(std::string_view host, std::uint64_t now_ms, SocketAddress& out) const noexcept;
    // Queues a lookup; false when the queue is full or the name too long.
    bool submit(std::string_view host, std::uint64_t token) noexcept;

    // Called when event_fd is readable: caches every finished answer and passes it on.
    template <class F>
    void drain(std::uint64_t now_ms, F&& on_answer) {
        std::uint64_t ignored;
        while (::read(event_fd_.get(), &ignored, sizeof ignored) > 0) {}
        while (true) {
            Job job;
            {
                std::lock_guard lock(mutex_);
                if (done_count_ == 0) break;
                job = done_[done_head_];
                done_head_ = (done_head_ + 1) % capacity_;
                --done_count_;
            }
            --in_flight_;
            std::string_view host(job.host, job.host_length);
            remember(host, job.answer, now_ms);
            on_answer(job.answer, host);
        }
    }

private:
    struct Job {
        char host[max_name + 1];
        std::uint8_t host_length;
        Answer answer;
    };
    struct CacheEntry {
        char host[max_name + 1];
        std::uint8_t host_length = 0;
        bool ok = false;
        std::uint64_t expires_ms = 0;
        SocketAddress address;
    };
    static constexpr std::uint32_t cache_slots = 512;

    void run() noexcept;
    void remember(std::string_view host, const Answer& answer, std::uint64_t now_ms) noexcept;

    Fd event_fd_;
    std::uint32_t capacity_;
    std::unique_ptr<Job[]> pending_;
    std::unique_ptr<Job[]> done_;
    std::uint32_t pending_head_ = 0, pending_count_ = 0;
    std::uint32_t done_head_ = 0, done_count_ = 0;
    std::uint32_t in_flight_ = 0;  // loop thread only: bounds both queues
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::unique_ptr<CacheEntry[]> cache_;
    std::vector<std::thread> threads_;
};

}  // namespace cproxy
