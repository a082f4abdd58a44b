#include "cproxy/reactor.hpp"

#include <cerrno>
#include <system_error>

namespace cproxy {

Reactor::Reactor() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

static bool register_fd(int epoll_fd, int operation, int fd, std::uint32_t events,
                        std::uint64_t token) noexcept {
    epoll_event event{};
    event.events = events;
    event.data.u64 = token;
    return ::epoll_ctl(epoll_fd, operation, fd, &event) == 0;
}

bool Reactor::add(int fd, std::uint64_t token) noexcept {
    return register_fd(epoll_.get(), EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, token);
}

bool Reactor::add_input(int fd, std::uint64_t token) noexcept {
    return register_fd(epoll_.get(), EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLET, token);
}

bool Reactor::rewatch(int fd, std::uint64_t token, bool output) noexcept {
    std::uint32_t events = EPOLLIN | EPOLLRDHUP | EPOLLET | (output ? EPOLLOUT : 0u);
    return register_fd(epoll_.get(), EPOLL_CTL_MOD, fd, events, token);
}

int Reactor::wait(int timeout_ms) noexcept {
    int n = ::epoll_wait(epoll_.get(), events_, max_events, timeout_ms);
    return n < 0 ? 0 : n;
}

}  // namespace cproxy
