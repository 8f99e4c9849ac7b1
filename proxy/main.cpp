// egressd's command line and the only wiring place (STYLE.md §1).
//   egressd [run] [--config FILE | --settings FILE]
//   egressd check-config (--config FILE | --settings FILE)
//   egressd check [--config FILE | --settings FILE] (HOST[:PORT] | URL) [--json] [--resolve]
//   egressd version | --version | --help

#include <csignal>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "policy/presets.hpp"
#include "proxy/check.hpp"
#include "proxy/log.hpp"
#include "proxy/runtime.hpp"
#include "proxy/server.hpp"
#include "proxy/startup.hpp"

#ifndef EGRESSD_VERSION
#define EGRESSD_VERSION "0.0.0"
#endif

namespace {

using egressd::proxy::config_source;

constexpr const char* usage = R"(egressd - an egress-filtering forward proxy (HTTP CONNECT, plain HTTP, SOCKS5)

Usage:
  egressd [run] [--config FILE | --settings FILE]
      Serve. With neither option, run on the embedded default config.
  egressd check-config (--config FILE | --settings FILE)
      Load, validate and compile; print every problem; exit 1 on error.
  egressd check [--config FILE | --settings FILE] (HOST[:PORT] | URL) [--json] [--resolve]
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
  egressd version
      Print the version.

Options:
  --config FILE     egressd YAML configuration (version: 1)
  --settings FILE   Claude Code / sandbox-runtime settings JSON: its
                    network.allowedDomains, deniedDomains, deniedResolvedAddresses
                    and strictAllowlist become the policy; all else is the default.
  -h, --help        This text.

Signals: SIGHUP reloads the configuration; SIGTERM/SIGINT drain and stop.
)";

struct arguments {
  std::string command = "run";
  std::optional<config_source> source;
  std::vector<std::string> positional;
  bool json = false;
  bool resolve = false;
};

int usage_error(const std::string& message) {
  std::cerr << "egressd: " << message << "\nRun 'egressd --help' for usage.\n";
  return 2;
}

std::optional<arguments> parse_arguments(int argc, char** argv, int& exit_code) {
  arguments a;
  int i = 1;
  if (i < argc && argv[i][0] != '-') a.command = argv[i++];
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    auto take_file = [&](config_source::kind_t kind) -> bool {
      if (i + 1 >= argc) {
        exit_code = usage_error(arg + " needs a file");
        return false;
      }
      if (a.source) {
        exit_code = usage_error("give one of --config and --settings, once");
        return false;
      }
      a.source = config_source{kind, argv[++i]};
      return true;
    };
    if (arg == "--config") {
      if (!take_file(config_source::kind_t::yaml)) return std::nullopt;
    } else if (arg == "--settings") {
      if (!take_file(config_source::kind_t::settings)) return std::nullopt;
    } else if (arg.rfind("--config=", 0) == 0) {
      a.source = config_source{config_source::kind_t::yaml, arg.substr(9)};
    } else if (arg.rfind("--settings=", 0) == 0) {
      a.source = config_source{config_source::kind_t::settings, arg.substr(11)};
    } else if (arg == "--json") {
      a.json = true;
    } else if (arg == "--resolve") {
      a.resolve = true;
    } else if (arg == "-h" || arg == "--help") {
      a.command = "help";
    } else if (arg == "--version") {
      a.command = "version";
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      exit_code = usage_error("unknown option " + arg);
      return std::nullopt;
    } else {
      a.positional.push_back(arg);
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
    std::cerr << a.source->path << ": " << loaded.errors.size() << " error(s), " << loaded.warnings.size()
              << " warning(s)\n";
    return 1;
  }
  std::cout << a.source->path << ": ok (" << loaded.policy->rule_count() << " rules, " << loaded.config->listeners.size()
            << " listeners, " << loaded.warnings.size() << " warnings)\n";
  std::cout << "presets:";
  for (const auto& p : egressd::policy::presets()) std::cout << " @" << p.name;
  std::cout << "\n";
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
  auto report = egressd::proxy::check_destination(*loaded.policy, *target.target, a.resolve ? &dns : nullptr);
  std::cout << (a.json ? egressd::proxy::to_json(report) : egressd::proxy::to_text(report)) << "\n";
  return egressd::proxy::exit_status(report);
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
  if (source.kind == config_source::kind_t::embedded) {
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
    if (args->command == "help") {
      std::cout << usage;
      return 0;
    }
    if (args->command == "version") {
      std::cout << "egressd " << EGRESSD_VERSION << "\n";
      return 0;
    }
    if (args->command == "run") return cmd_run(*args);
    if (args->command == "check-config") return cmd_check_config(*args);
    if (args->command == "check") return cmd_check(*args);
    return usage_error("unknown command '" + args->command + "'");
  } catch (const std::exception& e) {
    std::cerr << "egressd: " << e.what() << "\n";
    return 1;
  }
}
