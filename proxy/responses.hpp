#pragma once
// The responses the proxy itself writes: refusals (README "Wire behaviour") with
// `X-Proxy-Error: blocked-by-allowlist` (as sandbox-runtime sends) for policy
// refusals, an RFC 9209 `Proxy-Status` field naming the error, the rule and the
// reason, and a short text body saying what was refused and why.

#include <string>
#include <string_view>

namespace egressd::proxy {

struct refusal {
  int status = 403;
  /// RFC 9209 §2.3 error type: http_request_denied, destination_ip_prohibited,
  /// dns_error, connection_refused, connection_timeout, http_request_error, ...
  std::string_view proxy_error = "http_request_denied";
  std::string details;       ///< one sentence for people; also the body
  std::string rule;          ///< the rule that matched, if any
  std::string_view reason;   ///< the decision reason (closed set), if any
  bool blocked_by_policy = false;   ///< adds X-Proxy-Error: blocked-by-allowlist
  bool auth_challenge = false;      ///< 407: adds Proxy-Authenticate
};

/// A refusal with no rule or decision behind it: a bad request, a timeout, an upstream
/// that failed mid-exchange.
inline refusal plain_refusal(int status, std::string_view proxy_error, std::string details) {
  refusal r;
  r.status = status;
  r.proxy_error = proxy_error;
  r.details = std::move(details);
  return r;
}

/// The reason phrase for the statuses the proxy produces.
std::string_view reason_phrase(int status) noexcept;

/// A complete HTTP/1.1 response: status line, fields, body. `close` adds
/// `Connection: close` (the proxy then closes the connection).
std::string render_refusal(const refusal& r, bool close);

/// Escapes a value for an RFC 8941 sf-string ("..." with \" and \\), dropping
/// characters that a structured field cannot carry.
std::string sf_string(std::string_view s);

}  // namespace egressd::proxy
