#include "proxy/responses.hpp"

namespace egressd::proxy {

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 200: return "Connection Established";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
  }
  return "Error";
}

std::string sf_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c >= 0x20 && c < 0x7F) {
      out += c;
    } else {
      out += '?';
    }
  }
  out += '"';
  return out;
}

std::string render_refusal(const refusal& r, bool close) {
  std::string body = r.details;
  body += '\n';
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(reason_phrase(r.status)) + "\r\n";
  out += "Server: egressd\r\n";
  out += "Content-Type: text/plain; charset=utf-8\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\n";
  if (r.blocked_by_policy) out += "X-Proxy-Error: blocked-by-allowlist\r\n";
  if (r.auth_challenge) out += "Proxy-Authenticate: Basic realm=\"egressd\"\r\n";
  // RFC 9209 §2: Proxy-Status: <proxy name>; error=<type>; details=<sf-string>.
  out += "Proxy-Status: egressd; error=";
  out += r.proxy_error;
  if (!r.details.empty()) out += "; details=" + sf_string(r.details);
  if (!r.rule.empty()) out += "; rule=" + sf_string(r.rule);
  if (!r.reason.empty()) out += "; reason=" + sf_string(r.reason);
  out += "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace egressd::proxy
