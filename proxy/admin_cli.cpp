#include "proxy/admin_cli.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <iostream>
#include <optional>

#include "config/duration.hpp"
#include "config/json.hpp"
#include "config/load.hpp"
#include "policy/host.hpp"
#include "proxy/admin_client.hpp"
#include "proxy/log.hpp"
#include "proxy/startup.hpp"

namespace egressd::proxy {

namespace {

namespace json = config::json;

constexpr int exit_refused = 1;
constexpr int exit_usage = 2;
constexpr int exit_config = 4;

struct options {
  std::string command;
  std::vector<std::string> positional;
  config_source source;
  std::string admin;       ///< --admin ADDRESS
  std::string token_file;  ///< --token-file FILE
  bool json = false;
  std::optional<std::string> remember;  ///< "always" or "ttl"
  std::chrono::seconds ttl{0};
  std::optional<std::string> scope;  ///< "domain" or "host_port"
  std::string reason;
  std::string forget;
};

int usage_error(const std::string& command, const std::string& message) {
  std::cerr << "egressd " << command << ": " << message << "\nRun 'egressd " << command << " --help' for usage.\n";
  return exit_usage;
}

// HOST[:PORT]: name:443, 192.0.2.1:80, [2001:db8::1]:443, [::1], or a bare IPv6
// literal (more than one colon, no port). nullopt with `error` when malformed.
struct host_port {
  std::string host;  ///< canonical
  std::uint16_t port = 0;
};
std::optional<host_port> parse_host_port(std::string_view text, std::string& error) {
  std::string_view host = text;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      error = "missing ']' in " + std::string(text);
      return std::nullopt;
    }
    host = text.substr(0, close + 1);
    const auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        error = "expected :PORT after ] in " + std::string(text);
        return std::nullopt;
      }
      port = rest.substr(1);
      if (port.empty()) {
        error = "empty port in " + std::string(text);
        return std::nullopt;
      }
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    const auto colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (port.empty()) {
      error = "empty port in " + std::string(text);
      return std::nullopt;
    }
  }
  host_port out;
  if (!port.empty()) {
    unsigned value = 0;
    const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535) {
      error = "the port must be 1..65535, not '" + std::string(port) + "'";
      return std::nullopt;
    }
    out.port = static_cast<std::uint16_t>(value);
  }
  const auto canon = policy::canonicalize_host(host);
  if (!canon.ok()) {
    error = "'" + std::string(host) + "' is not a valid host (" + std::string(policy::to_string(canon.error)) + ")";
    return std::nullopt;
  }
  out.host = canon.host->text;
  return out;
}

std::optional<options> parse(const std::string& command, const std::vector<std::string>& args, int& code) {
  options o;
  o.command = command;
  auto fail = [&](const std::string& message) {
    code = usage_error(command, message);
    return std::nullopt;
  };
  const bool answering = command == "allow" || command == "deny";
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string value;
    bool has_value = false;
    std::string name = arg;
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      name = arg.substr(0, arg.find('='));
      value = arg.substr(arg.find('=') + 1);
      has_value = true;
    }
    auto take = [&]() -> std::optional<std::string> {
      if (has_value) return value.empty() ? std::nullopt : std::optional<std::string>(value);
      if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0) return std::nullopt;
      return args[++i];
    };
    if (name == "--admin") {
      if (!o.admin.empty()) return fail(name + " given twice");
      auto v = take();
      if (!v) return fail("--admin needs an ADDRESS (127.0.0.1:9090)");
      o.admin = *v;
    } else if (name == "--config" || name == "--settings") {
      std::string& slot = name == "--config" ? o.source.yaml : o.source.settings;
      if (!slot.empty()) return fail(name + " given twice");
      auto v = take();
      if (!v) return fail(name + " needs a file");
      slot = *v;
    } else if (name == "--token-file") {
      if (!o.token_file.empty()) return fail(name + " given twice");
      auto v = take();
      if (!v) return fail("--token-file needs a file");
      o.token_file = *v;
    } else if (name == "--json" && !has_value) {
      o.json = true;
    } else if (answering && name == "--always" && !has_value) {
      if (o.remember) return fail("give one of --always and --ttl");
      o.remember = "always";
    } else if (answering && name == "--ttl") {
      if (o.remember) return fail("give one of --always and --ttl");
      auto v = take();
      if (!v) return fail("--ttl needs a DURATION (10m, 1h, 1h30m)");
      const auto d = config::parse_duration(*v);
      if (!d.value) return fail("--ttl " + *v + ": " + d.error + (d.hint.empty() ? "" : " (" + d.hint + ")"));
      o.ttl = std::chrono::duration_cast<std::chrono::seconds>(*d.value);
      if (o.ttl.count() < 1) return fail("--ttl must be at least 1s");
      o.remember = "ttl";
    } else if (answering && (name == "--domain" || name == "--port") && !has_value) {
      if (o.scope) return fail("give one of --domain and --port");
      o.scope = name == "--domain" ? "domain" : "host_port";
    } else if (answering && name == "--reason") {
      auto v = take();
      if (!v) return fail("--reason needs a TEXT");
      o.reason = *v;
    } else if (command == "decisions" && name == "--forget") {
      if (!o.forget.empty()) return fail(name + " given twice");
      auto v = take();
      if (!v) return fail("--forget needs a NAME (a host or domain)");
      o.forget = *v;
    } else if (!arg.empty() && arg[0] == '-') {
      return fail("unknown option " + arg);
    } else {
      o.positional.push_back(arg);
    }
  }
  if (answering && o.positional.size() != 1) return fail("needs exactly one HOST[:PORT]");
  if (!answering && !o.positional.empty()) return fail("unexpected argument '" + o.positional[0] + "'");
  return o;
}

// A JSON value as text: strings as they are, numbers as written, null as "".
std::string text_of(const json::value* v) {
  if (!v || v->is_null()) return "";
  if (v->kind == json::value::kind_t::boolean) return v->boolean ? "true" : "false";
  return v->text;
}

const json::value* get(const json::value& o, std::string_view key) {
  for (const auto& m : o.members)
    if (m.key == key) return &m.value;
  return nullptr;
}

std::string host_port_text(const std::string& host, const std::string& port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
}

// Columns padded to their widest cell, two spaces apart.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  }
}

class session {
 public:
  explicit session(options o) : o_(std::move(o)) {}

  /// Resolves the address and the token; nonzero on failure.
  int prepare() {
    const bool need_config = o_.admin.empty() || (o_.token_file.empty() && !o_.source.embedded());
    std::string token_file = o_.token_file;
    if (need_config) {
      auto loaded = load_config_source(o_.source);
      if (!loaded.ok()) {
        for (const auto& e : loaded.errors) std::cerr << e << "\n";
        std::cerr << "egressd " << o_.command << ": " << o_.source.describe() << " does not load\n";
        return exit_config;
      }
      if (o_.admin.empty()) {
        if (!loaded.config->admin) {
          std::cerr << "egressd " << o_.command << ": " << o_.source.describe()
                    << " has no admin section, so there is no admin endpoint to ask; pass --admin ADDRESS\n";
          return exit_usage;
        }
        address_ = loaded.config->admin->address;
      }
      if (token_file.empty() && loaded.config->admin) token_file = loaded.config->admin->token_file;
    }
    if (!o_.admin.empty()) {
      auto parsed = config::parse_endpoint(o_.admin);
      if (!parsed.value || parsed.value->kind != config::endpoint::kind_t::tcp || parsed.value->port == 0)
        return usage_error(o_.command, "--admin " + o_.admin + ": expected HOST:PORT (127.0.0.1:9090)" +
                                           (parsed.error.empty() ? "" : ": " + parsed.error));
      address_ = *parsed.value;
    }
    if (!token_file.empty()) {
      std::string error;
      auto token = config::read_token_file(token_file, error);
      if (!token) {
        std::cerr << "egressd " << o_.command << ": " << error << "\n";
        return exit_usage;
      }
      token_ = std::move(*token);
    }
    return 0;
  }

  /// One call; prints the error and sets `code` when there is no 2xx answer.
  std::optional<json::value> call(std::string_view method, std::string_view target, std::string_view body,
                                  int& code, bool quiet_404 = false) {
    const auto r = call_admin(address_, method, target, body, token_);
    const std::string where = address_.to_string();
    if (!r.value) {
      std::cerr << "egressd " << o_.command << ": cannot reach the admin endpoint at " << where << ": " << r.error
                << (r.unreachable ? " (is egressd running, with admin.address " + where +
                                        "? pass --admin ADDRESS or --config FILE)"
                                  : "")
                << "\n";
      code = r.unreachable ? exit_usage : exit_refused;
      return std::nullopt;
    }
    auto doc = json::parse(r.value->body);
    if (r.value->status >= 200 && r.value->status < 300) {
      if (!doc.value) {
        std::cerr << "egressd " << o_.command << ": the answer from " << where << " is not JSON\n";
        code = exit_refused;
        return std::nullopt;
      }
      if (o_.json) std::cout << r.value->body << (r.value->body.ends_with('\n') ? "" : "\n");
      return std::move(doc.value);
    }
    code = exit_refused;
    if (o_.json) std::cout << r.value->body << (r.value->body.ends_with('\n') ? "" : "\n");
    if (quiet_404 && r.value->status == 404) {
      last_error_ = doc.value ? text_of(get(*doc.value, "detail")) : "";
      return std::nullopt;
    }
    std::string detail = doc.value ? text_of(get(*doc.value, "detail")) : std::string();
    if (detail.empty()) detail = r.value->body;
    std::cerr << "egressd " << o_.command << ": " << where << " answered " << r.value->status << ": " << detail;
    if (r.value->status == 401)
      std::cerr << (token_.empty() ? " (pass --token-file FILE, or --config FILE naming admin.token_file)" : "");
    std::cerr << "\n";
    return std::nullopt;
  }

  int pending() {
    int code = 0;
    auto list = call("GET", "/v1/pending", "", code);
    if (!list) return code;
    if (o_.json) return 0;
    if (list->items.empty()) {
      std::cout << "nothing is waiting for an answer\n";
      return 0;
    }
    std::vector<std::vector<std::string>> rows{{"ID", "DESTINATION", "PROTOCOL", "CLIENT", "WAITING", "LEFT"}};
    for (const auto& q : list->items)
      rows.push_back({text_of(get(q, "id")), host_port_text(text_of(get(q, "host")), text_of(get(q, "port"))),
                      text_of(get(q, "protocol")), text_of(get(q, "client")), text_of(get(q, "waiting")),
                      text_of(get(q, "seconds_left")) + "s"});
    print_table(rows);
    return 0;
  }

  int answer() {
    std::string error;
    const auto target = parse_host_port(o_.positional[0], error);
    if (!target) return usage_error(o_.command, error);
    if (o_.scope == "host_port" && target->port == 0)
      return usage_error(o_.command, "--port needs HOST:PORT (which port to answer for)");
    auto body = json_object::json().add("host", target->host);
    if (target->port) body.add("port", static_cast<unsigned>(target->port));
    body.add("decision", o_.command).add("remember", o_.remember.value_or("once"));
    if (o_.remember == "ttl") body.add("ttl_seconds", static_cast<std::uint64_t>(o_.ttl.count()));
    body.add("scope", o_.scope.value_or("host")).add("answered_by", "cli");
    if (!o_.reason.empty()) body.add("reason", o_.reason);
    int code = 0;
    auto r = call("POST", "/v1/decisions", body.str(), code, !o_.json);
    const std::string what = target->port ? host_port_text(target->host, std::to_string(target->port)) : target->host;
    if (!r) {
      if (code == exit_refused && !o_.json && !last_error_.empty())
        std::cerr << "egressd " << o_.command << ": " << last_error_
                  << (o_.remember ? "" : " (nothing was remembered: add --always or --ttl DURATION to remember the answer)")
                  << "\n";
      return code;
    }
    if (o_.json) return 0;
    std::string line = (o_.command == "allow" ? "allowed " : "denied ") + what + ": " +
                       text_of(get(*r, "questions_answered")) + " question(s) answered, " +
                       text_of(get(*r, "requests_released")) + " request(s) released";
    if (text_of(get(*r, "remembered")) == "true")
      line += o_.remember == "always"
                  ? std::string("; remembered until forgotten")
                  // A denial is kept no longer than hook.deny_ttl, which the daemon applies.
                  : (o_.command == "deny" ? "; remembered for at most " : "; remembered for ") +
                        config::format_duration(std::chrono::duration_cast<config::duration>(o_.ttl));
    std::cout << line << "\n";
    return 0;
  }

  int decisions() {
    int code = 0;
    if (!o_.forget.empty()) {
      std::string encoded;
      for (unsigned char c : o_.forget) {
        static constexpr char hex[] = "0123456789ABCDEF";
        if (std::isalnum(c) || c == '.' || c == '-' || c == '_') encoded += static_cast<char>(c);
        else encoded += std::string("%") + hex[c >> 4] + hex[c & 15];
      }
      auto r = call("DELETE", "/v1/decisions/" + encoded, "", code, !o_.json);
      if (!r) {
        if (code == exit_refused && !o_.json && !last_error_.empty())
          std::cerr << "egressd decisions: " << last_error_ << "\n";
        return code;
      }
      if (!o_.json) std::cout << "forgot " << text_of(get(*r, "forgotten")) << " answer(s) for " << o_.forget << "\n";
      return 0;
    }
    auto list = call("GET", "/v1/decisions", "", code);
    if (!list) return code;
    if (o_.json) return 0;
    if (list->items.empty()) {
      std::cout << "nothing is remembered\n";
      return 0;
    }
    std::vector<std::vector<std::string>> rows{{"NAME", "SCOPE", "PORT", "DECISION", "UNTIL", "ANSWERED_BY", "REASON"}};
    for (const auto& e : list->items) {
      const auto port = text_of(get(e, "port"));
      const auto expires = text_of(get(e, "expires"));
      rows.push_back({text_of(get(e, "name")), text_of(get(e, "scope")), port == "0" ? "*" : port,
                      text_of(get(e, "decision")), expires.empty() ? "always" : expires,
                      text_of(get(e, "answered_by")), text_of(get(e, "reason"))});
    }
    print_table(rows);
    return 0;
  }

 private:
  options o_;
  config::endpoint address_;
  std::string token_;
  std::string last_error_;
};

}  // namespace

bool is_admin_command(const std::string& command) {
  return command == "pending" || command == "allow" || command == "deny" || command == "decisions";
}

int run_admin_command(const std::string& command, const std::vector<std::string>& args) {
  int code = 0;
  auto o = parse(command, args, code);
  if (!o) return code;
  session s(std::move(*o));
  if (const int c = s.prepare()) return c;
  if (command == "pending") return s.pending();
  if (command == "decisions") return s.decisions();
  return s.answer();
}

}  // namespace egressd::proxy
