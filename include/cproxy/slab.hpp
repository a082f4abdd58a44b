// A fixed-capacity array of slots allocated once at start-up, with a free list
// and a generation per slot. A handle (index, generation) taken from a slot stops
// matching once the slot is released, which is how epoll events and timer or
// resolver completions meant for a previous occupant are recognised and dropped.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

namespace cproxy {

template <class T>
class Slab {
public:
    explicit Slab(std::uint32_t capacity)
        : slots_(std::make_unique<Slot[]>(capacity)), capacity_(capacity) {
        for (std::uint32_t i = 0; i < capacity; ++i) slots_[i].next_free = i + 1;
    }

    // Returns the index of a free slot whose value has been reset to T{}, or
    // nullopt when every slot is in use.
    std::optional<std::uint32_t> acquire() noexcept {
        if (free_head_ >= capacity_) return std::nullopt;
        std::uint32_t index = free_head_;
        Slot& slot = slots_[index];
        free_head_ = slot.next_free;
        slot.in_use = true;
        slot.value = T{};
        ++in_use_;
        return index;
    }

    void release(std::uint32_t index) noexcept {
        Slot& slot = slots_[index];
        slot.in_use = false;
        ++slot.generation;
        slot.next_free = free_head_;
        free_head_ = index;
        --in_use_;
    }

    T& operator[](std::uint32_t index) noexcept { return slots_[index].value; }
    const T& operator[](std::uint32_t index) const noexcept { return slots_[index].value; }
    std::uint32_t generation(std::uint32_t index) const noexcept { return slots_[index].generation; }
    bool live(std::uint32_t index, std::uint32_t generation) const noexcept {
        return index < capacity_ && slots_[index].in_use && slots_[index].generation == generation;
    }
    bool in_use(std::uint32_t index) const noexcept { return slots_[index].in_use; }
    std::uint32_t capacity() const noexcept { return capacity_; }
    std::uint32_t used() const noexcept { return in_use_; }

private:
    struct Slot {
        T value{};
        std::uint32_t generation = 0;
        std::uint32_t next_free = 0;
        bool in_use = false;
    };
    std::unique_ptr<Slot[]> slots_;
    std::uint32_t capacity_;
    std::uint32_t free_head_ = 0;
    std::uint32_t in_use_ = 0;
};

}  // namespace cproxy
