// egressd's command line and the only wiring place.
//   egressd [run] [--config FILE] [--settings FILE]
//   egressd check-config [--config FILE] [--settings FILE]
//   egressd check [--config FILE] [--settings FILE] (HOST[:PORT] | URL) [--json] [--resolve]
//   egressd suggest [--settings] AUDIT_LOG...
//   egressd version | --version | --help

#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "config/load.hpp"
#include "policy/presets.hpp"
#include "proxy/check.hpp"
#include "proxy/log.hpp"
#include "proxy/runtime.hpp"
#include "proxy/server.hpp"
#include "proxy/startup.hpp"
#include "proxy/suggest.hpp"

#ifndef EGRESSD_VERSION
#define EGRESSD_VERSION "0.0.0"
#endif

namespace {

using egressd::proxy::config_source;

constexpr const char* usage = R"(egressd - an egress-filtering forward proxy (HTTP CONNECT, plain HTTP, SOCKS5)

Usage:
  egressd [run] [--config FILE] [--settings FILE]
      Serve. With neither option, run on the embedded default config. With
      both, the settings file's policy is layered onto the YAML config.
  egressd check-config [--config FILE] [--settings FILE]
      Load, validate and compile (one file or both, as `run` would); print
      every problem; exit 1 on error.
  egressd check [--config FILE] [--settings FILE] (HOST[:PORT] | URL) [--json] [--resolve]
      Print the proxy's answer for a destination: canonical host, port,
      decision (allow, deny, or ask when the hook would be asked), rule and
      reason. PORT defaults to 443; IPv6 literals: [::1]:443; a URL
      (https://host/path, http://host:8080/x) gives host and port, 443 or 80
      by default. IP literals are judged by the address guard as the proxy
      judges them; --resolve also resolves a name with the daemon's resolver,
      judges each address and gives the final answer (deny with reason
      address_denied or resolve_failed when nothing could be dialled). With
      neither option, the embedded default config. --json prints one object.
      Exit status: 0 allow, 1 deny, 3 ask, 2 usage error, 4 the configuration
      does not load.
  egressd suggest [--settings] AUDIT_LOG...
      Read access records (log.audit files; - for stdin) and print a proposed
      allowlist as YAML to paste under the config: the destinations denied, or
      let through by `unknown: allow`, for want of a rule (not those a rule or
      the address guard refused), with their request counts and ports. Two or
      more subdomains of one registrable domain become *.domain; an entry gets
      :PORT when all its requests used that one port and it is not 443.
      --settings prints a sandbox-runtime {"network": {"allowedDomains": [...]}}
      instead. Lines that are not JSON or no request record are skipped and
      counted on stderr. Exit status: 0, 1 when a file cannot be read, 2 usage.
  egressd version
      Print the version.

Options:
  --config FILE     egressd YAML configuration (version: 1)
  --settings FILE   Claude Code / sandbox-runtime settings JSON: its
                    network.allowedDomains, deniedDomains, deniedResolvedAddresses
                    and strictAllowlist become the policy, httpProxyPort and
                    socksProxyPort the listeners; all else is the default (or
                    the --config file's).
  -h, --help        This text; after a command, that command's help.

Signals: SIGHUP reloads the configuration; SIGUSR1 reopens the audit file
(logrotate); SIGTERM/SIGINT drain and stop.
)";

// One command's part of `usage`: its "  egressd COMMAND" block, then the options.
std::string command_help(const std::string& command) {
  const std::string text = usage;
  const std::string marker = command == "run" ? "\n  egressd [run]" : "\n  egressd " + command;
  std::size_t start = text.find(marker);
  // `check` must not find `check-config`: the name ends at a space or the line's end.
  while (start != std::string::npos && start + marker.size() < text.size() &&
         text[start + marker.size()] != ' ' && text[start + marker.size()] != '\n')
    start = text.find(marker, start + 1);
  if (start == std::string::npos) return text;
  std::size_t end = text.find("\n  egressd ", start + 1);
  const std::size_t options = text.find("\nOptions:");
  if (end == std::string::npos || end > options) end = options;
  std::string out = "Usage:" + text.substr(start, end - start) + "\n";
  if (command == "version" || command == "suggest") return out;  // suggest: no --config/--settings FILE
  out += text.substr(options);
  if (command != "run") out.erase(out.find("\nSignals:"));
  return out;
}

struct arguments {
  std::string command = "run";
  std::optional<config_source> source;
  std::vector<std::string> positional;
  bool json = false;
  bool resolve = false;
  bool settings_output = false;  ///< `suggest --settings`: print sandbox-runtime JSON
  bool help = false;
  bool explicit_command = false;  ///< the command was named (`egressd run --help`)
};

int usage_error(const std::string& message) {
  std::cerr << "egressd: " << message << "\nRun 'egressd --help' for usage.\n";
  return 2;
}

bool known_command(const std::string& c) {
  return c == "run" || c == "check-config" || c == "check" || c == "suggest" || c == "version" || c == "help";
}

// A positional argument that names a file: the option it was probably meant for.
std::string file_hint(const std::string& arg, const std::string& before = {}) {
  const bool json = arg.size() > 5 && arg.compare(arg.size() - 5, 5, ".json") == 0;
  return " (hint: did you mean " + before + (json ? "--settings " : "--config ") + arg + "?)";
}

std::optional<arguments> parse_arguments(int argc, char** argv, int& exit_code) {
  arguments a;
  bool& explicit_command = a.explicit_command;
  int i = 1;
  if (i < argc && argv[i][0] != '-') {
    a.command = argv[i++];
    explicit_command = true;
    if (!known_command(a.command)) {
      const bool looks_like_file = a.command.find_first_of("./") != std::string::npos;
      exit_code = usage_error("unknown command '" + a.command + "'" +
                              (looks_like_file ? file_hint(a.command, "run ") : std::string()));
      return std::nullopt;
    }
  }
  std::vector<std::string> flags;  // --json, --resolve as given, for commands that take none
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    auto take_file = [&](const std::string& option, std::string value, std::string config_source::*slot_member) {
      if (!a.source) a.source.emplace();
      std::string& slot = (*a.source).*slot_member;
      if (!slot.empty()) {
        exit_code = usage_error(option + " given twice");
        return false;
      }
      if (value.empty() || value.rfind("--", 0) == 0) {  // `--config --settings x`: no file given
        exit_code = usage_error(option + " needs a file");
        return false;
      }
      slot = std::move(value);
      return true;
    };
    auto next_value = [&]() -> std::string { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    bool ok = true;
    if (a.command == "suggest" && arg == "--settings") {
      // suggest's --settings names the output, not a file to load.
      a.settings_output = true;
    } else if (a.command == "suggest" && (arg == "--config" || arg.rfind("--config=", 0) == 0 ||
                                          arg.rfind("--settings=", 0) == 0 || arg == "--json" || arg == "--resolve")) {
      exit_code = usage_error("suggest does not take " + arg.substr(0, arg.find('=')));
      return std::nullopt;
    } else if (arg == "--config") {
      ok = take_file(arg, next_value(), &config_source::yaml);
    } else if (arg == "--settings") {
      ok = take_file(arg, next_value(), &config_source::settings);
    } else if (arg.rfind("--config=", 0) == 0) {
      ok = take_file("--config", arg.substr(9), &config_source::yaml);
    } else if (arg.rfind("--settings=", 0) == 0) {
      ok = take_file("--settings", arg.substr(11), &config_source::settings);
    } else if (arg == "--json") {
      a.json = true;
      flags.push_back(arg);
    } else if (arg == "--resolve") {
      a.resolve = true;
      flags.push_back(arg);
    } else if (arg == "-h" || arg == "--help") {
      a.help = true;
    } else if (arg == "--version" && !explicit_command) {
      a.command = "version";
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      exit_code = usage_error("unknown option " + arg + (explicit_command ? " for " + a.command : std::string()));
      return std::nullopt;
    } else {
      a.positional.push_back(arg);
    }
    if (!ok) return std::nullopt;
  }
  if (a.help || a.command == "help" || a.command == "version") {
    if (a.command == "help" && a.positional.size() == 1 && known_command(a.positional[0])) {
      a.command = a.positional[0];
      a.help = true;  // `egressd help run` is `egressd run --help`
    } else if (!a.help && (!a.positional.empty() || !flags.empty() || a.source)) {
      exit_code = usage_error(a.command + " takes no arguments");
      return std::nullopt;
    }
    return a;
  }
  // Commands that take no HOST and no --json/--resolve: anything more is a mistake
  // to report, not to ignore (`egressd run min.yaml` would serve the default).
  if (a.command == "run" || a.command == "check-config") {
    if (!a.positional.empty()) {
      exit_code = usage_error("unexpected argument '" + a.positional[0] + "' for " + a.command +
                              (a.source ? std::string() : file_hint(a.positional[0])));
      return std::nullopt;
    }
    if (!flags.empty()) {
      exit_code = usage_error(a.command + " does not take " + flags[0]);
      return std::nullopt;
    }
  }
  return a;
}

void print_problems(const egressd::proxy::loaded_config& l) {
  for (const auto& e : l.errors) std::cerr << e << "\n";
  for (const auto& w : l.warnings) std::cerr << w << "\n";
}

int cmd_check_config(const arguments& a) {
  if (!a.source) return usage_error("check-config needs --config FILE or --settings FILE");
  auto loaded = egressd::proxy::load_config_source(*a.source);
  print_problems(loaded);
  if (!loaded.ok()) {
    std::cerr << a.source->describe() << ": " << loaded.errors.size() << " error(s), " << loaded.warnings.size()
              << " warning(s)\n";
    return 1;
  }
  std::cout << a.source->describe() << ": ok (" << loaded.policy->rule_count() << " rules, " << loaded.config->listeners.size()
            << " listeners, " << loaded.warnings.size() << " warnings)\n";
  std::cout << "presets:";
  for (const auto& p : egressd::policy::presets()) std::cout << " @" << p.name;
  std::cout << "\n" << egressd::config::hook_summary(*loaded.config) << "\n";
  return 0;
}

// Exit status of `check`: 0 allow, 1 deny, 3 ask (the answer), 2 usage errors, 4 a
// configuration that does not load (so that a script can tell a deny from an error).
constexpr int check_config_failed = 4;

int cmd_check(const arguments& a) {
  if (a.positional.size() != 1) return usage_error("check needs exactly one HOST[:PORT] or URL");
  auto target = egressd::proxy::parse_check_target(a.positional[0]);
  if (!target.target) return usage_error(target.error);
  // Without --config or --settings, the embedded default config, as `run` uses.
  const config_source source = a.source.value_or(config_source{});
  auto loaded = egressd::proxy::load_config_source(source);
  if (!loaded.ok()) {
    print_problems(loaded);
    return check_config_failed;
  }
  const auto dns = egressd::proxy::dns_options_for(loaded.config->dns);
  // The decisions file's `always` answers decide where no rule does, as in the daemon.
  std::vector<std::string> memory_problems;
  const auto remembered = egressd::proxy::load_remembered(*loaded.config, memory_problems);
  for (const auto& p : memory_problems) std::cerr << p << "\n";
  if (!loaded.config->decisions_file.empty() && !remembered) return check_config_failed;
  auto report = egressd::proxy::check_destination(*loaded.policy, *target.target, a.resolve ? &dns : nullptr,
                                                  remembered ? &*remembered : nullptr);
  std::cout << (a.json ? egressd::proxy::to_json(report) : egressd::proxy::to_text(report)) << "\n";
  return egressd::proxy::exit_status(report);
}

int cmd_suggest(const arguments& a) {
  if (a.positional.empty()) return usage_error("suggest needs at least one AUDIT_LOG (- for stdin)");
  egressd::proxy::suggest::collector collector;
  std::string line;
  for (const auto& name : a.positional) {
    std::ifstream file;
    std::istream* in = &std::cin;
    if (name != "-") {
      file.open(name, std::ios::binary);
      if (!file) {
        std::cerr << "egressd suggest: cannot read " << name << ": " << std::strerror(errno) << "\n";
        return 1;
      }
      in = &file;
    }
    while (std::getline(*in, line)) collector.add_line(line);
    if (in->bad()) {
      std::cerr << "egressd suggest: error reading " << name << "\n";
      return 1;
    }
    if (in == &std::cin) std::cin.clear();
  }
  const auto entries = egressd::proxy::suggest::collapse(collector.seen());
  std::cout << (a.settings_output ? egressd::proxy::suggest::to_settings_json(entries)
                                  : egressd::proxy::suggest::to_yaml(entries, collector.counts()));
  std::cerr << "egressd suggest: " << egressd::proxy::suggest::summary(collector.counts(), entries.size()) << "\n";
  return 0;
}

int cmd_run(const arguments& a) {
  config_source source = a.source.value_or(config_source{});
  auto loaded = egressd::proxy::load_config_source(source);
  if (!loaded.ok()) {
    print_problems(loaded);
    std::cerr << "egressd: configuration has errors; not starting\n";
    return 1;
  }
  egressd::proxy::init_logging(loaded.config->log);
  if (source.embedded()) {
    egressd::proxy::log_event(
        egressd::proxy::log_level::info, "running on the embedded default config",
        egressd::proxy::json_object().add("hint", "pass --config FILE or --settings FILE to use your own policy"));
  }
  for (const auto& w : loaded.warnings)
    egressd::proxy::log_event(egressd::proxy::log_level::warn, "config warning",
                              egressd::proxy::json_object().add("problem", w));
  egressd::proxy::server s(source, std::move(loaded));
  return s.run();
}

}  // namespace

int main(int argc, char** argv) {
  // splice(2) and write(2) to a closed socket must fail with EPIPE, not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  int exit_code = 0;
  auto args = parse_arguments(argc, argv, exit_code);
  if (!args) return exit_code;
  try {
    if (args->help || args->command == "help") {
      const bool one = args->explicit_command && args->command != "help";
      std::cout << (one ? command_help(args->command) : std::string(usage));
      return 0;
    }
    if (args->command == "version") {
      std::cout << "egressd " << EGRESSD_VERSION << "\n";
      return 0;
    }
    if (args->command == "run") return cmd_run(*args);
    if (args->command == "check-config") return cmd_check_config(*args);
    if (args->command == "check") return cmd_check(*args);
    if (args->command == "suggest") return cmd_suggest(*args);
    return usage_error("unknown command '" + args->command + "'");
  } catch (const std::exception& e) {
    std::cerr << "egressd: " << e.what() << "\n";
    return 1;
  }
}
