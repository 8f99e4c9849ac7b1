// The hook's wire format (README "Hook protocol").
// Flow of parse_answer: strict JSON (config/json.hpp, RFC 8259) -> one object ->
// each known member checked for its type and value, a repeated known member refused
// (which of two decisions would count is not guessable) -> defaults for the rest.
// Unknown members are skipped so a hook may send more than this version knows.

#include "proxy/hook/wire.hpp"

#include <charconv>
#include <cstdio>
#include <limits>

#include "config/json.hpp"
#include "proxy/hook/transport.hpp"
#include "proxy/text_escape.hpp"

namespace egressd::proxy::hook {

namespace {

namespace json = config::json;

constexpr std::size_t max_reason_bytes = 200;
// 10 years: longer is what `remember: always` is for, and the bound keeps
// `now + ttl` far from overflowing a time_point.
constexpr std::uint64_t max_ttl_seconds = 10ull * 366 * 24 * 3600;

void add_string(std::string& out, std::string_view key, std::string_view value) {
  out += '"';
  out += key;
  out += "\":";
  append_json_string(out, value);
}

void add_number(std::string& out, std::string_view key, std::uint64_t value) {
  out += '"';
  out += key;
  out += "\":";
  out += std::to_string(value);
}

// A JSON number written as a plain non-negative integer ("60"; not "60.0", "6e1",
// "-1"): the grammar of RFC 8259 §6 allows those spellings, an integer member does not.
std::optional<std::uint64_t> plain_integer(const json::value& v) {
  if (v.kind != json::value::kind_t::number || v.text.empty()) return std::nullopt;
  std::uint64_t n = 0;
  const auto* end = v.text.data() + v.text.size();
  const auto [ptr, ec] = std::from_chars(v.text.data(), end, n);
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  return n;
}

std::string_view kind_name(json::value::kind_t k) {
  switch (k) {
    case json::value::kind_t::null: return "null";
    case json::value::kind_t::boolean: return "a boolean";
    case json::value::kind_t::number: return "a number";
    case json::value::kind_t::string: return "a string";
    case json::value::kind_t::array: return "an array";
    case json::value::kind_t::object: return "an object";
  }
  return "a value";
}

// Cuts `s` to at most `limit` bytes without splitting a UTF-8 sequence (the JSON
// reader hands out valid UTF-8, so stepping back over continuation bytes suffices).
void truncate_utf8(std::string& s, std::size_t limit) {
  if (s.size() <= limit) return;
  std::size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0u) == 0x80u) --cut;
  s.resize(cut);
}

answer_result fail(std::string why) { return answer_result{std::nullopt, std::move(why)}; }

}  // namespace

std::string to_json(const question& q) {
  std::string out;
  out.reserve(160 + q.host.size() + q.client.size() + q.listener.size() + q.registrable_domain.size());
  out += '{';
  add_number(out, "id", q.id);
  out += ',';
  add_string(out, "host", q.host);
  out += ',';
  add_number(out, "port", q.port);
  out += ',';
  add_string(out, "protocol", q.protocol);
  out += ',';
  add_string(out, "client", q.client);
  out += ',';
  add_string(out, "listener", q.listener);
  out += ',';
  add_string(out, "registrable_domain", q.registrable_domain);
  out += ',';
  add_string(out, "first_seen", rfc3339(q.first_seen));
  out += '}';
  return out;
}

answer_result parse_answer(std::string_view text) {
  const auto parsed = json::parse(text);
  if (!parsed.value) {
    return fail("not JSON: " + parsed.error.message + " at line " + std::to_string(parsed.error.line) +
                ", column " + std::to_string(parsed.error.column));
  }
  const auto& root = *parsed.value;
  if (!root.is_object()) return fail("an answer must be a JSON object, not " + std::string(kind_name(root.kind)));

  answer a;
  bool seen_decision = false, seen_remember = false, seen_ttl = false, seen_scope = false, seen_reason = false,
       seen_id = false;
  std::optional<std::uint64_t> ttl_seconds;
  for (const auto& m : root.members) {
    const auto& v = m.value;
    const auto once = [&](bool& seen) {
      if (seen) return false;
      seen = true;
      return true;
    };
    if (m.key == "decision") {
      if (!once(seen_decision)) return fail("decision is given twice");
      if (!v.is_string() || (v.text != "allow" && v.text != "deny"))
        return fail("decision must be \"allow\" or \"deny\"");
      a.decision = v.text == "allow" ? policy::outcome::allow : policy::outcome::deny;
    } else if (m.key == "remember") {
      if (!once(seen_remember)) return fail("remember is given twice");
      // null counts as absent: many serialisers write unset optional fields as null.
      if (v.is_null()) continue;
      const auto l = v.is_string() ? policy::parse_answer_lifetime(v.text) : std::nullopt;
      if (!l) return fail("remember must be \"once\", \"ttl\" or \"always\"");
      a.remember = *l;
    } else if (m.key == "ttl_seconds") {
      if (!once(seen_ttl)) return fail("ttl_seconds is given twice");
      if (v.is_null()) continue;
      const auto n = plain_integer(v);
      if (!n || *n < 1) return fail("ttl_seconds must be an integer >= 1, not " + (v.kind == json::value::kind_t::number ? v.text : std::string(kind_name(v.kind))));
      if (*n > max_ttl_seconds) return fail("ttl_seconds must be at most " + std::to_string(max_ttl_seconds) + " (10 years); use remember: always");
      ttl_seconds = *n;
    } else if (m.key == "scope") {
      if (!once(seen_scope)) return fail("scope is given twice");
      if (v.is_null()) continue;
      const auto s = v.is_string() ? policy::parse_answer_scope(v.text) : std::nullopt;
      if (!s) return fail("scope must be \"host\", \"host_port\" or \"domain\"");
      a.scope = *s;
    } else if (m.key == "reason") {
      if (!once(seen_reason)) return fail("reason is given twice");
      if (v.is_null()) continue;
      if (!v.is_string()) return fail("reason must be a string, not " + std::string(kind_name(v.kind)));
      a.reason = v.text;
      truncate_utf8(a.reason, max_reason_bytes);
    } else if (m.key == "id") {
      if (!once(seen_id)) return fail("id is given twice");
      if (v.is_null()) continue;
      const auto n = plain_integer(v);
      if (!n) return fail("id must be a non-negative integer (the question's id)");
      a.id = *n;
    }
  }
  if (!seen_decision) return fail("decision is required: \"allow\" or \"deny\"");
  // ttl_seconds only means something for remember: ttl; absent there, the configured
  // hook.ttl applies (ttl 0).
  if (a.remember == policy::answer_lifetime::ttl && ttl_seconds)
    a.ttl = std::chrono::seconds{static_cast<std::int64_t>(*ttl_seconds)};
  return answer_result{std::move(a), {}};
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(t);
  const auto day = floor<days>(ms);
  const year_month_day ymd{day};
  const hh_mm_ss hms{ms - day};
  char buf[40];
  const int n = std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(ymd.year()),
                              static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                              static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                              static_cast<int>(hms.seconds().count()),
                              static_cast<int>(hms.subseconds().count()));
  return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
}

std::string_view to_string(failure f) noexcept {
  switch (f) {
    case failure::none: return "none";
    case failure::timeout: return "timeout";
    case failure::crashed: return "crashed";
    case failure::bad_answer: return "bad_answer";
    case failure::not_found: return "not_found";
    case failure::refused: return "refused";
    case failure::http_error: return "http_error";
    case failure::tls_error: return "tls_error";
    case failure::io_error: return "io_error";
  }
  return "unknown";
}

}  // namespace egressd::proxy::hook
