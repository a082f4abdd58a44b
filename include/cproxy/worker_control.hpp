// What the main thread asks of a worker (reload, flush or reopen the access
// log, report, stop), handed over through an eventfd the worker's loop watches.
// The mutex is taken only here, a handful of times per signal, never on the
// request path. post() returns a ticket that wait() blocks on until the worker
// has acted, so the main thread knows when an old configuration or log file is
// no longer in use.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>

#include "cproxy/config.hpp"
#include "cproxy/fd.hpp"

namespace cproxy {

enum class ControlCommand : std::uint8_t {
    Reconfigure,     // config and access_log_fd are the new ones
    FlushAccessLog,  // before the log files are reopened
    LogResources,    // SIGUSR2
    BeginShutdown,   // the first stop signal
    StopNow,         // the second
};

struct ControlMessage {
    ControlCommand command;
    std::shared_ptr<const Config> config;
    int access_log_fd = -1;
};

class ControlChannel {
public:
    ControlChannel();  // throws std::system_error
    int fd() const noexcept { return wake_.get(); }

    // Main thread.
    std::uint64_t post(ControlMessage message);
    // Returns once the message with this ticket was handled, or the worker has
    // ended and will handle nothing more.
    void wait(std::uint64_t ticket);

    // Worker thread: after its eventfd fired, takes messages one by one and
    // reports each done.
    bool take(ControlMessage& message) noexcept;
    void done() noexcept;
    // The worker's loop has returned.
    void close() noexcept;

private:
    Fd wake_;
    std::mutex mutex_;
    std::condition_variable handled_;
    std::deque<ControlMessage> queue_;
    std::uint64_t posted_ = 0;
    std::uint64_t done_ = 0;
    bool closed_ = false;
};

}  // namespace cproxy
