// Where a worker posts its counters for whichever worker serves the stats
// endpoint: relaxed atomic stores by the owner once per loop iteration, relaxed
// loads by readers. No read-modify-write and no lock, and the owner's cache
// line moves to another CPU only when someone asks for the stats. A reader may
// see one field newer than another, which a scrape tolerates.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

#include "cproxy/metrics.hpp"

namespace cproxy {

class StatsBoard {
public:
    void publish(const WorkerStats& stats) noexcept {
        auto words = std::bit_cast<Words>(stats);
        for (std::size_t i = 0; i < words.size(); ++i) words_[i].store(words[i], std::memory_order_relaxed);
    }

    WorkerStats read() const noexcept {
        Words words;
        for (std::size_t i = 0; i < words.size(); ++i) words[i] = words_[i].load(std::memory_order_relaxed);
        return std::bit_cast<WorkerStats>(words);
    }

private:
    static_assert(sizeof(WorkerStats) % sizeof(std::uint64_t) == 0, "WorkerStats must be whole 64-bit words");
    using Words = std::array<std::uint64_t, sizeof(WorkerStats) / sizeof(std::uint64_t)>;

    // Its own cache lines: a neighbour's stores never invalidate them.
    alignas(64) std::array<std::atomic<std::uint64_t>, sizeof(WorkerStats) / sizeof(std::uint64_t)> words_{};
};

}  // namespace cproxy
