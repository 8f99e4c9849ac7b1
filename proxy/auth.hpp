#pragma once
// Proxy authentication: HTTP `Proxy-Authorization: Basic` (RFC 7617) and SOCKS5
// username/password (RFC 1929) against the configured users.

#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace egressd::proxy {

/// RFC 4648 base64 decoding; nullopt on malformed input.
std::optional<std::string> base64_decode(std::string_view in);

/// The configured user the credentials name, or null. Compares in constant time per
/// candidate so a timing difference does not reveal a password prefix. The result
/// points into `auth` (access records name the user by it).
const config::user_credentials* check_credentials(const config::auth_config& auth, std::string_view user,
                                                  std::string_view password) noexcept;

/// The configured user a Proxy-Authorization value carries valid Basic credentials
/// of, or null.
const config::user_credentials* check_basic_authorization(const config::auth_config& auth,
                                                          std::string_view header_value);

}  // namespace egressd::proxy
