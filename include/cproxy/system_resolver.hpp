// `resolver system`: name lookups through getaddrinfo(3), so everything the C
// library knows (nsswitch, mDNS, NIS) applies. A small pool of threads runs the
// calls and hands the answers back through an eventfd the loop watches. The two
// queues are the one place cproxy takes a lock, and only on a cache miss with
// this resolver chosen; the built-in resolver takes none.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "cproxy/dns_message.hpp"
#include "cproxy/fd.hpp"

namespace cproxy {

class SystemResolver {
public:
    // getaddrinfo gives no TTL: answers are kept this long.
    static constexpr std::uint32_t positive_ttl_s = 30;
    static constexpr std::uint32_t negative_ttl_s = 5;

    struct Answer {
        std::uint64_t token;
        dns::Reply a;
        dns::Reply aaaa;
    };

    SystemResolver(unsigned threads, std::uint32_t queue_capacity);  // throws std::system_error
    ~SystemResolver();
    SystemResolver(const SystemResolver&) = delete;
    SystemResolver& operator=(const SystemResolver&) = delete;

    int event_fd() const noexcept { return event_fd_.get(); }
    // Queues a lookup; false when the queue is full or the name too long.
    bool submit(std::string_view host, std::uint64_t token) noexcept;

    // Called when event_fd is readable: passes on every finished answer.
    template <class F>
    void drain(F&& on_answer) {
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
            on_answer(job.answer);
        }
    }

private:
    struct Job {
        char host[dns::max_name + 2];
        Answer answer;
    };

    void run() noexcept;

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
    std::vector<std::thread> threads_;
};

}  // namespace cproxy
