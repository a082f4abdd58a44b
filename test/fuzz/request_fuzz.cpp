// Request head parser: no input crashes or reads past its end (ASan); feeding
// a head in two pieces gives the same result as feeding it whole; and a head
// the parser accepts, rewritten the way the proxy forwards it, parses again
// and frames its body exactly as cproxy did (the next hop cannot disagree).
#include "cproxy/forward.hpp"
#include "cproxy/http_parser.hpp"
#include "fuzz_input.hpp"

using namespace cproxy;

namespace {

http::RequestHead whole_head;
http::RequestHead split_head;
http::RequestHead rewritten_head;
char rewritten[32768];

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto [message, split] = fuzz::split_input(data, size);
    http::RequestParser whole(16384);
    http::ParseStatus status = whole.parse(message, whole_head);

    http::RequestParser pieces(16384);
    http::ParseStatus first = pieces.parse(message.substr(0, split), split_head);
    http::ParseStatus second = first == http::ParseStatus::Partial ? pieces.parse(message, split_head) : first;
    // A verdict reached on a prefix holds for the whole message too.
    fuzz::require(second == status);
    if (status == http::ParseStatus::Error) fuzz::require(whole.error_status() == pieces.error_status());
    if (status != http::ParseStatus::Done) return 0;

    fuzz::require(whole_head.length <= message.size());
    if (second == http::ParseStatus::Done) {
        fuzz::require(split_head.length == whole_head.length);
        fuzz::require(split_head.header_count == whole_head.header_count);
        fuzz::require(split_head.method == whole_head.method && split_head.target == whole_head.target);
    }
    const http::RequestFraming framing = http::request_framing(whole_head);
    // The split byte's low bits also vary the rewrite, empty views included
    // (an absolute URL without a path, no Host change, Via off).
    forward::RequestRewrite rewrite;
    bool origin_form = !whole_head.target.empty() && whole_head.target.front() == '/';
    if (data[0] & 1) rewrite.path = origin_form ? whole_head.target : "/";
    if (data[0] & 2) rewrite.host = "example.test";
    if (data[0] & 4) rewrite.via_name = "cproxy";
    rewrite.framing = framing.framing;
    std::size_t length = forward::write_request_head(whole_head, rewrite, rewritten, sizeof rewritten);
    if (length == 0) return 0;
    http::RequestParser again(sizeof rewritten);
    http::ParseStatus reparsed = again.parse({rewritten, length}, rewritten_head);
    // Host and Via may take a head that was at the field limit over it.
    if (reparsed == http::ParseStatus::Error && whole_head.header_count + 2 > http::default_max_headers) return 0;
    fuzz::require(reparsed == http::ParseStatus::Done);
    fuzz::require(rewritten_head.length == length);
    fuzz::require(rewritten_head.method == whole_head.method);
    if (framing.refusal) return 0;
    const http::RequestFraming again_framing = http::request_framing(rewritten_head);
    fuzz::require(again_framing.refusal == 0);
    fuzz::require(again_framing.framing.kind == framing.framing.kind);
    fuzz::require(again_framing.framing.length == framing.framing.length);
    return 0;
}
