#pragma once
// The pattern grammar of allow and deny lists (README "Policy semantics"):
//   example.com        exactly that host
//   *.example.com      strict subdomains at any depth, not the apex
//   **.example.com     the apex and all subdomains            (egressd grammar only)
//   ...:443            any of the above narrowed to one port
//   192.0.2.1, [2001:db8::1], 10.0.0.0/8, [fd00::]/8           (CIDR: egressd grammar only)
//   *, *:22            every host (deny lists only)
//   @github            a preset shipped with egressd           (egressd grammar only)
// Parsing validates an entry and says why it is refused; matching is done by the
// compiled snapshot (snapshot.hpp), never entry by entry.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "policy/address.hpp"
#include "policy/rules.hpp"

namespace egressd::policy {

enum class list_kind : std::uint8_t { allow, deny };
std::string_view to_string(list_kind k) noexcept;

enum class pattern_kind : std::uint8_t {
  exact,                ///< `name` equals the host
  subdomains,           ///< the host ends in "." + `name`
  apex_and_subdomains,  ///< the host is `name` or ends in "." + `name`
  any,                  ///< every host (deny only)
  address,              ///< an IP literal host inside `range`
  preset,               ///< `@name`: expanded by compile()
  never,                ///< sandbox-runtime grammar: accepted there, but can never match
};

struct pattern {
  pattern_kind kind = pattern_kind::never;
  std::string name;          ///< exact host, wildcard suffix, or preset name
  address_range range;       ///< for `address`
  std::uint16_t port = 0;    ///< 0: every port
  std::string note;          ///< for `never`: why it cannot match (a config warning)
};

struct pattern_error {
  std::string message;
  std::string hint;  ///< a corrected spelling or what to do instead; may be empty
};

struct pattern_result {
  std::optional<pattern> value;
  pattern_error error;  ///< meaningful only when !value
};

/// Validate one list entry in the given grammar.
pattern_result parse_pattern(std::string_view text, list_kind list, grammar syntax);

/// sandbox-runtime's split of an optional `:port` suffix (splitDomainPatternPort):
/// only a strictly numeric 1-65535 suffix without leading zeros is a port; an IPv6
/// literal must be bracketed to carry one; a bracketed or unbracketed IPv6 host comes
/// back compressed and without its zone id; anything malformed comes back whole.
struct port_split {
  std::string host_pattern;
  std::optional<std::uint16_t> port;
};
port_split split_pattern_port(std::string_view text);

/// True when `text` is a plausible DNS name as hosts are canonicalised: ASCII letters,
/// digits, '-', '_', labels separated by single dots, no leading or trailing dot.
bool is_name_text(std::string_view text) noexcept;

}  // namespace egressd::policy
