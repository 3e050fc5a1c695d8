// One line per event, Redis-style: "pid:role dd Mon yyyy hh:mm:ss.mmm <level-char> message".
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace respite {

enum class LogLevel { Debug = 0, Verbose = 1, Notice = 2, Warning = 3 };

bool parse_log_level(std::string_view s, LogLevel& out);
std::string_view log_level_name(LogLevel l);
void set_log_level(LogLevel l);
LogLevel log_level();
// Opens `path` for appending (empty = stderr). Returns false if it cannot be opened.
bool set_log_file(const std::string& path);
void log_line(LogLevel l, std::string_view msg);

template <typename... Args>
void log(LogLevel l, fmt::format_string<Args...> f, Args&&... args) {
  if (l < log_level()) return;
  log_line(l, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace respite
