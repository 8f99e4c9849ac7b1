// Flow of load: stat (missing: empty) -> read -> yaml-cpp node tree (syntax errors
// become problems with line:column) -> one walk over `decisions:` that checks each
// entry's keys, types and values and reports every problem -> entries, or none when
// anything was an error.
// Flow of save: to_yaml -> mkostemp beside the file -> write, fsync, close -> rename
// over the file -> fsync the directory (rename(2) is atomic; the directory's fsync
// makes it durable, as in SQLite's and PostgreSQL's own renames).

#include "config/decisions_file.hpp"

#include "config/public_suffix.hpp"
#include "policy/host.hpp"

#include <yaml-cpp/yaml.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace egressd::config::decisions_file {

namespace {

using clock = std::chrono::system_clock;

constexpr std::string_view header =
    "# egressd decisions file: answers to the confirmation hook given with `remember: always`\n"
    "# (README \"Decisions file\"). egressd reads it at start-up and rewrites it whenever such\n"
    "# an answer is given or forgotten (comments other than this header are not kept).\n"
    "# It may be edited by hand while egressd is stopped, or edited and then reloaded (SIGHUP).\n"
    "# Each entry: host (+ port for scope host_port) or domain (scope domain: the domain and\n"
    "# all its subdomains), decision allow|deny, who answered and when (RFC 3339, UTC), why.\n";

constexpr std::array<std::string_view, 8> entry_keys = {"host",        "domain",      "port",  "scope", "decision",
                                                        "answered_by", "answered_at", "reason"};

std::string quote(std::string_view s) { return "`" + std::string(s) + "`"; }

// ---------------------------------------------------------------------------
// RFC 3339 times

// Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar, and back
// (Howard Hinnant's days_from_civil / civil_from_days, public domain).
long long days_from_civil(long long y, unsigned m, unsigned d) {
  y -= m <= 2;
  const long long era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<long long>(doe) - 719468;
}

void civil_from_days(long long z, long long& y, unsigned& m, unsigned& d) {
  z += 719468;
  const long long era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<long long>(yoe) + era * 400 + (m <= 2);
}

bool leap(long long y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(long long y, unsigned m) {
  constexpr std::array<unsigned, 12> days = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : days[m - 1];
}

// Exactly `n` decimal digits at `text[pos]`.
std::optional<unsigned> digits(std::string_view text, std::size_t pos, std::size_t n) {
  if (pos + n > text.size()) return std::nullopt;
  unsigned v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(text[i] - '0');
  }
  return v;
}

// ---------------------------------------------------------------------------
// Writing

// Canonical host names ([a-z0-9._-], IPv6 literals) need no quotes, unless YAML would
// read them as something other than a string (`null`, `true`, `1.5`, `0x10`).
bool plain_safe(std::string_view s) {
  if (s.empty()) return false;
  static constexpr std::array<std::string_view, 13> words = {"null", "true", "false", "yes", "no", "on", "off",
                                                             "y",    "n",    "~",     ".inf", ".nan", "-.inf"};
  if (std::find(words.begin(), words.end(), s) != words.end()) return false;
  bool letter = false;
  for (const char ch : s) {
    if (ch >= 'a' && ch <= 'z') {
      letter = true;
      continue;
    }
    if ((ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_' || ch == ':') continue;
    return false;
  }
  // Without a letter it may read as a number; an IPv6 literal has a ':' after its
  // first group, which YAML 1.2 reads as no number (yaml-cpp keeps the text).
  const bool ipv6 = s.find(':') != std::string_view::npos;
  return (letter && s.front() != '-' && s.front() != '.' && !(s.size() > 1 && s[0] == '0' && s[1] == 'x')) ||
         (ipv6 && s.front() != ':' && s.front() != '-');
}

// A YAML double-quoted scalar (YAML 1.2 §7.3.1): JSON's escapes are YAML escapes.
// Line breaks are escaped, the Unicode ones too (NEL, LS, PS: YAML 1.1 folds them).
void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    // As \u escapes: yaml-cpp 0.7 decodes `\N` to a lone byte 0x85, not UTF-8.
    if (s.compare(i, 2, "\xC2\x85") == 0) {
      out += "\\u0085";
      ++i;
      continue;
    }
    if (s.compare(i, 3, "\xE2\x80\xA8") == 0 || s.compare(i, 3, "\xE2\x80\xA9") == 0) {
      out += s[i + 2] == '\xA8' ? "\\u2028" : "\\u2029";
      i += 2;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (u < 0x20 || u == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void append_name(std::string& out, std::string_view s) {
  if (plain_safe(s))
    out += s;
  else
    append_quoted(out, s);
}

// ---------------------------------------------------------------------------
// Reading

struct mark {
  int line = 0;
  int column = 0;
};

mark mark_of(const YAML::Mark& m) {
  if (m.is_null()) return {};
  return {m.line + 1, m.column + 1};
}

class reader {
 public:
  explicit reader(std::string file) : file_(std::move(file)) {}

  void error(mark at, std::string path, std::string message, std::string hint = {}) {
    problems_.push_back(problem{severity::error, file_, std::move(path), at.line, at.column, std::move(message),
                                std::move(hint)});
  }
  void warning(mark at, std::string path, std::string message, std::string hint = {}) {
    problems_.push_back(problem{severity::warning, file_, std::move(path), at.line, at.column, std::move(message),
                                std::move(hint)});
  }
  std::vector<problem>& problems() { return problems_; }
  bool has_errors() const {
    return std::any_of(problems_.begin(), problems_.end(),
                       [](const problem& p) { return p.level == severity::error; });
  }

  // A scalar's text; an error (and nothing) for a list, a mapping or nothing.
  std::optional<std::string> scalar(const YAML::Node& n, mark at, const std::string& path, std::string_view what) {
    if (n.IsScalar()) return n.Scalar();
    error(at, path, "expected " + std::string(what) + ", got " + describe(n));
    return std::nullopt;
  }

  static std::string describe(const YAML::Node& n) {
    if (n.IsSequence()) return "a list";
    if (n.IsMap()) return "a mapping";
    if (n.IsNull()) return "nothing";
    return quote(n.Scalar());
  }

  void read_entry(const YAML::Node& item, const std::string& path, mark at, std::vector<policy::memory_entry>& out,
                  std::vector<mark>& out_marks, std::vector<std::string>& out_paths);

 private:
  std::string file_;
  std::vector<problem> problems_;
};

mark value_mark(const YAML::Node& value, mark key_at) {
  const mark own = mark_of(value.Mark());
  if (own.line == 0 || (value.IsNull() && own.line != key_at.line)) return key_at;
  return own;
}

void reader::read_entry(const YAML::Node& item, const std::string& path, mark at,
                        std::vector<policy::memory_entry>& out, std::vector<mark>& out_marks,
                        std::vector<std::string>& out_paths) {
  if (!item.IsMap()) {
    error(at, path, "expected an entry such as {host: api.example.com, decision: allow}, got " + describe(item));
    return;
  }
  const std::size_t errors_before = problems_.size();
  struct seen_value {
    YAML::Node node;
    mark at;
  };
  std::map<std::string, seen_value, std::less<>> fields;
  for (auto it = item.begin(); it != item.end(); ++it) {
    const YAML::Node key = it->first;
    const mark key_at = mark_of(key.Mark());
    if (!key.IsScalar()) {
      error(key_at, path, "a key must be a plain word, not " + describe(key));
      continue;
    }
    const std::string& name = key.Scalar();
    if (std::find(entry_keys.begin(), entry_keys.end(), name) == entry_keys.end()) {
      std::string known;
      for (const auto k : entry_keys) known += (known.empty() ? "" : ", ") + std::string(k);
      error(key_at, path + "." + name, "unknown key " + quote(name), "known keys here: " + known);
      continue;
    }
    if (fields.count(name) != 0) {
      error(key_at, path + "." + name, "duplicate key " + quote(name), "keep one");
      continue;
    }
    fields.emplace(name, seen_value{it->second, value_mark(it->second, key_at)});
  }
  const auto get = [&](std::string_view k) -> const seen_value* {
    auto f = fields.find(k);
    return f == fields.end() ? nullptr : &f->second;
  };
  const auto sub = [&](std::string_view k) { return path + "." + std::string(k); };

  policy::memory_entry e;
  e.lifetime = policy::answer_lifetime::always;
  e.expires = clock::time_point::max();
  e.answered_by = "decisions_file";

  // The name: `host` or `domain`, canonical.
  const seen_value* host = get("host");
  const seen_value* domain = get("domain");
  std::optional<policy::answer_scope> implied;
  if (host && domain) {
    error(domain->at, sub("domain"), "an entry names either `host` or `domain`, not both",
          "write one entry for each");
  } else if (!host && !domain) {
    error(at, path, "missing `host` or `domain`", "add host: api.example.com, or domain: example.com");
  } else {
    const seen_value& v = host ? *host : *domain;
    const std::string key = host ? "host" : "domain";
    if (auto text = scalar(v.node, v.at, sub(key), "a host name")) {
      const auto canonical = policy::canonicalize_host(*text);
      if (!canonical.ok()) {
        error(v.at, sub(key), quote(*text) + " is not a valid host: " + std::string(policy::to_string(canonical.error)),
              "write the name as a client sends it, in lower case, IDNs as punycode");
      } else if (domain && canonical.host->is_ip()) {
        error(v.at, sub(key), quote(*text) + " is an IP address, and a domain answer never covers addresses",
              "write host: " + canonical.host->text);
      } else if (domain && is_public_suffix(canonical.host->text)) {
        error(v.at, sub(key), quote(*text) + " is a public suffix: this answer would cover every domain under it",
              "write a registrable domain such as example." + canonical.host->text);
      } else {
        e.name = canonical.host->text;
        implied = domain ? policy::answer_scope::domain : policy::answer_scope::host;
      }
    }
  }

  // `port`: for host_port, and then required.
  const seen_value* port = get("port");
  if (port) {
    std::uint64_t value = 0;
    std::string text = port->node.IsScalar() ? port->node.Scalar() : std::string();
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (!port->node.IsScalar() || text.empty() || ec != std::errc{} || end != text.data() + text.size() ||
        value < 1 || value > 65535) {
      error(port->at, sub("port"), "expected a port from 1 to 65535, got " + describe(port->node), "write port: 443");
    } else {
      e.port = static_cast<std::uint16_t>(value);
      if (implied == policy::answer_scope::host) implied = policy::answer_scope::host_port;
    }
  }

  // `scope`: as given (and agreeing with the keys), else implied by them.
  if (const seen_value* scope = get("scope")) {
    if (auto text = scalar(scope->node, scope->at, sub("scope"), "host | host_port | domain")) {
      const auto parsed = policy::parse_answer_scope(*text);
      if (!parsed) {
        error(scope->at, sub("scope"), "expected host | host_port | domain, got " + quote(*text),
              *text == "subdomain" || *text == "subdomains" || *text == "wildcard"
                  ? "scope: domain covers the domain and all its subdomains"
                  : "host: this host on any port; host_port: one port; domain: the domain and its subdomains");
      } else if (domain && *parsed != policy::answer_scope::domain) {
        error(scope->at, sub("scope"), "`domain:` goes with scope: domain",
              "write host: NAME for scope " + std::string(policy::to_string(*parsed)));
      } else if (host && *parsed == policy::answer_scope::domain) {
        error(scope->at, sub("scope"), "scope: domain names a `domain:`, not a `host:`",
              "write domain: NAME, or scope: host");
      } else if (*parsed == policy::answer_scope::host_port && !port) {
        error(scope->at, sub("scope"), "scope: host_port needs a `port`", "add port: 443, or write scope: host");
      } else if (*parsed != policy::answer_scope::host_port && port && !domain) {
        error(port->at, sub("port"), "`port` applies to scope: host_port only",
              "remove it, or write scope: host_port");
      } else {
        implied = *parsed;
      }
    }
  }
  if (domain && port)
    error(port->at, sub("port"), "a domain answer covers every port", "remove `port`, or answer for one host:port");
  if (implied) e.scope = *implied;

  // `decision`: required.
  if (const seen_value* d = get("decision")) {
    if (auto text = scalar(d->node, d->at, sub("decision"), "allow | deny")) {
      if (*text == "allow")
        e.result = policy::outcome::allow;
      else if (*text == "deny")
        e.result = policy::outcome::deny;
      else
        error(d->at, sub("decision"), "expected allow | deny, got " + quote(*text));
    }
  } else {
    error(at, path, "missing `decision`", "add decision: allow (or deny)");
  }

  if (const seen_value* by = get("answered_by")) {
    if (auto text = scalar(by->node, by->at, sub("answered_by"), "a name such as admin")) e.answered_by = *text;
  }
  if (const seen_value* when = get("answered_at")) {
    if (auto text = scalar(when->node, when->at, sub("answered_at"), "a time such as 2026-12-03T18:32:23Z")) {
      if (auto t = parse_time(*text))
        e.answered_at = *t;
      else
        error(when->at, sub("answered_at"), quote(*text) + " is not an RFC 3339 time",
              "write it as 2026-12-03T18:32:23Z (UTC) or with an offset, 2026-12-03T19:32:23+01:00");
    }
  }
  if (const seen_value* why = get("reason")) {
    if (why->node.IsNull())
      e.reason.clear();
    else if (auto text = scalar(why->node, why->at, sub("reason"), "a text"))
      e.reason = *text;
  }

  const bool entry_ok = std::none_of(problems_.begin() + static_cast<std::ptrdiff_t>(errors_before), problems_.end(),
                                     [](const problem& p) { return p.level == severity::error; });
  if (entry_ok) {
    out.push_back(std::move(e));
    out_marks.push_back(at);
    out_paths.push_back(path);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Times

std::string format_time(clock::time_point t) {
  using namespace std::chrono;
  const auto since = t.time_since_epoch();
  auto secs = duration_cast<seconds>(since);
  if (secs > since) secs -= seconds{1};  // floor, for times before 1970
  const auto nanos = duration_cast<nanoseconds>(since - secs).count();
  long long days = secs.count() / 86400;
  long long rest = secs.count() % 86400;
  if (rest < 0) {
    rest += 86400;
    --days;
  }
  long long y = 0;
  unsigned m = 0;
  unsigned d = 0;
  civil_from_days(days, y, m, d);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lld", y, m, d, rest / 3600, rest / 60 % 60,
                rest % 60);
  std::string out = buf;
  if (nanos != 0) {
    std::snprintf(buf, sizeof buf, ".%09lld", static_cast<long long>(nanos));
    std::string frac = buf;
    while (frac.back() == '0') frac.pop_back();
    out += frac;
  }
  out += 'Z';
  return out;
}

std::optional<clock::time_point> parse_time(std::string_view s) {
  // date-time = full-date "T" full-time (RFC 3339 §5.6); §5.6's NOTE allows "t"/"z".
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
      s[16] != ':')
    return std::nullopt;
  const auto year = digits(s, 0, 4);
  const auto month = digits(s, 5, 2);
  const auto day = digits(s, 8, 2);
  const auto hour = digits(s, 11, 2);
  const auto minute = digits(s, 14, 2);
  const auto second = digits(s, 17, 2);
  if (!year || !month || !day || !hour || !minute || !second) return std::nullopt;
  if (*month < 1 || *month > 12 || *day < 1 || *day > days_in_month(*year, *month) || *hour > 23 || *minute > 59 ||
      *second > 59)  // a leap second (60) cannot be represented by system_clock
    return std::nullopt;
  std::size_t pos = 19;
  long long nanos = 0;
  if (s[pos] == '.') {
    ++pos;
    const std::size_t start = pos;
    long long scale = 100000000;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      nanos += (s[pos] - '0') * scale;  // digits past nanoseconds are dropped
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  long long offset_minutes = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    const auto oh = digits(s, pos + 1, 2);
    const auto om = digits(s, pos + 4, 2);
    if (!oh || !om || pos + 3 >= s.size() || s[pos + 3] != ':' || *oh > 23 || *om > 59) return std::nullopt;
    offset_minutes = (s[pos] == '+' ? 1 : -1) * static_cast<long long>(*oh * 60 + *om);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  const long long days = days_from_civil(*year, *month, *day);
  const long long secs =
      days * 86400 + static_cast<long long>(*hour) * 3600 + *minute * 60LL + *second - offset_minutes * 60;
  // system_clock counts nanoseconds in 64 bits: about 1678 to 2262.
  const long long limit = std::chrono::duration_cast<std::chrono::seconds>(clock::duration::max()).count() - 1;
  if (secs >= limit || secs <= -limit) return std::nullopt;
  return clock::time_point{std::chrono::duration_cast<clock::duration>(std::chrono::seconds{secs} +
                                                                       std::chrono::nanoseconds{nanos})};
}

// ---------------------------------------------------------------------------
// Loading

bool load_result::ok() const {
  return std::none_of(problems.begin(), problems.end(), [](const problem& p) { return p.level == severity::error; });
}

load_result parse(std::string_view text, std::string_view name) {
  reader r{std::string(name)};
  load_result out;
  std::vector<mark> marks;
  std::vector<std::string> paths;
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    if (root.IsNull()) return out;  // empty, or comments only
    if (!root.IsMap()) {
      r.error(mark_of(root.Mark()), "", "expected a mapping with `decisions:`, got " + reader::describe(root),
              "the file reads decisions: [...]");
    } else {
      for (auto it = root.begin(); it != root.end(); ++it) {
        const YAML::Node key = it->first;
        const mark key_at = mark_of(key.Mark());
        if (!key.IsScalar() || key.Scalar() != "decisions") {
          r.error(key_at, key.IsScalar() ? key.Scalar() : "", "unknown key " + reader::describe(key),
                  "the file holds one key, `decisions:`");
          continue;
        }
        const YAML::Node list = it->second;
        if (list.IsNull()) continue;
        if (!list.IsSequence()) {
          r.error(value_mark(list, key_at), "decisions", "expected a list of entries, got " + reader::describe(list),
                  "write `- host: api.example.com` lines under decisions:");
          continue;
        }
        std::size_t index = 0;
        for (const auto& item : list) {
          const std::string path = "decisions[" + std::to_string(index++) + "]";
          mark at = mark_of(item.Mark());
          if (at.line == 0) at = key_at;
          r.read_entry(item, path, at, out.entries, marks, paths);
        }
      }
    }
  } catch (const YAML::Exception& e) {
    r.error(mark_of(e.mark), "", "syntax error: " + (e.msg.empty() ? std::string("cannot parse the file") : e.msg),
            "check indentation, brackets and quotes on this line and the one before");
  }
  // An entry written twice (same scope, name and port): the later one is kept, as a
  // new answer replaces an old one.
  std::map<std::string, std::size_t> first;
  std::vector<bool> dropped(out.entries.size(), false);
  for (std::size_t i = 0; i < out.entries.size(); ++i) {
    const auto& e = out.entries[i];
    std::string key = std::string(policy::to_string(e.scope)) + " " + e.name + " " + std::to_string(e.port);
    auto [it, fresh] = first.emplace(key, i);
    if (fresh) continue;
    dropped[it->second] = true;
    r.warning(marks[i], paths[i],
              "an answer for " + quote(e.name) + " (scope " + std::string(policy::to_string(e.scope)) +
                  ") is written twice, first at line " + std::to_string(marks[it->second].line) +
                  ": this later one is used",
              "remove one of them");
    it->second = i;
  }
  if (r.has_errors()) {
    out.entries.clear();
  } else {
    std::vector<policy::memory_entry> kept;
    for (std::size_t i = 0; i < out.entries.size(); ++i) {
      if (dropped[i]) continue;
      kept.push_back(std::move(out.entries[i]));
      out.where.push_back(policy::source_location{std::string(name), paths[i], marks[i].line, marks[i].column});
    }
    out.entries = std::move(kept);
  }
  out.problems = std::move(r.problems());
  return out;
}

load_result load(const std::string& path) {
  load_result out;
  const auto fail = [&](std::string message, std::string hint = {}) {
    out.problems.push_back(problem{severity::error, path, "", 0, 0, std::move(message), std::move(hint)});
    return out;
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return out;  // nothing remembered yet
    return fail("cannot read the decisions file: " + std::string(std::strerror(errno)));
  }
  if (S_ISDIR(st.st_mode)) return fail("the decisions file is a directory", "name a file in it");
  // A FIFO or a device would block the read, or never end.
  if (!S_ISREG(st.st_mode)) return fail("the decisions file is not a regular file", "name a plain file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot read the decisions file: " + std::string(std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return fail("cannot read the decisions file: " + std::string(std::strerror(errno)));
  return parse(text.str(), path);
}

// ---------------------------------------------------------------------------
// Saving

std::string to_yaml(std::span<const policy::memory_entry> entries) {
  std::string out(header);
  std::size_t written = 0;
  std::string list;
  for (const auto& e : entries) {
    if (e.lifetime != policy::answer_lifetime::always) continue;
    ++written;
    list += e.scope == policy::answer_scope::domain ? "  - domain: " : "  - host: ";
    append_name(list, e.name);
    list += '\n';
    if (e.scope == policy::answer_scope::host_port) list += "    port: " + std::to_string(e.port) + "\n";
    list += "    scope: " + std::string(policy::to_string(e.scope)) + "\n";
    list += "    decision: " + std::string(e.result == policy::outcome::allow ? "allow" : "deny") + "\n";
    list += "    answered_by: ";
    append_quoted(list, e.answered_by);
    list += "\n    answered_at: " + format_time(e.answered_at) + "\n";
    list += "    reason: ";
    append_quoted(list, e.reason);
    list += '\n';
  }
  out += written == 0 ? "decisions: []\n" : "decisions:\n" + list;
  return out;
}

std::optional<std::string> save(const std::string& path, std::span<const policy::memory_entry> entries) {
  const std::string text = to_yaml(entries);
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty()) return "cannot write the decisions file " + quote(path) + ": it names a directory";
  // Hidden, beside the file: rename(2) is atomic within one file system only.
  std::string temp = (dir == "/" ? std::string("/") : dir + "/") + "." + base + ".tmp-XXXXXX";
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);  // mode 0600; never inherited by a hook
  if (fd < 0)
    return "cannot write the decisions file " + quote(path) + ": cannot create a file in " + quote(dir) + ": " +
           std::strerror(errno);
  // Reports errno of the step that failed (closing the file first, when still open,
  // without letting close(2) change it) and removes the temporary file.
  const auto fail = [&](std::string what, int open_fd = -1) -> std::optional<std::string> {
    const int saved = errno;
    if (open_fd >= 0) ::close(open_fd);
    ::unlink(temp.c_str());
    return "cannot write the decisions file " + quote(path) + ": " + what + ": " + std::strerror(saved);
  };
  if (::fchmod(fd, 0600) != 0) return fail("chmod", fd);
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return fail("write", fd);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync", fd);
  if (::close(fd) != 0) return fail("close");
  if (::rename(temp.c_str(), path.c_str()) != 0) return fail("rename");
  // The rename is in the directory: without this fsync a crash may bring back the old
  // file (or none). The new file is complete either way.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    const int saved = errno;
    if (dfd >= 0) ::close(dfd);
    return "wrote the decisions file " + quote(path) + " but could not sync " + quote(dir) + ": " +
           std::strerror(saved);
  }
  ::close(dfd);
  return std::nullopt;
}

}  // namespace egressd::config::decisions_file
