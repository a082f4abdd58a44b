// A hashed timing wheel of per-session deadlines: arm and cancel are O(1)
// list operations, and expiry visits only the ticks that have passed.
//
// Each session has at most one entry, keyed by its slab index. A deadline beyond
// the wheel's span sits in the slot it hashes to and is re-armed when visited
// early; callers may also keep a later deadline of their own and re-arm when the
// entry fires (so pushing a deadline forward on every read costs nothing).
#pragma once

#include <cstdint>
#include <memory>

namespace cproxy {

class TimerWheel {
public:
    static constexpr std::uint32_t tick_ms = 8;
    static constexpr std::uint32_t slot_count = 4096;  // span: about 33 s

    TimerWheel(std::uint32_t entries, std::uint64_t now_ms);

    void arm(std::uint32_t index, std::uint64_t deadline_ms) noexcept;
    void cancel(std::uint32_t index) noexcept;
    bool armed(std::uint32_t index) const noexcept { return nodes_[index].slot != unlinked; }
    std::uint64_t deadline(std::uint32_t index) const noexcept { return nodes_[index].deadline; }

    // Calls on_expired(index) for each entry whose deadline is <= now_ms; the
    // entry is unlinked before the call, so the callback may re-arm it.
    template <class F>
    void expire(std::uint64_t now_ms, F&& on_expired) {
        std::uint64_t target_tick = now_ms / tick_ms;
        while (current_tick_ <= target_tick) {
            std::uint32_t slot = static_cast<std::uint32_t>(current_tick_ % slot_count);
            std::uint32_t index = heads_[slot];
            while (index != none) {
                std::uint32_t next = nodes_[index].next;
                if (nodes_[index].deadline <= now_ms) {
                    unlink(index);
                    on_expired(index);
                } else if (nodes_[index].deadline / tick_ms > current_tick_) {
                    unlink(index);
                    arm(index, nodes_[index].deadline);
                }
                index = next;
            }
            if (current_tick_ == target_tick) break;
            ++current_tick_;
        }
    }

    // Milliseconds until the earliest occupied tick, capped at `cap_ms`; 0 if due.
    int next_timeout_ms(std::uint64_t now_ms, int cap_ms) const noexcept;
    std::uint32_t size() const noexcept { return count_; }

private:
    static constexpr std::uint32_t none = UINT32_MAX;
    static constexpr std::uint32_t unlinked = UINT32_MAX;
    struct Node {
        std::uint64_t deadline = 0;
        std::uint32_t prev = none;
        std::uint32_t next = none;
        std::uint32_t slot = unlinked;
    };
    void unlink(std::uint32_t index) noexcept;

    std::unique_ptr<Node[]> nodes_;
    std::unique_ptr<std::uint32_t[]> heads_;
    std::uint64_t current_tick_;
    std::uint32_t count_ = 0;
};

}  // namespace cproxy
