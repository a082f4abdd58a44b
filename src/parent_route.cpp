// The per-session steps that only requests through a parent proxy take: a
// failover when the parent cannot be reached, and the CONNECT a tunnel sends
// on to the parent before it opens.
#include <cstdio>
#include <cstring>

#include "cproxy/forward.hpp"
#include "cproxy/worker.hpp"

namespace cproxy {

namespace {

// The request line's target in a head at the start of `head`.
std::string_view request_target(std::string_view head) noexcept {
    std::size_t start = head.find(' ') + 1;
    return head.substr(start, head.find(' ', start) - start);
}

}  // namespace

const Parent* Worker::current_parent(const Session& s) const noexcept {
    // A reload may have replaced the list under a request already under way.
    if (s.parent >= config_->parents.size()) return nullptr;
    const Parent& parent = config_->parents[s.parent];
    return parent.address == s.destination ? &parent : nullptr;
}

Worker::Step Worker::parent_failed(std::uint32_t index, const char* why) noexcept {
    Session& s = sessions_[index];
    leave_upstream_queue(index);
    close_upstream(s);
    // No parent here: a reload took it out of the list while it was tried.
    if (const Parent* parent = current_parent(s)) {
        if (parents_.mark_down(s.parent, now_ms_ + config_->parent_down_time_ms)) {
            ++counters_.parents_marked_down;
            std::uint32_t down_ms = config_->parent_down_time_ms;
            log_warning("parent proxy %s is down for %u%s: %s", parent->name.c_str(),
                        down_ms % 1000 == 0 ? down_ms / 1000 : down_ms, down_ms % 1000 == 0 ? "s" : "ms", why);
        }
        s.parents_failed |= 1u << s.parent;
    }
    if (auto next = parents_.choose(now_ms_, s.parents_failed)) {
        if (!retarget_head(s, &config_->parents[*next]))
            return fail(index, 503, "no buffer free for the rewritten request head", EndReason::NoResources);
        return use_parent(index, *next);
    }
    if (config_->never_direct) return refuse_without_parents(index);

    // Straight to the origin, which the head's target still names (the
    // client's absolute-form URL, or the one written for the parent).
    std::string_view target = request_target(s.request->view());
    std::optional<HostPort> origin;
    if (s.connect_method) {
        origin = split_host_port(target);
    } else if (auto url = forward::parse_http_url(target)) {
        origin = HostPort{url->host, url->port};
    }
    char host[256];
    if (!origin || origin->host.size() >= sizeof host)
        return fail(index, 400, "the host is not a valid name", EndReason::BadRequest);
    std::memcpy(host, origin->host.data(), origin->host.size());
    if (!retarget_head(s, nullptr))
        return fail(index, 503, "no buffer free for the rewritten request head", EndReason::NoResources);
    s.parent = no_parent;
    return route(index, {host, origin->host.size()}, origin->port);
}

// A head already written for one parent is edited in place for the next one
// (its own Proxy-Authorization line) or for the origin (origin-form, no
// credentials). Before anything was sent, so the head starts the buffer.
bool Worker::retarget_head(Session& s, const Parent* next) noexcept {
    if (!s.head_for_parent) return true;  // not written yet, or a CONNECT's
    auto edit = [&](std::uint32_t offset, std::uint32_t old_length, std::string_view text) {
        while (!s.request->replace(offset, old_length, text))
            if (!grow_request(s)) return false;
        std::int64_t change = static_cast<std::int64_t>(text.size()) - old_length;
        s.request_unsent = static_cast<std::uint32_t>(s.request_unsent + change);
        if (s.replay_length != 0) s.replay_length = static_cast<std::uint32_t>(s.replay_length + change);
        return true;
    };
    // A Proxy-Authorization line ending the head is the parent's: the
    // client's own never passes.
    constexpr std::string_view credentials = "Proxy-Authorization: ";
    std::string_view head = s.request->view();
    std::size_t head_end = head.find("\r\n\r\n");
    if (head_end == std::string_view::npos) return false;
    std::size_t last_line = head.rfind("\r\n", head_end - 1) + 2;
    std::uint32_t old_length = head.substr(last_line).starts_with(credentials)
                                   ? static_cast<std::uint32_t>(head_end + 2 - last_line)
                                   : 0;
    int length = 0;
    if (next && !next->authorization.empty())
        length = std::snprintf(scratch_.get(), scratch_size_, "%s%s\r\n", credentials.data(), next->authorization.c_str());
    if (length < 0 || static_cast<std::uint32_t>(length) >= scratch_size_) return false;
    if (!edit(static_cast<std::uint32_t>(head_end + 2) - old_length, old_length,
              {scratch_.get(), static_cast<std::size_t>(length)}))
        return false;
    if (next) return true;
    // "http://authority" before the path goes: the origin gets origin-form.
    auto url = forward::parse_http_url(request_target(s.request->view()));
    if (!url) return false;
    std::uint32_t prefix_length = static_cast<std::uint32_t>(std::string_view("http://").size() + url->authority.size());
    std::uint32_t target_at = static_cast<std::uint32_t>(s.request->view().find(' ') + 1);
    if (!edit(target_at, prefix_length, {})) return false;
    s.head_for_parent = false;
    return_large_buffer(s);
    return true;
}

// The outage was logged when it began: each request refused during it is not news.
Worker::Step Worker::refuse_without_parents(std::uint32_t index) noexcept {
    return fail(index, 502, "every parent proxy is down (never_direct on)", EndReason::ParentsDown,
                /*client_mistake=*/true);
}

// A reload may reorder or drop parents while requests are on their way to
// one: their index follows the parent's address, and a request whose parent
// left the list before it connected moves on as if it had failed.
void Worker::follow_parents_reload() noexcept {
    for (std::uint32_t i = 0; i < sessions_.capacity(); ++i) {
        if (!sessions_.in_use(i) || sessions_[i].parent == no_parent) continue;
        Session& s = sessions_[i];
        s.parents_failed = 0;
        std::uint8_t found = no_parent;
        for (std::size_t p = 0; p < config_->parents.size(); ++p)
            if (config_->parents[p].address == s.destination) found = static_cast<std::uint8_t>(p);
        if (found != no_parent) {
            s.parent = found;
        } else if (s.phase == Phase::Connecting) {
            // current_parent() finds none at this address: nothing is marked down.
            if (parent_failed(i, "removed by a reload") != Step::Closed) drive(i);
        }
    }
}

// RFC 9110 §9.3.6: the parent is asked for the same tunnel, with cproxy's
// credentials for it. The client's bytes behind its CONNECT head wait until
// the parent has said yes.
Worker::Step Worker::send_connect_to_parent(std::uint32_t index) noexcept {
    Session& s = sessions_[index];
    const Parent* parent = current_parent(s);
    std::string_view target = request_target(s.request->view());
    bool auth = parent && !parent->authorization.empty();
    int length = std::snprintf(scratch_.get(), scratch_size_, "CONNECT %.*s HTTP/1.1\r\nHost: %.*s\r\n%s%s%s\r\n",
                               static_cast<int>(target.size()), target.data(), static_cast<int>(target.size()),
                               target.data(), auth ? "Proxy-Authorization: " : "",
                               auth ? parent->authorization.c_str() : "", auth ? "\r\n" : "");
    bool written = length > 0 && static_cast<std::uint32_t>(length) < scratch_size_;
    while (written && !s.request->replace(0, s.head_length, {scratch_.get(), static_cast<std::size_t>(length)}))
        written = grow_request(s);
    if (!written) {
        close_upstream(s);
        s.close_after_response = true;
        return fail(index, 503, "no buffer free for the CONNECT to the parent proxy", EndReason::NoResources);
    }
    s.request_unsent = static_cast<std::uint32_t>(length);
    s.request_complete = true;
    s.replay_length = 0;
    s.phase = Phase::Exchanging;
    s.phase_started_ms = now_ms_;
    return Step::Progress;
}

}  // namespace cproxy
