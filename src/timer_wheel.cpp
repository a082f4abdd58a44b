#include "cproxy/timer_wheel.hpp"

namespace cproxy {

TimerWheel::TimerWheel(std::uint32_t entries, std::uint64_t now_ms)
    : nodes_(std::make_unique<Node[]>(entries)),
      heads_(std::make_unique<std::uint32_t[]>(slot_count)),
      current_tick_(now_ms / tick_ms) {
    for (std::uint32_t i = 0; i < slot_count; ++i) heads_[i] = none;
}

void TimerWheel::arm(std::uint32_t index, std::uint64_t deadline_ms) noexcept {
    if (nodes_[index].slot != unlinked) unlink(index);
    std::uint64_t tick = deadline_ms / tick_ms;
    // A deadline already past fires on the next expire() instead of waiting a lap.
    if (tick < current_tick_) tick = current_tick_;
    std::uint32_t slot = static_cast<std::uint32_t>(tick % slot_count);
    Node& node = nodes_[index];
    node.deadline = deadline_ms;
    node.slot = slot;
    node.prev = none;
    node.next = heads_[slot];
    if (node.next != none) nodes_[node.next].prev = index;
    heads_[slot] = index;
    ++count_;
}

void TimerWheel::cancel(std::uint32_t index) noexcept {
    if (nodes_[index].slot != unlinked) unlink(index);
}

void TimerWheel::unlink(std::uint32_t index) noexcept {
    Node& node = nodes_[index];
    if (node.prev != none) nodes_[node.prev].next = node.next;
    else heads_[node.slot] = node.next;
    if (node.next != none) nodes_[node.next].prev = node.prev;
    node.prev = node.next = none;
    node.slot = unlinked;
    --count_;
}

int TimerWheel::next_timeout_ms(std::uint64_t now_ms, int cap_ms) const noexcept {
    if (count_ == 0) return cap_ms;
    std::uint64_t now_tick = now_ms / tick_ms;
    std::uint64_t limit = static_cast<std::uint64_t>(cap_ms) / tick_ms + 1;
    if (limit > slot_count) limit = slot_count;
    for (std::uint64_t t = current_tick_; t < current_tick_ + limit; ++t) {
        if (heads_[t % slot_count] == none) continue;
        if (t < now_tick) return 0;
        // The tick in progress may hold a deadline a few ms ahead: sleep, do not spin.
        if (t == now_tick) return 1;
        std::uint64_t wait = (t - now_tick) * tick_ms;
        return wait < static_cast<std::uint64_t>(cap_ms) ? static_cast<int>(wait) : cap_ms;
    }
    return cap_ms;
}

}  // namespace cproxy
