#include "cproxy/buffer.hpp"

#include <sys/mman.h>

#include <new>

namespace cproxy {

BufferPool::BufferPool(std::uint32_t count, std::uint32_t buffer_bytes)
    : buffers_(std::make_unique<Buffer[]>(count)), count_(count) {
    region_size_ = static_cast<std::size_t>(count) * buffer_bytes;
    if (region_size_ == 0) return;  // an unused pool maps nothing
    void* region = ::mmap(nullptr, region_size_, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED) throw std::bad_alloc();
    region_ = static_cast<char*>(region);
    // Chain in reverse so the first buffers handed out are the lowest addresses:
    // a lightly loaded proxy keeps touching the same few pages.
    for (std::uint32_t i = count; i-- > 0;) {
        buffers_[i].storage_ = region_ + static_cast<std::size_t>(i) * buffer_bytes;
        buffers_[i].owner_ = this;
        buffers_[i].capacity_ = buffer_bytes;
        buffers_[i].next_free_ = free_head_;
        free_head_ = &buffers_[i];
    }
}

BufferPool::~BufferPool() {
    if (region_) ::munmap(region_, region_size_);
}

}  // namespace cproxy
