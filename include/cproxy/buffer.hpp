// Fixed-size I/O buffers from per-worker pools: the common 32 KiB ones, and a
// few large ones for request heads beyond that (max_header_size).
//
// The pool reserves address space for every buffer it may ever hand out in one
// mapping at start-up; the kernel backs a page only once a buffer is first used,
// so memory follows the busiest moment, not the configured capacity, and taking
// or returning a buffer on the request path is a free-list pop or push.
// A session holds a buffer only while bytes are in flight or a head is incomplete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

namespace cproxy {

// A response of up to about 32 KiB (head and body) is read in one call and
// sent in one: at 16 KiB, a 16 KiB file took two of each, and two segments
// to the client.
inline constexpr std::uint32_t buffer_size = 32768;
// Request heads start in a buffer this small, four to a page, and move to a
// regular one only when they outgrow it or a body, tunnel or rewrite needs the
// room: ten thousand clients with a request waiting then touch 10 MiB, not 40.
inline constexpr std::uint32_t head_buffer_size = 1024;

class BufferPool;

class Buffer {
public:
    // Bytes waiting to be consumed.
    const char* data() const noexcept { return storage_ + begin_; }
    char* data() noexcept { return storage_ + begin_; }
    std::uint32_t size() const noexcept { return end_ - begin_; }
    bool empty() const noexcept { return begin_ == end_; }
    std::string_view view() const noexcept { return {data(), size()}; }

    // Free space after the data.
    char* space() noexcept { return storage_ + end_; }
    std::uint32_t space_size() const noexcept { return capacity_ - end_; }
    std::uint32_t capacity() const noexcept { return capacity_; }

    void commit(std::uint32_t n) noexcept { end_ += n; }
    void consume(std::uint32_t n) noexcept {
        begin_ += n;
        if (begin_ == end_) begin_ = end_ = 0;
    }
    // Moves the data to the start so a head always begins at a fixed address.
    void compact() noexcept {
        if (begin_ == 0) return;
        std::memmove(storage_, storage_ + begin_, size());
        end_ -= begin_;
        begin_ = 0;
    }
    void clear() noexcept { begin_ = end_ = 0; }
    // Sets how many bytes the data holds, after the caller rewrote it in place.
    void resize(std::uint32_t size) noexcept { end_ = begin_ + size; }
    // Replaces `old_length` bytes at `offset` (from data()) with `text`,
    // keeping whatever follows them. False, changing nothing but the data's
    // place, if the result would not fit.
    bool replace(std::uint32_t offset, std::uint32_t old_length, std::string_view text) noexcept {
        compact();
        std::uint32_t tail = size() - offset - old_length;
        if (offset + text.size() + tail > capacity_) return false;
        std::memmove(storage_ + offset + text.size(), storage_ + offset + old_length, tail);
        if (!text.empty()) std::memcpy(storage_ + offset, text.data(), text.size());
        end_ = offset + static_cast<std::uint32_t>(text.size()) + tail;
        return true;
    }

private:
    friend class BufferPool;
    char* storage_ = nullptr;
    BufferPool* owner_ = nullptr;
    std::uint32_t capacity_ = 0;
    std::uint32_t begin_ = 0;
    std::uint32_t end_ = 0;
    Buffer* next_free_ = nullptr;
};

class BufferPool {
public:
    BufferPool(std::uint32_t count, std::uint32_t buffer_bytes = buffer_size);
    ~BufferPool();
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;

    // nullptr when every buffer is out: the caller applies backpressure.
    // Buffers given back are reused first, the most recent first, so a lightly
    // loaded proxy keeps touching the same few pages.
    Buffer* acquire() noexcept {
        Buffer* buffer = free_head_;
        if (buffer) {
            free_head_ = buffer->next_free_;
        } else if (next_unused_ < count_) {
            buffer = std::construct_at(buffers_ + next_unused_);
            buffer->storage_ = region_ + static_cast<std::size_t>(next_unused_) * buffer_bytes_;
            buffer->owner_ = this;
            buffer->capacity_ = buffer_bytes_;
            ++next_unused_;
        } else {
            return nullptr;
        }
        buffer->clear();
        ++in_use_;
        return buffer;
    }
    // Returns `buffer` to the pool it came from, whichever pool is asked.
    void release(Buffer* buffer) noexcept {
        BufferPool& owner = *buffer->owner_;
        buffer->next_free_ = owner.free_head_;
        owner.free_head_ = buffer;
        --owner.in_use_;
    }
    std::uint32_t in_use() const noexcept { return in_use_; }
    std::uint32_t capacity() const noexcept { return count_; }

private:
    // Neither the descriptors nor the region are touched before a buffer is
    // first handed out.
    Buffer* buffers_;
    char* region_ = nullptr;
    std::size_t region_size_ = 0;
    Buffer* free_head_ = nullptr;
    std::uint32_t count_;
    std::uint32_t buffer_bytes_;
    std::uint32_t next_unused_ = 0;  // buffers from here on were never handed out
    std::uint32_t in_use_ = 0;
};

}  // namespace cproxy
