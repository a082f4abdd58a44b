// Response head parser: the same properties as the request harness, with the
// response rewritten as the proxy sends it to its client, which must frame
// its body as cproxy did.
#include "cproxy/forward.hpp"
#include "cproxy/http_parser.hpp"
#include "fuzz_input.hpp"

using namespace cproxy;

namespace {

http::ResponseHead whole_head;
http::ResponseHead split_head;
http::ResponseHead rewritten_head;
char rewritten[32768];

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto [message, split] = fuzz::split_input(data, size);
    http::ResponseParser whole(16384);
    http::ParseStatus status = whole.parse(message, whole_head);

    http::ResponseParser pieces(16384);
    http::ParseStatus first = pieces.parse(message.substr(0, split), split_head);
    http::ParseStatus second = first == http::ParseStatus::Partial ? pieces.parse(message, split_head) : first;
    fuzz::require(second == status);  // a verdict reached on a prefix holds for the whole message
    if (status != http::ParseStatus::Done) return 0;

    fuzz::require(whole_head.length <= message.size());
    fuzz::require(whole_head.status >= 100 && whole_head.status <= 999);
    for (const char* method : {"HEAD", "CONNECT"})
        [[maybe_unused]] auto framing = http::response_framing(whole_head, method);
    const auto framing = http::response_framing(whole_head, "GET");
    [[maybe_unused]] bool reusable = forward::upstream_allows_reuse(whole_head);
    forward::ResponseRewrite rewrite;
    rewrite.connection = static_cast<forward::ClientConnection>(data[0] % 3);
    rewrite.via_name = "cproxy";
    if (framing) rewrite.framing = *framing;
    std::size_t length = forward::write_response_head(whole_head, rewrite, rewritten, sizeof rewritten);
    if (length == 0) return 0;
    http::ResponseParser again(sizeof rewritten);
    http::ParseStatus reparsed = again.parse({rewritten, length}, rewritten_head);
    // Connection and Via may take a head that was at the field limit over it.
    if (reparsed == http::ParseStatus::Error && whole_head.header_count + 2 > http::default_max_headers) return 0;
    fuzz::require(reparsed == http::ParseStatus::Done);
    fuzz::require(rewritten_head.length == length);
    fuzz::require(rewritten_head.status == whole_head.status);
    if (!framing) return 0;
    const auto again_framing = http::response_framing(rewritten_head, "GET");
    fuzz::require(again_framing.has_value());
    fuzz::require(again_framing->kind == framing->kind && again_framing->length == framing->length);
    return 0;
}
