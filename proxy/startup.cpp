#include "proxy/startup.hpp"

#include "config/load.hpp"
#include "config/public_suffix.hpp"

namespace egressd::proxy {

namespace {

std::string format_compile_problem(const policy::compile_problem& p) {
  std::string out = p.where.file.empty() ? std::string("policy") : p.where.file;
  if (p.where.line > 0) {
    out += ":" + std::to_string(p.where.line);
    if (p.where.column > 0) out += ":" + std::to_string(p.where.column);
  }
  out += p.warning ? ": warning: " : ": error: ";
  if (!p.where.path.empty()) out += p.where.path + ": ";
  out += "'" + p.entry + "': " + p.message;
  if (!p.hint.empty()) out += " (hint: " + p.hint + ")";
  return out;
}

}  // namespace

std::string config_source::describe() const {
  if (embedded()) return "embedded default";
  if (settings.empty()) return yaml;
  if (yaml.empty()) return settings;
  return yaml + " + " + settings;
}

loaded_config load_config_source(const config_source& source) {
  loaded_config out;
  config::load_result r;
  if (source.embedded())
    r.value = config::default_config();
  else if (source.settings.empty())
    r = config::load_yaml_file(source.yaml);
  else if (source.yaml.empty())
    r = config::load_settings_file(source.settings);
  else
    r = config::load_layered_files(source.yaml, source.settings);
  for (const auto& p : r.problems)
    (p.level == config::severity::error ? out.errors : out.warnings).push_back(p.to_string());
  if (!r.value || !out.errors.empty()) return out;

  policy::compile_options options;
  options.is_public_suffix = [](std::string_view s) { return config::is_public_suffix(s); };
  options.is_platform_suffix = [](std::string_view s) { return config::is_platform_suffix(s); };
  auto compiled = policy::compile(r.value->policy, options);
  for (const auto& p : compiled.problems) (p.warning ? out.warnings : out.errors).push_back(format_compile_problem(p));
  if (!compiled.policy) return out;
  out.config = std::make_shared<const config::config>(std::move(*r.value));
  out.policy = std::move(compiled.policy);
  return out;
}

}  // namespace egressd::proxy
