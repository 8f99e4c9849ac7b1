#pragma once
// Public suffixes (https://publicsuffix.org) over libpsl, so that policy
// compilation can refuse wildcards as wide as a registry (`*.co.uk`, `*.com`).

#include <string>
#include <string_view>

namespace egressd::config {

/// True when `domain` is itself a public suffix of the list's ICANN section: `com`,
/// `co.uk`, `kawasaki.jp` are; `example.co.uk` is not. Not counted:
/// - the PRIVATE section (`github.io`, `githubusercontent.com`, `s3.amazonaws.com`):
///   wildcards over a hosting platform's suffix are ordinary allowlist entries
///   (`*.githubusercontent.com` is in the @github preset, and sandbox-runtime
///   accepts it);
/// - the list's implicit `*` rule, so unlisted TLDs that private networks use
///   (`internal`, `corp`, `local`) are no public suffixes and `*.internal` stays valid.
/// Case and one trailing dot are ignored; an empty or non-ASCII `domain` returns
/// false (policy rejects those anyway).
///
/// Data: libpsl's newest list, the system file (Debian's `publicsuffix` package,
/// /usr/share/publicsuffix) when it is newer than the copy built into libpsl, else
/// the built-in copy. Loaded once on first use; thread-safe; never throws.
bool is_public_suffix(std::string_view domain) noexcept;

/// True when `domain` is a suffix of the list's PRIVATE section, where hosting platforms
/// list the names they hand out to their customers (`github.io`, `s3.amazonaws.com`,
/// `herokuapp.com`). Same data, rules and guarantees as is_public_suffix().
bool is_platform_suffix(std::string_view domain) noexcept;

/// The registrable domain of a host name: its public suffix (ICANN or PRIVATE section)
/// plus one label. `api.github.com` → `github.com`, `a.b.example.co.uk` →
/// `example.co.uk`, `x.foo.github.io` → `foo.github.io`; an unlisted TLD counts as a
/// suffix (the list's `*` rule), so `api.corp.internal` → `corp.internal`. Empty when
/// there is none: `host` is a suffix itself (`com`, `github.io`), a single label
/// (`localhost`), an IP literal, empty, or not lower-case ASCII. Same data and
/// guarantees as is_public_suffix(); `host` is canonical (policy::canonicalize_host).
std::string registrable_domain(std::string_view host);

/// The value of the `domain` metric label for `host`: its registrable domain (the
/// PRIVATE section counts, so one platform's customers stay apart: `x.user.github.io` →
/// `user.github.io`); a host that is itself a public suffix, or has no dot
/// (`localhost`, `com`), stands for itself; an IP literal (bracketed or not) is `ip`;
/// anything else (empty, over 253 bytes, bytes outside letters, digits, `-`, `_` and
/// `.`, an empty label) is `invalid`. Case and one trailing dot are ignored.
std::string domain_label(std::string_view host);

}  // namespace egressd::config
