// Flow: text -> yaml-cpp node tree (syntax errors become problems with line:column)
// -> one walk over the tree that fills `config` field by field, reporting unknown
// and duplicate keys, wrong types and bad scalars, and noting where each path was
// read -> check_config(): every cross-field rule, in one function -> load_result.
// The walk never stops at the first problem: a bad field keeps its default and the
// walk goes on, so one run of `egressd check-config` shows everything.
// Settings files: text -> config/json.hpp (strict JSON, as JSON.parse reads it) ->
// settings_data (lists, strictAllowlist, ports) -> onto the embedded default, or
// layered onto a YAML config -> the same check_config().
// yaml-cpp types never leave this file.

#include "config/load.hpp"

#include "config/byte_size.hpp"
#include "config/decisions_file.hpp"
#include "config/json.hpp"
#include "config/keys.hpp"
#include "policy/address.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sstream>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <utility>

namespace egressd::config {

namespace {

constexpr std::string_view embedded_name = "embedded default";

// ---------------------------------------------------------------------------
// Problems and where things were read

struct mark {
  int line = 0;  // 1-based; 0 unknown
  int column = 0;
};

mark mark_of(const YAML::Mark& m) {
  if (m.is_null()) return {};
  return {m.line + 1, m.column + 1};
}

// Collects problems for one file.
class diagnostics {
 public:
  explicit diagnostics(std::string file) : file_(std::move(file)) {}

  void report(severity level, mark at, std::string path, std::string message, std::string hint = {}) {
    problems_.push_back(
        problem{level, file_, std::move(path), at.line, at.column, std::move(message), std::move(hint)});
  }
  // A problem in another file (a layered settings file, a rule entry's own file).
  void add(problem p) {
    if (p.file.empty()) p.file = file_;
    problems_.push_back(std::move(p));
  }
  void error(mark at, std::string path, std::string message, std::string hint = {}) {
    report(severity::error, at, std::move(path), std::move(message), std::move(hint));
  }
  void warning(mark at, std::string path, std::string message, std::string hint = {}) {
    report(severity::warning, at, std::move(path), std::move(message), std::move(hint));
  }

  const std::string& file() const { return file_; }
  std::vector<problem>& problems() { return problems_; }

  // Whether an error was reported at `path` or below it: cross-field checks skip
  // what is already reported, so one mistake gives one message.
  bool has_error_under(std::string_view path) const {
    return std::any_of(problems_.begin(), problems_.end(), [&](const problem& p) {
      if (p.level != severity::error || p.path.compare(0, path.size(), path) != 0) return false;
      return p.path.size() == path.size() || p.path[path.size()] == '.' || p.path[path.size()] == '[';
    });
  }

 private:
  std::string file_;
  std::vector<problem> problems_;
};

// Where a logical config path (`listeners[1].address`, `policy.unknown`) was
// written, and the path to show for it: the same for YAML, the JSON path for a
// settings file. The cross-field checks look their locations up here.
struct origin {
  std::string shown_path;
  mark at;
  std::string file;  // empty: the file being loaded; else a layered settings file
};

class origins {
 public:
  void note(const std::string& path, mark at) { by_path_[path] = origin{path, at, {}}; }
  void note_as(const std::string& path, std::string shown_path, mark at, std::string file = {}) {
    by_path_[path] = origin{std::move(shown_path), at, std::move(file)};
  }
  bool has(const std::string& path) const { return by_path_.count(path) != 0; }
  // The origin of `path`, else of its closest noted ancestor (shown as `path`).
  origin of(const std::string& path) const {
    if (auto it = by_path_.find(path); it != by_path_.end()) return it->second;
    std::string parent = path;
    while (!parent.empty()) {
      const std::size_t cut = parent.find_last_of(".[");
      parent.resize(cut == std::string::npos ? 0 : cut);
      if (auto it = by_path_.find(parent); it != by_path_.end()) return origin{path, it->second.at, it->second.file};
    }
    return origin{path, {}, {}};
  }

  // The YAML path of config.listeners[i] and config.auth.users[i] (entries whose
  // address or name failed to parse are not in `config`, so indices can differ).
  std::vector<std::string> listener_paths;
  std::vector<std::string> user_paths;

 private:
  std::map<std::string, origin> by_path_;
};

// ---------------------------------------------------------------------------
// Small text helpers

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Optimal string alignment distance (Levenshtein plus adjacent transpositions),
// case-insensitive: `alow`, `allwo` and `Allow` are all close to `allow`.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  std::vector<std::size_t> d((n + 1) * (m + 1));
  auto at = [&](std::size_t i, std::size_t j) -> std::size_t& { return d[i * (m + 1) + j]; };
  for (std::size_t i = 0; i <= n; ++i) at(i, 0) = i;
  for (std::size_t j = 0; j <= m; ++j) at(0, j) = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      at(i, j) = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
        at(i, j) = std::min(at(i, j), at(i - 2, j - 2) + 1);
    }
  }
  return at(n, m);
}

// The candidate closest to `word`, if close enough to be a plausible typo.
std::optional<std::string_view> closest(std::string_view word, std::span<const std::string_view> candidates) {
  const std::size_t allowed = word.size() <= 4 ? 1 : word.size() <= 8 ? 2 : 3;
  std::optional<std::string_view> best;
  std::size_t best_distance = allowed + 1;
  for (const auto candidate : candidates) {
    const std::size_t distance = edit_distance(word, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string join(std::span<const std::string_view> words) {
  std::string out;
  for (const auto w : words) {
    if (!out.empty()) out += ", ";
    out += w;
  }
  return out;
}

std::string quote(std::string_view s) { return "`" + std::string(s) + "`"; }

std::string child(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}
std::string element(const std::string& path, std::size_t index) { return path + "[" + std::to_string(index) + "]"; }

bool is_ip_literal(std::string_view text) { return policy::parse_ip(text).has_value(); }

// ---------------------------------------------------------------------------
// The schema: known keys per mapping (config/keys.hpp). A key known in another
// section gets the hint "belongs under ..." when it is no typo of a key of its own
// section.

// Features whose keys are in the schema but whose code is not built yet: their keys
// are errors ("not yet supported") until the flag is turned on with the feature.
namespace features {
constexpr bool metrics = true;   // metrics: (README "Metrics")
}  // namespace features

std::string unknown_key_hint(std::string_view key, std::span<const std::string_view> known) {
  if (auto guess = closest(key, known)) return "did you mean " + quote(*guess) + "?";
  std::string homes;
  for (const auto& s : keys::sections) {
    if (std::find(s.keys.begin(), s.keys.end(), key) == s.keys.end()) continue;
    homes += homes.empty() ? "" : " or ";
    homes += quote(s.name);
  }
  if (!homes.empty()) return quote(key) + " belongs under " + homes;
  if (std::find(keys::top.begin(), keys::top.end(), key) != keys::top.end())
    return quote(key) + " belongs at the top level, without indentation";
  return "known keys here: " + join(known);
}

// ---------------------------------------------------------------------------
// The YAML walk

// A node with its path and where it was written.
struct field {
  YAML::Node node;
  std::string path;
  mark at;
};

// Quoted (`"x"`, `'x'`) or tagged `!!str`: a string even when it reads as a number.
bool is_quoted(const YAML::Node& node) { return node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str"; }

// Where a mapping's value was written. An empty value (`key:` with nothing after
// it) has a mark past it, on the next line: it gets its key's mark instead.
mark value_mark(const YAML::Node& value, mark key_at) {
  const mark own = mark_of(value.Mark());
  if (own.line == 0 || (value.IsNull() && own.line != key_at.line)) return key_at;
  return own;
}

// Where a list's item was written (an explicit `null` has its own mark).
mark item_mark(const YAML::Node& item, mark list_at) {
  const mark own = mark_of(item.Mark());
  return own.line == 0 ? list_at : own;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "nothing";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      break;
  }
  return is_quoted(node) ? "the string \"" + node.Scalar() + "\"" : quote(node.Scalar());
}

class yaml_reader {
 public:
  yaml_reader(diagnostics& diag, origins& where) : diag_(diag), where_(where) {}

  diagnostics& diag() { return diag_; }
  origins& where() { return where_; }

  // Calls on_key(key, value) for each known key of a mapping, in file order.
  // Reports a node that is no mapping, non-string, unknown and duplicate keys.
  // A null node (`admin:` with nothing under it) is an empty mapping.
  template <class OnKey>
  void mapping(const field& f, std::span<const std::string_view> known, OnKey&& on_key) {
    where_.note(f.path, f.at);
    if (f.node.IsNull()) return;
    if (!f.node.IsMap()) {
      wrong_type(f, "a mapping (`key: value` lines or `{...}`)");
      return;
    }
    std::set<std::string, std::less<>> seen;
    for (auto it = f.node.begin(); it != f.node.end(); ++it) {
      const YAML::Node key_node = it->first;  // a copy: `*it` is a temporary
      const mark key_at = mark_of(key_node.Mark());
      if (!key_node.IsScalar()) {
        diag_.error(key_at, f.path, "a key must be a plain word, not " + describe(key_node));
        continue;
      }
      const std::string& key = key_node.Scalar();
      const std::string path = child(f.path, key);
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        diag_.error(key_at, path, "unknown key " + quote(key), unknown_key_hint(key, known));
        continue;
      }
      if (!seen.insert(key).second) {
        diag_.error(key_at, path, "duplicate key " + quote(key), "keep one " + quote(key) + " and merge the two");
        continue;
      }
      const YAML::Node value = it->second;
      const field v{value, path, value_mark(value, key_at)};
      where_.note(path, v.at);
      on_key(std::string_view(key), v);
    }
  }

  // Calls on_item(item) for each element of a list; null is an empty list.
  template <class OnItem>
  void sequence(const field& f, std::string_view example, OnItem&& on_item) {
    if (f.node.IsNull()) return;
    if (!f.node.IsSequence()) {
      wrong_type(f, "a list", "write " + std::string(example));
      return;
    }
    std::size_t index = 0;
    for (const auto& item : f.node) {
      const std::string path = element(f.path, index++);
      const field v{item, path, item_mark(item, f.at)};
      where_.note(path, v.at);
      on_item(v);
    }
  }

  std::optional<std::string> string(const field& f) {
    if (!f.node.IsScalar()) {
      wrong_type(f, "a string");
      return std::nullopt;
    }
    return f.node.Scalar();
  }

  std::optional<bool> boolean(const field& f) {
    if (f.node.IsScalar() && !is_quoted(f.node)) {
      const std::string& s = f.node.Scalar();
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    wrong_type(f, "true or false");
    return std::nullopt;
  }

  // A decimal integer in [min, max], written without quotes.
  std::optional<std::uint64_t> integer(const field& f, std::uint64_t min, std::uint64_t max) {
    if (!f.node.IsScalar() || is_quoted(f.node)) {
      wrong_type(f, "a whole number");
      return std::nullopt;
    }
    const std::string& s = f.node.Scalar();
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (s.empty() || end != s.data() + s.size() || (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
      wrong_type(f, "a whole number");
      return std::nullopt;
    }
    if (ec == std::errc::result_out_of_range || value < min || value > max) {
      diag_.error(
          f.at, f.path,
          quote(s) + " is out of range: write a number from " + std::to_string(min) + " to " + std::to_string(max));
      return std::nullopt;
    }
    return value;
  }

  // A duration of at least `min` (0 or 1ms: "must be greater than 0").
  std::optional<duration> time(const field& f, duration min) {
    if (!f.node.IsScalar()) {
      wrong_type(f, "a duration such as 10s");
      return std::nullopt;
    }
    auto parsed = parse_duration(f.node.Scalar());
    if (!parsed.value) {
      diag_.error(f.at, f.path, parsed.error, parsed.hint);
      return std::nullopt;
    }
    if (*parsed.value < min) {
      diag_.error(f.at, f.path, "must be greater than 0", "write a duration such as 10s");
      return std::nullopt;
    }
    return parsed.value;
  }

  std::optional<endpoint> address(const field& f) {
    if (!f.node.IsScalar()) {
      wrong_type(f, "an address such as 127.0.0.1:3128");
      return std::nullopt;
    }
    auto parsed = parse_endpoint(f.node.Scalar());
    if (!parsed.value) {
      diag_.error(f.at, f.path, parsed.error, parsed.hint);
      return std::nullopt;
    }
    return parsed.value;
  }

  template <class E>
  std::optional<E> choice(const field& f, std::initializer_list<std::pair<std::string_view, E>> options) {
    if (f.node.IsScalar()) {
      for (const auto& [name, value] : options)
        if (f.node.Scalar() == name) return value;
    }
    std::vector<std::string_view> names;
    std::string list;
    for (const auto& option : options) {
      names.push_back(option.first);
      list += (list.empty() ? "" : " | ") + std::string(option.first);
    }
    std::string hint;
    if (f.node.IsScalar())
      if (auto guess = closest(f.node.Scalar(), names)) hint = "did you mean " + quote(*guess) + "?";
    diag_.error(f.at, f.path, "expected " + list + ", got " + describe(f.node), hint);
    return std::nullopt;
  }

  // A list of strings kept with their locations, for policy::compile to judge.
  std::vector<policy::rule_entry> entries(const field& f) {
    std::vector<policy::rule_entry> out;
    sequence(f, "[\"example.com\", \"*.example.com\"]", [&](const field& item) {
      if (auto text = string(item))
        out.push_back(policy::rule_entry{*text, {diag_.file(), item.path, item.at.line, item.at.column}});
    });
    return out;
  }

  void wrong_type(const field& f, std::string_view expected, std::string hint = {}) {
    diag_.error(f.at, f.path, "expected " + std::string(expected) + ", got " + describe(f.node), std::move(hint));
  }

 private:
  diagnostics& diag_;
  origins& where_;
};

// ---------------------------------------------------------------------------
// Sections

template <class T>
void assign(T& target, std::optional<T> value) {
  if (value) target = std::move(*value);
}

template <class T>
void assign_count(T& target, std::optional<std::uint64_t> value) {
  if (value) target = static_cast<T>(*value);
}

constexpr duration positive{1};
constexpr duration non_negative{0};
constexpr std::uint64_t max_size = std::numeric_limits<std::uint32_t>::max();

// `mode:` of a Unix listener: permission bits in octal, as chmod(1) takes them
// ("0660", 0660, 660 or 0o660; YAML 1.1 would read an unquoted 0660 as octal too).
std::optional<std::uint32_t> read_mode(yaml_reader& r, const field& f) {
  if (!f.node.IsScalar() || f.node.Scalar().empty()) {
    r.wrong_type(f, "a mode in octal such as \"0660\"");
    return std::nullopt;
  }
  std::string_view text = f.node.Scalar();
  const std::string_view digits = text.substr(text.rfind("0o", 0) == 0 ? 2 : 0);
  std::uint32_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, 8);
  if (digits.empty() || end != digits.data() + digits.size() ||
      (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
    r.diag().error(f.at, f.path, quote(text) + " is not a mode in octal",
                   "write the permission bits as chmod takes them, e.g. \"0660\"");
    return std::nullopt;
  }
  if (ec == std::errc::result_out_of_range || value > 0777) {
    r.diag().error(f.at, f.path, quote(text) + " is out of range: write a mode from 0 to 0777",
                   "setuid, setgid and sticky bits mean nothing on a socket; e.g. \"0660\"");
    return std::nullopt;
  }
  return value;
}

// `group:` of a Unix listener: a group name that exists here, or a number.
std::optional<std::uint32_t> read_group(yaml_reader& r, const field& f, std::string& name) {
  if (!f.node.IsScalar() || f.node.Scalar().empty()) {
    r.wrong_type(f, "a group name or number");
    return std::nullopt;
  }
  name = f.node.Scalar();
  std::uint32_t gid = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), gid);
  if (ec == std::errc{} && end == name.data() + name.size() && gid != static_cast<std::uint32_t>(-1)) return gid;
  struct group buf_group {};
  struct group* found = nullptr;
  std::vector<char> buf(4096);
  for (int tries = 0; tries < 6; ++tries) {  // ERANGE: a bigger buffer, up to 128 KiB
    const int err = ::getgrnam_r(name.c_str(), &buf_group, buf.data(), buf.size(), &found);
    if (err != ERANGE) break;
    buf.resize(buf.size() * 2);
  }
  if (found == nullptr) {
    r.diag().error(f.at, f.path, "group " + quote(name) + " does not exist on this host",
                   "give a group of /etc/group (getent group), by name or number");
    return std::nullopt;
  }
  return static_cast<std::uint32_t>(found->gr_gid);
}

void read_listeners(yaml_reader& r, const field& f, config& c) {
  r.sequence(f, "[{address: 127.0.0.1:3128}]", [&](const field& item) {
    if (!item.node.IsMap()) {
      r.wrong_type(item, "a listener such as {address: 127.0.0.1:3128}");
      return;
    }
    listener_config listener;
    field mode_field;   // where `mode` and `group` were written, if they were
    field group_field;
    bool has_address = false;
    bool address_ok = false;
    r.mapping(item, keys::listener, [&](std::string_view key, const field& v) {
      if (key == "address") {
        has_address = true;
        if (auto a = r.address(v)) {
          listener.address = std::move(*a);
          address_ok = true;
        }
      } else if (key == "protocols") {
        listener.http = false;
        listener.socks5 = false;
        r.sequence(v, "[http, socks5]", [&](const field& p) {
          enum class protocol : std::uint8_t { http, socks5 };
          if (auto chosen = r.choice<protocol>(p, {{"http", protocol::http}, {"socks5", protocol::socks5}}))
            (*chosen == protocol::http ? listener.http : listener.socks5) = true;
        });
        if (!listener.http && !listener.socks5 && v.node.IsSequence() && v.node.size() == 0)
          r.diag().error(v.at, v.path, "a listener must serve at least one protocol",
                         "write [http, socks5], or remove `protocols` to serve both");
      } else if (key == "mode" || key == "group") {
        (key == "mode" ? mode_field : group_field) = v;
        if (key == "mode")
          listener.mode = read_mode(r, v);
        else
          listener.group = read_group(r, v, listener.group_name);
      }
    });
    if (!has_address) r.diag().error(item.at, item.path, "missing `address`", "add address: 127.0.0.1:3128");
    if (address_ok && listener.address.kind != endpoint::kind_t::unix_socket) {
      for (const auto* unix_only : {&mode_field, &group_field}) {
        if (!unix_only->path.empty())
          r.diag().error(unix_only->at, unix_only->path,
                         quote(unix_only->path.substr(unix_only->path.rfind('.') + 1)) +
                             " applies to Unix listeners only (a TCP port has no file permissions)",
                         "remove it, or listen on unix:/path");
      }
    }
    if (address_ok && (listener.http || listener.socks5)) {
      r.where().listener_paths.push_back(item.path);
      c.listeners.push_back(std::move(listener));
    }
  });
}

void read_admin(yaml_reader& r, const field& f, config& c) {
  if (f.node.IsNull()) return;  // `admin:` with nothing under it: no admin server
  bool has_address = false;
  std::optional<endpoint> address;
  std::string token_file;
  r.mapping(f, keys::admin, [&](std::string_view key, const field& v) {
    if (key == "token_file") {
      assign(token_file, r.string(v));
      return;
    }
    has_address = true;
    address = r.address(v);
    if (address && address->kind != endpoint::kind_t::tcp) {
      r.diag().error(v.at, v.path, "the admin endpoint listens on host:port only", "write e.g. 127.0.0.1:9090");
      address.reset();
    }
  });
  if (f.node.IsMap() && !has_address)
    r.diag().error(f.at, f.path, "missing `address`", "add address: 127.0.0.1:9090, or remove `admin`");
  if (address) c.admin = admin_config{std::move(*address), std::move(token_file)};
}

void read_policy(yaml_reader& r, const field& f, config& c) {
  c.policy.syntax = policy::grammar::egressd;
  r.mapping(f, keys::policy, [&](std::string_view key, const field& v) {
    if (key == "allow") {
      c.policy.allow = r.entries(v);
    } else if (key == "deny") {
      c.policy.deny = r.entries(v);
    } else if (key == "unknown") {
      assign(c.policy.unknown, r.choice<policy::unknown_mode>(v, {{"ask", policy::unknown_mode::ask},
                                                                  {"deny", policy::unknown_mode::deny},
                                                                  {"allow", policy::unknown_mode::allow}}));
    } else if (key == "guard") {
      r.mapping(v, keys::guard, [&](std::string_view guard_key, const field& g) {
        if (guard_key == "deny_ranges")
          c.policy.guard.deny_ranges = r.entries(g);
        else
          assign(c.policy.guard.allow_private, r.boolean(g));
      });
    }
  });
}

void read_hook(yaml_reader& r, const field& f, config& c) {
  if (f.node.IsNull()) return;  // `hook:` with nothing under it: no hook
  hook_config hook;
  r.mapping(f, keys::hook, [&](std::string_view key, const field& v) {
    if (key == "exec") {
      r.sequence(v, "[\"/usr/local/bin/approve\", \"--flag\"]", [&](const field& arg) {
        if (auto s = r.string(arg)) hook.exec.push_back(std::move(*s));
      });
    } else if (key == "persistent") {
      assign(hook.persistent, r.boolean(v));
    } else if (key == "url") {
      assign(hook.url, r.string(v));
    } else if (key == "ca_file") {
      assign(hook.ca_file, r.string(v));
    } else if (key == "token_file") {
      assign(hook.token_file, r.string(v));
    } else if (key == "console") {
      assign(hook.console, r.boolean(v));
    } else if (key == "timeout") {
      assign(hook.timeout, r.time(v, positive));
    } else if (key == "on_timeout") {
      assign(hook.on_timeout,
             r.choice<hook_fallback>(v, {{"deny", hook_fallback::deny}, {"allow", hook_fallback::allow}}));
    } else if (key == "max_pending") {
      assign_count(hook.max_pending, r.integer(v, 1, max_size));
    } else if (key == "concurrency") {
      assign_count(hook.concurrency, r.integer(v, 1, 4096));
    } else if (key == "ttl") {
      assign(hook.ttl, r.time(v, positive));
    } else if (key == "deny_ttl") {
      assign(hook.deny_ttl, r.time(v, positive));
    }
  });
  if (f.node.IsMap()) c.hook = std::move(hook);
}

void read_limits(yaml_reader& r, const field& f, config& c) {
  limits_config& l = c.limits;
  r.mapping(f, keys::limits, [&](std::string_view key, const field& v) {
    if (key == "max_connections")
      assign_count(l.max_connections, r.integer(v, 1, max_size));
    else if (key == "head_timeout")
      assign(l.head_timeout, r.time(v, positive));
    else if (key == "connect_timeout")
      assign(l.connect_timeout, r.time(v, positive));
    else if (key == "idle_timeout")
      assign(l.idle_timeout, r.time(v, positive));
    else if (key == "max_head_bytes")
      assign_count(l.max_head_bytes, r.integer(v, 1024, 1024 * 1024));
    else if (key == "max_headers")
      assign_count(l.max_headers, r.integer(v, 1, 10000));
    else if (key == "drain_timeout")
      assign(l.drain_timeout, r.time(v, non_negative));
    else if (key == "upstream_idle_per_origin")
      assign_count(l.upstream_idle_per_origin, r.integer(v, 0, 1024));
    else if (key == "upstream_idle_max")
      assign_count(l.upstream_idle_max, r.integer(v, 0, 65536));
    else if (key == "upstream_idle_timeout")
      assign(l.upstream_idle_timeout, r.time(v, positive));
  });
}

// A name server: an IP literal, or `ip:port` / `[v6]:port` with a port from 1.
bool valid_name_server(const std::string& text) {
  if (is_ip_literal(text)) return true;
  const auto parsed = parse_endpoint(text);
  return parsed.value && parsed.value->kind == endpoint::kind_t::tcp && parsed.value->port != 0 &&
         is_ip_literal(parsed.value->host);
}

void read_dns(yaml_reader& r, const field& f, config& c) {
  dns_config& d = c.dns;
  r.mapping(f, keys::dns, [&](std::string_view key, const field& v) {
    if (key == "servers") {
      r.sequence(v, "[\"1.1.1.1\", \"[2606:4700:4700::1111]:53\"]", [&](const field& item) {
        auto s = r.string(item);
        if (!s) return;
        if (!valid_name_server(*s)) {
          r.diag().error(item.at, item.path, quote(*s) + " is not a name server address",
                         "write an IP address, optionally with a port: 1.1.1.1, 127.0.0.1:5353, [::1]:53");
          return;
        }
        d.servers.push_back(std::move(*s));
      });
    } else if (key == "timeout") {
      assign(d.timeout, r.time(v, positive));
    } else if (key == "max_ttl") {
      assign(d.max_ttl, r.time(v, non_negative));
    } else if (key == "negative_ttl") {
      assign(d.negative_ttl, r.time(v, non_negative));
    } else if (key == "hosts_file") {
      assign(d.hosts_file, r.boolean(v));
    }
  });
}

void read_log(yaml_reader& r, const field& f, config& c) {
  r.mapping(f, keys::log, [&](std::string_view key, const field& v) {
    if (key == "format") {
      assign(c.log.format, r.choice<log_format>(v, {{"json", log_format::json}, {"text", log_format::text}}));
    } else if (key == "level") {
      enum class level : std::uint8_t { trace, debug, info, warn, error, critical, off };
      if (r.choice<level>(v, {{"trace", level::trace},
                              {"debug", level::debug},
                              {"info", level::info},
                              {"warn", level::warn},
                              {"error", level::error},
                              {"critical", level::critical},
                              {"off", level::off}}))
        c.log.level = v.node.Scalar();
    } else if (key == "audit") {
      auto s = r.string(v);
      if (s && s->empty()) {
        r.diag().error(v.at, v.path, "empty audit destination", "write stdout, stderr, off or a file path");
      } else if (s) {
        c.log.audit = *s == "stdout"   ? audit_target::standard_output
                      : *s == "stderr" ? audit_target::standard_error
                      : *s == "off"    ? audit_target::off
                                       : audit_target::file;
        if (c.log.audit == audit_target::file) c.log.audit_file = std::move(*s);
      }
    } else if (key == "audit_max_size") {
      if (!v.node.IsScalar()) {
        r.wrong_type(v, "a size such as 100MB");
        return;
      }
      auto parsed = parse_byte_size(v.node.Scalar());
      if (!parsed.value)
        r.diag().error(v.at, v.path, parsed.error, parsed.hint);
      else if (*parsed.value < 1024)
        r.diag().error(v.at, v.path, "`" + v.node.Scalar() + "` is too small: rotation needs at least 1KiB",
                       "write a size such as 100MB");
      else
        c.log.audit_max_size = *parsed.value;
    } else if (key == "audit_max_files") {
      assign_count(c.log.audit_max_files, r.integer(v, 1, 1000));
    }
  });
}

void read_auth(yaml_reader& r, const field& f, config& c) {
  r.mapping(f, keys::auth, [&](std::string_view, const field& v) {
    r.sequence(v, "[{username: alice, password: secret}]", [&](const field& item) {
      if (!item.node.IsMap()) {
        r.wrong_type(item, "a user such as {username: alice, password: secret}");
        return;
      }
      user_credentials user;
      bool has_username = false;
      bool has_password = false;
      r.mapping(item, keys::user, [&](std::string_view key, const field& u) {
        (key == "username" ? has_username : has_password) = true;
        auto s = r.string(u);
        if (!s) return;
        (key == "username" ? user.username : user.password) = std::move(*s);
      });
      if (!has_username || !has_password) {
        r.diag().error(item.at, item.path, has_username ? "missing `password`" : "missing `username`",
                       "write {username: alice, password: secret}");
        return;
      }
      if (r.diag().has_error_under(item.path)) return;
      r.where().user_paths.push_back(item.path);
      c.auth.users.push_back(std::move(user));
    });
  });
}

// A key of the schema whose feature this build does not have: an error rather than
// a setting that is accepted and silently does nothing.
void not_yet_supported(yaml_reader& r, const YAML::Node& root, const field& f, std::string_view feature,
                       std::string hint) {
  const std::string key = f.path.substr(f.path.rfind('.') + 1);
  mark at = f.at;  // the key's own place: a block mapping's value starts on the next line
  for (auto it = root.begin(); it != root.end(); ++it)
    if (it->first.IsScalar() && it->first.Scalar() == key) at = mark_of(it->first.Mark());
  r.diag().error(at, f.path,
                 quote(key) + " (" + std::string(feature) + ") is not yet supported by this version of egressd",
                 std::move(hint));
}

// The walk over a whole egressd YAML document.
void read_config(yaml_reader& r, const YAML::Node& root, config& c) {
  const field top{root, "", mark_of(root.Mark())};
  if (!root.IsMap()) {
    r.wrong_type(top, "a mapping of settings (`version: 1`, `listeners: ...`)");
    return;
  }
  bool has_version = false;
  r.mapping(top, keys::top, [&](std::string_view key, const field& v) {
    if (key == "version") {
      has_version = true;
      if (v.node.IsScalar() && !is_quoted(v.node) && v.node.Scalar() != "1")
        r.diag().error(v.at, v.path, "unsupported version " + quote(v.node.Scalar()),
                       "this egressd reads `version: 1`");
      else if (auto n = r.integer(v, 1, 1))
        c.version = static_cast<int>(*n);
    } else if (key == "listeners") {
      read_listeners(r, v, c);
    } else if (key == "admin") {
      read_admin(r, v, c);
    } else if (key == "policy") {
      read_policy(r, v, c);
    } else if (key == "hook") {
      read_hook(r, v, c);
    } else if (key == "decisions_file") {
      auto path = r.string(v);
      if (path && path->empty())
        r.diag().error(v.at, v.path, "empty path", "name a file, e.g. /var/lib/egressd/decisions.yaml, or remove the key");
      else
        assign(c.decisions_file, std::move(path));
    } else if (key == "limits") {
      read_limits(r, v, c);
    } else if (key == "dns") {
      read_dns(r, v, c);
    } else if (key == "metrics") {
      if (features::metrics)
        r.mapping(v, keys::metrics, [&](std::string_view, const field& m) {
          assign_count(c.metrics.max_domains, r.integer(m, 1, 100000));
        });
      else
        not_yet_supported(r, root, v, "Prometheus metrics", "remove it");
    } else if (key == "log") {
      read_log(r, v, c);
    } else if (key == "auth") {
      read_auth(r, v, c);
    } else if (key == "workers") {
      assign_count(c.workers, r.integer(v, 0, 1024));
    } else if (key == "busy_poll_us") {
      assign_count(c.busy_poll_us, r.integer(v, 0, 100000));
    } else if (key == "reload") {
      r.mapping(v, keys::reload, [&](std::string_view k, const field& m) {
        assign(k == "watch" ? c.reload.watch : c.reload.revoke, r.boolean(m));
      });
    }
  });
  if (!has_version) r.diag().error(top.at, "version", "`version` is missing", "add `version: 1` as the first line");
}

// ---------------------------------------------------------------------------
// Cross-field checks: every rule that involves more than one field, in one place.

bool is_unspecified(const std::string& host) { return host == "0.0.0.0" || host == "::"; }

// Whether binding both would collide. With SO_REUSEPORT (README "Life of a session") two
// sockets on one address both bind and split the connections between them, so
// a collision never fails at startup: it must be caught here.
bool overlaps(const endpoint& a, const endpoint& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == endpoint::kind_t::unix_socket) return a.path == b.path;
  if (a.port == 0 || a.port != b.port) return false;  // port 0: the OS picks distinct ports
  if (a.host == b.host) return true;
  // A name is resolved at startup, possibly to the other side's address: on one port it
  // can share no listener safely.
  if (!is_ip_literal(a.host) || !is_ip_literal(b.host)) return true;
  const auto covers = [](const std::string& wildcard, const std::string& other) {
    if (wildcard == "::") return true;  // dual-stack: IPv4 too
    return wildcard == "0.0.0.0" && other.find(':') == std::string::npos;
  };
  return (is_unspecified(a.host) && covers(a.host, b.host)) || (is_unspecified(b.host) && covers(b.host, a.host));
}

bool valid_hook_url(std::string_view url) {
  std::string lowered;
  for (const char ch : url.substr(0, 8)) lowered.push_back(lower(ch));
  std::size_t scheme = 0;
  if (lowered.rfind("http://", 0) == 0)
    scheme = 7;
  else if (lowered.rfind("https://", 0) == 0)
    scheme = 8;
  else
    return false;
  const std::string_view rest = url.substr(scheme);
  const std::size_t host_end = rest.find_first_of("/?#");
  if (rest.substr(0, host_end).empty()) return false;
  return std::none_of(url.begin(), url.end(), [](char ch) { return ch == ' ' || ch < 0x21 || ch == 0x7f; });
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  const auto ip = policy::parse_ip(host);
  return ip && ip->is_v4() && ip->bytes[0] == 127;
}

// Why the audit file cannot be written, or nothing. Checked with access(2) as the
// daemon's own user, as at start-up.
std::optional<std::string> audit_path_problem(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return quote(path) + " is a directory";
    if (::access(path.c_str(), W_OK) != 0) return "cannot write " + quote(path) + ": " + std::strerror(errno);
    return std::nullopt;
  }
  if (::stat(dir.c_str(), &st) != 0) return "the directory " + quote(dir) + " does not exist";
  if (!S_ISDIR(st.st_mode)) return quote(dir) + " is not a directory";
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return "cannot create files in " + quote(dir) + ": " + std::strerror(errno);
  return std::nullopt;
}

// Why a file egressd reads (a CA bundle, a token) cannot be read now, or nothing.
std::optional<std::string> readable_file_problem(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "cannot read " + quote(path) + ": " + std::strerror(errno);
  if (S_ISDIR(st.st_mode)) return quote(path) + " is a directory, not a file";
  // A FIFO or a device would block the load, or never end.
  if (!S_ISREG(st.st_mode)) return quote(path) + " is not a regular file";
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot read " + quote(path) + ": " + std::strerror(errno);
  return std::nullopt;
}

// Why `path` is no usable token file (README "Configuration"), or nothing.
std::optional<std::string> token_file_problem(const std::string& path) {
  if (auto why = readable_file_problem(path)) return why;
  std::string error;
  if (!read_token_file(path, error)) return error;
  return std::nullopt;
}

// Why `path` holds no CA certificate for an https:// hook, or nothing. Only the PEM
// armour is checked here (OpenSSL is not linked into config/); the hook's TLS
// context reports a certificate that does not parse.
std::optional<std::string> ca_file_problem(const std::string& path) {
  if (auto why = readable_file_problem(path)) return why;
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    return quote(path) + " holds no PEM certificate (no `-----BEGIN CERTIFICATE-----` line)";
  return std::nullopt;
}

// Why the decisions file cannot be kept at `path`, or nothing: its directory must
// exist and be writable (egressd writes a temporary file there and renames it over
// the file; it never creates directories), and the path must not be a directory.
std::optional<std::string> decisions_path_problem(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return quote(path) + " is a directory";
  if (::stat(dir.c_str(), &st) != 0) return "the directory " + quote(dir) + " does not exist";
  if (!S_ISDIR(st.st_mode)) return quote(dir) + " is not a directory";
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return "cannot create files in " + quote(dir) + ": " + std::strerror(errno);
  return std::nullopt;
}

bool is_plain_http(std::string_view url) {
  return url.size() >= 7 && lower(url[0]) == 'h' && lower(url[1]) == 't' && lower(url[2]) == 't' &&
         lower(url[3]) == 'p' && url[4] == ':';
}

// The host of an http(s) URL (valid_hook_url() holds), brackets removed.
std::string url_host(std::string_view url) {
  std::string_view rest = url.substr(url.find("://") + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  if (!rest.empty() && rest.front() == '[') return std::string(rest.substr(1, rest.find(']') - 1));
  return std::string(rest.substr(0, rest.find(':')));
}

std::string location_text(const policy::source_location& w) {
  std::string out = w.file;
  if (w.line > 0) out += ":" + std::to_string(w.line);
  if (!w.path.empty()) out += " " + w.path;
  return out;
}

// Warnings for entries written twice in one list, and for entries in both lists
// (deny wins, so the allow entry does nothing). Compared as written, ASCII case
// folded, as hosts are.
void check_rule_lists(const policy::rules& rules, diagnostics& diag) {
  const auto key = [](const std::string& text) {
    std::string k;
    for (const char ch : text) k.push_back(lower(ch));
    return k;
  };
  const auto warn = [&](const policy::rule_entry& e, std::string message, std::string hint) {
    diag.add(problem{severity::warning, e.where.file, e.where.path, e.where.line, e.where.column, std::move(message),
                     std::move(hint)});
  };
  std::map<std::string, const policy::rule_entry*> deny_seen;
  for (const auto& e : rules.deny) {
    auto [it, fresh] = deny_seen.emplace(key(e.text), &e);
    if (!fresh)
      warn(e, quote(e.text) + " is listed twice in deny, first at " + location_text(it->second->where),
           "remove one of them");
  }
  std::map<std::string, const policy::rule_entry*> allow_seen;
  for (const auto& e : rules.allow) {
    auto [it, fresh] = allow_seen.emplace(key(e.text), &e);
    if (!fresh) {
      warn(e, quote(e.text) + " is listed twice in allow, first at " + location_text(it->second->where),
           "remove one of them");
      continue;
    }
    if (auto d = deny_seen.find(key(e.text)); d != deny_seen.end())
      warn(e, quote(e.text) + " is in both allow and deny (" + location_text(d->second->where) + "): deny wins",
           "remove it from one of the lists");
  }
}

void check_config(const config& c, const origins& where, diagnostics& diag) {
  const auto report = [&](severity level, const std::string& path, std::string message, std::string hint) {
    const origin o = where.of(path);
    diag.add(problem{level, o.file, o.shown_path, o.at.line, o.at.column, std::move(message), std::move(hint)});
  };
  const auto error = [&](const std::string& path, std::string message, std::string hint = {}) {
    report(severity::error, path, std::move(message), std::move(hint));
  };
  const auto warning = [&](const std::string& path, std::string message, std::string hint = {}) {
    report(severity::warning, path, std::move(message), std::move(hint));
  };

  // Listeners: at least one (counting those whose address failed: that error is
  // already reported), none on the same socket as another or as admin.
  const bool listeners_written = where.has("listeners") && where.of("listeners").at.line != 0;
  if (c.listeners.empty() && !where.has("listeners[0]") && !diag.has_error_under("listeners"))
    error("listeners", listeners_written ? "no listeners: egressd would serve nothing" : "`listeners` is missing",
          "add listeners: [{address: 127.0.0.1:3128}]");
  for (std::size_t i = 0; i < c.listeners.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (!overlaps(c.listeners[i].address, c.listeners[j].address)) continue;
      const bool same = c.listeners[i].address == c.listeners[j].address;
      error(where.listener_paths[i] + ".address",
            (same ? "the same address as " : "overlaps ") + where.listener_paths[j] + " (" +
                c.listeners[j].address.to_string() + ")",
            "give each listener its own address; one listener already serves HTTP and SOCKS5");
      break;
    }
  }
  if (c.admin) {
    for (std::size_t i = 0; i < c.listeners.size(); ++i) {
      if (!overlaps(c.admin->address, c.listeners[i].address)) continue;
      error("admin.address",
            "the admin server and " + where.listener_paths[i] + " share " + c.admin->address.to_string(),
            "give the admin server its own port, e.g. 127.0.0.1:9090");
      break;
    }
  }

  // Beyond loopback, anyone who reaches the port uses the proxy (or the admin
  // endpoint) unless something asks who they are.
  for (std::size_t i = 0; i < c.listeners.size(); ++i) {
    const endpoint& a = c.listeners[i].address;
    if (a.kind != endpoint::kind_t::tcp || is_loopback_host(a.host) || !c.auth.users.empty()) continue;
    warning(where.listener_paths[i] + ".address",
            "listens on " + a.to_string() + ", beyond loopback, without proxy authentication: anyone who can " +
                "reach it can use the proxy",
            "add `auth.users`, or listen on 127.0.0.1:" + std::to_string(a.port));
  }
  if (c.admin && !is_loopback_host(c.admin->address.host))
    warning("admin.address",
            "the admin endpoint listens on " + c.admin->address.to_string() +
                ", beyond loopback, and has no authentication",
            "listen on 127.0.0.1:" + std::to_string(c.admin->address.port) + ", or restrict who can reach it");

  // Audit file: its directory must exist and be writable now; egressd never
  // creates directories (running as root, it would create them as root).
  if (c.log.audit == audit_target::file && !diag.has_error_under("log.audit")) {
    if (auto why = audit_path_problem(c.log.audit_file))
      error("log.audit", *why, "create the directory first, or write stdout, stderr or off");
  }
  // Rotation applies to a file only, and the number of files kept to rotation only:
  // a key that would do nothing is an error, not ignored.
  if (c.log.audit != audit_target::file) {
    for (const char* key : {"log.audit_max_size", "log.audit_max_files"})
      if (where.has(key) && !diag.has_error_under(key))
        error(key, std::string("applies to an audit file only; log.audit is ") + audit_text(c.log),
              "set log.audit to a file path, or remove this key");
  } else if (where.has("log.audit_max_files") && !where.has("log.audit_max_size") &&
             !diag.has_error_under("log.audit_max_files")) {
    error("log.audit_max_files", "audit_max_files needs audit_max_size: without it the file never rotates",
          "add audit_max_size: 100MB, or remove audit_max_files");
  }

  check_rule_lists(c.policy, diag);

  // Hook: exactly one kind, a usable one.
  if (c.hook) {
    const hook_config& h = *c.hook;
    const bool has_exec = where.has("hook.exec");
    const bool has_url = where.has("hook.url");
    const int kinds = int{has_exec} + int{has_url} + int{h.console};
    if (kinds == 0)
      error("hook", "the hook has no `exec`, `url` or `console: true`",
            "add exec: [\"/usr/local/bin/approve\"], url: http://127.0.0.1:8081/decide or console: true");
    if (kinds > 1)
      error(has_exec ? "hook.exec" : "hook.url", "the hook has more than one of `exec`, `url` and `console: true`",
            "keep exactly one");
    if (has_exec && (h.exec.empty() || h.exec.front().empty()) && !diag.has_error_under("hook.exec"))
      error("hook.exec", "`exec` names no program", "write exec: [\"/usr/local/bin/approve\"]");
    const bool url_ok = has_url && valid_hook_url(h.url) && !diag.has_error_under("hook.url");
    if (has_url && !url_ok && !diag.has_error_under("hook.url"))
      error("hook.url", quote(h.url) + " is not an http:// or https:// URL", "write url: http://127.0.0.1:8081/decide");
    // Keys of one kind given to another would do nothing: errors, not ignored.
    if (where.has("hook.persistent") && !has_exec && !diag.has_error_under("hook.persistent"))
      error("hook.persistent", "`persistent` applies to an `exec` hook only",
            "remove it, or use exec: [...] with persistent: true");
    for (const char* key : {"hook.ca_file", "hook.token_file"}) {
      if (!where.has(key) || has_url || diag.has_error_under(key)) continue;
      error(key, std::string("`") + (std::string_view(key) == "hook.ca_file" ? "ca_file" : "token_file") +
                     "` applies to a `url` hook only",
            "remove it, or use url: https://...");
    }
    if (where.has("hook.ca_file") && !diag.has_error_under("hook.ca_file")) {
      if (h.ca_file.empty())
        error("hook.ca_file", "empty path", "name a PEM file of CA certificates, or remove the key");
      else if (url_ok && is_plain_http(h.url))
        error("hook.ca_file", "`ca_file` applies to an https:// URL only; " + quote(h.url) + " is plain http",
              "write url: https://..., or remove ca_file");
      else if (auto why = ca_file_problem(h.ca_file))
        error("hook.ca_file", *why, "give a PEM file of CA certificates readable by egressd");
    }
    if (where.has("hook.token_file") && !diag.has_error_under("hook.token_file")) {
      if (h.token_file.empty())
        error("hook.token_file", "empty path", "name a file whose first line is the token, or remove the key");
      else if (auto why = token_file_problem(h.token_file))
        error("hook.token_file", *why, "put the bearer token on the file's first line");
      else if (url_ok && is_plain_http(h.url) && !is_loopback_host(url_host(h.url)))
        warning("hook.token_file", "the token is sent in clear text to " + quote(h.url) + ", beyond loopback",
                "use an https:// URL");
    }
    // A program named by path that is not there is a hook failure at every question
    // (hook_not_found): say so now. A bare name is looked up in PATH when it runs.
    if (has_exec && !h.exec.empty() && h.exec.front().find('/') != std::string::npos &&
        !diag.has_error_under("hook.exec") && ::access(h.exec.front().c_str(), X_OK) != 0)
      warning("hook.exec", "cannot execute " + quote(h.exec.front()) + ": " + std::strerror(errno),
              "every question will be denied (hook_not_found) until it can");
  }
  if (c.admin && !c.admin->token_file.empty()) {
    if (auto why = token_file_problem(c.admin->token_file))
      error("admin.token_file", *why, "put the bearer token on the file's first line");
  } else if (c.admin && where.has("admin.token_file") && !diag.has_error_under("admin.token_file")) {
    error("admin.token_file", "empty path", "name a file whose first line is the token, or remove the key");
  }
  if (c.policy.unknown == policy::unknown_mode::ask && !c.hook)
    warning("policy.unknown", "no hook is configured: unknown destinations are denied with reason no_hook",
            where.of("policy.unknown").shown_path != "policy.unknown"  // from a settings file
                ? "set \"strictAllowlist\": true to say so, or give --config with a `hook:` too"
                : "add a `hook:` (exec, url or console: true), or write `unknown: deny` to say so");
  if (c.hook && c.policy.unknown != policy::unknown_mode::ask && !diag.has_error_under("policy.unknown"))
    warning("hook", "the hook is never asked: policy.unknown is not `ask`", "write `unknown: ask` under `policy`");

  // Decisions file: where it will be written must exist now, and what it holds
  // must read (a corrupt file would otherwise be replaced by the next answer).
  if (!c.decisions_file.empty()) {
    if (auto why = decisions_path_problem(c.decisions_file)) {
      error("decisions_file", *why, "create the directory first (egressd never creates directories)");
    } else {
      auto held = decisions_file::load(c.decisions_file);
      for (auto& p : held.problems) diag.add(std::move(p));
    }
  }

  // Proxy users: distinct, and names and passwords that both HTTP Basic
  // (RFC 7617 §2: the user-id cannot contain a colon) and SOCKS5 (RFC 1929 §2:
  // 1..255 bytes each) can carry.
  std::set<std::string, std::less<>> usernames;
  for (std::size_t i = 0; i < c.auth.users.size(); ++i) {
    const user_credentials& u = c.auth.users[i];
    const std::string& path = where.user_paths[i];
    if (u.username.empty() || u.username.size() > 255)
      error(path + ".username", "a username must be 1 to 255 bytes long");
    else if (u.username.find(':') != std::string::npos)
      error(path + ".username", "a username cannot contain `:` (HTTP Basic authentication splits on it)");
    else if (!usernames.insert(u.username).second)
      error(path + ".username", "duplicate username " + quote(u.username));
    if (u.password.empty() || u.password.size() > 255)
      error(path + ".password", "a password must be 1 to 255 bytes long");
  }
}

// ---------------------------------------------------------------------------
// Shared plumbing

load_result finish(std::optional<config> value, diagnostics& diag) {
  load_result out;
  out.problems = std::move(diag.problems());
  const bool has_error = std::any_of(out.problems.begin(), out.problems.end(),
                                     [](const problem& p) { return p.level == severity::error; });
  if (!has_error) out.value = std::move(value);
  return out;
}

// A syntax error: yaml-cpp's message, where the parser noticed it (which can be
// after the real mistake, e.g. on the line after an unclosed `[`).
void report_yaml_exception(diagnostics& diag, const YAML::Exception& e) {
  diag.error(mark_of(e.mark), "", "syntax error: " + (e.msg.empty() ? std::string("cannot parse the file") : e.msg),
             "check indentation, brackets and quotes on this line and the one before");
}

std::optional<std::string> read_file(const std::string& path, diagnostics& diag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    diag.error({}, "", "cannot open the file: " + std::string(std::strerror(errno)));
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    diag.error({}, "", "cannot read the file: " + std::string(std::strerror(errno)));
    return std::nullopt;
  }
  return std::move(text).str();
}

// ---------------------------------------------------------------------------
// Settings JSON (Claude Code / sandbox-runtime)

mark mark_of(const json::value& v) { return {v.line, v.column}; }

std::string describe_json(const json::value& v) {
  switch (v.kind) {
    case json::value::kind_t::null: return "null";
    case json::value::kind_t::boolean: return v.boolean ? "true" : "false";
    case json::value::kind_t::number: return v.text;
    case json::value::kind_t::string: return "a string";
    case json::value::kind_t::array: return "an array";
    case json::value::kind_t::object: return "an object";
  }
  return "a value";
}

// A JSON value with its path and place.
struct jfield {
  const json::value* value = nullptr;
  std::string path;
  mark at;
};

// A JSON object's member; the last one when the key repeats (JSON.parse keeps the
// last, and so does sandbox-runtime), with a warning.
std::optional<jfield> member(const jfield& object, std::string_view key, diagnostics& diag) {
  std::optional<jfield> found;
  for (const auto& m : object.value->members) {
    if (m.key != key) continue;
    const std::string path = child(object.path, key);
    if (found)
      diag.warning({m.line, m.column}, path, "duplicate key " + quote(key) + ": the last one is used, as JSON.parse does");
    found = jfield{&m.value, path, mark_of(m.value)};
  }
  return found;
}

std::vector<policy::rule_entry> settings_list(const std::optional<jfield>& list, diagnostics& diag) {
  std::vector<policy::rule_entry> out;
  if (!list) return out;
  if (!list->value->is_array()) {
    diag.error(list->at, list->path, "expected an array of strings, got " + describe_json(*list->value),
               "write [\"example.com\", \"*.example.com\"]");
    return out;
  }
  std::size_t index = 0;
  for (const auto& item : list->value->items) {
    const std::string path = element(list->path, index++);
    const mark at = mark_of(item);
    if (!item.is_string()) {
      diag.error(at, path, "expected a string, got " + describe_json(item), "quote it: \"example.com\"");
      continue;
    }
    out.push_back(policy::rule_entry{item.text, {diag.file(), path, at.line, at.column}});
  }
  return out;
}

namespace settings_keys = keys::settings;

// What a settings file contributes (README "Command line").
struct settings_data {
  std::string file;
  bool has_network = false;
  // Whether `allowedDomains` or `deniedDomains` was given: then the lists are the policy.
  bool has_lists = false;
  std::string network_path;
  mark network_at;
  std::vector<policy::rule_entry> allow;
  std::vector<policy::rule_entry> deny;
  std::vector<policy::rule_entry> deny_ranges;
  std::optional<bool> strict;
  std::string strict_path;
  mark strict_at;
  struct port {
    std::uint16_t value = 0;
    std::string path;
    mark at;
  };
  std::optional<port> http_port;
  std::optional<port> socks_port;
};

std::optional<settings_data::port> settings_port(const std::optional<jfield>& f, diagnostics& diag) {
  if (!f) return std::nullopt;
  const json::value& v = *f->value;
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(v.text.data(), v.text.data() + v.text.size(), value);
  if (v.kind != json::value::kind_t::number || ec != std::errc{} || end != v.text.data() + v.text.size() ||
      value < 1 || value > 65535) {
    diag.error(f->at, f->path, "expected a port number from 1 to 65535, got " + describe_json(v), "write 3128");
    return std::nullopt;
  }
  return settings_data::port{static_cast<std::uint16_t>(value), f->path, f->at};
}

// Whether text that is no JSON reads as an egressd YAML config (for the hint).
bool looks_like_egressd_yaml(std::string_view text) {
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    if (!root.IsMap()) return false;
    for (const char* key : {"version", "listeners", "policy"})
      if (root[key]) return true;
  } catch (const YAML::Exception&) {
  }
  return false;
}

// The network keys egressd reads, misplaced one level off: an error, because the
// sandbox does not read them there either.
void report_misplaced(const jfield& object, std::string_view where_instead, diagnostics& diag) {
  for (const auto& m : object.value->members) {
    if (std::find(settings_keys::read.begin(), settings_keys::read.end(), m.key) == settings_keys::read.end()) continue;
    diag.error({m.line, m.column}, child(object.path, m.key),
               quote(m.key) + " is not read here, by egressd or by the sandbox",
               "move it under " + std::string(where_instead));
  }
}

// Parses and reads a settings file; nothing when it is no JSON object.
std::optional<settings_data> read_settings(std::string_view text, diagnostics& diag) {
  const json::parse_result parsed = json::parse(text);
  if (!parsed.value) {
    const json::parse_error& e = parsed.error;
    if (looks_like_egressd_yaml(text))
      diag.error({e.line, e.column}, "", "this is not JSON: " + e.message,
                 "this looks like an egressd YAML config: use --config FILE");
    else
      diag.error({e.line, e.column}, "", "this is not JSON: " + e.message, e.hint);
    return std::nullopt;
  }
  const jfield top{&*parsed.value, "", mark_of(*parsed.value)};
  if (!top.value->is_object()) {
    diag.error(top.at, "", "expected a JSON object, got " + describe_json(*top.value),
               "a settings file looks like {\"sandbox\": {\"network\": {\"allowedDomains\": [...]}}}");
    return std::nullopt;
  }
  settings_data s;
  s.file = diag.file();
  // Claude Code nests the network settings under `sandbox`; sandbox-runtime's
  // own settings file has them at the top level. Claude Code's other top-level
  // keys (permissions, env, hooks, ...) are not ours: no warning for them.
  report_misplaced(top, "`network` (sandbox-runtime's file) or `sandbox.network` (Claude Code's settings.json)", diag);
  std::optional<jfield> network = member(top, "network", diag);
  if (const auto sandbox = member(top, "sandbox", diag); sandbox && !sandbox->value->is_null()) {
    if (!sandbox->value->is_object()) {
      diag.error(sandbox->at, sandbox->path, "expected an object, got " + describe_json(*sandbox->value));
    } else {
      report_misplaced(*sandbox, "`sandbox.network`", diag);
      if (auto nested = member(*sandbox, "network", diag)) {
        if (network)
          diag.error(nested->at, nested->path, "both `network` and `sandbox.network` are present",
                     "keep one: egressd cannot tell which one the sandbox uses");
        network = std::move(nested);
      }
    }
  }
  if (!network || network->value->is_null()) return s;
  if (!network->value->is_object()) {
    diag.error(network->at, network->path, "expected an object, got " + describe_json(*network->value));
    return s;
  }
  s.has_network = true;
  s.network_path = network->path;
  s.network_at = network->at;
  for (const auto& m : network->value->members) {
    if (std::find(settings_keys::known.begin(), settings_keys::known.end(), m.key) != settings_keys::known.end())
      continue;
    const auto guess = closest(m.key, settings_keys::known);
    diag.warning({m.line, m.column}, child(network->path, m.key),
                 "unknown key " + quote(m.key) + ": ignored by egressd",
                 guess ? "did you mean " + quote(*guess) + "?" : "egressd reads " + join(settings_keys::read));
  }
  const auto allowed = member(*network, "allowedDomains", diag);
  const auto denied = member(*network, "deniedDomains", diag);
  s.has_lists = allowed || denied;
  s.allow = settings_list(allowed, diag);
  s.deny = settings_list(denied, diag);
  s.deny_ranges = settings_list(member(*network, "deniedResolvedAddresses", diag), diag);
  // sandbox-runtime asks its callback about a domain no list names, unless
  // strictAllowlist says to refuse it outright.
  s.strict_path = child(network->path, "strictAllowlist");
  s.strict_at = network->at;
  if (const auto flag = member(*network, "strictAllowlist", diag)) {
    s.strict_at = flag->at;
    if (flag->value->kind == json::value::kind_t::boolean)
      s.strict = flag->value->boolean;
    else
      diag.error(flag->at, flag->path, "expected true or false, got " + describe_json(*flag->value));
  }
  s.http_port = settings_port(member(*network, "httpProxyPort", diag), diag);
  s.socks_port = settings_port(member(*network, "socksProxyPort", diag), diag);
  return s;
}

// The embedded default listeners (127.0.0.1:3128 and :1080) with the settings'
// ports in place of the defaults: the sandbox sends HTTP to httpProxyPort and SOCKS5
// to socksProxyPort, on loopback. Each listener still serves both protocols, so one
// port given for both is one listener.
void listeners_from_settings(const settings_data& s, config& c, origins& where) {
  c.listeners = default_config().listeners;
  where.listener_paths.clear();
  for (std::size_t i = 0; i < c.listeners.size(); ++i) where.listener_paths.push_back(element("listeners", i));
  std::vector<bool> placed(c.listeners.size(), false);
  const auto place = [&](const std::optional<settings_data::port>& port, std::uint16_t default_port) {
    if (!port) return;
    for (std::size_t i = 0; i < c.listeners.size(); ++i) {
      endpoint& a = c.listeners[i].address;
      if (placed[i] || a.kind != endpoint::kind_t::tcp || a.port != default_port) continue;
      a = endpoint{endpoint::kind_t::tcp, "127.0.0.1", port->value, {}};
      where.note_as(element("listeners", i) + ".address", port->path, port->at, s.file);
      placed[i] = true;
      return;
    }
  };
  place(s.http_port, 3128);
  place(s.socks_port, 1080);
  for (std::size_t i = 1; i < c.listeners.size(); ++i) {
    if (c.listeners[i].address.to_string() != c.listeners[0].address.to_string()) continue;
    c.listeners.erase(c.listeners.begin() + static_cast<std::ptrdiff_t>(i));
    where.listener_paths.erase(where.listener_paths.begin() + static_cast<std::ptrdiff_t>(i));
    break;
  }
}

// Settings alone: the embedded default with the settings' policy and ports.
void apply_settings_alone(const settings_data& s, config& c, origins& where, diagnostics& diag) {
  c.policy = policy::rules{};
  c.policy.syntax = policy::grammar::srt;
  c.policy.allow = s.allow;
  c.policy.deny = s.deny;
  c.policy.guard.deny_ranges = s.deny_ranges;
  if (!s.has_network) {
    diag.warning({1, 1}, "", "no `sandbox.network` or `network` settings: every destination is unknown",
                 "add \"allowedDomains\": [...] under sandbox.network");
    c.policy.unknown = policy::unknown_mode::ask;
    where.note_as("policy.unknown", "sandbox.network", {1, 1}, s.file);
  } else {
    c.policy.unknown = s.strict.value_or(false) ? policy::unknown_mode::deny : policy::unknown_mode::ask;
    where.note_as("policy.unknown", s.strict_path, s.strict_at, s.file);
  }
  where.note("listeners", {});
  listeners_from_settings(s, c, where);
  where.user_paths.clear();
  for (std::size_t i = 0; i < c.auth.users.size(); ++i) where.user_paths.push_back(element("auth.users", i));
}

// --config and --settings together: the YAML config with the settings' policy
// layered on top (README "Using it with Claude Code and sandbox-runtime"):
// allowedDomains/deniedDomains, when either is given, replace policy.allow and
// policy.deny (and the settings grammar applies); deniedResolvedAddresses adds to
// policy.guard.deny_ranges; strictAllowlist, when given, sets policy.unknown
// (true: deny, false: ask). Listeners come from the YAML; only when it has no
// `listeners` key do the settings' ports replace the default 3128 and 1080.
void apply_settings_layered(const settings_data& s, config& c, origins& where, diagnostics& diag) {
  if (!s.has_network) {
    diag.add(problem{severity::warning, s.file, "", 1, 1,
                     "no `sandbox.network` or `network` settings: the policy of " + c.source + " stays", {}});
  }
  if (s.has_lists) {
    for (const char* list : {"policy.allow", "policy.deny"}) {
      const auto& entries = std::string_view(list) == "policy.allow" ? c.policy.allow : c.policy.deny;
      if (entries.empty()) continue;
      const origin o = where.of(list);
      diag.warning(o.at, list,
                   "replaced by the settings file's " +
                       std::string(std::string_view(list) == "policy.allow" ? "allowedDomains" : "deniedDomains") +
                       " (" + s.file + ")",
                   "keep the allowlist in one of the two files");
    }
    c.policy.allow = s.allow;
    c.policy.deny = s.deny;
    c.policy.syntax = policy::grammar::srt;
  }
  c.policy.guard.deny_ranges.insert(c.policy.guard.deny_ranges.end(), s.deny_ranges.begin(), s.deny_ranges.end());
  if (s.strict) {
    c.policy.unknown = *s.strict ? policy::unknown_mode::deny : policy::unknown_mode::ask;
    where.note_as("policy.unknown", s.strict_path, s.strict_at, s.file);
  }
  if (!where.has("listeners")) {
    listeners_from_settings(s, c, where);
    where.note("listeners", {});
    return;
  }
  for (const auto* port : {&s.http_port, &s.socks_port}) {
    if (!*port) continue;
    const bool served = std::any_of(c.listeners.begin(), c.listeners.end(), [&](const listener_config& l) {
      return l.address.kind == endpoint::kind_t::tcp && l.address.port == (*port)->value;
    });
    if (!served)
      diag.add(problem{severity::warning, s.file, (*port)->path, (*port)->at.line, (*port)->at.column,
                       "the sandbox will connect to 127.0.0.1:" + std::to_string((*port)->value) +
                           ", where no listener of " + c.source + " listens",
                       "add `- address: 127.0.0.1:" + std::to_string((*port)->value) +
                           "` to its listeners, or remove `listeners` there to take the ports from the settings"});
  }
}

// Whether a YAML document is a settings JSON given to --config.
bool looks_like_settings(const YAML::Node& root) {
  if (!root.IsMap() || root["version"]) return false;
  for (const char* key : {"network", "sandbox", "allowedDomains"})
    if (root[key]) return true;
  return false;
}
}  // namespace

// ---------------------------------------------------------------------------
// Public API

std::string audit_text(const log_config& log) {
  switch (log.audit) {
    case audit_target::standard_output: return "stdout";
    case audit_target::standard_error: return "stderr";
    case audit_target::off: return "off";
    case audit_target::file: return log.audit_file;
  }
  return "off";
}

std::optional<std::string> read_token_file(const std::string& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read " + quote(path) + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::string line;
  std::getline(in, line);
  if (in.bad()) {
    error = "cannot read " + quote(path) + ": " + std::strerror(errno);
    return std::nullopt;
  }
  const auto blank = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; };
  while (!line.empty() && blank(line.back())) line.pop_back();
  std::size_t start = 0;
  while (start < line.size() && blank(line[start])) ++start;
  line.erase(0, start);
  if (line.empty()) {
    error = "the first line of " + quote(path) + " is empty: it must hold the token";
    return std::nullopt;
  }
  // RFC 6750 §2.1: a bearer token is visible ASCII without spaces.
  if (std::any_of(line.begin(), line.end(), [](char ch) { return static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f; })) {
    error = "the token in " + quote(path) + " holds a space or control character, which `Authorization: Bearer` cannot carry";
    return std::nullopt;
  }
  return line;
}

std::string hook_summary(const config& c) {
  std::string out = "hook: ";
  if (!c.hook) {
    out += "none";
    if (c.policy.unknown == policy::unknown_mode::ask) out += " (unknown destinations are denied: no_hook)";
  } else {
    const hook_config& h = *c.hook;
    if (!h.exec.empty()) {
      out += "exec";
      for (const auto& arg : h.exec) out += " " + arg;
      out += h.persistent ? " (persistent)" : " (a process per question)";
    } else if (!h.url.empty()) {
      out += "url " + h.url;
      if (!h.ca_file.empty()) out += ", ca_file " + h.ca_file;
      if (!h.token_file.empty()) out += ", token_file " + h.token_file;
    } else {
      out += "console (answers by hand)";
    }
    out += ", timeout " + format_duration(h.timeout) + ", on_timeout " +
           (h.on_timeout == hook_fallback::allow ? "allow" : "deny") + ", max_pending " +
           std::to_string(h.max_pending) + ", concurrency " + std::to_string(h.concurrency) + ", ttl " +
           format_duration(h.ttl) + ", deny_ttl " + format_duration(h.deny_ttl);
  }
  out += "\ndecisions_file: " + (c.decisions_file.empty() ? std::string("none (`always` answers are not kept across restarts)")
                                                           : c.decisions_file);
  return out;
}

std::string problem::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  out += level == severity::error ? ": error: " : ": warning: ";
  if (!path.empty()) out += path + ": ";
  out += message;
  if (!hint.empty()) out += " (hint: " + hint + ")";
  return out;
}

bool load_result::ok() const {
  return value.has_value() &&
         std::none_of(problems.begin(), problems.end(), [](const problem& p) { return p.level == severity::error; });
}

namespace {

// Receives parser events only to note where the second document starts.
class document_counter final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ == 2) second_ = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
  int documents() const noexcept { return documents_; }
  const std::optional<YAML::Mark>& second() const noexcept { return second_; }

 private:
  int documents_ = 0;
  std::optional<YAML::Mark> second_;
};

std::optional<YAML::Mark> second_document_mark(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  document_counter counter;
  for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
  }
  return counter.documents() >= 2 ? counter.second() : std::nullopt;
}

// Reads egressd YAML into `c`, without the cross-field checks. Whether the
// document was a mapping (whether check_config has anything to check).
bool read_yaml_text(std::string_view text, diagnostics& diag, origins& where, config& c) {
  try {
    // YAML::LoadAll can loop forever on some malformed input (yaml-cpp 0.7, found by
    // fuzz_config): load the first document, then count documents with a bounded loop.
    const std::string owned(text);
    const YAML::Node document = YAML::Load(owned);
    if (document.IsNull()) {
      diag.error({}, "version", "the file is empty", "add `version: 1` and a `listeners:` list");
      return false;
    }
    if (looks_like_settings(document)) {
      diag.error(mark_of(document.Mark()), "", "this is not an egressd config",
                 "this looks like a settings JSON (Claude Code / sandbox-runtime): use --settings FILE");
      return false;
    }
    yaml_reader reader{diag, where};
    read_config(reader, document, c);
    if (auto second = second_document_mark(owned))
      diag.error(mark_of(*second), "", "a second YAML document (after `---`)",
                 "egressd reads one document per file; remove the `---` line");
    return document.IsMap();
  } catch (const YAML::Exception& e) {
    // A settings JSON that YAML cannot read (yaml-cpp refuses the surrogate escapes
    // JSON writers emit) still gets the hint.
    const auto parsed = json::parse(text);
    const auto settings_key = [&](const json::member& m) {
      return m.key == "network" || m.key == "sandbox" || m.key == "allowedDomains";
    };
    if (parsed.value && parsed.value->is_object() &&
        std::any_of(parsed.value->members.begin(), parsed.value->members.end(), settings_key))
      diag.error({1, 1}, "", "this is not an egressd config",
                 "this looks like a settings JSON (Claude Code / sandbox-runtime): use --settings FILE");
    else
      report_yaml_exception(diag, e);
    return false;
  }
}

}  // namespace

load_result load_yaml_string(std::string_view text, std::string_view name) {
  diagnostics diag{std::string(name)};
  origins where;
  config c;
  c.source = std::string(name);
  if (read_yaml_text(text, diag, where, c)) check_config(c, where, diag);
  return finish(std::move(c), diag);
}

load_result load_yaml_file(const std::string& path) {
  diagnostics diag{path};
  const auto text = read_file(path, diag);
  if (!text) return finish(std::nullopt, diag);
  auto r = load_yaml_string(*text, path);
  if (r.value) r.value->yaml_file = path;
  return r;
}

load_result load_settings_string(std::string_view text, std::string_view name) {
  diagnostics diag{std::string(name)};
  origins where;
  config c = default_config();
  c.source = std::string(name);
  const auto settings = read_settings(text, diag);
  if (!settings) return finish(std::nullopt, diag);
  apply_settings_alone(*settings, c, where, diag);
  check_config(c, where, diag);
  return finish(std::move(c), diag);
}

load_result load_settings_file(const std::string& path) {
  diagnostics diag{path};
  const auto text = read_file(path, diag);
  if (!text) return finish(std::nullopt, diag);
  auto r = load_settings_string(*text, path);
  if (r.value) r.value->settings_file = path;
  return r;
}

load_result load_layered_strings(std::string_view yaml_text, std::string_view yaml_name,
                                 std::string_view settings_text, std::string_view settings_name) {
  diagnostics diag{std::string(yaml_name)};
  diagnostics settings_diag{std::string(settings_name)};
  origins where;
  config c;
  c.source = std::string(yaml_name);
  const bool yaml_ok = read_yaml_text(yaml_text, diag, where, c);
  const auto settings = read_settings(settings_text, settings_diag);
  for (auto& p : settings_diag.problems()) diag.add(std::move(p));
  if (!yaml_ok || !settings) return finish(std::nullopt, diag);
  apply_settings_layered(*settings, c, where, diag);
  check_config(c, where, diag);
  c.source = std::string(yaml_name) + " + " + std::string(settings_name);
  c.yaml_file = std::string(yaml_name);
  c.settings_file = std::string(settings_name);
  return finish(std::move(c), diag);
}

load_result load_layered_files(const std::string& yaml_path, const std::string& settings_path) {
  diagnostics diag{yaml_path};
  diagnostics settings_diag{settings_path};
  const auto yaml_text = read_file(yaml_path, diag);
  const auto settings_text = read_file(settings_path, settings_diag);
  if (!yaml_text || !settings_text) {
    for (auto& p : settings_diag.problems()) diag.add(std::move(p));
    return finish(std::nullopt, diag);
  }
  return load_layered_strings(*yaml_text, yaml_path, *settings_text, settings_path);
}

config default_config() {
  load_result loaded = load_yaml_string(default_config_yaml(), embedded_name);
  assert(loaded.ok() && "config/default_config.yaml must load cleanly");
  return std::move(loaded.value).value();
}

}  // namespace egressd::config
