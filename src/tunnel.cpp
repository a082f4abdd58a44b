#include "cproxy/tunnel.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "cproxy/reactor.hpp"

namespace cproxy {

PipePool::PipePool(std::uint32_t max_pipes) : max_pipes_(max_pipes) { free_.reserve(max_pipes); }

PipePool::~PipePool() {
    for (Pipe pipe : free_) {
        ::close(pipe.read_end);
        ::close(pipe.write_end);
    }
}

Pipe PipePool::acquire() noexcept {
    if (!free_.empty()) {
        Pipe pipe = free_.back();
        free_.pop_back();
        ++in_use_;
        return pipe;
    }
    if (created_ >= max_pipes_) return {};
    int ends[2];
    if (::pipe2(ends, O_NONBLOCK | O_CLOEXEC) != 0) return {};
    ++created_;
    ++in_use_;
    int capacity = ::fcntl(ends[1], F_SETPIPE_SZ, wanted_capacity);
    if (capacity < 0) capacity = ::fcntl(ends[1], F_GETPIPE_SZ);
    return {ends[0], ends[1], static_cast<std::uint32_t>(capacity > 0 ? capacity : 4096)};
}

void PipePool::release(Pipe pipe) noexcept {
    --in_use_;
    free_.push_back(pipe);  // never grows past max_pipes_: reserved at start
}

void PipePool::destroy(Pipe pipe) noexcept {
    ::close(pipe.read_end);
    ::close(pipe.write_end);
    --in_use_;
    --created_;
}

static bool would_block(int error) noexcept { return error == EAGAIN || error == EWOULDBLOCK; }

static void note_read(RelayDirection& direction, std::uint64_t n) noexcept {
    if (direction.read_limit != no_read_limit) direction.read_limit -= n;
}

static void park_idle_resources(RelayDirection& direction, const RelayContext& context) noexcept {
    if (direction.buffer && direction.buffer->empty()) {
        context.buffers.release(direction.buffer);
        direction.buffer = nullptr;
    }
    if (direction.pipe.read_end >= 0 && direction.pipe_bytes == 0) {
        context.pipes.release(direction.pipe);
        direction.pipe = {};
    }
}

RelayResult relay(RelayDirection& direction, int from, int to, bool& can_read, bool& can_write,
                  bool from_fin_arrived, const RelayContext& context) noexcept {
    if (direction.finished) return RelayResult::Finished;
    std::size_t moved = 0;
    while (true) {
        if (direction.buffer && !direction.buffer->empty()) {
            if (!can_write) return RelayResult::Waiting;
            ssize_t n = ::send(to, direction.buffer->data(), direction.buffer->size(), MSG_NOSIGNAL);
            if (n < 0) {
                if (would_block(errno)) { can_write = false; continue; }
                return RelayResult::Error;
            }
            direction.buffer->consume(static_cast<std::uint32_t>(n));
            direction.bytes += static_cast<std::uint64_t>(n);
            moved += static_cast<std::size_t>(n);
            continue;
        }
        if (direction.pipe_bytes > 0) {
            if (!can_write) return RelayResult::Waiting;
            ssize_t n = ::splice(direction.pipe.read_end, nullptr, to, nullptr, direction.pipe_bytes,
                                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0) {
                if (would_block(errno)) { can_write = false; continue; }
                return RelayResult::Error;
            }
            direction.pipe_bytes -= static_cast<std::uint32_t>(n);
            direction.bytes += static_cast<std::uint64_t>(n);
            direction.spliced_bytes += static_cast<std::uint64_t>(n);
            moved += static_cast<std::size_t>(n);
            continue;
        }
        if (direction.read_limit == 0) {
            park_idle_resources(direction, context);
            direction.finished = true;
            return RelayResult::Finished;
        }
        if (direction.source_eof) {
            if (direction.read_limit != no_read_limit) return RelayResult::Error;
            park_idle_resources(direction, context);
            ::shutdown(to, SHUT_WR);
            direction.finished = true;
            return RelayResult::Finished;
        }
        if (!can_read) {
            park_idle_resources(direction, context);
            return RelayResult::Waiting;
        }
        if (moved >= context.budget) return RelayResult::Yield;

        if (context.splice_enabled && !direction.copy_only) {
            if (direction.pipe.read_end < 0) direction.pipe = context.pipes.acquire();
            if (direction.pipe.read_end >= 0) {
                std::size_t wanted = std::min<std::uint64_t>(direction.pipe.capacity, direction.read_limit);
                ssize_t n = ::splice(from, nullptr, direction.pipe.write_end, nullptr, wanted,
                                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n > 0) {
                    direction.pipe_bytes = static_cast<std::uint32_t>(n);
                    note_read(direction, static_cast<std::uint64_t>(n));
                } else if (n == 0) {
                    direction.source_eof = true;
                } else if (would_block(errno)) {
                    can_read = false;
                } else if (errno == EINVAL || errno == ENOSYS) {
                    direction.copy_only = true;
                } else {
                    return RelayResult::Error;
                }
                continue;
            }
        }
        if (!direction.buffer) direction.buffer = context.buffers.acquire();
        if (!direction.buffer) return RelayResult::Yield;
        std::size_t wanted = std::min<std::uint64_t>(direction.buffer->space_size(), direction.read_limit);
        ssize_t n = ::recv(from, direction.buffer->space(), wanted, 0);
        if (read_drained(n, wanted, from_fin_arrived)) can_read = false;
        if (n > 0) {
            direction.buffer->commit(static_cast<std::uint32_t>(n));
            note_read(direction, static_cast<std::uint64_t>(n));
        } else if (n == 0) {
            direction.source_eof = true;
        } else if (would_block(errno)) {
            can_read = false;
        } else {
            return RelayResult::Error;
        }
    }
}

void release_relay(RelayDirection& direction, BufferPool& buffers, PipePool& pipes) noexcept {
    if (direction.buffer) {
        buffers.release(direction.buffer);
        direction.buffer = nullptr;
    }
    if (direction.pipe.read_end >= 0) {
        if (direction.pipe_bytes > 0) pipes.destroy(direction.pipe);
        else pipes.release(direction.pipe);
        direction.pipe = {};
        direction.pipe_bytes = 0;
    }
}

}  // namespace cproxy
