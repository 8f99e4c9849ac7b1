#include "config/public_suffix.hpp"

#include <libpsl.h>

#include "policy/address.hpp"

#include <array>
#include <memory>

#include "policy/address.hpp"

namespace egressd::config {

namespace {

struct psl_deleter {
  void operator()(psl_ctx_t* ctx) const noexcept { psl_free(ctx); }
};

// psl_latest(NULL) picks the newest of the distribution's list file (Debian:
// /usr/share/publicsuffix/public_suffix_list.dafsa, package `publicsuffix`) and
// the data built into libpsl (present in Debian's libpsl5, so the package is a
// freshness recommendation, not a requirement); it returns NULL only when neither
// exists, where psl_builtin() is NULL too and every answer is "not a public suffix".
const psl_ctx_t* context() noexcept {
  static const std::unique_ptr<psl_ctx_t, psl_deleter> latest{psl_latest(nullptr)};
  return latest ? latest.get() : psl_builtin();
}

// One lookup of `domain` (ASCII, lower-cased here) with libpsl's flags.
bool is_suffix(std::string_view domain, int type) noexcept {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  if (domain.empty() || domain.size() > 253) return false;
  std::array<char, 254> lower{};  // 253 bytes and the NUL libpsl wants
  std::size_t length = 0;
  for (const char c : domain) {
    // libpsl compares lower-case ASCII (or UTF-8 it would convert); patterns are
    // ASCII by the time they reach us (README "Policy semantics": IDNs as punycode).
    if (static_cast<unsigned char>(c) >= 0x80 || c == '\0') return false;
    lower[length++] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  const psl_ctx_t* psl = context();
  if (psl == nullptr) return false;
  return psl_is_public_suffix2(psl, lower.data(), type) != 0;
}

bool is_label_byte(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

}  // namespace

bool is_public_suffix(std::string_view domain) noexcept {
  return is_suffix(domain, PSL_TYPE_ICANN | PSL_TYPE_NO_STAR_RULE);
}

bool is_platform_suffix(std::string_view domain) noexcept {
  return is_suffix(domain, PSL_TYPE_PRIVATE | PSL_TYPE_NO_STAR_RULE);
}

std::string registrable_domain(std::string_view host) {
  if (host.empty() || host.size() > 253 || policy::parse_ip(host)) return {};
  for (const char c : host)
    if (static_cast<unsigned char>(c) >= 0x80 || c == '\0' || (c >= 'A' && c <= 'Z')) return {};
  const psl_ctx_t* psl = context();
  if (psl == nullptr) return {};
  const std::string text(host);  // libpsl wants a NUL-terminated string
  const char* found = psl_registrable_domain(psl, text.c_str());
  return found == nullptr ? std::string() : std::string(found);
}

std::string domain_label(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    return policy::parse_ip(host) ? "ip" : "invalid";
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty() || host.size() > 253) return "invalid";
  if (policy::parse_ip(host)) return "ip";
  std::string lower(host);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!is_label_byte(c)) return "invalid";
  }
  if (lower.front() == '.' || lower.find("..") != std::string::npos) return "invalid";
  // None when the host is itself a public suffix or one label: it stands for itself.
  std::string registrable = registrable_domain(lower);
  return registrable.empty() ? lower : registrable;
}

}  // namespace egressd::config
