// The process's workers: one thread each, with its own stats board. The main
// thread builds the group at start-up, then only talks to it through control
// messages until every worker's loop has ended.
#pragma once

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "cproxy/config.hpp"
#include "cproxy/fd.hpp"
#include "cproxy/worker.hpp"

namespace cproxy {

class WorkerGroup {
public:
    // One worker per entry of `setups` (boards are filled in here). Throws
    // std::system_error.
    WorkerGroup(std::shared_ptr<const Config> config, std::vector<WorkerSetup> setups);
    // Stops any worker still running, at once, and waits for its thread.
    ~WorkerGroup();
    WorkerGroup(const WorkerGroup&) = delete;
    WorkerGroup& operator=(const WorkerGroup&) = delete;

    // Starts the threads; with `cpus` not empty, worker i runs only on
    // cpus[i % cpus.size()].
    void start(const std::vector<int>& cpus);
    std::uint32_t size() const noexcept { return static_cast<std::uint32_t>(workers_.size()); }

    // Hands `message` to every worker in turn; with `wait`, each has acted on
    // it (or ended) before the next gets it, so their log lines come in order.
    void broadcast(const ControlMessage& message, bool wait);
    // Readable once some worker's loop has ended; running() reads it.
    int finished_fd() const noexcept { return finished_.get(); }
    bool running() noexcept;
    // Open client connections of all workers, as last published.
    std::uint64_t open_connections() const noexcept;
    // After running() has turned false: the threads are joined.
    void join() noexcept;
    void close_all_sessions() noexcept;  // still open after a second stop signal
    Counters counters() const noexcept;
    std::uint32_t open_sessions() const noexcept;

private:
    std::unique_ptr<StatsBoard[]> boards_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<std::thread> threads_;
    Fd finished_;  // an eventfd counting workers whose loop ended
    std::uint32_t finished_count_ = 0;
};

}  // namespace cproxy
