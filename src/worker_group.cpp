#include "cproxy/worker_group.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "cproxy/log.hpp"

namespace cproxy {

WorkerGroup::WorkerGroup(std::shared_ptr<const Config> config, std::vector<WorkerSetup> setups)
    : boards_(std::make_unique<StatsBoard[]>(setups.size())),
      finished_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (!finished_) throw std::system_error(errno, std::generic_category(), "eventfd");
    std::span<StatsBoard> boards(boards_.get(), setups.size());
    for (WorkerSetup& setup : setups) {
        setup.boards = boards;
        workers_.push_back(std::make_unique<Worker>(config, std::move(setup)));
    }
}

WorkerGroup::~WorkerGroup() {
    if (threads_.empty()) return;
    broadcast(ControlMessage{ControlCommand::StopNow, nullptr, -1}, false);
    join();
}

void WorkerGroup::start(const std::vector<int>& cpus) {
    for (std::uint32_t i = 0; i < workers_.size(); ++i) {
        Worker* worker = workers_[i].get();
        int cpu = cpus.empty() ? -1 : cpus[i % cpus.size()];
        threads_.emplace_back([this, worker, i, cpu] {
            char name[16];
            std::snprintf(name, sizeof name, "cproxy-w%u", i);
            ::pthread_setname_np(::pthread_self(), name);
            if (cpu >= 0) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(cpu, &set);
                if (int error = ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set))
                    log_warning("worker %u: cannot pin to CPU %d: %s", i, cpu, std::strerror(error));
            }
            worker->run();
            std::uint64_t one = 1;
            [[maybe_unused]] auto written = ::write(finished_.get(), &one, sizeof one);
        });
    }
}

void WorkerGroup::broadcast(const ControlMessage& message, bool wait) {
    for (auto& worker : workers_) {
        std::uint64_t ticket = worker->control().post(message);
        if (wait) worker->control().wait(ticket);
    }
}

bool WorkerGroup::running() noexcept {
    std::uint64_t ended = 0;
    if (::read(finished_.get(), &ended, sizeof ended) == sizeof ended)
        finished_count_ += static_cast<std::uint32_t>(ended);
    return finished_count_ < threads_.size();
}

std::uint64_t WorkerGroup::open_connections() const noexcept {
    std::uint64_t open = 0;
    for (std::size_t i = 0; i < workers_.size(); ++i) open += boards_[i].read().connections_open;
    return open;
}

void WorkerGroup::join() noexcept {
    for (std::thread& thread : threads_)
        if (thread.joinable()) thread.join();
    threads_.clear();
}

void WorkerGroup::close_all_sessions() noexcept {
    for (auto& worker : workers_) worker->close_all_sessions();
}

Counters WorkerGroup::counters() const noexcept {
    Counters total;
    for (const auto& worker : workers_) total += worker->counters();
    return total;
}

std::uint32_t WorkerGroup::open_sessions() const noexcept {
    std::uint32_t open = 0;
    for (const auto& worker : workers_) open += worker->open_sessions();
    return open;
}

}  // namespace cproxy
