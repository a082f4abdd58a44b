#include "cproxy/buffer.hpp"

#include <sys/mman.h>

#include <memory>
#include <new>
#include <type_traits>

namespace cproxy {

BufferPool::BufferPool(std::uint32_t count, std::uint32_t buffer_bytes)
    : buffers_(std::allocator<Buffer>().allocate(count)), count_(count), buffer_bytes_(buffer_bytes) {
    region_size_ = static_cast<std::size_t>(count) * buffer_bytes;
    if (region_size_ == 0) return;  // an unused pool maps nothing
    void* region = ::mmap(nullptr, region_size_, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED) throw std::bad_alloc();
    region_ = static_cast<char*>(region);
}

BufferPool::~BufferPool() {
    static_assert(std::is_trivially_destructible_v<Buffer>);
    std::allocator<Buffer>().deallocate(buffers_, count_);
    if (region_) ::munmap(region_, region_size_);
}

}  // namespace cproxy
