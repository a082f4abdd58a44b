#include "cproxy/worker_control.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace cproxy {

ControlChannel::ControlChannel() : wake_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (!wake_) throw std::system_error(errno, std::generic_category(), "eventfd");
}

std::uint64_t ControlChannel::post(ControlMessage message) {
    std::uint64_t ticket;
    {
        std::lock_guard lock(mutex_);
        ticket = ++posted_;
        if (closed_) return ticket;
        queue_.push_back(std::move(message));
    }
    std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(wake_.get(), &one, sizeof one);
    return ticket;
}

void ControlChannel::wait(std::uint64_t ticket) {
    std::unique_lock lock(mutex_);
    handled_.wait(lock, [&] { return closed_ || done_ >= ticket; });
}

bool ControlChannel::take(ControlMessage& message) noexcept {
    std::uint64_t count;
    [[maybe_unused]] auto read = ::read(wake_.get(), &count, sizeof count);
    std::lock_guard lock(mutex_);
    if (queue_.empty()) return false;
    message = std::move(queue_.front());
    queue_.pop_front();
    return true;
}

void ControlChannel::done() noexcept {
    {
        std::lock_guard lock(mutex_);
        ++done_;
    }
    handled_.notify_all();
}

void ControlChannel::close() noexcept {
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
        queue_.clear();
    }
    handled_.notify_all();
}

}  // namespace cproxy
