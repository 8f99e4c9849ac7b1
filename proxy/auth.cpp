#include "proxy/auth.hpp"

#include <array>

namespace egressd::proxy {

std::optional<std::string> base64_decode(std::string_view in) {
  static constexpr auto table = [] {
    std::array<int, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = i;
    return t;
  }();
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  std::string out;
  out.reserve(in.size() * 3 / 4);
  unsigned buffer = 0;
  int bits = 0;
  for (unsigned char c : in) {
    const int v = table[c];
    if (v < 0) return std::nullopt;
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
  }
  if (bits >= 6) return std::nullopt;  // a lone trailing character
  return out;
}

namespace {
bool equal_constant_time(std::string_view a, std::string_view b) noexcept {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}
}  // namespace

const config::user_credentials* check_credentials(const config::auth_config& auth, std::string_view user,
                                                  std::string_view password) noexcept {
  const config::user_credentials* found = nullptr;
  for (const auto& u : auth.users) {
    const bool match = equal_constant_time(user, u.username) & equal_constant_time(password, u.password);
    if (match && !found) found = &u;
  }
  return found;
}

const config::user_credentials* check_basic_authorization(const config::auth_config& auth, std::string_view value) {
  // RFC 9110 §11.1: the scheme is case-insensitive.
  constexpr std::string_view scheme = "basic ";
  if (value.size() <= scheme.size()) return nullptr;
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    char c = value[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != scheme[i]) return nullptr;
  }
  std::string_view token = value.substr(scheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  auto decoded = base64_decode(token);
  if (!decoded) return nullptr;
  auto colon = decoded->find(':');
  if (colon == std::string::npos) return nullptr;
  return check_credentials(auth, std::string_view(*decoded).substr(0, colon),
                           std::string_view(*decoded).substr(colon + 1));
}

}  // namespace egressd::proxy
