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
    // The memory is reserved, not touched: a slot is built the first time it
    // is handed out, so an idle worker sized for many sessions stays small.
    explicit Slab(std::uint32_t capacity)
        : slots_(std::allocator<Slot>().allocate(capacity)), capacity_(capacity) {}
    ~Slab() {
        std::destroy_n(slots_, built_);
        std::allocator<Slot>().deallocate(slots_, capacity_);
    }
    Slab(const Slab&) = delete;
    Slab& operator=(const Slab&) = delete;

    // Returns the index of a free slot whose value has been reset to T{}, or
    // nullopt when every slot is in use. Released slots are reused first.
    std::optional<std::uint32_t> acquire() noexcept {
        std::uint32_t index;
        if (free_head_ != none) {
            index = free_head_;
            free_head_ = slots_[index].next_free;
            slots_[index].value = T{};
        } else if (built_ < capacity_) {
            index = built_++;
            std::construct_at(&slots_[index]);
        } else {
            return std::nullopt;
        }
        slots_[index].in_use = true;
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
        return index < built_ && slots_[index].in_use && slots_[index].generation == generation;
    }
    bool in_use(std::uint32_t index) const noexcept { return index < built_ && slots_[index].in_use; }
    std::uint32_t capacity() const noexcept { return capacity_; }
    std::uint32_t used() const noexcept { return in_use_; }

private:
    static constexpr std::uint32_t none = UINT32_MAX;

    struct Slot {
        T value{};
        std::uint32_t generation = 0;
        std::uint32_t next_free = none;
        bool in_use = false;
    };
    Slot* slots_;
    std::uint32_t capacity_;
    std::uint32_t built_ = 0;  // slots [0, built_) have been constructed
    std::uint32_t free_head_ = none;
    std::uint32_t in_use_ = 0;
};

}  // namespace cproxy
